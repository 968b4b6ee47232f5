"""Tests of the logit aggregations (clip, mean, median, DClip, Top-k+)."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.synthesis import aggregation as agg


def _rand(key, shape, scale=4.0):
  return jax.random.normal(jax.random.key(key), shape) * scale


def test_recentred_clip_range_and_fixed_points():
  z = _rand(0, (5, 7), 10.0)
  x = np.asarray(agg.recentred_clip(z, 2.0))
  assert x.min() >= -2.0 and x.max() <= 2.0
  np.testing.assert_allclose(x.max(axis=-1), 2.0)
  # Lossless (a shift) when the logit range is <= 2c.
  small = _rand(1, (3, 6), 0.2)
  y = agg.recentred_clip(small, 5.0)
  np.testing.assert_allclose(y - y.max(-1, keepdims=True),
                             small - small.max(-1, keepdims=True), atol=1e-6)
  # Matches the formula max(-c, z - max z + c).
  ref = np.maximum(-2.0, np.asarray(z) - np.asarray(z).max(-1,
                                                           keepdims=True) + 2)
  np.testing.assert_allclose(x, ref, atol=1e-6)
  # c = inf recentres only.
  np.testing.assert_allclose(agg.recentred_clip(z, np.inf).max(-1), 0.0)


def test_clipped_mean_divides_by_public_s_and_ignores_null_rows():
  priv = _rand(2, (2, 4, 6))
  mask = jnp.array([[True, True, False, False], [True] * 4])
  poisoned = priv.at[0, 2:].set(jnp.nan)         # garbage in padding rows
  m = np.asarray(agg.clipped_mean(poisoned, 1.5, 4, mask))
  clipped = np.asarray(agg.recentred_clip(priv, 1.5))
  np.testing.assert_allclose(m[0], clipped[0, :2].sum(0) / 4, atol=1e-6)
  np.testing.assert_allclose(m[1], clipped[1].sum(0) / 4, atol=1e-6)
  assert np.all(np.isfinite(m))
  with pytest.raises(CbenchError, match="private rows"):
    agg.clipped_mean(priv, 1.5, 3)


@pytest.mark.parametrize("s", [1, 2, 3, 4, 5])
def test_clipped_median_order_statistics_and_gaps(s):
  c = 1.0
  priv = _rand(3 + s, (3, s, 8))
  med, down, up = (np.asarray(a) for a in agg.clipped_median(priv, c))
  x = np.sort(np.asarray(agg.recentred_clip(priv, c)), axis=1)
  k = (s + 1) // 2
  np.testing.assert_allclose(med, x[:, k - 1])
  lo = x[:, k - 2] if k >= 2 else -c
  hi = x[:, k] if k < s else c
  np.testing.assert_allclose(down, med - lo, atol=1e-6)
  np.testing.assert_allclose(up, hi - med, atol=1e-6)
  # Local sensitivity: replacing any one row by any box corner keeps every
  # coordinate of the median within [med - down, med + up].
  rng = np.random.default_rng(s)
  for _ in range(20):
    row = rng.integers(s)
    new = rng.choice([-c, c], size=(3, 8))
    new[:, 0] = c                               # a valid clip output
    changed = priv.at[:, row].set(jnp.asarray(new, jnp.float32))
    m2 = np.asarray(agg.clipped_median(changed, c)[0])
    assert np.all(m2 >= med - down - 1e-6) and np.all(m2 <= med + up + 1e-6)


def test_median_gaps_vanish_when_three_rows_agree():
  row = _rand(4, (1, 1, 6))
  priv = jnp.concatenate([row] * 3 + [_rand(5, (1, 2, 6))], axis=1)
  _, down, up = agg.clipped_median(priv, 3.0)
  # s = 5, k = 3: if the three equal rows straddle the median, gaps are 0
  # for the coordinates where they are x_(2), x_(3), x_(4).
  x = np.sort(np.asarray(agg.recentred_clip(priv, 3.0)), axis=1)[0]
  agree = (x[1] == x[2]) & (x[2] == x[3])
  assert np.all(np.asarray(down)[0][agree] == 0)
  assert np.all(np.asarray(up)[0][agree] == 0)


def test_svt_distance_sensitivity():
  s, v = 4, 9
  rng = np.random.default_rng(0)
  worst_zero, worst_replace = 0.0, 0.0
  for t in range(30):
    priv = _rand(10 + t, (1, s, v))
    pub = _rand(50 + t, (1, v))
    d = float(agg.svt_distance(priv, pub, s)[0])
    mask = jnp.ones((1, s), bool).at[0, rng.integers(s)].set(False)
    d0 = float(agg.svt_distance(priv, pub, s, mask)[0])
    other = priv.at[0, rng.integers(s)].set(_rand(99 + t, (v,), 20.0))
    d1 = float(agg.svt_distance(other, pub, s)[0])
    worst_zero = max(worst_zero, abs(d - d0))
    worst_replace = max(worst_replace, abs(d - d1))
  assert worst_zero <= 1.0 / s + 1e-6
  assert worst_replace <= 2.0 / s + 1e-6
  assert worst_replace > 1.0 / s     # the factor 2 is real


def test_dclip_mean_and_null_row_equals_public_prompt():
  b, v, c = 3, 6, 0.7
  priv = _rand(6, (2, b, v))
  pub = _rand(7, (2, v))
  phi = np.asarray(agg.dclip_mean(priv, pub, c, b))
  ref = np.asarray(pub) + np.clip(np.asarray(priv) - np.asarray(pub)[:, None],
                                  -c, c).sum(1) / b
  np.testing.assert_allclose(phi, ref, atol=1e-6)
  # A row holding the public prompt contributes exactly what a null row does.
  as_pub = priv.at[:, 1].set(pub)
  mask = jnp.ones((2, b), bool).at[:, 1].set(False)
  np.testing.assert_allclose(agg.dclip_mean(as_pub, pub, c, b),
                             agg.dclip_mean(priv, pub, c, b, mask), atol=1e-6)
  # -inf public logits stay -inf; -inf private logits clip to -C.
  pub2 = pub.at[0, 0].set(-jnp.inf)
  priv2 = priv.at[0, 0, 1].set(-jnp.inf)
  phi2 = np.asarray(agg.dclip_mean(priv2, pub2, c, b))
  assert phi2[0, 0] == -np.inf and np.isfinite(phi2[0, 1])


def test_topk_plus_uses_public_logits_only():
  pub = jnp.array([[5.0, 4.0, 3.9, 3.0, 0.0]])
  m = np.asarray(agg.topk_plus_mask(pub, 2, 0.3, 3))   # l_2 = 4, margin 0.2
  np.testing.assert_array_equal(m[0], [True, True, True, False, False])
  assert np.all(np.asarray(agg.topk_plus_mask(pub, 0, 0.3, 3)))
  # It has no private argument at all: the set cannot depend on private
  # logits (support invariance is tested end to end in samplers_test).
  assert "priv" not in inspect.signature(agg.topk_plus_mask).parameters
