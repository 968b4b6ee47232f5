"""MinHash near-duplicate removal."""

import numpy as np

from cbench.corpus import dedup


def _doc(rng, n=80):
  vocab = [f"w{i}" for i in range(500)]
  return " ".join(rng.choice(vocab, n))


def test_shingles():
  assert dedup.shingles("a b c") == [b"a b c"]
  assert sorted(dedup.shingles("A b c d e f")) == [b"a b c d e", b"b c d e f"]


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


def test_filter_is_deterministic():
  rng = np.random.default_rng(2)
  texts = [_doc(rng) for _ in range(5)]
  f1, f2 = dedup.NearDuplicateFilter(), dedup.NearDuplicateFilter()
  for t in texts:
    assert (f1.signature(t).hashvalues == f2.signature(t).hashvalues).all()
