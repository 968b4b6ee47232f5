"""Every registered synthesis method keeps the one contract
(`cbench/synthesis/common.py`), and no method copies the shared scaffolding."""

import ast
import dataclasses
import glob
import math
import os

import pytest

from cbench._validate import CbenchError
from cbench.synthesis import api
from cbench.synthesis import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = ("jsonable", "config_hash", "bind_workdir")
# The run scaffolding, also written once (checked among the methods).
RUN_SHARED = ("ledger_path", "run_files", "private_records",
              "release_binding", "open_run", "require_charges",
              "write_documents", "summary")


@pytest.mark.parametrize("method", api.METHODS)
def test_method_has_the_contract(method):
  mod = api.method_module(method)
  for name in ("Options", "parse_options", "plan", "check_feasible", "run"):
    assert callable(getattr(mod, name, None)), (method, name)
  opts = mod.Options
  assert dataclasses.is_dataclass(opts)
  assert opts.__dataclass_params__.frozen
  # One options parser: an unknown option is refused by name, with the
  # known ones listed.
  cfg = api.SynthesisConfig(method=method, epsilon=1.0, num_docs=2,
                            options=(("no_such_option", 1),))
  with pytest.raises(CbenchError, match="no_such_option.*known"):
    mod.parse_options(cfg)
  # The plan refuses an impossible target before any IO (public_only spends
  # nothing whatever it is asked).
  tiny = api.SynthesisConfig(method=method, epsilon=1e-9, num_docs=2)
  if method != "public_only":
    with pytest.raises(CbenchError):
      api.check_feasible(tiny, 1000)
  with pytest.raises(CbenchError):
    api.check_feasible(api.SynthesisConfig(method=method, epsilon=-1.0,
                                           num_docs=2), 1000)
  api.check_feasible(api.SynthesisConfig(method=method, epsilon=math.inf,
                                         num_docs=2), 1000)


def test_no_method_copies_the_shared_scaffolding():
  copies = []
  for path in glob.glob(os.path.join(ROOT, "cbench", "**", "*.py"),
                        recursive=True):
    if path.endswith("_test.py") or path.endswith(
        os.path.join("synthesis", "common.py")):
      continue
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in tree.body:
      names = SHARED + (RUN_SHARED if os.sep + "synthesis" + os.sep in path
                        else ())
      if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in names:
        copies.append(f"{os.path.relpath(path, ROOT)}: {node.name}")
  assert not copies, copies


def test_every_method_opens_its_ledger_through_the_shared_run():
  # One route to a run's ledger (`common.open_run`: the work-directory
  # binding, resume and refusal of another run's files), not one per method.
  direct = []
  for path in (glob.glob(os.path.join(ROOT, "cbench", "synthesis", "*.py"))
               + glob.glob(os.path.join(ROOT, "cbench", "audit", "*.py"))
               + glob.glob(os.path.join(ROOT, "cbench", "images", "*.py"))):
    if path.endswith(("_test.py", os.path.join("synthesis", "common.py"))):
      continue
    if "Ledger.open(" in open(path, encoding="utf-8").read():
      direct.append(os.path.relpath(path, ROOT))
  assert not direct, direct


def test_the_summary_takes_epsilon_from_the_ledger(tmp_path):
  # A run's summary names its files, and its epsilon is the one given (the
  # ledger's), never recomputed from the plan.
  run = common.run_files(str(tmp_path / "synth.jsonl"))
  out = common.summary(method="m", epsilon=math.inf, target_epsilon=1.0,
                       delta=1e-6, relation="add_remove", num_docs=0,
                       start=0.0, run=run)
  assert out["epsilon"] == "inf" and out["target_epsilon"] == 1.0
  assert out["ledger"].endswith("synth.ledger.jsonl")
  (tmp_path / "synth.jsonl").write_text("{}\n")
  with pytest.raises(CbenchError, match="without its ledger"):
    common.run_files(str(tmp_path / "synth.jsonl"))


def test_list_methods_names_every_option():
  described = api.describe_methods()
  assert set(described) == set(api.METHODS)
  assert ("iterations", 4) in described["private_evolution"]
  assert ("steps", 200) in described["dp_finetune"]
