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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = ("jsonable", "config_hash", "bind_workdir")


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
      if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in SHARED:
        copies.append(f"{os.path.relpath(path, ROOT)}: {node.name}")
  assert not copies, copies


def test_list_methods_names_every_option():
  described = api.describe_methods()
  assert set(described) == set(api.METHODS)
  assert ("iterations", 4) in described["private_evolution"]
  assert ("steps", 200) in described["dp_finetune"]
