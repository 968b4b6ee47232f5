"""Order-independent near-duplicate removal with MinHash LSH.

Settings follow the reference curation: Jaccard threshold 0.8 over 5-word
shingles (lowercased `\\w+` tokens), 128 permutations. Signatures are
datasketch's `MinHash(num_perm=128, seed=1, hashfunc=zlib.crc32,
scheme="affine32")` (shingles hashed with CRC-32, pre-mixed with the
MurmurHash3 finalizer, permuted by a*h+b mod 2^32), computed here for many
documents at once with NumPy (`signatures`; a test checks equality with
datasketch). The LSH uses datasketch's banding for (0.8, 128): `BANDS` = 9
bands of `ROWS` = 13 values; each band is reduced to one 64-bit key
(`band_keys`, salted by the band number).

The rule (order-independent, so it shards):
  document i is REMOVED iff some document j < i (kept or not) shares a band
  key with i and their estimated Jaccard similarity (the fraction of equal
  signature values) is >= THRESHOLD.
Nothing is re-rendered. Whether i is removed depends only on the documents
before it, never on the order in which they were examined, so the decision
can be made

  * streaming, in index order (`NearDuplicateIndex`: bounded memory, holds
    the signatures (512 B per document) and the band entries (9 x 16 B per
    document), never the texts), or
  * in parallel: group all (band key, index) entries by key, in any
    partitioning (`removed_in_group` on each group; see
    `cbench.tracks.geminon.beam_pipeline`).

Both give the same removed set (tested).
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence
import zlib

from datasketch import MinHash
import numpy as np

_TOKEN = re.compile(r"\w+")
THRESHOLD = 0.8
NUM_PERM = 128
SHINGLE = 5
SEED = 1
# datasketch's MinHashLSH(threshold=0.8, num_perm=128) banding (tested).
BANDS = 9
ROWS = 13
_CHUNK = 1 << 15  # Shingles per permutation block (x 128 x 4 bytes).
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def shingles(text: str, k: int = SHINGLE) -> list[bytes]:
  """The distinct k-word shingles of `text` (whole text if shorter)."""
  words = _TOKEN.findall(text.lower())
  if len(words) <= k:
    return [" ".join(words).encode("utf-8")]
  return list({" ".join(words[i:i + k]).encode("utf-8")
               for i in range(len(words) - k + 1)})


def _fmix32(h: np.ndarray) -> np.ndarray:
  h = h ^ (h >> np.uint32(16))
  h = h * np.uint32(0x85EBCA6B)
  h = h ^ (h >> np.uint32(13))
  h = h * np.uint32(0xC2B2AE35)
  return h ^ (h >> np.uint32(16))


def mix64(x: np.ndarray) -> np.ndarray:
  """SplitMix64's finalizer on a uint64 array (a bijection; wraps)."""
  x = np.asarray(x, np.uint64)
  x = (x ^ (x >> np.uint64(30))) * _M1
  x = (x ^ (x >> np.uint64(27))) * _M2
  return x ^ (x >> np.uint64(31))


_PERMS: dict = {}


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  key = (num_perm, seed)
  if key not in _PERMS:
    a, b = MinHash(num_perm=num_perm, seed=seed, hashfunc=zlib.crc32,
                   scheme="affine32").permutations
    _PERMS[key] = (np.asarray(a, np.uint32)[None, :],
                   np.asarray(b, np.uint32)[None, :])
  return _PERMS[key]


def signatures(texts: Sequence[str], num_perm: int = NUM_PERM,
               shingle: int = SHINGLE, seed: int = SEED) -> np.ndarray:
  """MinHash signatures of `texts`: uint32 array [len(texts), num_perm].

  Row i equals datasketch's ``MinHash(num_perm, seed, hashfunc=zlib.crc32,
  scheme="affine32")`` after ``update_batch(shingles(texts[i]))``.
  """
  a, b = _permutations(num_perm, seed)
  out = np.empty((len(texts), num_perm), np.uint32)
  hashes, starts, n = [], [], 0
  for t in texts:
    starts.append(n)
    sh = shingles(t, shingle)
    hashes.extend(map(zlib.crc32, sh))
    n += len(sh)
  if not texts:
    return out
  h = _fmix32(np.asarray(hashes, np.uint32))[:, None]
  starts = np.asarray(starts, np.int64)
  # Documents in blocks of about _CHUNK shingles (every document has >= 1).
  doc = 0
  while doc < len(texts):
    end = int(np.searchsorted(starts, starts[doc] + _CHUNK, "right"))
    end = max(end, doc + 1)
    lo = starts[doc]
    hi = starts[end] if end < len(texts) else n
    phv = h[lo:hi] * a + b  # uint32: wraps mod 2^32, as datasketch.
    out[doc:end] = np.minimum.reduceat(phv, starts[doc:end] - lo, axis=0)
    doc = end
  return out


def band_keys(sigs: np.ndarray, bands: int = BANDS, rows: int = ROWS
              ) -> np.ndarray:
  """One 64-bit key per (document, band): uint64 [n, bands].

  Band k of a signature is values [k*rows, (k+1)*rows); equal bands give
  equal keys, and keys of different bands differ (salted by k) up to 64-bit
  hash collisions, which `removed_in_group`'s Jaccard check makes harmless.
  """
  sigs = np.asarray(sigs, np.uint32)
  if sigs.shape[1] < bands * rows:
    raise ValueError(f"{sigs.shape[1]} permutations < {bands} x {rows}.")
  v = sigs[:, :bands * rows].reshape(len(sigs), bands, rows).astype(np.uint64)
  h = np.broadcast_to(mix64(np.arange(1, bands + 1, dtype=np.uint64)
                            * _GOLDEN), (len(sigs), bands))
  for c in range(rows):
    h = mix64(h ^ v[:, :, c])
  return h


def similar(a: np.ndarray, b: np.ndarray,
            threshold: float = THRESHOLD) -> np.ndarray:
  """Row-wise: estimated Jaccard (fraction of equal values) >= threshold."""
  return (a == b).mean(axis=1) >= threshold


def candidate_pairs(keys: np.ndarray, idx: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Every (j, i) with j < i whose entries share a key (may repeat).

  Args:
    keys: uint64 [m] band keys; idx: int64 [m] document index of each.
  """
  keys = np.asarray(keys, np.uint64)
  idx = np.asarray(idx, np.int64)
  if keys.size < 2:
    return np.empty(0, np.int64), np.empty(0, np.int64)
  order = np.lexsort((idx, keys))
  k, d = keys[order], idx[order]
  same = k[1:] == k[:-1]
  if not same.any():
    return np.empty(0, np.int64), np.empty(0, np.int64)
  # Runs of equal keys with >= 2 members.
  starts = np.flatnonzero(np.r_[True, ~same])
  ends = np.r_[starts[1:], k.size]
  js, is_ = [], []
  for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
    members = np.unique(d[s:e])
    jj, ii = np.triu_indices(members.size, 1)
    js.append(members[jj])
    is_.append(members[ii])
  if not js:
    return np.empty(0, np.int64), np.empty(0, np.int64)
  return np.concatenate(js), np.concatenate(is_)


def removed_in_group(keys: np.ndarray, idx: np.ndarray,
                     sig_of: Callable[[np.ndarray], np.ndarray],
                     min_index: int = 0,
                     threshold: float = THRESHOLD) -> np.ndarray:
  """Indices >= min_index removed by the rule, judged within these entries.

  Args:
    keys, idx: (band key, document index) entries; every entry sharing a key
      with an entry of a document >= min_index must be present.
    sig_of: document indices [p] -> their signatures [p, num_perm].
    min_index: only documents from here on are judged.

  Returns:
    Sorted unique int64 indices.
  """
  j, i = candidate_pairs(keys, idx)
  keep = i >= min_index
  j, i = j[keep], i[keep]
  if not i.size:
    return np.empty(0, np.int64)
  code = np.unique(np.stack([i, j], axis=1), axis=0)
  i, j = code[:, 0], code[:, 1]
  hit = similar(sig_of(i), sig_of(j), threshold)
  return np.unique(i[hit])


class NearDuplicateIndex:
  """Streaming form of the rule: add documents in ascending index order.

  Holds the band keys in a few sorted runs (merged like a binary counter,
  so adding n documents costs O(n log n) in all) and the signatures, about
  660 bytes per document in all (~130 MB at 200k documents); no texts.
  """

  def __init__(self, threshold: float = THRESHOLD):
    self._threshold = threshold
    self._runs: list[tuple[np.ndarray, np.ndarray]] = []
    self._starts: list[int] = []
    self._sigs: list[np.ndarray] = []
    self.seen = 0
    self.removed = 0

  def _sig_of(self, idx: np.ndarray) -> np.ndarray:
    starts = np.asarray(self._starts, np.int64)
    block = np.searchsorted(starts, idx, "right") - 1
    out = np.empty((idx.size, self._sigs[0].shape[1]), np.uint32)
    for b in np.unique(block):
      sel = block == b
      out[sel] = self._sigs[b][idx[sel] - starts[b]]
    return out

  def add(self, first: int, sigs: np.ndarray) -> np.ndarray:
    """Documents first .. first+len(sigs)-1; returns their removed mask.

    Raises:
      ValueError if `first` is not the next index.
    """
    if first != self.seen:
      raise ValueError(f"Expected documents from index {self.seen}, got "
                       f"{first}.")
    n = len(sigs)
    if not n:
      return np.zeros(0, bool)
    sigs = np.asarray(sigs, np.uint32)
    keys = band_keys(sigs).ravel()
    idx = np.repeat(np.arange(first, first + n, dtype=np.int64), BANDS)
    old_k, old_i = [keys], [idx]
    for rk, ri in self._runs:
      lo = np.searchsorted(rk, keys, "left")
      hi = np.searchsorted(rk, keys, "right")
      hit = hi > lo
      if hit.any():
        lo, cnt = lo[hit], (hi - lo)[hit]
        pos = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(cnt.sum())
        old_k.append(rk[pos])
        old_i.append(ri[pos])
    self._starts.append(first)
    self._sigs.append(sigs)
    removed = removed_in_group(np.concatenate(old_k), np.concatenate(old_i),
                               self._sig_of, first, self._threshold)
    order = np.argsort(keys, kind="stable")
    self._runs.append((keys[order], idx[order]))
    while (len(self._runs) > 1 and
           self._runs[-2][0].size <= 2 * self._runs[-1][0].size):
      (k1, i1), (k2, i2) = self._runs[-2], self._runs[-1]
      k, i = np.concatenate([k1, k2]), np.concatenate([i1, i2])
      order = np.argsort(k, kind="stable")
      self._runs[-2:] = [(k[order], i[order])]
    self.seen += n
    self.removed += removed.size
    mask = np.zeros(n, bool)
    mask[removed - first] = True
    return mask

  @property
  def removed_fraction(self) -> float:
    return self.removed / self.seen if self.seen else 0.0


def dedup(texts: Sequence[str] | Iterable[str], threshold: float = THRESHOLD
          ) -> tuple[list[int], float]:
  """Indices of the kept texts under the rule, and the removed fraction."""
  texts = list(texts)
  index = NearDuplicateIndex(threshold)
  removed = index.add(0, signatures(texts))
  return np.flatnonzero(~removed).tolist(), index.removed_fraction
