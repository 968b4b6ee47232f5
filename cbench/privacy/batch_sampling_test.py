"""Samplers: Poisson statistics (and a shuffling mutant fails), truncation,
padding buckets, replay from (seed, step), and sampler/event agreement."""


from dp_accounting import dp_event as dpe
import numpy as np
import pytest
from scipy import stats

from cbench._validate import CbenchError
from cbench.privacy import batch_sampling

ALPHA = 1e-3
N, Q, T = 1000, 0.05, 4000


def _membership(sampler, steps):
  m = np.zeros((steps, sampler.num_examples), bool)
  for t in range(steps):
    b = sampler.batch(t)
    m[t, b.indices[~b.is_padding]] = True
  return m


def _batch_size_pvalue(sizes, n, q):
  """Chi-square of batch sizes against Binomial(n, q), pooled tails."""
  lo, hi = stats.binom.ppf(1e-3, n, q), stats.binom.ppf(1 - 1e-3, n, q)
  edges = np.arange(lo, hi + 1)
  obs = np.array([np.sum(sizes < lo)] + [np.sum(sizes == k) for k in edges]
                 + [np.sum(sizes > hi)])
  p = np.concatenate([[stats.binom.cdf(lo - 1, n, q)],
                      stats.binom.pmf(edges, n, q),
                      [stats.binom.sf(hi, n, q)]])
  exp = p * len(sizes)
  keep = exp >= 5
  obs = np.concatenate([obs[keep], [obs[~keep].sum()]])
  exp = np.concatenate([exp[keep], [exp[~keep].sum()]])
  if exp[-1] == 0:
    obs, exp = obs[:-1], exp[:-1]
  exp = exp * obs.sum() / exp.sum()
  return stats.chisquare(obs, exp).pvalue


def _dispersion_pvalue(m, q):
  """Per-example counts ~ Binomial(T, q): two-sided variance test."""
  counts = m.sum(0)
  t = m.shape[0]
  stat = np.sum((counts - t * q) ** 2) / (t * q * (1 - q))
  df = m.shape[1]
  return 2 * min(stats.chi2.cdf(stat, df), stats.chi2.sf(stat, df))


def _lag1_pvalue(m, q):
  """Co-membership in consecutive steps ~ Binomial(n (T-1), q^2)."""
  k = int(np.sum(m[1:] & m[:-1]))
  n = m[:-1].size
  return stats.binomtest(k, n, q * q).pvalue


def _three_pvalues(sampler, steps=T):
  m = _membership(sampler, steps)
  return (_batch_size_pvalue(m.sum(1), N, Q), _dispersion_pvalue(m, Q),
          _lag1_pvalue(m, Q))


@pytest.mark.stat
def test_poisson_sampler_passes_chi_square_tests():
  p = _three_pvalues(batch_sampling.PoissonSampler(N, Q, seed=1))
  assert min(p) > ALPHA, p


@pytest.mark.stat
def test_shuffling_sampler_fails_poisson_tests():
  p = _three_pvalues(batch_sampling.ShuffledEpochSampler(N, int(N * Q), seed=1))
  assert max(p) < ALPHA, p


class _FixedSizeSampler(batch_sampling.PoissonSampler):
  """Mutant: uniform fixed-size batches, presented as Poisson."""

  def _draw(self, rng):
    return np.sort(rng.choice(self.num_examples,
                              int(self.expected_batch_size), replace=False))


@pytest.mark.stat
def test_fixed_size_mutant_fails_batch_size_test():
  p = _three_pvalues(_FixedSizeSampler(N, Q, seed=1), steps=1000)
  assert p[0] < ALPHA, p


def test_truncated_batches_bounded_and_buckets_public():
  s = batch_sampling.TruncatedPoissonSampler(200, 0.1, max_batch_size=24, seed=3,
                                       pad_unit=8)
  assert s.bucket_sizes == (8, 16, 24)
  shapes = set()
  for t in range(300):
    b = s.batch(t)
    assert b.size <= 24 and len(b.indices) in s.bucket_sizes
    assert np.all(b.indices[b.is_padding] == 0)
    assert len(set(b.indices[~b.is_padding])) == b.size
    shapes.add(len(b.indices))
  assert shapes <= set(s.bucket_sizes)
  # With max 24 and E[size] = 20, truncation must have happened sometimes.
  sizes = [s.batch(t).size for t in range(300)]
  assert max(sizes) == 24


def test_empty_batch_has_public_shape():
  s = batch_sampling.PoissonSampler(10, 0.01, seed=0, pad_unit=4)
  empties = [s.batch(t) for t in range(200) if s.batch(t).size == 0]
  assert empties and all(len(b.indices) == 4 and b.is_padding.all()
                         for b in empties)


def test_stream_is_a_function_of_seed_and_step():
  a = batch_sampling.PoissonSampler(500, 0.05, seed=7)
  b = batch_sampling.PoissonSampler(500, 0.05, seed=7)
  c = batch_sampling.PoissonSampler(500, 0.05, seed=8)
  order = [5, 0, 3, 5, 1]
  for t in order:  # any order, any repetition: replay gives the same batch
    np.testing.assert_array_equal(a.batch(t).indices, b.batch(t).indices)
  assert any(not np.array_equal(a.batch(t).indices, c.batch(t).indices)
             for t in range(5))
  assert "seed" not in a.describe() and "7" not in repr(a)


def test_events_match_the_sampler_that_runs():
  s = batch_sampling.make_sampler("poisson", 1000, 25.0, seed=0)
  assert s.sampling_prob == 0.025 and s.expected_batch_size == 25.0
  steps = 0
  for t in range(37):  # drive the real iterator; count executed steps
    s.batch(t)
    steps += 1
  ev = s.dp_event(1.1, steps, "add_remove")
  assert isinstance(ev, dpe.SelfComposedDpEvent) and ev.count == steps
  assert isinstance(ev.event, dpe.PoissonSampledDpEvent)
  assert ev.event.sampling_probability == s.sampling_prob
  ev = batch_sampling.make_sampler("truncated_poisson", 1000, 25.0, seed=0,
                             max_batch_size=40).dp_event(1.1, 3)
  assert isinstance(ev.event, dpe.TruncatedSubsampledGaussianDpEvent)
  assert (ev.event.dataset_size, ev.event.truncated_batch_size) == (1000, 40)


def test_shuffled_event_is_not_poisson_and_counts_participations():
  s = batch_sampling.ShuffledEpochSampler(100, 10, seed=0)
  steps = 23  # 3 epochs touched
  counts = _membership(s, steps).sum(0)
  assert s.participations(steps) == counts.max() == 3
  ev = s.dp_event(1.0, steps, "replace_one")
  assert isinstance(ev.event, dpe.GaussianDpEvent) and ev.count == 3
  with pytest.raises(CbenchError, match="no amplification"):
    s.dp_event(1.0, steps, "add_remove")
  with pytest.raises(CbenchError):
    batch_sampling.make_sampler("truncated_poisson", 100, 10.0, seed=0)
  with pytest.raises(CbenchError):
    batch_sampling.TruncatedPoissonSampler(100, 0.1, 10, seed=0, pad_unit=4)
