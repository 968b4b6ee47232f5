"""The run_benchmark binary's flag parsing: per-method ε grids, named errors."""

import math
import os
import subprocess
import sys

import pytest

from cbench._validate import CbenchError
from experiments import run_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The flags fail before the release is read.
RELEASE = os.path.join(ROOT, "testdata", "no-such-release")


def test_method_epsilons_parse():
  assert run_benchmark._parse_method_epsilons(["dp_finetune=10,inf", "private_prediction=1"]) == (
      ("dp_finetune", (10.0, math.inf)), ("private_prediction", (1.0,)))


@pytest.mark.parametrize("value, message", [
    ("dp_finetune", "is not METHOD=EPS"),
    ("=10", "is not METHOD=EPS"),
    ("dp_finetune=ten", "Bad option --method_epsilons=dp_finetune='ten'"),
])
def test_bad_method_epsilons_are_named(value, message):
  with pytest.raises(CbenchError, match=message):
    run_benchmark._parse_method_epsilons([value])


@pytest.mark.parametrize("flags, message", [
    (["--methods="], "--methods is empty"),
    (["--epsilons="], "--epsilons is empty"),
    (["--methods=public_only", "--epsilons=-1"], "Expected epsilon=-1.0 > 0"),
    (["--methods=dp_finetune", "--epsilons=0"], "Expected epsilon=0.0 > 0"),
])
def test_one_epsilon_rule_for_the_grid(flags, message, tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.run_benchmark",
       f"--release={RELEASE}", f"--workdir={tmp_path / 'w'}", *flags],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and message in last, last
  assert not os.path.exists(tmp_path / "w" / "cells")
