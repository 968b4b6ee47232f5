"""Atomic writes, JSON/JSONL reading with named errors, and file hashing."""

import hashlib
import json
import os
import re

import pytest

from cbench._validate import CbenchError
from cbench.io import files


def _leftovers(directory) -> list[str]:
  return sorted(n for n in os.listdir(directory) if n.startswith(".tmp-"))


def test_atomic_open_keeps_the_old_file_when_the_writer_raises(tmp_path):
  path = str(tmp_path / "out.txt")
  files.write_text(path, "old contents\n")
  with pytest.raises(RuntimeError, match="boom"):
    with files.atomic_open(path) as f:
      f.write("new half-written")
      f.flush()
      # The temporary file exists beside the target while writing.
      assert len(_leftovers(tmp_path)) == 1
      raise RuntimeError("boom")
  with open(path, encoding="utf-8") as f:
    assert f.read() == "old contents\n"
  assert _leftovers(tmp_path) == []
  assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_open_creates_no_file_when_the_first_write_fails(tmp_path):
  path = str(tmp_path / "sub" / "new.bin")
  with pytest.raises(KeyboardInterrupt):
    with files.atomic_open(path, "wb") as f:
      f.write(b"\x00\x01")
      raise KeyboardInterrupt
  assert not os.path.exists(path)
  assert os.listdir(tmp_path / "sub") == []  # The directory was created.


def test_atomic_open_replaces_the_file_and_honours_the_umask(tmp_path):
  path = str(tmp_path / "out.bin")
  files.write_text(path, "first")
  with files.atomic_open(path, "wb") as f:
    f.write(b"\xffsecond")
  with open(path, "rb") as f:
    assert f.read() == b"\xffsecond"
  assert _leftovers(tmp_path) == []
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_write_json_sorts_keys_and_read_json_roundtrips(tmp_path):
  path = str(tmp_path / "a.json")
  obj = {"zeta": 1, "alpha": [1, 2.5, None], "mid": {"b": "ε", "a": True}}
  files.write_json(path, obj)
  with open(path, encoding="utf-8") as f:
    text = f.read()
  assert text.endswith("}\n")
  keys = re.findall(r'^  "(\w+)":', text, flags=re.M)
  assert keys == ["alpha", "mid", "zeta"]
  assert text.index('"a": true') < text.index('"b":')
  assert files.read_json(path) == obj
  assert _leftovers(tmp_path) == []


def test_read_json_names_a_missing_or_broken_file(tmp_path):
  missing = str(tmp_path / "nope.json")
  with pytest.raises(CbenchError, match="File not found: .*nope.json"):
    files.read_json(missing)
  broken = tmp_path / "broken.json"
  broken.write_text('{"a": ', encoding="utf-8")
  with pytest.raises(CbenchError, match=r"broken\.json: not valid JSON"):
    files.read_json(str(broken))


def test_write_jsonl_and_iter_jsonl_roundtrip(tmp_path):
  path = str(tmp_path / "r.jsonl")
  records = [{"id": i, "text": f"doc {i}", "b": [i]} for i in range(3)]
  assert files.write_jsonl(path, iter(records)) == 3
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  assert lines == [files.dumps_record(r) for r in records]
  assert files.read_jsonl(path, required=("id", "text")) == records


def test_iter_jsonl_skips_blank_lines(tmp_path):
  path = tmp_path / "r.jsonl"
  path.write_text('{"text": "a"}\n\n   \n{"text": "b"}\n', encoding="utf-8")
  assert [r["text"] for r in files.iter_jsonl(str(path))] == ["a", "b"]


def test_iter_jsonl_names_the_file_and_line_of_a_malformed_record(tmp_path):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"text": "a"}\n\n{"text": oops}\n', encoding="utf-8")
  it = files.iter_jsonl(str(path))
  assert next(it) == {"text": "a"}  # Records before the bad line are read.
  with pytest.raises(CbenchError, match=r"bad\.jsonl:3: not a JSON record"):
    next(it)


def test_iter_jsonl_rejects_a_record_that_is_not_an_object(tmp_path):
  path = tmp_path / "list.jsonl"
  path.write_text('{"text": "a"}\n[1, 2]\n', encoding="utf-8")
  with pytest.raises(CbenchError,
                     match=r"list\.jsonl:2: expected a JSON object, got list"):
    files.read_jsonl(str(path))


def test_iter_jsonl_rejects_invalid_utf8(tmp_path):
  path = tmp_path / "bin.jsonl"
  path.write_bytes(b'{"text": "\xff\xfe"}\n')
  with pytest.raises(CbenchError, match=r"bin\.jsonl:1: not a JSON record"):
    files.read_jsonl(str(path))


def test_iter_jsonl_names_a_missing_required_field(tmp_path):
  path = tmp_path / "fields.jsonl"
  path.write_text('{"id": 1, "text": "a"}\n{"id": 2}\n', encoding="utf-8")
  with pytest.raises(CbenchError, match=r"fields\.jsonl:2: record has no "
                     r"field\(s\) \['text'\]"):
    files.read_jsonl(str(path), required=("id", "text"))


def test_iter_jsonl_names_a_missing_file(tmp_path):
  path = str(tmp_path / "absent.jsonl")
  with pytest.raises(CbenchError, match="File not found: .*absent.jsonl"):
    next(files.iter_jsonl(path))


def test_iter_jsonl_rejects_an_overlong_record(tmp_path):
  path = tmp_path / "long.jsonl"
  path.write_text('{"text": "ok"}\n{"text": "' + "x" * 100 + '"}\n',
                  encoding="utf-8")
  with pytest.raises(CbenchError, match=r"long\.jsonl:2: record of 113 bytes "
                     r"exceeds the limit of 64 bytes"):
    list(files.iter_jsonl(str(path), max_record_bytes=64))


def test_sha256_file_matches_hashlib_across_chunks(tmp_path):
  data = bytes(range(256)) * 41 + b"tail"
  path = tmp_path / "blob"
  path.write_bytes(data)
  expected = hashlib.sha256(data).hexdigest()
  assert files.sha256_file(str(path)) == expected
  assert files.sha256_file(str(path), chunk=7) == expected
  empty = tmp_path / "empty"
  empty.write_bytes(b"")
  assert files.sha256_file(str(empty)) == (
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_dumps_record_is_canonical(tmp_path):
  a = files.dumps_record({"b": 1, "a": {"y": 2, "x": "ε"}})
  b = files.dumps_record({"a": {"x": "ε", "y": 2}, "b": 1})
  assert a == b == '{"a": {"x": "ε", "y": 2}, "b": 1}'
  assert "\n" not in files.dumps_record({"t": "line1\nline2"})
  assert json.loads(files.dumps_record({"t": "line1\nline2"})) == {
      "t": "line1\nline2"}
  with pytest.raises(ValueError):
    files.dumps_record({"x": float("nan")})
  with pytest.raises(ValueError):
    files.dumps_record({"x": float("inf")})
