"""Typed options: `coerce` for each documented type and `override` of configs.

`coerce` turns flag strings into the type of a default value or annotation;
`override` replaces one (possibly nested) field of a frozen dataclass config.
Every bad value must raise `CbenchError` naming the option.
"""

import dataclasses
import math
import typing
from typing import Any

import numpy as np
import pytest

from cbench import options
from cbench._validate import CbenchError


@dataclasses.dataclass(frozen=True)
class Inner:
  lr: float = 1e-3
  clip: float | None = 1.0
  tag: str = "a"

  def __post_init__(self):
    if not self.lr > 0:
      raise ValueError(f"lr={self.lr} must be > 0")


@dataclasses.dataclass(frozen=True)
class Outer:
  steps: int = 10
  flag: bool = False
  sizes: tuple[int, ...] = (16, 32)
  inner: Inner = Inner()
  extra: Any = None

  def __post_init__(self):
    if self.steps <= 0:
      raise ValueError(f"steps={self.steps} must be positive")


@dataclasses.dataclass(frozen=True)
class Unresolvable:
  count: "NoSuchType" = 3  # noqa: F821  (get_type_hints fails: uses the value)


# coerce --------------------------------------------------------------------


@pytest.mark.parametrize("value,expected", [
    ("true", True), ("TRUE", True), ("True", True), ("1", True),
    ("false", False), ("False", False), ("0", False),
    (True, True), (False, False), (1, True), (0, False), (np.int64(1), True),
])
def test_coerce_bool(value, expected):
  out = options.coerce("flag", value, bool)
  assert out is expected
  assert options.coerce("flag", value, False) is expected  # A default value.


@pytest.mark.parametrize("value", ["yes", "t", "", "2", 1.5, None])
def test_coerce_bool_rejects_other_values_naming_the_option(value):
  with pytest.raises(CbenchError, match="option my_flag="):
    options.coerce("my_flag", value, bool)


@pytest.mark.parametrize("value,expected", [
    ("3", 3), ("-7", -7), ("3.0", 3), (3, 3), (3.0, 3), (np.int32(5), 5),
    ("1e3", 1000),
])
def test_coerce_int(value, expected):
  out = options.coerce("steps", value, int)
  assert out == expected and type(out) is int
  assert options.coerce("steps", value, 0) == expected


@pytest.mark.parametrize("value", ["3.5", 3.5, "abc", "", True, "nan"])
def test_coerce_int_rejects_inexact_values_naming_the_option(value):
  with pytest.raises(CbenchError, match="steps"):
    options.coerce("steps", value, int)


def test_coerce_int_rejects_inf_with_a_named_error():
  with pytest.raises(CbenchError, match="steps"):
    options.coerce("steps", "inf", int)


def test_coerce_int_keeps_large_integers_exact():
  assert options.coerce("seed", str(2**53 + 1), int) == 2**53 + 1


@pytest.mark.parametrize("value,expected", [
    ("0.5", 0.5), ("1e-3", 1e-3), ("inf", math.inf), ("-inf", -math.inf),
    ("INF", math.inf), (2, 2.0), ("7", 7.0),
])
def test_coerce_float(value, expected):
  out = options.coerce("lr", value, float)
  assert out == expected and type(out) is float
  assert options.coerce("lr", value, 1.0) == expected


def test_coerce_float_nan_and_bad_values():
  assert math.isnan(options.coerce("lr", "nan", float))
  with pytest.raises(CbenchError, match=r"Bad option lr='fast'"):
    options.coerce("lr", "fast", float)
  with pytest.raises(CbenchError, match="lr"):
    options.coerce("lr", None, float)


def test_coerce_str():
  assert options.coerce("name", "abc", str) == "abc"
  assert options.coerce("name", "1,2", "default") == "1,2"
  with pytest.raises(CbenchError, match="Expected a string option name"):
    options.coerce("name", 3, str)


def test_coerce_tuples_from_comma_separated_strings():
  assert options.coerce("sizes", "1,2", (16, 32)) == (1, 2)
  assert options.coerce("sizes", " 4 , 5 ,", (16,)) == (4, 5)
  assert options.coerce("sizes", "1", ()) == (1,)  # Empty default: ints.
  assert options.coerce("eps", "1,10,inf", (1.0,)) == (1.0, 10.0, math.inf)
  assert options.coerce("eps", [1, "2"], tuple[float, ...]) == (1.0, 2.0)
  assert options.coerce("pair", "3,x", tuple[int, str]) == (3, "x")
  out = options.coerce("sizes", "1,2", tuple[int, ...])
  assert out == (1, 2) and all(type(x) is int for x in out)
  with pytest.raises(CbenchError, match=r"Expected 2 comma-separated items "
                     r"in option pair='1,2,3'"):
    options.coerce("pair", "1,2,3", tuple[int, str])
  with pytest.raises(CbenchError, match="sizes"):
    options.coerce("sizes", "1,2.5", (16,))


@pytest.mark.parametrize("like", [float | None, typing.Optional[float]])
def test_coerce_optional(like):
  assert options.coerce("clip", "none", like) is None
  assert options.coerce("clip", "NULL", like) is None
  assert options.coerce("clip", None, like) is None
  assert options.coerce("clip", "2.5", like) == 2.5
  assert options.coerce("clip", "inf", like) == math.inf
  with pytest.raises(CbenchError, match="clip"):
    options.coerce("clip", "big", like)


def test_coerce_optional_int_and_unsupported_unions():
  assert options.coerce("n", "none", int | None) is None
  assert options.coerce("n", "4", int | None) == 4
  with pytest.raises(CbenchError, match="n"):
    options.coerce("n", "4.5", int | None)
  with pytest.raises(CbenchError, match="Option n has type .* cannot set"):
    options.coerce("n", "4", int | str)
  with pytest.raises(CbenchError, match="Option xs has type .* cannot set"):
    options.coerce("xs", "4", list[int])


def test_coerce_passes_values_through_for_none_and_any():
  obj = object()
  assert options.coerce("x", obj, None) is obj
  assert options.coerce("x", "none", Any) == "none"


# override ------------------------------------------------------------------


def test_override_a_top_level_field_returns_a_new_config():
  cfg = Outer()
  out = options.override(cfg, "steps=5")
  assert out.steps == 5 and type(out.steps) is int
  assert cfg.steps == 10  # The input is unchanged.
  assert out == dataclasses.replace(cfg, steps=5)
  assert options.override(cfg, " flag = TRUE ").flag is True
  assert options.override(cfg, "sizes=1,2,3").sizes == (1, 2, 3)
  assert options.override(cfg, "extra=anything").extra == "anything"


def test_override_a_nested_field():
  cfg = Outer(steps=3)
  out = options.override(cfg, "inner.lr=0.5")
  assert out.inner.lr == 0.5
  assert out.inner.clip == 1.0 and out.inner.tag == "a" and out.steps == 3
  assert cfg.inner == Inner()  # The input is unchanged.
  assert options.override(cfg, "inner.clip=none").inner.clip is None
  assert options.override(cfg, "inner.clip=inf").inner.clip == math.inf


def test_override_unknown_field_lists_the_known_ones():
  with pytest.raises(CbenchError) as e:
    options.override(Outer(), "stpes=5")
  msg = str(e.value)
  assert "unknown field 'stpes'" in msg
  assert "Outer has ['steps', 'flag', 'sizes', 'inner', 'extra']" in msg
  with pytest.raises(CbenchError,
                     match=r"unknown field 'rate'; Inner has \['lr', 'clip', "
                     r"'tag'\]"):
    options.override(Outer(), "inner.rate=1")


def test_override_cannot_set_a_nested_config_or_walk_into_a_value():
  with pytest.raises(CbenchError,
                     match="inner is a config; set one of its fields"):
    options.override(Outer(), "inner=3")
  with pytest.raises(CbenchError,
                     match=r"--override=steps\.x: x is not inside a config"):
    options.override(Outer(), "steps.x=1")


def test_override_reruns_post_init_validation():
  with pytest.raises(CbenchError, match=r"--override=steps: steps=0 must be "
                     r"positive"):
    options.override(Outer(), "steps=0")
  with pytest.raises(CbenchError, match=r"--override=inner\.lr: lr=-1\.0 "
                     r"must be > 0"):
    options.override(Outer(), "inner.lr=-1")


def test_override_rejects_bad_syntax_and_bad_values():
  for bad in ("steps", "=5", " =5"):
    with pytest.raises(CbenchError, match="Expected --override=FIELD=VALUE"):
      options.override(Outer(), bad)
  with pytest.raises(CbenchError, match="steps"):
    options.override(Outer(), "steps=2.5")
  with pytest.raises(CbenchError, match="flag"):
    options.override(Outer(), "flag=maybe")
  with pytest.raises(CbenchError, match="not inside a config"):
    options.override({"steps": 1}, "steps=2")


def test_override_falls_back_to_the_value_type_for_unresolvable_hints():
  out = options.override(Unresolvable(), "count=7")
  assert out.count == 7 and type(out.count) is int
  with pytest.raises(CbenchError, match="count"):
    options.override(Unresolvable(), "count=seven")


def test_apply_overrides_applies_in_order():
  cfg = Outer()
  out = options.apply_overrides(cfg, ["steps=3", "inner.tag=b", "steps=4"])
  assert (out.steps, out.inner.tag) == (4, "b")
  assert options.apply_overrides(cfg, []) is cfg
