"""Accounting: goldens, RDP >= PLD per relation, calibration, round trips."""

import math

import dp_accounting as dpa
from dp_accounting import rdp
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.privacy import accounting as acc
from cbench.privacy import batch_sampling


def test_golden_pld_gaussian_composed():
  # privacy-testing.md A1: GaussianDpEvent(sqrt 3) x3 -> delta(eps=1).
  ev = dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(math.sqrt(3)), 3)
  assert acc.delta(ev, 1.0, "add_remove") == pytest.approx(0.126936, rel=1e-3)


def test_golden_pld_poisson_composed():
  ev = acc.poisson_event(0.2, 0.5, 3, "add_remove")
  assert acc.delta(ev, 1.0, "add_remove") == pytest.approx(0.15594, rel=1e-3)


def test_golden_opacus_triple():
  ev = acc.poisson_event(0.04, 1.5, 2250, "add_remove")
  assert acc.epsilon(ev, 1e-5, "add_remove", "rdp") == pytest.approx(
      7.3293, rel=1e-3)
  assert acc.epsilon(ev, 1e-5, "add_remove", "pld") == pytest.approx(
      6.7688, rel=1e-3)


def test_replace_one_doubles_sensitivity_in_event():
  # sigma is relative to the sensitivity: an unsampled Gaussian has the same
  # epsilon under both relations, and dp_accounting sees std/C = 2 sigma.
  for rel in ("add_remove", "replace_one"):
    ev = acc.no_amplification_event(1.0, 1, rel)
    assert acc.epsilon(ev, 1e-5, rel) == pytest.approx(4.3772, rel=1e-3)
  ev = acc.no_amplification_event(1.0, 1, "replace_one")
  assert ev.event.noise_multiplier == 2.0


def _emitted_events():
  """Every event kind the engine emits, with the relation it is used under."""
  out = []
  for rel in ("add_remove", "replace_one"):
    for q, sigma, steps in ((0.01, 1.0, 1000), (0.1, 0.7, 50), (1.0, 2.0, 3),
                            (0.003, 3.0, 5000)):
      out.append((acc.poisson_event(q, sigma, steps, rel), rel))
  sh = batch_sampling.ShuffledEpochSampler(1000, 50, seed=0)
  out.append((sh.dp_event(1.2, 500, "replace_one"), "replace_one"))
  return out


@pytest.mark.parametrize("i", range(9))
def test_rdp_upper_bounds_pld_for_every_emitted_event(i):
  ev, rel = _emitted_events()[i]
  for delta in (1e-5, 1e-8):
    e_pld = acc.epsilon(ev, delta, rel, "pld")
    e_rdp = acc.rdp_epsilon(ev, delta, rel)
    assert e_rdp is not None
    assert e_rdp >= e_pld * (1 - 1e-3), (ev, rel, e_rdp, e_pld)


def test_cross_check_catches_upstream_replace_one_bug():
  # google/differential-privacy#378: dp_accounting's RDP ignores REPLACE_ONE's
  # 2C sensitivity. The same check must reject it.
  ev = acc.no_amplification_event(1.0, 1, "replace_one")
  buggy = rdp.RdpAccountant(
      neighboring_relation=dpa.NeighboringRelation.REPLACE_ONE)
  buggy.compose(ev)
  e_pld = acc.epsilon(ev, 1e-5, "replace_one")
  assert buggy.get_epsilon(1e-5) < e_pld * (1 - 1e-3)
  assert acc.rdp_epsilon(ev, 1e-5, "replace_one") >= e_pld


def test_replace_one_rdp_matches_add_remove_for_unsampled_gaussian():
  a = acc.rdp_epsilon(acc.no_amplification_event(1.3, 7, "add_remove"),
                      1e-6, "add_remove")
  b = acc.rdp_epsilon(acc.no_amplification_event(1.3, 7, "replace_one"),
                      1e-6, "replace_one")
  assert b == pytest.approx(a, rel=2e-2)  # integer-only order grid


def test_truncated_event_pld_and_no_rdp():
  big = acc.truncated_poisson_event(1000, 0.01, 1000, 1.0, 100, "add_remove")
  plain = acc.poisson_event(0.01, 1.0, 100, "add_remove")
  e_big = acc.epsilon(big, 1e-5, "add_remove", "pld", 1e-3)
  assert e_big == pytest.approx(acc.epsilon(plain, 1e-5, "add_remove", "pld",
                                            1e-3), rel=1e-9)
  tight = acc.truncated_poisson_event(1000, 0.01, 20, 1.0, 100, "add_remove")
  assert acc.epsilon(tight, 1e-5, "add_remove", "pld", 1e-3) >= e_big
  assert acc.rdp_epsilon(tight, 1e-5, "add_remove") is None
  with pytest.raises(CbenchError):
    acc.epsilon(tight, 1e-5, "add_remove", "rdp")


def test_sigma_zero_is_infinite_epsilon_and_inf_target_is_sigma_zero():
  ev = acc.poisson_event(0.01, 0.0, 10, "add_remove")
  assert acc.epsilon(ev, 1e-5, "add_remove") == math.inf
  assert acc.rdp_epsilon(ev, 1e-5, "add_remove") == math.inf
  assert acc.rdp_epsilon(acc.poisson_event(0.01, 0.0, 10, "replace_one"),
                         1e-5, "replace_one") == math.inf
  assert acc.calibrate_noise_multiplier(
      lambda s: acc.poisson_event(0.01, s, 10, "add_remove"), math.inf, 1e-5,
      "add_remove") == 0.0
  assert acc.epsilon(acc.poisson_event(0.01, 1.0, 0, "add_remove"), 1e-5,
                     "add_remove") == 0.0


def test_monotone_sweep():
  # privacy-testing.md A3 on a small grid: finite, >= 0, monotone.
  base = dict(q=0.01, s=1.0, t=100)
  e = lambda q, s, t: acc.epsilon(acc.poisson_event(q, s, t, "add_remove"),
                                  1e-6, "add_remove", "rdp")
  e0 = e(**base)
  assert 0 <= e0 < math.inf
  assert e(0.02, 1.0, 100) > e0 and e(0.01, 1.0, 200) > e0
  assert e(0.01, 1.5, 100) < e0
  assert acc.epsilon(acc.poisson_event(0.01, 1.0, 100, "add_remove"), 1e-4,
                     "add_remove", "rdp") < e0


@pytest.mark.stat
def test_calibration_never_undershoots():
  rng = np.random.default_rng(0)
  for _ in range(8):
    target = float(rng.uniform(0.5, 8.0))
    q = float(rng.uniform(0.005, 0.05))
    rel = ("add_remove", "replace_one")[int(rng.integers(2))]
    make = lambda s, q=q, rel=rel: acc.poisson_event(q, s, 200, rel)
    sigma = acc.calibrate_noise_multiplier(
        make, target, 1e-5, rel, rtol=1e-2, value_discretization_interval=1e-3)
    eps = acc.epsilon(make(sigma), 1e-5, rel, "pld", 1e-3)
    assert eps <= target, (target, sigma, eps)
    # ... and it is not absurdly conservative (within the bisection width).
    assert acc.epsilon(make(sigma / 1.02), 1e-5, rel, "pld", 1e-3) > target


def test_calibration_does_not_depend_on_the_clock(monkeypatch):
  # A plan is a function of the request, not of how busy the machine is:
  # a slow clock gives the same sigma, and running out of time is an error
  # that names the option, never an early, larger sigma.
  make = lambda s: acc.poisson_event(0.02, s, 100, "add_remove")
  kw = dict(value_discretization_interval=1e-3)
  fast = acc.calibrate_noise_multiplier(make, 2.0, 1e-5, "add_remove", **kw)
  clock = iter(range(0, 10**6, 7))
  monkeypatch.setattr(acc.time, "monotonic", lambda: float(next(clock)))
  slow = acc.calibrate_noise_multiplier(make, 2.0, 1e-5, "add_remove",
                                        time_limit_s=10**5, **kw)
  assert slow == fast
  assert acc.epsilon(make(slow), 1e-5, "add_remove", "pld", 1e-3) <= 2.0
  with pytest.raises(CbenchError, match="calibration_seconds"):
    acc.calibrate_noise_multiplier(make, 2.0, 1e-5, "add_remove",
                                   time_limit_s=30, **kw)


def test_calibration_unreachable_raises():
  make = lambda s: acc.poisson_event(1.0, s, 10, "add_remove")
  with pytest.raises(CbenchError):
    acc.calibrate_noise_multiplier(make, 1e-4, 1e-5, "add_remove",
                                   max_sigma=10.0,
                                   value_discretization_interval=1e-3)


def test_event_dict_round_trip():
  ev = dpa.ComposedDpEvent([
      acc.poisson_event(0.01, 1.0, 10, "replace_one"),
      acc.truncated_poisson_event(100, 0.1, 20, 1.0, 3, "add_remove"),
      dpa.LaplaceDpEvent(2.0)])
  assert acc.event_from_dict(acc.event_to_dict(ev)) == ev
  with pytest.raises(CbenchError):
    acc.event_from_dict({"class_name": "os.system"})


def test_discretization_interval_is_an_upper_bound_that_scales():
  assert acc.discretization_interval(1.0) == acc.DEFAULT_VDI
  assert acc.discretization_interval(10.0) == acc.DEFAULT_VDI
  assert acc.discretization_interval(math.inf) == acc.DEFAULT_VDI
  assert acc.discretization_interval(100.0) == pytest.approx(1e-3)
  assert acc.discretization_interval(1e4) == pytest.approx(1e-2)
  # A coarse interval never reports below a fine one (pessimistic PLD).
  ev = acc.poisson_event(0.01, 0.2, 50, "add_remove")
  fine = acc.epsilon(ev, 1e-5, "add_remove", "pld", 1e-4)
  coarse = acc.epsilon(ev, 1e-5, "add_remove", "pld",
                              acc.discretization_interval(100.0))
  assert fine <= coarse <= fine * 1.01
