"""Tests of private-prediction accounting (zCDP, conversions, parameters)."""

import math

import dp_accounting
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.privacy import gumbel
from cbench.privacy import pp_accounting as pa

REF = dict(batch_size=255, clip=10.0, temperature=2.0, svt_noise=0.2,
           threshold=0.5, max_private_tokens=177, relation="zero_out")
REF_DELTA = 8.33e-6


def test_reference_example_closed_form():
  # stoneboat README / algorithms.md: s=255, c=10, tau=2, sigma=0.2, r=177,
  # delta=8.33e-6 -> eps = 2.99 (closed form), per-token 1.92e-4 + 7.69e-4.
  p = pa.PrivatePredictionParams(**REF)
  assert pa.em_rho(10.0, 2.0, 255, "zero_out") == pytest.approx(1.922e-4,
                                                                rel=1e-3)
  assert pa.svt_rho(0.2, 255, "zero_out") == pytest.approx(7.689e-4, rel=1e-3)
  rho = pa.private_prediction_rho(p)
  assert rho == pytest.approx(0.1701, rel=1e-3)
  closed = pa.zcdp_epsilon_closed_form(rho, REF_DELTA)
  assert closed == pytest.approx(2.99, abs=0.01)
  assert pa.zcdp_epsilon(rho, REF_DELTA) < closed       # tight is tighter
  assert pa.zcdp_epsilon(rho, REF_DELTA) == pytest.approx(2.595, abs=0.01)
  assert isinstance(pa.zcdp_event(rho), dp_accounting.ZCDpEvent)


def test_relations_scale_the_cost():
  zero = pa.PrivatePredictionParams(**REF)
  for rel in ("add_remove", "replace_one"):
    other = pa.PrivatePredictionParams(**{**REF, "relation": rel})
    assert other.rho_per_token() == pytest.approx(4 * zero.rho_per_token())
  with pytest.raises(CbenchError, match="relation"):
    pa.relation_factor("swap")


@pytest.mark.parametrize("rho", [1e-4, 0.01, 0.17, 1.0, 10.0, 200.0])
@pytest.mark.parametrize("delta", [1e-10, 1e-5, 1e-2])
def test_tight_conversion_is_valid_and_below_closed_form(rho, delta):
  eps = pa.zcdp_epsilon(rho, delta)
  closed = pa.zcdp_epsilon_closed_form(rho, delta)
  assert 0 < eps <= closed
  assert pa.zcdp_delta(rho, eps) <= delta           # the claim holds
  assert pa.zcdp_delta(rho, eps * (1 - 1e-6)) > delta * (1 - 1e-6) or (
      eps < 1e-9)                                    # and is (nearly) tight
  # dp_accounting's RDP accountant evaluates the same bound on a grid of
  # orders: never below ours, and close.
  acc = dp_accounting.rdp.RdpAccountant()
  acc.compose(dp_accounting.ZCDpEvent(rho))
  rdp_eps = acc.get_epsilon(delta)
  assert rdp_eps >= eps * (1 - 1e-9) - 1e-12
  assert rdp_eps <= eps * 1.05 + 1e-6
  assert pa.rdp_epsilon(dp_accounting.ZCDpEvent(rho), delta) >= eps * (
      1 - 1e-9) - 1e-12


def test_conversion_monotone_and_edge_cases():
  grid = [pa.zcdp_epsilon(r, 1e-6) for r in (0.001, 0.01, 0.1, 1, 10)]
  assert grid == sorted(grid)
  assert pa.zcdp_epsilon(0.1, 1e-3) < pa.zcdp_epsilon(0.1, 1e-9)
  assert pa.zcdp_epsilon(0.0, 1e-5) == 0.0
  assert pa.zcdp_epsilon(math.inf, 1e-5) == math.inf
  assert pa.zcdp_delta(0.0, 1.0) == 0.0
  with pytest.raises(CbenchError, match="delta"):
    pa.zcdp_epsilon(0.1, 0.0)
  # Independent brute force of the same CKS bound in its RDP form,
  # eps(a) = a rho + ln(1/delta)/(a-1) + ln(a-1) - a ln(a)/(a-1),
  # minimised on a dense grid of orders.
  for rho, delta in ((0.5, 1e-5), (0.17, 8.33e-6), (3.0, 1e-9)):
    a = np.linspace(1.0001, 400.0, 2_000_000)
    ref = np.min(a * rho + math.log(1 / delta) / (a - 1) + np.log(a - 1)
                 - a * np.log(a) / (a - 1))
    assert pa.zcdp_epsilon(rho, delta) == pytest.approx(ref, abs=1e-6)


def test_rho_for_epsilon_inverts():
  for eps in (0.1, 1.0, 3.0, 10.0, 100.0):
    rho = pa.rho_for_epsilon(eps, 1e-5)
    assert pa.zcdp_epsilon(rho, 1e-5) <= eps * (1 + 1e-9)
    assert pa.zcdp_epsilon(rho * 1.001, 1e-5) > eps


def test_derive_parameters_never_exceeds_target_on_a_grid():
  rng = np.random.default_rng(0)
  checked = 0
  for eps in (0.5, 1.0, 2.0, 3.0, 8.0, 10.0, 30.0, 100.0):
    for s in (4, 16, 64, 255):
      for r in (1, 16, 128):
        for rel in ("zero_out", "add_remove"):
          share = rng.choice([0.2, 0.5, 0.8])
          kw = dict(relation=rel, clip=float(rng.choice([1.0, 5.0, 10.0])),
                    svt_share=None if rng.random() < 0.2 else float(share))
          try:
            p = pa.derive_parameters(eps, 1e-5, s, r, **kw)
          except CbenchError as e:
            assert "Infeasible" in str(e)
            continue
          got = pa.zcdp_epsilon(pa.private_prediction_rho(p), 1e-5)
          assert got <= eps, (eps, s, r, kw, p)
          assert p.max_private_tokens <= r
          assert 0.5 <= p.temperature
          checked += 1
  assert checked > 100


def test_derive_parameters_spends_the_budget_when_unconstrained():
  p = pa.derive_parameters(10.0, 1e-5, 64, 64, clip=5.0, relation="zero_out",
                           min_temperature=0.01, max_temperature=100.0)
  eps = pa.zcdp_epsilon(pa.private_prediction_rho(p), 1e-5)
  assert eps == pytest.approx(10.0, rel=1e-6)
  assert p.max_private_tokens == 64
  # Its SVT and EM shares are as documented (default 0.5 / 0.5).
  assert pa.svt_rho(p.svt_noise, 64, "zero_out") == pytest.approx(
      pa.em_rho(p.clip, p.temperature, 64, "zero_out"), rel=1e-9)


def test_derive_parameters_infeasible_and_infinite():
  with pytest.raises(CbenchError, match="Infeasible"):
    pa.derive_parameters(0.1, 1e-5, 2, 10, clip=10.0)
  p = pa.derive_parameters(math.inf, 1e-5, 8, 50)
  assert not p.private and p.svt_noise is None
  assert pa.private_prediction_rho(p) == math.inf
  # The exactness bound of the sampler raises tau for huge vocabularies.
  q = pa.derive_parameters(100.0, 1e-5, 255, 4, clip=10.0, vocab_size=256_000)
  assert 2 * q.clip / q.temperature <= gumbel.max_exact_range(256_000) + 1e-9


def test_invisible_ink_formula_and_clip_rule():
  rho = pa.invisible_ink_rho(2.0, 1.0, 8, 100, "zero_out")
  assert rho == pytest.approx(100 * 2.0 ** 2 / (2 * 8 ** 2 * 1.0 ** 2))
  assert pa.invisible_ink_rho(2.0, 1.0, 8, 100, "zero_out",
                              docs_per_batch=3) == pytest.approx(3 * rho)
  c = pa.derive_invisible_ink_clip(10.0, 1e-6, 8, 100, 1.1, "zero_out")
  eps = pa.zcdp_epsilon(pa.invisible_ink_rho(c, 1.1, 8, 100, "zero_out"),
                        1e-6)
  assert eps == pytest.approx(10.0, rel=1e-6) and eps <= 10.0
  # add/remove (our batching) charges replace-one: C halves at equal eps.
  c2 = pa.derive_invisible_ink_clip(10.0, 1e-6, 8, 100, 1.1, "add_remove")
  assert c2 == pytest.approx(c / 2)


def test_median_cost_is_the_worst_case():
  rho = pa.median_rho(1.0, 2.0, 10)
  assert rho == pytest.approx(10 * (4 * 1.0 / 2.0) ** 2 / 8)
  assert rho == pytest.approx(
      10 * pa.median_worst_case_pure_epsilon(1.0, 2.0) ** 2 / 8)
  assert pa.median_rho(1.0, 2.0, 10, docs_per_batch=2) == pytest.approx(
      2 * rho)
  assert pa.median_rho(math.inf, 2.0, 10) == math.inf
  c = pa.derive_median_clip(10.0, 1e-5, 10, 2.0)
  assert pa.zcdp_epsilon(pa.median_rho(c, 2.0, 10), 1e-5) <= 10.0
  assert pa.zcdp_epsilon(pa.median_rho(c * 1.01, 2.0, 10), 1e-5) > 10.0


def test_parallel_composition_is_a_max():
  ev = pa.parallel_event([0.1, 0.4, 0.2])
  assert ev == dp_accounting.ZCDpEvent(0.4)
  assert pa.parallel_event([]) == dp_accounting.NoOpDpEvent()
  p = pa.PrivatePredictionParams(**REF)
  two = pa.private_prediction_rho(p, docs_per_batch=2)
  assert two == pytest.approx(2 * p.rho_per_document())
  # Cluster counts compose sequentially with the synthesis event.
  total = dp_accounting.ComposedDpEvent([dp_accounting.LaplaceDpEvent(5.0),
                                         pa.zcdp_event(0.17)])
  assert pa.rdp_epsilon(total, 1e-5) > pa.zcdp_epsilon(0.17, 1e-5)


def test_there_is_no_second_route_to_epsilon():
  # Costs are rho only; epsilon comes from composing the ledger's events.
  for name in ("PrivacyReport", "account_private_prediction",
               "account_invisible_ink", "account_median",
               "account_public_only"):
    assert not hasattr(pa, name), name
