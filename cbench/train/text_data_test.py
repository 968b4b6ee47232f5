"""Training rows: tokenizing, packing, batch order, corpus reading, caching.

Uses the small real sentencepiece tokenizer of the tokenizer tests
(pad 0, unk 1, bos 2, eos 3).
"""

import functools
import json
import os

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.text.tokenizer_test import blank_line_tokenizer
from cbench.train import text_data

TEXTS = ["The quick brown fox jumps over the lazy dog.",
         "Hello world",
         "Q: Where was Ada born?\nA: London.",
         "short"]


@functools.lru_cache(maxsize=None)
def _tok():
  return blank_line_tokenizer()


class _OtherProto:
  """The same encoder under a different model proto (a "new" tokenizer)."""

  def __init__(self, tok):
    self._tok = tok
    self.pad_id, self.bos_id, self.eos_id = tok.pad_id, tok.bos_id, tok.eos_id
    self.model_proto = tok.model_proto + b"\x00changed"

  def encode_batch(self, texts):
    return self._tok.encode_batch(texts)


def _rows(lengths, width, truncated=0):
  """One-document rows with distinct token values (row i: 100 * (i + 1) + j)."""
  tokens = np.zeros((len(lengths), width), np.int32)
  for i, n in enumerate(lengths):
    tokens[i, :n] = 100 * (i + 1) + np.arange(n)
  return text_data.TokenRows(tokens, np.asarray(lengths, np.int32), truncated)


# tokenize_rows -------------------------------------------------------------


def test_tokenize_rows_shapes_specials_and_padding():
  tok = _tok()
  seq_len = 40
  rows = text_data.tokenize_rows(TEXTS, tok, seq_len)
  assert rows.tokens.shape == (len(TEXTS), seq_len + 1)
  assert rows.tokens.dtype == np.int32 and rows.lengths.dtype == np.int32
  assert rows.num_rows == len(TEXTS)
  assert rows.truncated == 0
  assert rows.segments is None and rows.positions is None
  for i, text in enumerate(TEXTS):
    ids = [tok.bos_id, *tok.encode(text), tok.eos_id]
    assert rows.lengths[i] == len(ids)
    assert rows.tokens[i, :len(ids)].tolist() == ids
    assert np.all(rows.tokens[i, len(ids):] == tok.pad_id)
  assert tok.pad_id == 0


def test_tokenize_rows_truncates_at_seq_len_plus_one_and_counts():
  tok = _tok()
  ids = tok.encode(TEXTS[0])
  n = len(ids)
  # Exactly fits: bos + n + eos == seq_len + 1.
  fits = text_data.tokenize_rows([TEXTS[0]], tok, n + 1)
  assert fits.truncated == 0
  assert fits.tokens[0].tolist() == [tok.bos_id, *ids, tok.eos_id]
  # One short: eos is cut off.
  cut = text_data.tokenize_rows([TEXTS[0], "short"], tok, n)
  assert cut.truncated == 1
  assert cut.lengths[0] == n + 1
  assert cut.tokens[0].tolist() == [tok.bos_id, *ids]
  assert cut.tokens[1, cut.lengths[1] - 1] == tok.eos_id
  many = text_data.tokenize_rows([TEXTS[0]] * 3 + ["a"], tok, 5)
  assert many.truncated == 3
  assert many.lengths.tolist()[:3] == [6, 6, 6]
  assert many.tokens[:3].tolist() == [[tok.bos_id, *ids[:5]]] * 3


def test_tokenize_rows_of_an_empty_text_is_bos_eos():
  tok = _tok()
  rows = text_data.tokenize_rows([""], tok, 4)
  assert rows.tokens.tolist() == [[tok.bos_id, tok.eos_id, 0, 0, 0]]
  assert rows.lengths.tolist() == [2]


# pack_rows -----------------------------------------------------------------


def _check_packed(rows, packed):
  width = rows.tokens.shape[1]
  assert packed.tokens.shape[1] == width
  assert packed.segments.shape == packed.tokens.shape
  assert packed.positions.shape == packed.tokens.shape
  assert packed.truncated == rows.truncated
  assert np.all(packed.lengths <= width)
  assert packed.lengths.sum() == rows.lengths.sum()
  docs = []
  for t, s, p, n in zip(packed.tokens, packed.segments, packed.positions,
                        packed.lengths):
    assert np.all(s[:n] > 0) and np.all(s[n:] == 0)
    assert np.all(t[n:] == 0) and np.all(p[n:] == 0)
    num_segments = int(s.max())
    assert sorted(set(s[:n].tolist())) == list(range(1, num_segments + 1))
    for seg in range(1, num_segments + 1):
      where = np.flatnonzero(s == seg)
      assert np.all(np.diff(where) == 1)  # Contiguous.
      np.testing.assert_array_equal(p[where], np.arange(len(where)))
      docs.append(t[where].tolist())
  # Every document kept, whole and in order.
  assert docs == [r[:n].tolist() for r, n in zip(rows.tokens, rows.lengths)]


def test_pack_rows_fills_rows_in_order():
  rows = _rows([3, 4, 2, 8, 1, 5], width=8, truncated=2)
  packed = text_data.pack_rows(rows)
  _check_packed(rows, packed)
  assert packed.lengths.tolist() == [7, 2, 8, 6]
  assert packed.segments.tolist() == [
      [1, 1, 1, 2, 2, 2, 2, 0],
      [1, 1, 0, 0, 0, 0, 0, 0],
      [1, 1, 1, 1, 1, 1, 1, 1],
      [1, 2, 2, 2, 2, 2, 0, 0]]
  assert packed.positions[0].tolist() == [0, 1, 2, 0, 1, 2, 3, 0]
  assert packed.tokens[0].tolist() == [100, 101, 102, 200, 201, 202, 203, 0]
  assert packed.tokens[3].tolist() == [500, 600, 601, 602, 603, 604, 0, 0]


def test_pack_rows_of_real_tokenized_rows_keeps_every_token():
  rows = text_data.tokenize_rows(TEXTS * 5, _tok(), 64)
  packed = text_data.pack_rows(rows)
  _check_packed(rows, packed)
  assert rows.truncated == 0
  assert packed.num_rows < rows.num_rows
  assert packed.tokens.dtype == np.int32


# EpochOrder ----------------------------------------------------------------


def test_each_epoch_is_a_permutation():
  order = text_data.EpochOrder(num_rows=12, batch_size=4, seed=3)
  epochs = [np.concatenate([order.indices(e * 3 + s) for s in range(3)])
            for e in range(3)]
  for ep in epochs:
    assert ep.shape == (12,)
    assert sorted(ep.tolist()) == list(range(12))
  assert epochs[0].tolist() != epochs[1].tolist()
  assert epochs[1].tolist() != epochs[2].tolist()


def test_epoch_order_drops_the_remainder_without_repeats():
  order = text_data.EpochOrder(num_rows=10, batch_size=3, seed=0)
  for epoch in range(3):
    ep = np.concatenate([order.indices(epoch * 3 + s) for s in range(3)])
    assert len(set(ep.tolist())) == 9
    assert all(0 <= i < 10 for i in ep)


def test_epoch_order_is_deterministic_and_pure_in_step():
  a = text_data.EpochOrder(num_rows=20, batch_size=5, seed=7)
  b = text_data.EpochOrder(num_rows=20, batch_size=5, seed=7)
  c = text_data.EpochOrder(num_rows=20, batch_size=5, seed=8)
  forward = [a.indices(s).tolist() for s in range(12)]
  backward = [b.indices(s).tolist() for s in reversed(range(12))][::-1]
  assert forward == backward
  assert a.indices(9).tolist() == forward[9]  # Again, after other calls.
  assert [c.indices(s).tolist() for s in range(12)] != forward
  assert all(len(x) == 5 for x in forward)


def test_epoch_order_of_a_tiny_corpus_wraps():
  order = text_data.EpochOrder(num_rows=3, batch_size=7, seed=1)
  idx = order.indices(0)
  assert idx.shape == (7,)
  assert set(idx.tolist()) == {0, 1, 2}
  assert idx[:3].tolist() == idx[3:6].tolist()  # A repeated permutation.
  nxt = order.indices(1)  # The next epoch: another permutation, wrapped.
  assert nxt.shape == (7,) and sorted(nxt[:3].tolist()) == [0, 1, 2]
  assert nxt[:3].tolist() == nxt[3:6].tolist()


# read_texts ----------------------------------------------------------------


def _write_lines(path, lines):
  path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
  return str(path)


def test_read_texts_reads_text_and_skips_empty_records(tmp_path):
  path = _write_lines(tmp_path / "c.jsonl", [
      json.dumps({"id": 1, "text": "one"}), json.dumps({"text": "  "}),
      json.dumps({"text": "two", "x": 0}), ""])
  assert text_data.read_texts(path) == ["one", "two"]


def test_read_texts_missing_file(tmp_path):
  with pytest.raises(CbenchError, match="File not found: .*nothing.jsonl"):
    text_data.read_texts(str(tmp_path / "nothing.jsonl"))


def test_read_texts_malformed_jsonl(tmp_path):
  path = _write_lines(tmp_path / "bad.jsonl",
                      [json.dumps({"text": "ok"}), '{"text": "unterminated'])
  with pytest.raises(CbenchError, match=r"bad\.jsonl:2: not a JSON record"):
    text_data.read_texts(path)


def test_read_texts_record_without_text(tmp_path):
  path = _write_lines(tmp_path / "notext.jsonl",
                      [json.dumps({"text": "ok"}), json.dumps({"body": "x"})])
  with pytest.raises(CbenchError,
                     match=r"notext\.jsonl:2: record has no field\(s\) "
                     r"\['text'\]"):
    text_data.read_texts(path)


def test_read_texts_non_string_text(tmp_path):
  path = _write_lines(tmp_path / "num.jsonl",
                      [json.dumps({"text": "ok"}), json.dumps({"text": 5})])
  with pytest.raises(CbenchError,
                     match=r"num\.jsonl: record 2 has a non-string 'text'"):
    text_data.read_texts(path)


def test_read_texts_all_empty(tmp_path):
  path = _write_lines(tmp_path / "empty.jsonl",
                      [json.dumps({"text": ""}), json.dumps({"text": "\n"})])
  with pytest.raises(CbenchError,
                     match=r"empty\.jsonl: corpus has no non-empty 'text'"):
    text_data.read_texts(path)


# cached_rows ---------------------------------------------------------------


def _cache_files(cache_dir):
  return sorted(os.listdir(cache_dir))


def test_cached_rows_reuses_its_cache(tmp_path, monkeypatch):
  tok, cache = _tok(), str(tmp_path / "cache")
  first = text_data.cached_rows(TEXTS, tok, 16, cache, "train")
  direct = text_data.tokenize_rows(TEXTS, tok, 16)
  np.testing.assert_array_equal(first.tokens, direct.tokens)
  np.testing.assert_array_equal(first.lengths, direct.lengths)
  assert first.truncated == direct.truncated
  (name,) = _cache_files(cache)
  assert name.startswith("train-") and name.endswith(".npz")

  def no_tokenizing(*args, **kwargs):
    raise AssertionError("tokenized again instead of reading the cache")
  monkeypatch.setattr(text_data, "tokenize_rows", no_tokenizing)
  again = text_data.cached_rows(list(TEXTS), tok, 16, cache, "train")
  np.testing.assert_array_equal(again.tokens, direct.tokens)
  np.testing.assert_array_equal(again.lengths, direct.lengths)
  assert again.truncated == direct.truncated and isinstance(again.truncated,
                                                             int)
  assert again.tokens.dtype == np.int32
  assert _cache_files(cache) == [name]


@pytest.mark.parametrize("change", ["texts", "order", "seq_len", "tokenizer",
                                    "tag"])
def test_cached_rows_rebuilds_when_an_input_changes(tmp_path, change):
  tok, cache = _tok(), str(tmp_path / "cache")
  base = text_data.cached_rows(TEXTS, tok, 16, cache, "train")
  texts, seq_len, tokenizer, tag = list(TEXTS), 16, tok, "train"
  if change == "texts":
    texts[1] = "Hello there"
  elif change == "order":
    texts = texts[::-1]
  elif change == "seq_len":
    seq_len = 8
  elif change == "tokenizer":
    tokenizer = _OtherProto(tok)
  else:
    tag = "eval"
  out = text_data.cached_rows(texts, tokenizer, seq_len, cache, tag)
  assert len(_cache_files(cache)) == 2  # A new entry; the old one is kept.
  expected = text_data.tokenize_rows(texts, tok, seq_len)
  np.testing.assert_array_equal(out.tokens, expected.tokens)
  np.testing.assert_array_equal(out.lengths, expected.lengths)
  assert out.truncated == expected.truncated
  if change in ("texts", "order", "seq_len"):
    assert out.tokens.shape != base.tokens.shape or not np.array_equal(
        out.tokens, base.tokens)


def test_cached_rows_key_is_unambiguous_for_texts_with_nul(tmp_path):
  tok, cache = _tok(), str(tmp_path / "cache")
  one = text_data.cached_rows(["alpha\0beta"], tok, 16, cache, "train")
  assert one.num_rows == 1
  two = text_data.cached_rows(["alpha", "beta"], tok, 16, cache, "train")
  assert two.num_rows == 2
