"""Tests of keyed-hash and clustered batching."""

import dp_accounting
import numpy as np
import pytest
from scipy import stats

from cbench._validate import CbenchError
from cbench.synthesis import batching as B

KEY = b"0123456789abcdef-test-key"


def _ids(n, prefix="r"):
  return [f"{prefix}{i}" for i in range(n)]


def test_batches_partition_the_records():
  n, s, nb = 500, 8, 60
  b = B.keyed_hash_batches(_ids(n), KEY, s, nb)
  B.check_partition(b, n)
  assert b.rows.shape == (nb, s)
  assert b.sizes.sum() + b.dropped.size == n
  assert b.dropped.size > 0                 # nb * s < n: overflow happens
  owner = b.batch_of(n)
  assert np.all(owner[b.dropped] == -1)
  assert np.array_equal(np.flatnonzero(owner < 0), b.dropped)


def test_check_partition_rejects_a_broken_batching():
  b = B.keyed_hash_batches(_ids(50), KEY, 4, 20)
  rows = b.rows.copy()
  first = rows[rows >= 0][0]
  rows[rows == -1] = first                   # a record used twice
  with pytest.raises(AssertionError, match="partition"):
    B.check_partition(B.Batches(rows, b.dropped, 4), 50)
  with pytest.raises(AssertionError, match="partition"):
    B.check_partition(b, 51)                 # a record in no batch


def _changed_batches(a, b):
  return [i for i in range(a.num_batches)
          if set(a.rows[i][a.rows[i] >= 0]) != set(b.rows[i][b.rows[i] >= 0])]


def test_adding_one_record_changes_one_batch_and_one_row():
  n, s, nb = 300, 6, 50
  ids = _ids(n)
  base = B.keyed_hash_batches(ids, KEY, s, nb)
  rng = np.random.default_rng(0)
  for new in rng.choice(10_000, 25, replace=False):
    plus = B.keyed_hash_batches(ids + [f"new{new}"], KEY, s, nb)
    changed = _changed_batches(base, plus)
    assert len(changed) <= 1
    for i in changed:
      old = set(base.rows[i][base.rows[i] >= 0])
      cur = set(plus.rows[i][plus.rows[i] >= 0])
      assert n in cur and len(cur - old) == 1 and len(old - cur) <= 1
  # Removing a record likewise touches only its own batch.
  minus = B.keyed_hash_batches(ids[:-1], KEY, s, nb)
  assert len(_changed_batches(base, minus)) <= 1


def test_sort_and_chunk_variant_moves_many_batches():
  # The broken alternative (sort all records by hash, cut every s): adding
  # one record shifts every later batch. Our test harness must see that.
  def sort_chunk(ids, s):
    order = np.argsort(B.keyed_hash(ids, KEY), kind="stable")
    nb = -(-len(ids) // s)
    rows = np.full((nb, s), -1, np.int64)
    rows.flat[:len(ids)] = order
    return B.Batches(rows, np.zeros(0, np.int64), s)

  ids = _ids(200)
  a, b = sort_chunk(ids, 5), sort_chunk(ids + ["zz-new"], 5)
  b = B.Batches(b.rows[:a.num_batches], b.dropped, 5)
  assert len(_changed_batches(a, b)) > 3


def test_assignment_depends_on_the_key_and_not_on_input_order():
  ids = _ids(100)
  a = B.keyed_hash_batches(ids, KEY, 4, 30)
  rev = B.keyed_hash_batches(ids[::-1], KEY, 4, 30)
  # Same key -> same bucket and rank for every id, whatever the order.
  owner_a = dict(zip(ids, a.batch_of(100)))
  owner_r = dict(zip(ids[::-1], rev.batch_of(100)))
  assert owner_a == owner_r
  other = B.keyed_hash_batches(ids, b"another-secret-key-000", 4, 30)
  assert not np.array_equal(a.batch_of(100), other.batch_of(100))


def test_bucket_sizes_look_uniform():
  n, nb = 20_000, 50
  b = B.keyed_hash_batches(_ids(n), KEY, 10_000, nb)
  sizes = b.sizes
  assert stats.chisquare(sizes).pvalue > 1e-3


def test_bad_inputs_are_named():
  with pytest.raises(CbenchError, match="unique"):
    B.keyed_hash_batches(["a", "a"], KEY, 2, 2)
  with pytest.raises(CbenchError, match="key"):
    B.keyed_hash_batches(["a"], b"short", 2, 2)
  with pytest.raises(CbenchError, match="num_batches"):
    B.keyed_hash_batches(["a"], KEY, 2, 0)


def _blobs(rng, centres, n_per, scale=0.3):
  return np.concatenate([c + scale * rng.normal(size=(n, c.size))
                         for c, n in zip(centres, n_per)])


def test_public_kmeans_is_seeded_and_finds_blobs():
  rng = np.random.default_rng(0)
  truth = np.array([[0, 0], [5, 5], [0, 5.0]])
  pub = _blobs(rng, truth, [100, 100, 100])
  c1 = B.public_kmeans(pub, 3, np.random.default_rng(1))
  c2 = B.public_kmeans(pub, 3, np.random.default_rng(1))
  np.testing.assert_array_equal(c1, c2)
  for t in truth:
    assert np.min(np.linalg.norm(c1 - t, axis=1)) < 0.2


def test_dp_counts_noise_scale_and_event():
  rng = np.random.default_rng(2)
  centres = np.array([[0.0, 0.0], [10.0, 10.0]])
  priv = _blobs(rng, centres, [30, 70])
  draws = np.stack([B.dp_cluster_counts(
      priv, centres, noise="laplace", noise_multiplier=2.0,
      relation="add_remove", rng=np.random.default_rng(i))[0]
                    for i in range(3000)])
  np.testing.assert_allclose(np.median(draws, axis=0), [30, 70], atol=0.5)
  # Laplace scale b = 2 -> std = 2 sqrt 2; replace-one doubles it.
  assert np.std(draws[:, 0]) == pytest.approx(2 * np.sqrt(2), rel=0.08)
  _, ev = B.dp_cluster_counts(priv, centres, noise="laplace",
                              noise_multiplier=2.0, relation="replace_one",
                              rng=rng)
  assert ev == dp_accounting.LaplaceDpEvent(2.0)
  noisy, ev = B.dp_cluster_counts(priv, centres, noise="gaussian",
                                  noise_multiplier=3.0, relation="add_remove",
                                  rng=rng)
  assert ev == dp_accounting.GaussianDpEvent(3.0) and noisy.shape == (2,)


def test_cluster_batches_partition_and_one_batch_per_record():
  rng = np.random.default_rng(3)
  truth = np.array([[0, 0], [6, 0], [0, 6], [6, 6.0]])
  centres = truth + 0.05
  priv = _blobs(rng, truth, [40, 25, 3, 30])
  ids = _ids(len(priv))
  s = 4
  b, noisy, ev = B.cluster_batches(
      priv, ids, centres, num_keep=3, key=KEY, batch_size=s,
      noise="laplace", noise_multiplier=1.0, relation="add_remove",
      rng=np.random.default_rng(4))
  B.check_partition(b, len(priv))
  assert isinstance(ev, dp_accounting.LaplaceDpEvent)
  # The smallest cluster (3 records) is dropped; its records join a kept one.
  kept = set(b.cluster_of_batch.tolist())
  assert len(kept) == 3 and 2 not in kept
  # Batches live inside clusters: every record's batch is in its cluster.
  owner = b.batch_of(len(priv))
  nearest_kept = np.array(sorted(kept))[B.nearest_centre(
      priv, centres[sorted(kept)])]
  used = owner >= 0
  np.testing.assert_array_equal(b.cluster_of_batch[owner[used]],
                                nearest_kept[used])
  # With the DP counts fixed (post-processing), adding a record changes
  # one batch only.
  base = B.batches_within_clusters(priv, ids, centres, noisy, 3, key=KEY,
                                   batch_size=s)
  extra = np.concatenate([priv, [[6.1, 0.1]]])
  plus = B.batches_within_clusters(extra, ids + ["extra"], centres, noisy,
                                   3, key=KEY, batch_size=s)
  assert len(_changed_batches(base, plus)) <= 1
