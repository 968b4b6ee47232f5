"""Mean estimation under synthetic contamination: Monte Carlo against hand
closed forms, the weight algebra, ERM's regime change and bad inputs."""

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.provenance import mean_estimation as me
from cbench.testing import fixtures


def _hand_erm(alpha, n, dim):
  """ERM's MSE at generations 0, 1, 2: e_t = ((t-1+α)/t) e_{t-1} + U_t/t."""
  v0 = 1.0 / n
  v1 = ((1 + alpha) / 2) ** 2 * v0 + 1.0 / (4 * n)
  v2 = ((2 + alpha) / 3) ** 2 * v1 + 1.0 / (9 * n)
  return dim * np.array([v0, v1, v2])


def _hand_weighted(alpha, n, dim):
  """The weighted BLUE: inverse-variance mean of Z_0 (var 1/n) and
  Z_1, Z_2 (var 1/(n (1-α)²))."""
  prec = np.cumsum([n, n * (1 - alpha) ** 2, n * (1 - alpha) ** 2])
  return dim / prec


def test_generations_one_and_two_match_closed_forms_within_mc_error():
  alpha, n, dim, trials = 0.8, 10, 4, 20000
  rng = np.random.default_rng(fixtures.stat_seed(11))
  mu = np.array([1.0, -2.0, 0.5, 3.0])
  for weights, hand in ((None, _hand_erm(alpha, n, dim)),
                        (me.weighted_weights(alpha, 3),
                         _hand_weighted(alpha, n, dim))):
    est = me.simulate(mu=mu, alpha=alpha, n=n, generations=3, trials=trials,
                      rng=rng, weights=weights)
    mse = me.squared_errors(est, mu).mean(0)
    # ||e||² / v ~ chi²_d: relative standard error sqrt(2 / (d trials)).
    tol = 5 * np.sqrt(2.0 / (dim * trials))
    np.testing.assert_allclose(mse, hand, rtol=tol)
  # The two estimators differ here by ~10%, far beyond the tolerance.
  assert np.all(np.abs(_hand_erm(alpha, n, dim)[1:]
                       / _hand_weighted(alpha, n, dim)[1:] - 1) > 4 * tol)


def test_matrix_mse_agrees_with_both_closed_forms():
  k = np.arange(25)
  for alpha in (0.0, 0.3, 0.5, 0.9):
    np.testing.assert_allclose(
        me.analytic_mse(me.erm_weights(25), alpha, 7, 3),
        me.erm_mse(alpha, 7, 3, k), rtol=1e-10)
    np.testing.assert_allclose(
        me.analytic_mse(me.weighted_weights(alpha, 25), alpha, 7, 3),
        me.weighted_mse(alpha, 7, 3, k), rtol=1e-10)
    np.testing.assert_allclose(me.erm_mse(alpha, 7, 3, k[:3]),
                               _hand_erm(alpha, 7, 3), rtol=1e-12)


def test_late_generation_mc_matches_exact_mse():
  alpha, n, dim, t, trials = 0.75, 4, 2, 40, 4000
  rng = np.random.default_rng(fixtures.stat_seed(12))
  mu = np.zeros(dim)
  err = me.squared_errors(me.simulate(mu=mu, alpha=alpha, n=n, generations=t,
                                      trials=trials, rng=rng), mu)[:, -1]
  exact = me.erm_mse(alpha, n, dim, [t - 1])[0]
  assert abs(err.mean() - exact) < 5 * err.std() / np.sqrt(trials)
  # ...and ERM is clearly worse there than the weighted estimator's MSE.
  assert exact > 1.3 * me.weighted_mse(alpha, n, dim, t - 1)


def test_weights_are_causal_sum_to_one_and_beat_uniform():
  for alpha in (0.0, 0.25, 0.6, 0.95):
    w = me.weighted_weights(alpha, 30)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(w, np.tril(w))
    erm = me.analytic_mse(me.erm_weights(30), alpha, 5, 2)
    blue = me.analytic_mse(w, alpha, 5, 2)
    assert np.all(blue <= erm * (1 + 1e-12))
    if alpha > 0:
      assert blue[-1] < erm[-1] * 0.99
      assert not np.allclose(w, me.erm_weights(30))  # non-uniform
  # Without contamination the best weighting is the uniform one.
  np.testing.assert_allclose(me.weighted_weights(0.0, 30), me.erm_weights(30),
                             atol=1e-12)


def test_uniform_weighting_reproduces_pooled_erm_exactly():
  mu = np.array([0.3, -1.0])
  kw = dict(mu=mu, alpha=0.5, n=6, generations=12, trials=50)
  pooled = me.simulate(rng=np.random.default_rng(3), **kw)
  uniform = me.simulate(rng=np.random.default_rng(3),
                        weights=me.erm_weights(12), **kw)
  np.testing.assert_allclose(uniform, pooled, rtol=0, atol=1e-12)
  weighted = me.simulate(rng=np.random.default_rng(3),
                         weights=me.weighted_weights(0.5, 12), **kw)
  assert np.abs(weighted - pooled)[:, 1:].max() > 1e-3  # same data, not ERM


def test_erm_exponent_changes_regime_at_one_half():
  assert me.rate_exponent(0.25, 100_000) == pytest.approx(1.0, abs=0.02)
  assert me.rate_exponent(0.8, 100_000) == pytest.approx(0.4, abs=0.02)
  assert me.rate_exponent(0.9, 100_000) == pytest.approx(0.2, abs=0.02)
  alphas = np.round(np.arange(0, 0.96, 0.05), 2)
  # The hinge fit recovers a known hinge exactly (on its grid)...
  star, slope = me.regime_change(alphas, np.minimum(1, 2 * (1 - alphas)))
  assert star == pytest.approx(0.5, abs=1e-3)
  assert slope == pytest.approx(2.0, abs=1e-2)
  # ...and puts ERM's exact exponents' change near 1/2.
  exps = np.array([me.rate_exponent(a, 100_000) for a in alphas])
  star, _ = me.regime_change(alphas, exps)
  assert 0.44 <= star <= 0.52


def test_bad_inputs_raise():
  with pytest.raises(CbenchError, match="integer"):
    me.synthetic_count(0.3, 5)
  with pytest.raises(CbenchError, match="alpha"):
    me.weighted_weights(1.0, 5)
  with pytest.raises(CbenchError, match="alpha"):
    me.erm_mse(-0.1, 5, 1, [1])
  with pytest.raises(CbenchError, match="lower-triangular"):
    me.analytic_mse(np.full((3, 3), 1 / 3), 0.5, 5, 1)
  with pytest.raises(CbenchError, match="sum to 1"):
    me.analytic_mse(np.eye(3) * 0.5, 0.5, 5, 1)
  with pytest.raises(CbenchError, match="trials"):
    me.MeanConfig(trials=1).validate()
  with pytest.raises(CbenchError, match="integer"):
    me.MeanConfig(samples_per_generation=3, alphas=(0.5,)).validate()
  with pytest.raises(CbenchError, match="regime_generations"):
    me.MeanConfig(regime_generations=(50,)).validate()
