"""Named validation errors raised at API boundaries.

Every user-facing problem (bad flag, malformed file, impossible budget) raises
`CbenchError` (a `ValueError`) whose message names the offending field or
file, so a binary can print it and exit without a traceback.
"""

from __future__ import annotations

import math
from typing import Any, Iterable


class CbenchError(ValueError):
  """A problem with user input: a flag, a file or a configuration value."""


def check(condition: bool, message: str) -> None:
  if not condition:
    raise CbenchError(message)


def positive(name: str, value: float) -> None:
  check(value is not None and value > 0, f"Expected {name}={value} > 0.")


def non_negative(name: str, value: float) -> None:
  check(value is not None and value >= 0, f"Expected {name}={value} >= 0.")


def finite(name: str, value: float) -> None:
  check(value is not None and math.isfinite(value),
        f"Expected {name}={value} to be finite.")


def in_range(name: str, value: float, lo: float, hi: float) -> None:
  check(lo <= value <= hi, f"Expected {lo} <= {name}={value} <= {hi}.")


def one_of(name: str, value: Any, choices: Iterable[Any]) -> None:
  choices = list(choices)
  check(value in choices,
        f"Unknown {name}={value!r}; expected one of {choices}.")
