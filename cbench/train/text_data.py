"""Tokenized documents as fixed-shape training rows, and the batch order.

One document is one row (``[bos] + tokens + [eos]``, truncated and padded to
``seq_len + 1``), never packed with another: a row is then exactly one record,
which is the privacy unit that DP-SGD clips. Rows are tokenized once and cached
as ``.npy`` beside the run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Sequence

import numpy as np

from cbench._validate import CbenchError
from cbench.io import files


@dataclasses.dataclass(frozen=True)
class TokenRows:
  """Training rows.

  Attributes:
    tokens: ``[N, seq_len + 1]`` int32, pad_id padded.
    lengths: ``[N]`` int32 real tokens per row (incl. bos/eos).
    truncated: how many documents were cut at ``seq_len + 1``.
    segments: ``[N, seq_len + 1]`` int32 document index within the row
      (1, 2, ...; 0 on padding) when rows are packed, else None.
    positions: ``[N, seq_len + 1]`` int32 position within each document when
      packed, else None.
  """
  tokens: np.ndarray
  lengths: np.ndarray
  truncated: int
  segments: np.ndarray | None = None
  positions: np.ndarray | None = None

  @property
  def num_rows(self) -> int:
    return int(self.tokens.shape[0])


def tokenize_rows(texts: Sequence[str], tokenizer, seq_len: int) -> TokenRows:
  """Encodes texts into padded rows of ``seq_len + 1`` tokens."""
  width = seq_len + 1
  out = np.full((len(texts), width), tokenizer.pad_id, dtype=np.int32)
  lengths = np.zeros((len(texts),), np.int32)
  truncated = 0
  for i, ids in enumerate(tokenizer.encode_batch(list(texts))):
    ids = [tokenizer.bos_id, *ids, tokenizer.eos_id]
    if len(ids) > width:
      truncated += 1
      ids = ids[:width]
    out[i, :len(ids)] = ids
    lengths[i] = len(ids)
  return TokenRows(out, lengths, truncated)


def pack_rows(rows: TokenRows) -> TokenRows:
  """Packs one-document rows into as few rows as possible (first fit, in order).

  For non-private training only: a packed row mixes documents, so it is no
  longer one privacy unit. Attention never crosses documents (segment ids)
  and each document keeps its own positions.
  """
  width = rows.tokens.shape[1]
  tokens, segments, positions, lengths = [], [], [], []
  cur_t = np.zeros(width, np.int32); cur_s = np.zeros(width, np.int32)
  cur_p = np.zeros(width, np.int32); fill = 0; seg = 0
  for row, n in zip(rows.tokens, rows.lengths):
    n = int(n)
    if fill + n > width:
      tokens.append(cur_t); segments.append(cur_s); positions.append(cur_p)
      lengths.append(fill)
      cur_t = np.zeros(width, np.int32); cur_s = np.zeros(width, np.int32)
      cur_p = np.zeros(width, np.int32); fill = 0; seg = 0
    seg += 1
    cur_t[fill:fill + n] = row[:n]
    cur_s[fill:fill + n] = seg
    cur_p[fill:fill + n] = np.arange(n)
    fill += n
  if fill:
    tokens.append(cur_t); segments.append(cur_s); positions.append(cur_p)
    lengths.append(fill)
  return TokenRows(np.stack(tokens), np.asarray(lengths, np.int32),
                   rows.truncated, np.stack(segments), np.stack(positions))


def read_texts(path: str) -> list[str]:
  """Reads the "text" field of a JSONL corpus, with named errors."""
  texts = []
  for i, record in enumerate(files.iter_jsonl(path, required=("text",)), start=1):
    text = record["text"]
    if not isinstance(text, str):
      raise CbenchError(f"{path}: record {i} has a non-string 'text'.")
    if not text.strip():
      continue  # Empty records carry nothing to learn; skipped.
    texts.append(text)
  if not texts:
    raise CbenchError(f"{path}: corpus has no non-empty 'text' records.")
  return texts


def cached_rows(texts: Sequence[str], tokenizer, seq_len: int, cache_dir: str,
                tag: str) -> TokenRows:
  """`tokenize_rows` with an on-disk cache keyed by content and tokenizer."""
  h = hashlib.sha256()
  h.update(str(seq_len).encode())
  h.update(hashlib.sha256(tokenizer.model_proto).digest())
  for t in texts:  # A digest per text: no separator can be forged.
    h.update(hashlib.sha256(t.encode("utf-8")).digest())
  path = os.path.join(cache_dir, f"{tag}-{h.hexdigest()[:16]}.npz")
  if os.path.exists(path):
    with np.load(path) as z:
      return TokenRows(z["tokens"], z["lengths"], int(z["truncated"]))
  rows = tokenize_rows(texts, tokenizer, seq_len)
  with files.atomic_open(path, "wb") as f:
    np.savez(f, tokens=rows.tokens, lengths=rows.lengths, truncated=rows.truncated)
  return rows


@dataclasses.dataclass(frozen=True)
class EpochOrder:
  """Shuffled epochs of fixed-size batches; batch `step` is a pure function.

  This is the non-private data order (each row once per epoch). DP-SGD uses
  the Poisson samplers of `cbench.privacy.batch_sampling` instead.
  """
  num_rows: int
  batch_size: int
  seed: int

  def indices(self, step: int) -> np.ndarray:
    per_epoch = max(1, self.num_rows // self.batch_size)
    epoch, pos = divmod(step, per_epoch)
    if self.num_rows < self.batch_size:  # Tiny corpora: sample with wrap.
      perm = np.random.default_rng((self.seed, epoch)).permutation(self.num_rows)
      return np.resize(perm, self.batch_size)
    perm = np.random.default_rng((self.seed, epoch)).permutation(self.num_rows)
    return perm[pos * self.batch_size:(pos + 1) * self.batch_size]



