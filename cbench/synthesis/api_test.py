"""The synthesis entry point: request checks, config, paths, dispatch.

No model runs here: `synthesize` is checked up to the dispatch (the method's
`run` is replaced by a recorder) and `check_feasible` only does accounting.
"""

import json
import math

import pytest

from cbench._validate import CbenchError
from cbench.io import files
from cbench.synthesis import api
from cbench.synthesis import dp_finetune
from cbench.synthesis import private_prediction


def _cfg(**kw):
  defaults = dict(method="private_prediction", epsilon=10.0, num_docs=5)
  defaults.update(kw)
  return api.SynthesisConfig(**defaults)


class _Recorder:
  """Stands in for a method's `run` / `check_feasible`; records its calls."""

  def __init__(self, result=None):
    self.calls = []
    self.result = result

  def __call__(self, *args):
    self.calls.append(args)
    return self.result


# check_request -------------------------------------------------------------


def test_methods_are_the_documented_ones():
  assert set(api.METHODS) == {"public_only", "private_prediction",
                              "invisible_ink", "cluster_median", "dp_finetune",
                              "private_evolution"}


@pytest.mark.parametrize("method", ["public_only", "private_prediction",
                                    "invisible_ink", "cluster_median",
                                    "dp_finetune"])
def test_check_request_accepts_every_method(method):
  assert api.check_request(_cfg(method=method)) is None


def test_check_request_rejects_an_unknown_method():
  with pytest.raises(CbenchError, match=r"Unknown method='dp_sgd'; expected "
                     r"one of \['public_only'"):
    api.check_request(_cfg(method="dp_sgd"))


@pytest.mark.parametrize("epsilon", [0.0, -1.0, -math.inf, math.nan, None])
def test_check_request_rejects_a_bad_epsilon(epsilon):
  with pytest.raises(CbenchError, match=rf"Expected epsilon={epsilon} > 0"):
    api.check_request(_cfg(epsilon=epsilon))


@pytest.mark.parametrize("epsilon", [math.inf, 1e-12, 0.5, 8])
def test_check_request_accepts_positive_epsilon_and_inf(epsilon):
  assert api.check_request(_cfg(epsilon=epsilon)) is None


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, 1.5, math.nan])
def test_check_request_rejects_delta_outside_the_open_unit_interval(delta):
  with pytest.raises(CbenchError, match=rf"Expected 0 < delta={delta} < 1"):
    api.check_request(_cfg(delta=delta))


@pytest.mark.parametrize("delta", [None, 1e-9, 0.5, 0.999])
def test_check_request_accepts_delta_inside(delta):
  assert api.check_request(_cfg(delta=delta)) is None


@pytest.mark.parametrize("num_docs", [0, -3, 2.5, 10.0, "10", None])
def test_check_request_rejects_a_bad_num_docs(num_docs):
  with pytest.raises(CbenchError, match=r"Expected num_docs="):
    api.check_request(_cfg(num_docs=num_docs))


def test_check_request_names_the_first_bad_field():
  bad = _cfg(method="nope", epsilon=-1.0, delta=2.0, num_docs=0)
  with pytest.raises(CbenchError, match="method"):
    api.check_request(bad)
  with pytest.raises(CbenchError, match="delta"):
    api.check_request(_cfg(delta=2.0, num_docs=0))


# config and paths ----------------------------------------------------------


def test_default_delta_is_a_tenth_of_one_over_n():
  assert api.default_delta(10) == pytest.approx(0.01)
  assert api.default_delta(1000) == pytest.approx(1e-4)
  assert api.default_delta(0) == pytest.approx(0.1)  # At least one record.
  for n in (1, 7, 12345):
    assert api.default_delta(n) < 1.0 / n
    assert 0 < api.default_delta(n) < 1
    api.check_request(_cfg(delta=api.default_delta(n)))


def test_to_dict_writes_inf_as_a_string():
  cfg = _cfg(method="dp_finetune", epsilon=math.inf, delta=1e-6, num_docs=3,
             seed=4, options=(("steps", 5), ("clip_norm", 0.5)))
  d = cfg.to_dict()
  assert d == {"method": "dp_finetune", "epsilon": "inf", "delta": 1e-6,
               "num_docs": 3, "seed": 4,
               "options": (("steps", 5), ("clip_norm", 0.5))}
  # Strict JSON (no Infinity) can hold it.
  assert json.loads(files.dumps_record(d))["epsilon"] == "inf"
  finite = _cfg(epsilon=2.5).to_dict()
  assert finite["epsilon"] == 2.5 and finite["delta"] is None
  assert finite["method"] == "private_prediction" and finite["options"] == ()


def test_option_reads_the_options_with_a_default():
  cfg = _cfg(options=(("steps", 5), ("clip_norm", 0.5)))
  assert cfg.option("steps", 1) == 5
  assert cfg.option("clip_norm", 1.0) == 0.5
  assert cfg.option("missing", "dflt") == "dflt"


def test_ledger_path():
  assert api.ledger_path("synth.jsonl") == "synth.ledger.jsonl"
  assert api.ledger_path("/w/cells/x/synth.jsonl") == (
      "/w/cells/x/synth.ledger.jsonl")
  assert api.ledger_path("a.b.jsonl") == "a.b.ledger.jsonl"


# synthesize ----------------------------------------------------------------


def test_synthesize_refuses_an_out_path_not_ending_in_jsonl(tmp_path,
                                                            monkeypatch):
  run = _Recorder()
  monkeypatch.setattr(api, "_resolve", lambda method: run)
  for out in ("synth.json", "synth.jsonl.tmp", str(tmp_path / "out")):
    with pytest.raises(CbenchError, match=r"Expected --out=.* to end in "
                       r"\.jsonl"):
      api.synthesize(str(tmp_path), "base", _cfg(), out)
  assert run.calls == []


def test_synthesize_refuses_a_missing_release_dir(tmp_path, monkeypatch):
  run = _Recorder()
  monkeypatch.setattr(api, "_resolve", lambda method: run)
  missing = str(tmp_path / "no_release")
  with pytest.raises(CbenchError,
                     match=r"Release directory not found: .*no_release"):
    api.synthesize(missing, "base", _cfg(), str(tmp_path / "s.jsonl"))
  not_a_dir = tmp_path / "file"
  not_a_dir.write_text("x")
  with pytest.raises(CbenchError, match="Release directory not found"):
    api.synthesize(str(not_a_dir), "base", _cfg(), str(tmp_path / "s.jsonl"))
  assert run.calls == []
  assert not (tmp_path / "s.jsonl").exists()


def test_synthesize_checks_the_request_first(tmp_path, monkeypatch):
  run = _Recorder()
  monkeypatch.setattr(api, "_resolve", lambda method: run)
  with pytest.raises(CbenchError, match="epsilon"):
    api.synthesize(str(tmp_path / "missing"), "base", _cfg(epsilon=0.0),
                   "bad.txt")
  assert run.calls == []


def test_synthesize_dispatches_to_the_method(tmp_path, monkeypatch):
  summary = {"method": "dp_finetune", "epsilon": 1.0, "delta": 1e-5,
             "num_docs": 5}
  run = _Recorder(summary)
  resolved = []

  def resolve(method):
    resolved.append(method)
    return run
  monkeypatch.setattr(api, "_resolve", resolve)
  cfg = _cfg(method="dp_finetune", epsilon=1.0)
  out = str(tmp_path / "synth.jsonl")
  assert api.synthesize(str(tmp_path), "base_dir", cfg, out) is summary
  assert resolved == ["dp_finetune"]
  assert run.calls == [(str(tmp_path), "base_dir", cfg, out)]


def test_resolve_finds_the_run_function_of_each_method():
  assert api._resolve("dp_finetune") is dp_finetune.run
  for m in ("public_only", "private_prediction", "invisible_ink",
            "cluster_median"):
    assert api._resolve(m) is private_prediction.run


# check_feasible ------------------------------------------------------------


def test_check_feasible_calls_the_method_modules_check(monkeypatch):
  check = _Recorder()
  monkeypatch.setattr(dp_finetune, "check_feasible", check)
  cfg = _cfg(method="dp_finetune", epsilon=1e-9)
  api.check_feasible(cfg, 10)
  assert check.calls == [(cfg, 10)]
  # The request is validated before the method's check.
  with pytest.raises(CbenchError, match="num_docs"):
    api.check_feasible(_cfg(method="dp_finetune", num_docs=0), 10)
  assert len(check.calls) == 1


def test_check_feasible_without_a_module_check_only_validates(monkeypatch):
  monkeypatch.delattr(dp_finetune, "check_feasible")
  api.check_feasible(_cfg(method="dp_finetune", epsilon=1e-9), 10)
  with pytest.raises(CbenchError, match="delta"):
    api.check_feasible(_cfg(method="dp_finetune", delta=1.0), 10)


def test_check_feasible_of_an_unavailable_method_module(monkeypatch):
  monkeypatch.setitem(api._METHODS, "ghost", "cbench.synthesis.no_such:run")
  monkeypatch.setattr(api, "METHODS", api.METHODS + ("ghost",))
  with pytest.raises(CbenchError, match="method=ghost is not available"):
    api.check_feasible(_cfg(method="ghost"), 10)


def test_dp_finetune_at_a_tiny_epsilon_on_ten_records_is_infeasible():
  with pytest.raises(CbenchError, match=r"batch_size=.* exceeds the 10 "
                     r"private records"):
    api.check_feasible(_cfg(method="dp_finetune", epsilon=1e-9), 10)
  # The same cell without the privacy cost (a small batch, ε = ∞) is fine.
  api.check_feasible(_cfg(method="dp_finetune", epsilon=math.inf,
                          options=(("batch_size", 4),)), 10)


def test_private_prediction_at_a_tiny_epsilon_is_infeasible():
  with pytest.raises(CbenchError, match=r"Infeasible: method="
                     r"private_prediction cannot reach epsilon=1e-09"):
    api.check_feasible(_cfg(method="private_prediction", epsilon=1e-9), 10)
