"""run_erm_limits writes its four outputs; claims are checked, not asserted."""

import copy
import json
import os

import pytest

from cbench._validate import CbenchError
from cbench.provenance import mean_estimation
from cbench.provenance import pac
from cbench.provenance import report
from cbench.testing import fixtures

_TINY = report.ErmLimitsConfig(
    mean=mean_estimation.MeanConfig(
        dim=2, samples_per_generation=4, generations=30, trials=1000,
        alphas=(0.0, 0.75), regime_generations=(1_000, 100_000)),
    pac=pac.PacConfig(domain_size=20, target=10, samples_per_generation=10,
                      generations=40, trials=200, alphas=(0.25, 0.8)),
    seed=fixtures.stat_seed(3))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("erm_limits"))
  return out, report.run_erm_limits(_TINY, out)


def test_writes_json_markdown_and_two_pngs(tiny_run):
  out, summary = tiny_run
  for name in (report.JSON_NAME, report.MARKDOWN_NAME, report.MEAN_PNG,
               report.PAC_PNG):
    assert summary["paths"][name] == os.path.join(out, name)
  for name in (report.MEAN_PNG, report.PAC_PNG):
    with open(os.path.join(out, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(os.path.join(out, report.JSON_NAME), encoding="utf-8") as f:
    result = json.load(f)
  assert result["config"]["seed"] == _TINY.seed
  assert set(result["claims"]) == set(report.PAPER_CLAIMS)
  assert len(result["mean"]["curves"]["0.75"]["erm"]["mc_mse"]) == 30
  with open(os.path.join(out, report.MARKDOWN_NAME), encoding="utf-8") as f:
    md = f.read()
  for heading in ("### Mean estimation", "### ERM's regime change",
                  "### PAC thresholds", "### Claims"):
    assert heading in md
  for claim in report.PAPER_CLAIMS.values():
    assert claim in md


def test_tiny_run_supports_the_robust_claims(tiny_run):
  out, summary = tiny_run
  with open(os.path.join(out, report.JSON_NAME), encoding="utf-8") as f:
    claims = json.load(f)["claims"]
  assert claims["mean_phase_transition"]["holds"]
  assert claims["pac_erm_stalls"]["holds"]
  assert claims["pac_non_erm_learns"]["holds"]
  assert 0.44 <= summary["alpha_star"] <= 0.52
  assert summary["mean_ratio_last"]["0.75"] > 1.05   # exact: 1.27
  last = summary["pac_last_error"]["0.8"]
  assert last["reweighted"] < last["erm"]


def test_claims_fail_when_the_numbers_say_so(tiny_run):
  out, _ = tiny_run
  with open(os.path.join(out, report.JSON_NAME), encoding="utf-8") as f:
    result = json.load(f)
  mean, pac_res = copy.deepcopy(result["mean"]), copy.deepcopy(result["pac"])
  # Swap ERM and weighted at α = 0.75: weighting now loses.
  row = mean["curves"]["0.75"]
  row["erm"], row["weighted"] = row["weighted"], row["erm"]
  # ERM reaches zero error at α = 0.8: no stall.
  pac_res["curves"]["0.8"]["erm"]["mean"][-1] = 0.0
  pac_res["curves"]["0.8"]["erm"]["sem"][-1] = 0.0
  mean["regime"]["fits"][-1]["alpha_star"] = 0.3
  claims = report.claims(mean, pac_res)
  assert not claims["mean_weighting_wins"]["holds"]
  assert not claims["pac_erm_stalls"]["holds"]
  assert not claims["mean_phase_transition"]["holds"]


def test_bad_configs_raise(tmp_path):
  with pytest.raises(CbenchError, match="seed"):
    report.run_erm_limits(report.ErmLimitsConfig(seed=-1), str(tmp_path))
  bad = report.ErmLimitsConfig(
      mean=mean_estimation.MeanConfig(samples_per_generation=3))
  with pytest.raises(CbenchError, match="integer"):
    report.run_erm_limits(bad, str(tmp_path))
  with pytest.raises(CbenchError, match="target"):
    report.ErmLimitsConfig(pac=pac.PacConfig(target=0)).validate()
  assert not os.listdir(tmp_path)   # nothing written before validation
