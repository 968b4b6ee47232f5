"""Thresholds under model-labelled contamination: ERM stalls above its lower
bound at high α, the reweighted learner converges, and the pieces behave."""

import itertools

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.provenance import pac
from cbench.testing import fixtures

_SMALL = pac.PacConfig(domain_size=20, target=10, samples_per_generation=10,
                       generations=60, trials=400)


def test_erm_threshold_is_the_smallest_minimiser():
  # Atoms 0..3; labels: atom 0 -> 0 (x2), atom 2 -> 1 (x1), atom 3 -> 1.
  w0 = np.array([[2.0, 0, 0, 0], [0, 0, 3, 0]])
  w1 = np.array([[0.0, 0, 1, 1], [0, 1, 1, 0]])
  # Row 0: thresholds 1 and 2 are consistent -> 1. Row 1: risks per
  # j=0..4 are 3, 3, 4, 2, 2 -> 3.
  np.testing.assert_array_equal(pac.erm_threshold(w0, w1), [1, 3])


def test_reweighted_risk_is_the_true_risk_plus_a_constant():
  for alpha in (0.0, 0.5, 0.9):
    for prev, star, h in itertools.product((0, 1), repeat=3):
      # y = f_{k-1}(x) with probability α, f*(x) otherwise.
      expected = float(sum(
          p * pac.reweighted_weights(np.array(y), np.array(prev), alpha)
          * (h != y) for y, p in ((prev, alpha), (star, 1 - alpha))))
      assert expected == pytest.approx(alpha * (prev != star) + (h != star))


def test_erm_stalls_above_its_bound_while_reweighted_converges():
  alpha = 0.8
  rng = np.random.default_rng(fixtures.stat_seed(21))
  sims = pac.simulate(_SMALL, alpha, rng)
  erm = pac.errors(_SMALL, sims["erm"])
  rew = pac.errors(_SMALL, sims["reweighted"])
  bound = pac.erm_lower_bound(_SMALL, alpha)
  assert bound == pytest.approx(0.05 * 0.95 ** 10 * 0.75)
  sem = erm[:, -1].std() / np.sqrt(_SMALL.trials)
  assert erm[:, -1].mean() > bound - 3 * sem
  # ERM hardly moves over the last half; the reweighted learner keeps going.
  assert erm[:, -1].mean() > 0.8 * erm[:, 30].mean()
  assert rew[:, -1].mean() < 0.1 * rew[:, 0].mean()
  assert rew[:, -1].mean() < bound / 2


def test_low_contamination_erm_converges_and_no_contamination_is_plain_erm():
  rng = np.random.default_rng(fixtures.stat_seed(22))
  erm = pac.errors(_SMALL, pac.simulate(_SMALL, 0.2, rng)["erm"])
  assert erm[:, -1].mean() < 0.1 * erm[:, 0].mean()
  assert pac.erm_lower_bound(_SMALL, 0.2) == 0.0
  sims = pac.simulate(_SMALL, 0.0, rng)
  np.testing.assert_array_equal(sims["reweighted"], sims["erm"])
  np.testing.assert_array_equal(sims["natural_only"], sims["erm"])


def test_run_reports_curves_for_every_alpha_and_learner():
  cfg = pac.PacConfig(domain_size=10, target=4, samples_per_generation=5,
                      generations=4, trials=3, alphas=(0.0, 0.75))
  res = pac.run(cfg, np.random.default_rng(0))
  assert set(res["curves"]) == {"0", "0.75"}
  for row in res["curves"].values():
    assert set(row) == set(pac.LEARNERS)
    assert all(len(c["mean"]) == 4 for c in row.values())
  assert res["samples_seen"] == [5, 10, 15, 20]
  assert res["lower_bound"]["0.75"] > 0 == res["lower_bound"]["0"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(target=0), "target"),
    (dict(target=20), "target"),
    (dict(domain_size=1, target=1), "domain_size"),
    (dict(alphas=(1.0,)), "alpha"),
    (dict(alphas=()), "alphas"),
    (dict(trials=1), "trials"),
    (dict(generations=0), "generations"),
])
def test_bad_configs_raise(kwargs, match):
  cfg = pac.PacConfig(**{**dict(domain_size=20, target=10), **kwargs})
  with pytest.raises(CbenchError, match=match):
    cfg.validate()
