"""Tests of the high-resolution Gumbel and exact softmax sampling."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from cbench._validate import CbenchError
from cbench.privacy import gumbel


def _words(w0, w1, w2, w3):
  return jnp.asarray([[w0], [w1], [w2], [w3]], jnp.uint32)


def test_extreme_bits_reach_the_documented_range():
  # All-zero exponent words: the smallest U (~2^-98).
  top = float(gumbel.gumbel_from_bits(_words(0, 0, 0, 1))[0])  # -log1p(-U)
  bottom = float(gumbel.gumbel_from_bits(_words(0, 0, 0, 0))[0])  # E = -log(U)
  assert top == pytest.approx(gumbel.G_HI, abs=1e-3)
  assert bottom == pytest.approx(gumbel.G_LO, abs=1e-3)
  # Far beyond float32 jax.random.gumbel's ~[-4.5, 16] (privacy-testing D3).
  assert top > 60 and bottom < -4.2
  # Leading one bit: U in [1/4, 1/2): E either side of ln 2.
  u, branch = gumbel.uniform_from_bits(_words(0x80000000, 0, 0, 0))
  assert 0.25 <= float(u[0]) < 0.5 and not bool(branch[0])


def test_uniform_exponent_is_geometric():
  words = jax.random.bits(jax.random.key(0), (4, 200_000), jnp.uint32)
  u, branch = gumbel.uniform_from_bits(words)
  u = np.asarray(u, np.float64)
  assert u.min() > 0 and u.max() <= 0.5
  # P(U < 2^-j) = 2^-(j-1) for a uniform on (0, 1/2].
  for j in (2, 4, 8, 12):
    n = np.sum(u < 2.0 ** -j)
    p = 2.0 ** -(j - 1)
    assert stats.binomtest(int(n), u.size, p).pvalue > 1e-3
  assert stats.binomtest(int(np.sum(branch)), u.size, 0.5).pvalue > 1e-3


@pytest.mark.stat
def test_gumbel_matches_cdf_and_rejects_shifted():
  g = np.asarray(gumbel.fine_gumbel(jax.random.key(1), (300_000,)),
                 np.float64)
  assert stats.kstest(g, stats.gumbel_r.cdf).pvalue > 1e-3
  # A deliberately wrong variant (location shifted by 0.02) is rejected.
  assert stats.kstest(g + 0.02, stats.gumbel_r.cdf).pvalue < 1e-3
  # Upper tail where float32 precision matters: P(g > 10) = 1 - exp(-e^-10).
  n_tail = int(np.sum(g > 10.0))
  p_tail = -math.expm1(-math.exp(-10.0))
  assert stats.binomtest(n_tail, g.size, p_tail).pvalue > 1e-3


@pytest.mark.stat
def test_sample_softmax_chi2_and_wrong_temperature_rejected():
  v, n = 16, 400_000
  logits = jax.random.normal(jax.random.key(2), (v,)) * 2.0
  x = jnp.broadcast_to(logits, (n, v))
  toks = np.asarray(gumbel.sample_softmax(jax.random.key(3), x))
  counts = np.bincount(toks, minlength=v)
  p = np.asarray(jax.nn.softmax(logits.astype(jnp.float32)), np.float64)
  p = p / p.sum()
  assert stats.chisquare(counts, n * p).pvalue > 1e-3
  p_wrong = np.asarray(jax.nn.softmax(logits / 1.1), np.float64)
  p_wrong /= p_wrong.sum()
  assert stats.chisquare(counts, n * p_wrong).pvalue < 1e-3


def test_masked_tokens_are_never_drawn():
  x = jnp.array([[0.0, -jnp.inf, -30.0, -jnp.inf]] * 50_000)
  toks = np.asarray(gumbel.sample_softmax(jax.random.key(4), x))
  assert set(np.unique(toks)) <= {0, 2}


def test_rare_token_is_reachable_where_float32_gumbel_is_not():
  # Scaled gap 25 below 999 competitors: exact probability ~e^-25/999 > 0.
  # Float32 jax.random.gumbel spans < 21, so that token could never win.
  std = jax.random.gumbel(jax.random.key(5), (2_000_000,))
  assert float(std.max() - std.min()) < 25
  # With the fine Gumbel the winning draw exists: give token 0 the extreme
  # bits (probability 2^-97) and the others random ones.
  v = 1000
  words = jax.random.bits(jax.random.key(6), (4, v), jnp.uint32)
  words = words.at[:, 0].set(jnp.array([0, 0, 0, 1], jnp.uint32))
  x = jnp.zeros((v,)).at[0].set(-25.0)
  assert int(jnp.argmax(x + gumbel.gumbel_from_bits(words))) == 0


def test_check_exact_range():
  limit = gumbel.max_exact_range(256_000)
  assert 19 < limit < 21            # ln(1e-9) + 95 ln 2 - 2 ln V
  gumbel.check_exact_range(limit - 1e-6, 256_000)
  gumbel.check_exact_range(math.inf, 256_000)   # non-private: allowed
  with pytest.raises(CbenchError, match="clip/temperature"):
    gumbel.check_exact_range(limit + 0.1, 256_000)
  # The bound: V^2 e^R 2^-95 <= 1e-9 at the limit.
  v = 256_000
  assert v ** 2 * math.exp(limit) * 2.0 ** -95 == pytest.approx(1e-9)
