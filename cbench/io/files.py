"""Atomic file writes, JSONL reading with named errors, and hashing.

Outputs are written to a temporary file in the same directory and renamed into
place, so a killed process never leaves a half-written file under the final
name and never corrupts an existing one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from typing import Any, Iterable, Iterator, Sequence

from cbench._validate import CbenchError


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w") -> Iterator[Any]:
  """Opens a temp file beside `path`; renames it onto `path` on success."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-",
                             suffix=os.path.basename(path))
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide shared outputs.
  try:
    with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def write_text(path: str, text: str) -> None:
  with atomic_open(path) as f:
    f.write(text)


def write_json(path: str, obj: Any) -> None:
  write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str) -> Any:
  if not os.path.exists(path):
    raise CbenchError(f"File not found: {path}")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise CbenchError(f"{path}: not valid JSON ({e}).") from e


def dumps_record(record: dict[str, Any]) -> str:
  """One canonical JSONL line (sorted keys, no NaN) for byte-identical output."""
  return json.dumps(record, sort_keys=True, ensure_ascii=False,
                    allow_nan=False, separators=(", ", ": "))


def write_jsonl(path: str, records: Iterable[dict[str, Any]]) -> int:
  """Writes records atomically; returns how many were written."""
  n = 0
  with atomic_open(path) as f:
    for record in records:
      f.write(dumps_record(record) + "\n")
      n += 1
  return n


def iter_jsonl(path: str, required: Sequence[str] = (),
               max_record_bytes: int = 1 << 24) -> Iterator[dict[str, Any]]:
  """Yields records of a JSONL file, raising a `CbenchError` naming the line.

  Args:
    path: the file.
    required: fields every record must have.
    max_record_bytes: longer lines are rejected (a corrupt or binary file).
  """
  if not os.path.exists(path):
    raise CbenchError(f"File not found: {path}")
  with open(path, "rb") as f:
    for lineno, raw in enumerate(f, start=1):
      if len(raw) > max_record_bytes:
        raise CbenchError(
            f"{path}:{lineno}: record of {len(raw)} bytes exceeds the limit "
            f"of {max_record_bytes} bytes.")
      if not raw.strip():
        continue
      try:
        record = json.loads(raw.decode("utf-8"))
      except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CbenchError(f"{path}:{lineno}: not a JSON record ({e}).") from e
      if not isinstance(record, dict):
        raise CbenchError(f"{path}:{lineno}: expected a JSON object, got "
                          f"{type(record).__name__}.")
      missing = [k for k in required if k not in record]
      if missing:
        raise CbenchError(f"{path}:{lineno}: record has no field(s) {missing}.")
      yield record


def read_jsonl(path: str, required: Sequence[str] = ()) -> list[dict[str, Any]]:
  return list(iter_jsonl(path, required))


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      h.update(block)
  return h.hexdigest()
