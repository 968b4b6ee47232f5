"""The one-run bound: valid on a mechanism of known epsilon, tight enough to
catch one that spends more, and the delta term and ceiling behave."""

import math

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.privacy import one_run
from cbench.testing import fixtures


def _randomized_response(m: int, epsilon: float, rng: np.random.Generator):
  """m canaries through epsilon-DP randomized response: exactly epsilon-DP."""
  included = rng.random(m) < 0.5
  keep = rng.random(m) < 1.0 / (1.0 + math.exp(-epsilon))
  seen = np.where(keep, included, ~included)
  return seen.astype(np.float64), included


def test_bound_is_valid_on_a_mechanism_of_known_epsilon():
  rng = np.random.default_rng(fixtures.stat_seed(0))
  bounds = []
  for _ in range(60):
    scores, included = _randomized_response(2000, 1.0, rng)
    bounds.append(one_run.audit(scores, included, delta=0.0).epsilon_lb)
  bounds = np.array(bounds)
  # A 95% bound: at most ~5% may exceed (binomial slack at 60 runs).
  assert np.mean(bounds > 1.0) <= 0.12, bounds
  assert np.median(bounds) > 0.6     # and not vacuous


def test_bound_catches_a_mechanism_that_spends_more_than_claimed():
  rng = np.random.default_rng(fixtures.stat_seed(1))
  scores, included = _randomized_response(2000, 3.0, rng)
  res = one_run.audit(scores, included, delta=1e-5)
  assert res.epsilon_lb > 1.0        # claimed 1, runs at 3: caught
  assert res.epsilon_lb <= res.ceiling


def test_uninformative_scores_give_zero():
  rng = np.random.default_rng(fixtures.stat_seed(2))
  included = rng.random(1000) < 0.5
  res = one_run.audit(rng.normal(size=1000), included, delta=1e-5)
  assert res.epsilon_lb < 0.3


def test_delta_term_raises_the_p_value_and_lowers_the_bound():
  assert one_run.p_value(1000, 100, 90, 1.0, 1e-3) > one_run.p_value(
      1000, 100, 90, 1.0, 0.0)
  assert one_run.epsilon_lower_bound(1000, 100, 90, 1e-3) < (
      one_run.epsilon_lower_bound(1000, 100, 90, 0.0))


def test_p_value_is_the_binomial_tail_at_delta_zero():
  p = 1 / (1 + math.exp(-0.5))
  tail = sum(math.comb(20, j) * p**j * (1 - p)**(20 - j) for j in range(15, 21))
  assert one_run.p_value(50, 20, 15, 0.5, 0.0) == pytest.approx(tail, rel=1e-9)


def test_ceiling_grows_with_guesses_and_bounds_every_result():
  c = [one_run.ceiling(10_000, r, 1e-5) for r in (10, 100, 1000)]
  assert c[0] < c[1] < c[2]
  assert 3.0 < c[1] < 4.0            # all of 100 right: about ln(100 / 3)


def test_count_correct_top_and_bottom():
  scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
  included = np.array([True, True, False, True, False, False])
  assert one_run.count_correct(scores, included, 2, 0) == (2, 2)
  assert one_run.count_correct(scores, included, 3, 2) == (5, 4)


def test_bad_input_is_named():
  with pytest.raises(CbenchError, match="as many coins"):
    one_run.audit([1.0, 2.0, 3.0], [True, False], delta=1e-5)
  with pytest.raises(CbenchError, match="finite"):
    one_run.audit([1.0, np.nan], [True, False], delta=1e-5)
