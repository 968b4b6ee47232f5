"""The run_benchmark binary's flag parsing: per-method ε grids, named errors."""

import math

import pytest

from cbench._validate import CbenchError
from experiments import run_benchmark


def test_method_epsilons_parse():
  assert run_benchmark._parse_method_epsilons(["dp_finetune=10,inf", "private_prediction=1"]) == (
      ("dp_finetune", (10.0, math.inf)), ("private_prediction", (1.0,)))


@pytest.mark.parametrize("value, message", [
    ("dp_finetune", "is not METHOD=EPS"),
    ("=10", "is not METHOD=EPS"),
    ("dp_finetune=ten", "--method_epsilons=dp_finetune: 'ten' is not a number"),
])
def test_bad_method_epsilons_are_named(value, message):
  with pytest.raises(CbenchError, match=message):
    run_benchmark._parse_method_epsilons([value])
