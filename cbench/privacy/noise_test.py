"""Noise: std = sigma * sensitivity (KS), unique keys, public normaliser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from cbench.privacy import dpsgd
from cbench.privacy import noise
from cbench.testing import fixtures

ALPHA = 1e-3
D = 20000


def zero_loss(p, ex):
  # Gradient exactly 0: the output of dp_grad is pure (normalised) noise.
  return 0.0 * (jnp.sum(p["a"]) + jnp.sum(p["b"])) + 0.0 * jnp.sum(ex["x"])


PARAMS = {"a": jnp.zeros((D,)), "b": jnp.zeros((4, 5))}


def _batch(b=8):
  return {"x": jnp.ones((b, 3))}


@pytest.mark.stat
@pytest.mark.parametrize("relation", ["add_remove", "replace_one"])
def test_ks_accepts_sigma_c_and_rejects_wrong_scales(relation):
  cfg = dpsgd.DpSgdConfig(clip_norm=0.7, noise_multiplier=1.3,
                          expected_batch_size=4.0, relation=relation,
                          sampler="poisson")
  expected_std = 1.3 * 0.7 * (2.0 if relation == "replace_one" else 1.0)
  assert cfg.noise_std == pytest.approx(expected_std)
  dp_grad = dpsgd.make_dp_grad_fn(zero_loss, cfg)
  g, aux = dp_grad(PARAMS, _batch(), jnp.zeros(8, bool), fixtures.stat_key(0))
  assert float(aux["noise_std"]) == pytest.approx(expected_std)
  z = np.asarray(g["a"], np.float64) * cfg.expected_batch_size  # undo 1/B
  assert stats.kstest(z, "norm", args=(0, expected_std)).pvalue > ALPHA
  for wrong in (2 / 3, 3 / 2):
    assert stats.kstest(z, "norm",
                        args=(0, wrong * expected_std)).pvalue < ALPHA
  # Zero gradients: ||g||^2 ~= d std^2 / B^2 (within 15%).
  sq = float(np.sum(np.asarray(g["a"], np.float64) ** 2))
  assert sq == pytest.approx(D * expected_std ** 2 / 16.0, rel=0.15)


def _all_values(fn):
  key = fixtures.stat_key(42)
  vals = []
  for step in range(3):
    out = fn({"a": jnp.zeros(64), "b": jnp.zeros(64)},
             jax.random.fold_in(key, step))
    vals += [np.asarray(x) for x in jax.tree.leaves(out)]
  return np.concatenate(vals)


def test_noise_unique_across_steps_and_leaves():
  v = _all_values(lambda t, k: noise.add_gaussian_noise(t, 1.0, k))
  assert len(np.unique(v)) == len(v)

  def reused_key(t, k):  # mutant: one key for every leaf
    return jax.tree.map(lambda x: x + jax.random.normal(k, x.shape), t)
  v = _all_values(reused_key)
  assert len(np.unique(v)) < len(v)


def test_normaliser_and_noise_independent_of_realised_batch_size():
  cfg = dpsgd.DpSgdConfig(clip_norm=1.0, noise_multiplier=1.0,
                          expected_batch_size=5.0)
  dp_grad = dpsgd.make_dp_grad_fn(zero_loss, cfg)
  key = fixtures.stat_key(3)
  outs = []
  for real in (0, 2, 5, 8):  # realised sizes inside one public bucket of 8
    pad = jnp.arange(8) >= real
    outs.append(dp_grad(PARAMS, _batch(), pad, key)[0])
  for o in outs[1:]:
    for x, y in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(o)):
      np.testing.assert_array_equal(x, y)


def test_mean_divides_by_expected_batch_size_not_realised_size():
  def lin(p, ex):
    return jnp.sum(p["w"] * ex["x"])
  cfg = dpsgd.DpSgdConfig(clip_norm=100.0, noise_multiplier=0.0,
                          expected_batch_size=10.0)
  dp_grad = dpsgd.make_dp_grad_fn(lin, cfg)
  x = jnp.ones((8, 3))
  pad = jnp.arange(8) >= 4  # 4 real rows
  g, _ = dp_grad({"w": jnp.zeros(3)}, {"x": x}, pad, fixtures.stat_key(0))
  np.testing.assert_allclose(g["w"], 4.0 / 10.0 * np.ones(3), rtol=1e-6)
