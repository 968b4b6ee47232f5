"""Cyclic sampler and its all-iterates event: every slot once per epoch,
fixed padded shapes, the event's count from the index stream, and the
event's epsilon against the closed-form composed Gaussian (mutants fail)."""

import math

from dp_accounting import dp_event as dpe
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize
from scipy import stats

from cbench._validate import CbenchError
from cbench.privacy import accounting
from cbench.privacy import clipping
from cbench.privacy import cyclic

DELTA = 1e-5


def _membership(sampler, steps):
  """(steps, N) counts of each record's real rows per step."""
  m = np.zeros((steps, sampler.num_examples), np.int64)
  for t in range(steps):
    b = sampler.batch(t)
    np.add.at(m[t], b.indices[~b.is_padding], 1)
  return m


def _gaussian_epsilon(mu, delta):
  """Exact epsilon of a mu-GDP (Gaussian) mechanism at delta (Balle & Wang
  2018, Thm 8): delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2).
  """
  f = lambda e: (stats.norm.cdf(-e / mu + mu / 2)
                 - math.exp(e) * stats.norm.cdf(-e / mu - mu / 2) - delta)
  if f(0.0) <= 0:
    return 0.0
  return optimize.brentq(f, 0.0, 10 * mu + 50, xtol=1e-12)


@pytest.mark.parametrize("n,b,shuffle", [(40, 8, True), (30, 8, True),
                                         (30, 8, False), (7, 7, True)])
def test_every_slot_exactly_once_per_epoch_with_fixed_shapes(n, b, shuffle):
  cfg = cyclic.CyclicConfig(num_examples=n, batch_size=b, epochs=3,
                            noise_multiplier=1.0, shuffle=shuffle)
  sampler = cfg.sampler(seed=3)
  k = cfg.steps_per_epoch
  assert k == math.ceil(n / b)
  m = _membership(sampler, cfg.num_steps)
  for e in range(cfg.epochs):
    np.testing.assert_array_equal(m[e * k:(e + 1) * k].sum(0), 1)
  pads = []
  for t in range(cfg.num_steps):
    batch = sampler.batch(t)
    assert batch.indices.shape == (b,) and batch.is_padding.shape == (b,)
    # Real rows first, padding rows last, and only the last batch padded.
    assert not np.any(np.diff(batch.is_padding.astype(int)) < 0)
    pads.append(int(batch.is_padding.sum()))
  assert pads[:k] == [0] * (k - 1) + [k * b - n]
  assert sampler.expected_batch_size == cfg.batch_size
  assert sampler.bucket_sizes == (b,)


def test_pad_unit_only_adds_masked_rows():
  cfg = cyclic.CyclicConfig(num_examples=30, batch_size=6, epochs=1,
                            noise_multiplier=1.0)
  plain, padded = cfg.sampler(seed=2), cfg.sampler(seed=2, pad_unit=4)
  assert padded.bucket_sizes == (8,) and padded.max_batch_size == 6
  assert padded.expected_batch_size == 6.0    # the normaliser stays b
  for t in range(cfg.steps_per_epoch):
    a, b = plain.batch(t), padded.batch(t)
    assert b.indices.shape == b.is_padding.shape == (8,)
    np.testing.assert_array_equal(b.indices[:6], a.indices)
    np.testing.assert_array_equal(b.is_padding[:6], a.is_padding)
    assert b.is_padding[6:].all() and not b.indices[6:].any()
  assert padded.describe()["pad_unit"] == 4


@pytest.mark.parametrize("n,b,epochs", [(45, 8, 3), (7, 7, 2), (9, 2, 1)])
def test_per_step_charges_compose_to_every_prefix_event(n, b, epochs):
  """Charge-before-use: the epoch's Gaussian at its first step, NoOps after,
  so the charges of steps [0, t) are the event of a t-step run for EVERY t
  (a run stopped mid-epoch has paid that epoch). The mutant that charges
  at the epoch's last step is short at every mid-epoch prefix."""
  cfg = cyclic.CyclicConfig(num_examples=n, batch_size=b, epochs=epochs,
                            noise_multiplier=1.3, relation="zero_out")
  k = cfg.steps_per_epoch
  gauss = cfg.dp_event(k)            # one epoch
  late = lambda t: gauss if t % k == k - 1 else dpe.NoOpDpEvent()
  assert gauss == dpe.SelfComposedDpEvent(
      dpe.GaussianDpEvent(cfg.noise_multiplier), 1)   # zero_out: std / C
  for t in range(cfg.num_steps + 1):
    charged = [cfg.step_event(s) for s in range(t)]
    assert all(e == gauss or e == dpe.NoOpDpEvent() for e in charged)
    paid = sum(e == gauss for e in charged)
    assert paid == cyclic.participations(k, t) == math.ceil(t / k)
    if t % k:
      assert sum(late(s) == gauss for s in range(t)) < paid
  # Composed one by one (PLD rounds each composition pessimistically).
  eps = accounting.epsilon(
      dpe.ComposedDpEvent([cfg.step_event(s) for s in range(cfg.num_steps)]),
      DELTA, cfg.accounting_relation)
  assert cfg.epsilon(DELTA) <= eps <= 1.01 * cfg.epsilon(DELTA)


def test_the_same_batches_every_epoch_and_on_replay():
  cfg = cyclic.CyclicConfig(num_examples=50, batch_size=8, epochs=2,
                            noise_multiplier=1.0)
  a, b, c = cfg.sampler(seed=5), cfg.sampler(seed=5), cfg.sampler(seed=6)
  k = cfg.steps_per_epoch
  for t in range(k):
    np.testing.assert_array_equal(a.batch(t).indices, a.batch(t + k).indices)
    np.testing.assert_array_equal(a.batch(t).indices, b.batch(t).indices)
  assert any(not np.array_equal(a.batch(t).indices, c.batch(t).indices)
             for t in range(k))
  plain = cyclic.CyclicConfig(num_examples=50, batch_size=8, epochs=1,
                              noise_multiplier=1.0, shuffle=False).sampler()
  np.testing.assert_array_equal(plain.batch(0).indices, np.arange(8))
  assert "seed" not in str(a.describe()) and "seed" not in repr(a)


class _SkippingSampler(cyclic.CyclicSampler):
  """Mutant: revisits batch 0 instead of the last batch (a stride bug)."""

  def batch(self, step):
    return super().batch(step % (self.steps_per_epoch - 1))


@pytest.mark.parametrize("steps", [1, 5, 6, 12, 13, 29])
def test_event_count_is_the_max_participation_of_the_index_stream(steps):
  cfg = cyclic.CyclicConfig(num_examples=45, batch_size=8, epochs=5,
                            noise_multiplier=1.3)
  sampler = cfg.sampler(seed=1)
  stream_max = int(_membership(sampler, steps).sum(0).max())
  event = cfg.dp_event(steps)
  assert isinstance(event, dpe.SelfComposedDpEvent)
  assert isinstance(event.event, dpe.GaussianDpEvent)
  assert event.count == stream_max == sampler.participations(steps)
  # The sampler's own event (the interface DP-SGD calibrates with) is the
  # config's.
  assert sampler.dp_event(cfg.noise_multiplier, steps, cfg.relation) == event


def test_the_stream_check_catches_a_sampler_that_revisits_a_batch():
  cfg = cyclic.CyclicConfig(num_examples=45, batch_size=8, epochs=2,
                            noise_multiplier=1.3)
  mutant = _SkippingSampler(45, 8, seed=1)
  stream_max = int(_membership(mutant, cfg.num_steps).sum(0).max())
  assert stream_max > cfg.dp_event().count


@pytest.mark.parametrize("relation,sigma,epochs", [
    ("replace_one", 1.0, 1), ("zero_out", 2.0, 4), ("replace_one", 0.8, 3)])
def test_event_epsilon_is_the_composed_gaussian(relation, sigma, epochs):
  cfg = cyclic.CyclicConfig(num_examples=64, batch_size=16, epochs=epochs,
                            noise_multiplier=sigma, relation=relation)
  exact = _gaussian_epsilon(math.sqrt(epochs) / sigma, DELTA)
  eps = cfg.epsilon(DELTA)

  def agrees(e):  # PLD is pessimistic and tight to 1%.
    return exact * (1 - 1e-6) <= e <= exact * 1.01 + 1e-3

  assert agrees(eps), (eps, exact)
  # Mutants: one epoch too few, and the batches accounted as Poisson.
  rel = cfg.accounting_relation
  fewer = accounting.epsilon(
      cyclic.cyclic_event(cfg.steps_per_epoch, sigma,
                          cfg.num_steps - cfg.steps_per_epoch, relation),
      DELTA, rel) if epochs > 1 else 0.0
  poisson = accounting.epsilon(
      accounting.poisson_event(16 / 64, sigma, cfg.num_steps, rel), DELTA, rel)
  assert not agrees(fewer) and not agrees(poisson), (fewer, poisson)


def test_rdp_cross_check_is_the_gaussian_closed_form():
  """RDP of E Gaussian steps is E * alpha / (2 sigma^2) under both relations
  (replace-one through cbench's own bound, zero-out through dp_accounting)."""
  for relation in cyclic.RELATIONS:
    cfg = cyclic.CyclicConfig(num_examples=20, batch_size=5, epochs=3,
                              noise_multiplier=1.5, relation=relation)
    orders = np.arange(2, 200, dtype=float)
    rdp = 3 * orders / (2 * 1.5 ** 2)
    expected = np.min(rdp + np.log1p(-1 / orders)
                      - np.log(DELTA * orders) / (orders - 1))
    got = cfg.epsilon(DELTA, accountant="rdp")
    assert got == pytest.approx(expected, rel=2e-2), relation
    assert got >= cfg.epsilon(DELTA)


def test_calibrated_sigma_meets_the_target_without_undershooting():
  cfg = cyclic.CyclicConfig(num_examples=100, batch_size=10, epochs=4,
                            noise_multiplier=1.0)
  tuned = cfg.calibrated(2.0, DELTA, rtol=1e-2)
  eps = tuned.epsilon(DELTA)
  assert eps <= 2.0 and eps > 2.0 * 0.95
  assert tuned.epochs == cfg.epochs and tuned.relation == cfg.relation


def test_zero_noise_is_infinite_and_zero_steps_free():
  cfg = cyclic.CyclicConfig(num_examples=10, batch_size=5, epochs=2,
                            noise_multiplier=0.0)
  assert math.isinf(cfg.epsilon(DELTA))
  one = cyclic.CyclicConfig(num_examples=10, batch_size=5, epochs=2,
                            noise_multiplier=1.0)
  assert one.epsilon(DELTA, steps=0) == 0.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=11), "batch_size"),
    (dict(batch_size=0), "batch_size"),
    (dict(epochs=0), "epochs"),
    (dict(epochs=1.5), "epochs"),
    (dict(noise_multiplier=-1.0), "noise_multiplier"),
    (dict(relation="add_remove"), "relation"),
])
def test_config_rejects_bad_values(kwargs, match):
  base = dict(num_examples=10, batch_size=5, epochs=2, noise_multiplier=1.0)
  with pytest.raises(CbenchError, match=match):
    cyclic.CyclicConfig(**{**base, **kwargs})


def test_a_shuffled_sampler_needs_a_seed():
  cfg = cyclic.CyclicConfig(num_examples=10, batch_size=5, epochs=1,
                            noise_multiplier=1.0)
  with pytest.raises(CbenchError, match="seed"):
    cfg.sampler()


def test_padding_rows_are_masked_and_one_shape_compiles_once():
  """A jitted clipped sum over every batch of an epoch: NaN garbage in the
  padding rows changes nothing, and all steps share one compilation."""
  n, b, d = 19, 8, 3
  cfg = cyclic.CyclicConfig(num_examples=n, batch_size=b, epochs=1,
                            noise_multiplier=1.0)
  sampler = cfg.sampler(seed=0)
  x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
  loss = lambda w, xi: 0.5 * jnp.sum((w - xi) ** 2)
  fn = jax.jit(lambda w, xb, pad: clipping.clipped_grad_sum(
      loss, w, xb, pad, 1.0)[0])
  w = jnp.zeros(d)
  total = np.zeros(d)
  for t in range(cfg.steps_per_epoch):
    batch = sampler.batch(t)
    xb = x[batch.indices].copy()
    xb[batch.is_padding] = np.nan
    total += np.asarray(fn(w, xb, batch.is_padding))
  g = -x
  expected = (g * np.minimum(1, 1 / np.linalg.norm(g, axis=1))[:, None]).sum(0)
  np.testing.assert_allclose(total, expected, rtol=1e-5, atol=1e-5)
  assert fn._cache_size() == 1  # pylint: disable=protected-access
