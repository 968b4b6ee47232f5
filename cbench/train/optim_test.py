"""The harness optimizer: warmup + cosine schedule, AdamW masking, clipping."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cbench.train import optim


def _lrs(config, total):
  schedule = optim.learning_rate_schedule(config, total)
  return np.asarray([float(schedule(s)) for s in range(total + 1)])


@pytest.mark.parametrize("total", [10, 50, 200, 1000])
def test_schedule_warms_up_over_ten_percent_then_decays_to_zero(total):
  config = optim.OptimizerConfig(peak_learning_rate=2e-3)
  lr = _lrs(config, total)
  warmup = round(0.1 * total)
  assert lr[0] == 0.0
  assert lr[warmup] == pytest.approx(2e-3, rel=1e-6)
  assert lr.max() == pytest.approx(2e-3, rel=1e-6)
  assert int(np.argmax(lr)) == warmup
  assert lr[total] == pytest.approx(0.0, abs=1e-12)
  # Linear warmup: lr[s] = peak * s / warmup.
  np.testing.assert_allclose(lr[:warmup + 1],
                             2e-3 * np.arange(warmup + 1) / warmup, rtol=1e-5)
  # Monotone (non-increasing) cosine decay after the warmup, strictly inside.
  decay = lr[warmup:]
  assert np.all(np.diff(decay) <= 1e-12)
  assert np.all(np.diff(decay[:-1]) < 0)
  # Cosine: halfway through the decay the rate is half the peak.
  if (total - warmup) % 2 == 0:
    mid = warmup + (total - warmup) // 2
    assert lr[mid] == pytest.approx(1e-3, rel=1e-4)


def test_schedule_of_a_very_short_run_warms_up_in_one_step():
  lr = _lrs(optim.OptimizerConfig(peak_learning_rate=1.0), 4)
  assert lr[0] == 0.0 and lr[1] == pytest.approx(1.0)
  assert lr[4] == pytest.approx(0.0, abs=1e-7)
  assert np.all(np.diff(lr[1:]) < 0)


def test_schedule_follows_the_warmup_fraction():
  config = optim.OptimizerConfig(peak_learning_rate=1.0, warmup_fraction=0.25)
  lr = _lrs(config, 40)
  assert int(np.argmax(lr)) == 10 and lr[10] == pytest.approx(1.0)
  assert lr[5] == pytest.approx(0.5)


def _adamw_reference(params, grads_seq, config, total):
  """Two-line numpy AdamW with the module's mask and schedule (no clipping)."""
  lr = _lrs(config, total)
  mu = {k: np.zeros_like(v) for k, v in params.items()}
  nu = {k: np.zeros_like(v) for k, v in params.items()}
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  for t, g in enumerate(grads_seq, start=1):
    for k in p:
      mu[k] = config.b1 * mu[k] + (1 - config.b1) * g[k]
      nu[k] = config.b2 * nu[k] + (1 - config.b2) * g[k] ** 2
      mhat = mu[k] / (1 - config.b1 ** t)
      vhat = nu[k] / (1 - config.b2 ** t)
      update = mhat / (np.sqrt(vhat) + 1e-8)
      if p[k].ndim >= 2:
        update = update + config.weight_decay * p[k]
      p[k] = p[k] - lr[t - 1] * update
  return p


def _run(optimizer, params, grads_seq):
  state = optimizer.init(params)
  for g in grads_seq:
    updates, state = optimizer.update(g, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def test_adamw_matches_a_reference_and_decays_only_matrices():
  config = optim.OptimizerConfig(peak_learning_rate=0.1, grad_clip_norm=None,
                                 weight_decay=0.5)
  params = {"w": jnp.asarray([[1.0, -2.0], [3.0, 0.5]]),
            "b": jnp.asarray([1.0, -1.0, 2.0])}
  zero = {"w": jnp.zeros((2, 2)), "b": jnp.zeros((3,))}
  grads = [zero, zero, zero]
  out, _ = _run(optim.make_optimizer(config, 10), params, grads)
  # Zero gradients: the bias (1-D) is not decayed at all, bit for bit.
  np.testing.assert_array_equal(np.asarray(out["b"]), np.asarray(params["b"]))
  # The matrix shrinks by prod(1 - lr_t * wd) (lr_0 = 0).
  lr = _lrs(config, 10)
  factor = (1 - lr[1] * 0.5) * (1 - lr[2] * 0.5)
  assert factor < 0.95
  np.testing.assert_allclose(np.asarray(out["w"]),
                             np.asarray(params["w"]) * factor, rtol=1e-6)
  # Nonzero gradients: both leaves follow the reference AdamW.
  rng = np.random.default_rng(0)
  grads = [{k: jnp.asarray(rng.normal(size=v.shape), jnp.float32)
            for k, v in params.items()} for _ in range(4)]
  out, _ = _run(optim.make_optimizer(config, 10), params, grads)
  ref = _adamw_reference({k: np.asarray(v) for k, v in params.items()},
                         [{k: np.asarray(v, np.float64) for k, v in g.items()}
                          for g in grads], config, 10)
  for k in params:
    np.testing.assert_allclose(np.asarray(out[k]), ref[k], rtol=1e-5,
                               atol=1e-6)


def test_global_norm_clipping_is_applied_only_when_configured():
  params = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
  g = {"w": jnp.full((2, 2), 3.0), "b": jnp.asarray([4.0, 0.0])}
  norm = float(np.sqrt(4 * 9 + 16))  # ~7.21 > 1: clipped.
  clipped = optim.make_optimizer(optim.OptimizerConfig(grad_clip_norm=1.0), 10)
  plain = optim.make_optimizer(optim.OptimizerConfig(grad_clip_norm=None), 10)
  _, s_clip = _run(clipped, params, [g])
  _, s_plain = _run(plain, params, [g])
  mu_clip = optax.tree_utils.tree_get(s_clip, "mu")
  mu_plain = optax.tree_utils.tree_get(s_plain, "mu")
  nu_plain = optax.tree_utils.tree_get(s_plain, "nu")
  for k in params:
    # First moment after one step: (1 - b1) * g, with g clipped to norm 1.
    np.testing.assert_allclose(np.asarray(mu_plain[k]), 0.1 * np.asarray(g[k]),
                               rtol=1e-6)
    np.testing.assert_allclose(np.asarray(mu_clip[k]),
                               0.1 * np.asarray(g[k]) / norm, rtol=1e-5)
    # b2 = 0.995.
    np.testing.assert_allclose(np.asarray(nu_plain[k]),
                               0.005 * np.asarray(g[k]) ** 2, rtol=1e-5)
  # A gradient already inside the clip norm is left alone.
  small = jax.tree.map(lambda x: x / 100.0, g)
  _, s_small = _run(clipped, params, [small])
  mu_small = optax.tree_utils.tree_get(s_small, "mu")
  np.testing.assert_allclose(np.asarray(mu_small["w"]),
                             0.1 * np.asarray(small["w"]), rtol=1e-6)
