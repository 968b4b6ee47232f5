"""Single-step canary audit of the real clipping + noise code.

D versus D plus one canary whose gradient (norm 10) lives on its own
coordinate; q = 1, sigma = 1, C = 1, add/remove. The score is the canary
coordinate of the noisy sum. Threshold chosen on one half of the trials,
Clopper-Pearson bound (alpha = 0.05) on the other half, at delta = 0.01.
privacy-testing.md C6 measured correct 2.03-2.22 vs 2.318 claimed; sigma x 0.8
gives 2.73-2.87; no clipping 8.46.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbench.privacy import accounting
from cbench.privacy import auditing
from cbench.privacy import clipping
from cbench.privacy import noise
from cbench.privacy import relations
from cbench.testing import fixtures

DELTA = 0.01
TRIALS = 200_000
DIM = 4


def lin_loss(p, ex):
  return jnp.sum(p["w"] * ex["v"])  # per-example gradient = v


def _world_sums(clip_norm):
  rng = np.random.default_rng(0)
  rows = np.zeros((8, DIM), np.float32)
  rows[:7, 1:] = rng.normal(size=(7, DIM - 1))   # D: off the canary axis
  rows[7, 0] = 10.0                              # the canary
  batch = {"v": jnp.asarray(rows)}
  params = {"w": jnp.zeros(DIM)}
  pad_in = jnp.zeros(8, bool)
  pad_out = pad_in.at[7].set(True)               # same shape, canary absent
  s_in, _ = clipping.clipped_grad_sum(lin_loss, params, batch, pad_in,
                                      clip_norm)
  s_out, _ = clipping.clipped_grad_sum(lin_loss, params, batch, pad_out,
                                       clip_norm)
  return s_in, s_out


@functools.partial(jax.jit, static_argnames=("std",))
def _scores(s, keys, std):
  noisy = jax.vmap(lambda k: noise.add_gaussian_noise(s, std, k))(keys)
  return noisy["w"][:, 0]


def _audit(sigma_scale=1.0, clip_for_sum=1.0, seed=0):
  seed = fixtures.stat_seed(seed)
  std = sigma_scale * relations.noise_std(1.0, 1.0, "add_remove")
  s_in, s_out = _world_sums(clip_for_sum)
  k_in, k_out = jax.random.split(jax.random.key(seed))
  a = _scores(s_in, jax.random.split(k_in, TRIALS), std)
  b = _scores(s_out, jax.random.split(k_out, TRIALS), std)
  return auditing.epsilon_lower_bound(np.asarray(a), np.asarray(b), DELTA,
                                      alpha=0.05, seed=seed).epsilon_lb


@pytest.mark.stat
def test_single_step_canary_audit():
  claimed = accounting.epsilon(
      accounting.poisson_event(1.0, 1.0, 1, "add_remove"), DELTA,
      "add_remove")
  assert claimed == pytest.approx(2.318, abs=0.01)
  eps_ok = _audit()
  assert 1.5 < eps_ok < claimed, eps_ok          # valid and reasonably tight
  assert _audit(sigma_scale=0.8) > claimed       # too little noise
  assert _audit(clip_for_sum=float("inf")) > claimed  # clipping removed


def test_clopper_pearson_bounds():
  lo, hi = auditing.clopper_pearson(50, 100, 0.025)
  assert 0.39 < lo < 0.5 < hi < 0.61
  assert auditing.clopper_pearson(0, 10, 0.05)[0] == 0.0
  assert auditing.clopper_pearson(10, 10, 0.05)[1] == 1.0
  # Identical worlds: no evidence of leakage.
  rng = np.random.default_rng(1)
  x = rng.normal(size=20000)
  y = rng.normal(size=20000)
  assert auditing.epsilon_lower_bound(x, y, 1e-5).epsilon_lb < 0.2
