"""MinHash near-duplicate removal: datasketch-equal signatures and banding,
the order-independent rule, streaming == grouped in any partitioning."""

import zlib

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from cbench.corpus import dedup


def _doc(rng, n=80):
  vocab = [f"w{i}" for i in range(500)]
  return " ".join(rng.choice(vocab, n))


def test_shingles():
  assert dedup.shingles("a b c") == [b"a b c"]
  assert sorted(dedup.shingles("A b c d e f")) == [b"a b c d e", b"b c d e f"]


def test_signatures_equal_datasketch():
  rng = np.random.default_rng(3)
  texts = [_doc(rng, int(n)) for n in rng.integers(1, 200, 40)]
  texts += ["", "one two", "Same same same same same same."]
  sigs = dedup.signatures(texts)
  assert sigs.shape == (len(texts), dedup.NUM_PERM)
  assert sigs.dtype == np.uint32
  for t, row in zip(texts, sigs):
    m = MinHash(num_perm=dedup.NUM_PERM, seed=dedup.SEED,
                hashfunc=zlib.crc32, scheme="affine32")
    m.update_batch(dedup.shingles(t))
    np.testing.assert_array_equal(row, m.hashvalues)
  assert dedup.signatures([]).shape == (0, dedup.NUM_PERM)


def test_banding_is_datasketchs_and_keys_follow_bands():
  lsh = MinHashLSH(threshold=dedup.THRESHOLD, num_perm=dedup.NUM_PERM)
  assert (lsh.b, lsh.r) == (dedup.BANDS, dedup.ROWS)
  rng = np.random.default_rng(4)
  a = rng.integers(0, 2**32, (1, 128), dtype=np.uint32)
  b = a.copy()
  b[0, 13 * 2 + 5] ^= 1  # Differs in band 2 only.
  ka, kb = dedup.band_keys(a)[0], dedup.band_keys(b)[0]
  assert ka.shape == (dedup.BANDS,) and ka.dtype == np.uint64
  assert [x == y for x, y in zip(ka, kb)] == [k != 2 for k in range(9)]
  # Same values in another band give another key (bands are salted).
  c = np.roll(a, 13, axis=1)
  assert dedup.band_keys(c)[0][1] != ka[0]


def test_removes_exact_and_near_duplicates_keeps_distinct():
  rng = np.random.default_rng(0)
  base = [_doc(rng) for _ in range(50)]
  near = []
  for t in base[:20]:
    words = t.split()
    words[-1] = "changed"  # One word of 80: Jaccard ~0.95.
    near.append(" ".join(words))
  texts = base + near + base[20:25]  # 20 near + 5 exact duplicates.
  kept, frac = dedup.dedup(texts)
  assert kept == list(range(50))
  assert frac == 25 / 75


def test_dissimilar_rewrites_are_kept():
  rng = np.random.default_rng(1)
  a = _doc(rng)
  words = a.split()
  b = " ".join(words[:40] + _doc(rng, 40).split())  # Jaccard ~0.33.
  kept, frac = dedup.dedup([a, b])
  assert kept == [0, 1] and frac == 0.0


def _chain():
  """Signatures a, b, c: J(a,b) = J(b,c) = 108/128, J(a,c) = 88/128."""
  rng = np.random.default_rng(5)
  a = rng.integers(0, 2**32, 128, dtype=np.uint32)
  b = a.copy()
  b[:20] ^= 1  # Bands 0-1 differ.
  c = b.copy()
  c[52:72] ^= 2  # Bands 4-5 differ; band 8 is shared by all three.
  return np.stack([a, b, c])


def test_rule_earlier_removed_documents_still_count():
  sigs = _chain()
  assert dedup.similar(sigs[[0, 1]], sigs[[1, 2]]).tolist() == [True, True]
  assert not dedup.similar(sigs[:1], sigs[2:]).item()
  index = dedup.NearDuplicateIndex()
  # c is removed because of b although b itself was removed (a greedy
  # "near a kept document" rule would keep c).
  assert index.add(0, sigs).tolist() == [False, True, True]
  # Reversed, the first one wins and a (only near b) goes too.
  index = dedup.NearDuplicateIndex()
  assert index.add(0, sigs[::-1]).tolist() == [False, True, True]
  # Below the threshold nothing is removed even though bands are shared.
  index = dedup.NearDuplicateIndex(threshold=0.9)
  assert index.add(0, sigs).tolist() == [False, False, False]


def _planted(n, seed):
  """n random signatures, a third of them copies of earlier ones with
  0-40 values changed (some above, some below the threshold)."""
  rng = np.random.default_rng(seed)
  sigs = rng.integers(0, 2**32, (n, 128), dtype=np.uint32)
  for i in rng.choice(np.arange(1, n), n // 3, replace=False):
    j = rng.integers(0, i) if rng.random() < 0.7 else rng.integers(i, n)
    sigs[i] = sigs[j]
    pos = rng.choice(128, rng.integers(0, 41), replace=False)
    sigs[i, pos] = rng.integers(0, 2**32, pos.size, dtype=np.uint32)
  return sigs


def test_streaming_equals_grouping_in_any_partition():
  sigs = _planted(600, 6)
  keys = dedup.band_keys(sigs)
  flat = keys.ravel()
  idx = np.repeat(np.arange(len(sigs)), dedup.BANDS)
  # Brute force: all earlier documents, no LSH.
  brute = sorted(i for i in range(len(sigs)) if any(
      (keys[i] == keys[j]).any() and
      (sigs[i] == sigs[j]).mean() >= dedup.THRESHOLD for j in range(i)))
  assert 20 < len(brute) < 200
  whole = dedup.removed_in_group(flat, idx, lambda ids: sigs[ids])
  assert whole.tolist() == brute
  for parts in (1, 3, 16):
    rng = np.random.default_rng(parts)
    perm = rng.permutation(flat.size)  # Entries in any order.
    f, d = flat[perm], idx[perm]
    got = np.concatenate([
        dedup.removed_in_group(f[f % np.uint64(parts) == p],
                               d[f % np.uint64(parts) == p],
                               lambda ids: sigs[ids])
        for p in range(parts)])
    assert np.unique(got).tolist() == brute
  for chunk in (1, 64, 250, 600):
    index = dedup.NearDuplicateIndex()
    mask = np.concatenate([index.add(s, sigs[s:s + chunk])
                           for s in range(0, len(sigs), chunk)])
    assert np.flatnonzero(mask).tolist() == brute
    assert index.removed == len(brute) and index.seen == len(sigs)


def test_index_refuses_out_of_order_documents():
  index = dedup.NearDuplicateIndex()
  index.add(0, _planted(10, 7))
  with pytest.raises(ValueError, match="index 10"):
    index.add(20, _planted(10, 8))
