"""Tokenized documents as fixed-shape training rows, and the batch order.

One document is one row (``[bos] + tokens + [eos]``, truncated and padded to
``seq_len + 1``), never packed with another: a row is then exactly one record,
which is the privacy unit that DP-SGD clips. Rows are tokenized once and cached
as ``.npy`` beside the run.

Per-document weights (off by default): `document_weights` maps each
document's provenance tag (a JSONL field, `read_tagged_texts`) through a
table of weights divided by the table's largest weight, a public constant
(a recipe number, never a function of the data), so weights lie in [0, 1]
and a uniform table gives every document exactly 1.0; `with_weights`
attaches them to the rows as per-token weights (0 on padding), which
`pack_rows` carries along.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import math
from typing import Mapping, Sequence

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
    weights: ``[N, seq_len + 1]`` float32 weight of the document each token
      belongs to (0 on padding; `with_weights`), or None: unweighted.
  """
  tokens: np.ndarray
  lengths: np.ndarray
  truncated: int
  segments: np.ndarray | None = None
  positions: np.ndarray | None = None
  weights: np.ndarray | None = None

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
  weighted = rows.weights is not None
  tokens, segments, positions, lengths, weights = [], [], [], [], []
  cur_t = np.zeros(width, np.int32); cur_s = np.zeros(width, np.int32)
  cur_p = np.zeros(width, np.int32); fill = 0; seg = 0
  cur_w = np.zeros(width, np.float32)
  for i, (row, n) in enumerate(zip(rows.tokens, rows.lengths)):
    n = int(n)
    if fill + n > width:
      tokens.append(cur_t); segments.append(cur_s); positions.append(cur_p)
      lengths.append(fill); weights.append(cur_w)
      cur_t = np.zeros(width, np.int32); cur_s = np.zeros(width, np.int32)
      cur_p = np.zeros(width, np.int32); fill = 0; seg = 0
      cur_w = np.zeros(width, np.float32)
    seg += 1
    cur_t[fill:fill + n] = row[:n]
    cur_s[fill:fill + n] = seg
    cur_p[fill:fill + n] = np.arange(n)
    if weighted:
      cur_w[fill:fill + n] = rows.weights[i, :n]
    fill += n
  if fill:
    tokens.append(cur_t); segments.append(cur_s); positions.append(cur_p)
    lengths.append(fill); weights.append(cur_w)
  return TokenRows(np.stack(tokens), np.asarray(lengths, np.int32),
                   rows.truncated, np.stack(segments), np.stack(positions),
                   np.stack(weights) if weighted else None)


def read_texts(path: str) -> list[str]:
  """Reads the "text" field of a JSONL corpus, with named errors."""
  return _read(path, None)[0]


def read_tagged_texts(path: str, field: str) -> tuple[list[str], list[str]]:
  """`read_texts` and, per kept text, its record's string `field` (e.g. a
  provenance tag "real" / "synthetic-2"); CbenchError if one lacks it."""
  return _read(path, field)


def _read(path: str, field: str | None) -> tuple[list[str], list[str]]:
  texts, tags = [], []
  required = ("text",) if field is None else ("text", field)
  for i, record in enumerate(files.iter_jsonl(path, required=required),
                             start=1):
    text = record["text"]
    if not isinstance(text, str):
      raise CbenchError(f"{path}: record {i} has a non-string 'text'.")
    if not text.strip():
      continue  # Empty records carry nothing to learn; skipped.
    if field is not None:
      if not isinstance(record[field], str):
        raise CbenchError(f"{path}: record {i} has a non-string {field!r}.")
      tags.append(record[field])
    texts.append(text)
  if not texts:
    raise CbenchError(f"{path}: corpus has no non-empty 'text' records.")
  return texts, tags


def check_weight_table(table: Mapping[str, float]) -> None:
  """Raises CbenchError unless every weight is finite and >= 0 and one is
  > 0 (a table of per-tag document weights)."""
  if not table:
    raise CbenchError("Expected at least one (tag, weight) pair.")
  for tag, w in table.items():
    if not isinstance(w, (int, float)) or isinstance(w, bool) or not (
        math.isfinite(w) and w >= 0):
      raise CbenchError(f"Expected the weight of {tag!r} ({w!r}) to be a "
                        f"finite number >= 0.")
  if max(table.values()) <= 0:
    raise CbenchError("Expected some weight > 0; every document would "
                      "count zero.")


def document_weights(tags: Sequence[str], table: Mapping[str, float]
                     ) -> np.ndarray:
  """``[len(tags)]`` float32: ``table[tag] / max(table.values())``.

  The normaliser is the table's largest weight, a public constant that no
  document changes; a uniform table gives exactly 1.0 everywhere.

  Raises:
    CbenchError: a bad table (`check_weight_table`) or a tag not in it.
  """
  check_weight_table(table)
  norm = max(table.values())
  unknown = sorted(set(tags) - set(table))
  if unknown:
    raise CbenchError(f"Documents tagged {unknown[:5]} have no weight; "
                      f"the table has {sorted(table)}.")
  return np.asarray([table[t] / norm for t in tags], np.float32)


def with_weights(rows: TokenRows, doc_weights: np.ndarray) -> TokenRows:
  """`rows` (one document per row) with per-token weights: row i's real
  tokens get ``doc_weights[i]``, padding 0.

  Raises:
    CbenchError: packed rows, or weights that are not ``[num_rows]``,
      finite and >= 0.
  """
  w = np.asarray(doc_weights)
  if rows.segments is not None:
    raise CbenchError("Attach weights before packing (one document a row).")
  if w.shape != (rows.num_rows,):
    raise CbenchError(f"Expected one weight per document: shape "
                      f"({rows.num_rows},), got {w.shape}.")
  if not np.issubdtype(w.dtype, np.number) or not np.all(np.isfinite(w)):
    raise CbenchError("Expected finite document weights.")
  if np.any(w < 0):
    raise CbenchError("Expected document weights >= 0.")
  width = rows.tokens.shape[1]
  real = np.arange(width)[None, :] < rows.lengths[:, None]
  per_token = np.where(real, w.astype(np.float32)[:, None], np.float32(0))
  return dataclasses.replace(rows, weights=per_token.astype(np.float32))


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



