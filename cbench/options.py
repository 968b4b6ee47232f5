"""The one parser for typed options: flag strings -> typed config values.

`coerce(name, value, like)` turns a flag string (or a Python value) into the
type of `like`, which is either a default value (``0``, ``1.0``, ``True``,
``"x"``, ``(16, 32)``) or a type annotation (``int``, ``float | None``,
``tuple[float, ...]``); `override(config, "a.b=value")` returns a frozen
dataclass config with one (possibly nested) field replaced by a coerced
value. Synthesis-method options and ``--override`` flags of the binaries
both go through here, so a value means the same thing everywhere:

* bool: ``true``/``false``/``1``/``0`` (any case), or a bool/int value;
* int: an exact integer (``"3"``, ``3.0``; not ``"3.5"``);
* float: any float, ``inf``/``-inf`` included;
* str: a string;
* tuple: comma-separated items of the element type (``"1,10,inf"``);
* ``X | None``: ``none``/``null`` (any case) is None, else an ``X``.

Every bad value raises `CbenchError` naming the option and the value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import numpy as np

from cbench._validate import CbenchError, check

_NONE = ("none", "null")


def _parse_bool(name: str, value: Any) -> bool:
  if isinstance(value, str):
    check(value.lower() in ("true", "false", "1", "0"),
          f"Expected option {name}={value!r} to be true or false.")
    return value.lower() in ("true", "1")
  check(isinstance(value, (bool, int, np.integer)),
        f"Expected option {name}={value!r} to be true or false.")
  return bool(value)


def _parse_int(name: str, value: Any) -> int:
  check(not isinstance(value, bool),
        f"Expected an integer option {name}={value!r}.")
  if isinstance(value, str):
    try:
      return int(value.strip())  # Exact, however large.
    except ValueError:
      value = float(value)  # "3.0" is 3; "3.5" and "inf" are refused below.
  check(not isinstance(value, float) or value.is_integer(),
        f"Expected an integer option {name}={value}.")
  return int(value)


def _items(value: Any) -> list:
  if isinstance(value, str):
    return [x.strip() for x in value.split(",") if x.strip()]
  return list(value)


def _coerce_type(name: str, value: Any, annotation: Any) -> Any:
  origin = typing.get_origin(annotation)
  args = typing.get_args(annotation)
  if origin in (typing.Union, types.UnionType):
    if type(None) in args and (value is None or (
        isinstance(value, str) and value.lower() in _NONE)):
      return None
    rest = [a for a in args if a is not type(None)]
    check(len(rest) == 1,
          f"Option {name} has type {annotation}, which --override cannot set.")
    return _coerce_type(name, value, rest[0])
  if origin is tuple:
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(_coerce_type(name, x, args[0]) for x in _items(value))
    items = _items(value)
    check(len(items) == len(args),
          f"Expected {len(args)} comma-separated items in option "
          f"{name}={value!r}.")
    return tuple(_coerce_type(name, x, a) for x, a in zip(items, args))
  if annotation is bool:
    return _parse_bool(name, value)
  if annotation is int:
    return _parse_int(name, value)
  if annotation is float:
    return float(value)
  if annotation is str:
    check(isinstance(value, str), f"Expected a string option {name}.")
    return value
  if annotation is Any:
    return value
  raise CbenchError(f"Option {name} has type {annotation}, which "
                    f"--override cannot set.")


def coerce(name: str, value: Any, like: Any) -> Any:
  """`value` as the type of `like` (a default value or a type annotation).

  A default value stands for its own type (a tuple default for a tuple of
  ints, the type of its first item if it has one); ``None`` as `like`
  passes `value` through.

  Raises:
    CbenchError naming the option when the value does not fit.
  """
  if like is None:
    return value
  if not isinstance(like, type) and typing.get_origin(like) is None and (
      not isinstance(like, types.UnionType)):
    if isinstance(like, tuple):
      item = type(like[0]) if like else int
      like = tuple[item, ...]
    else:
      like = type(like)
  try:
    return _coerce_type(name, value, like)
  except (TypeError, ValueError) as e:
    raise CbenchError(f"Bad option {name}={value!r}: {e}") from e


def _field_types(cls) -> dict[str, Any]:
  try:
    return typing.get_type_hints(cls)
  except (NameError, TypeError):  # An unresolvable annotation: use values.
    return {}


def override(config: Any, assignment: str) -> Any:
  """`config` (a frozen dataclass) with ``"a.b.c=value"`` applied.

  The path walks nested dataclass fields; the value is coerced to the
  field's annotated type (`coerce`). Returns a new config (the input is
  unchanged); dataclass validation (``__post_init__``) runs again.

  Raises:
    CbenchError: no '=', an unknown field (the message lists the known
      ones), or a value that does not fit the field's type.
  """
  path, sep, text = assignment.partition("=")
  path = path.strip()
  check(bool(sep) and bool(path),
        f"Expected --override=FIELD=VALUE, got {assignment!r}.")
  return _replace(config, path.split("."), text.strip(), path)


def _replace(node: Any, parts: list[str], text: str, full: str) -> Any:
  check(dataclasses.is_dataclass(node) and not isinstance(node, type),
        f"--override={full}: {'.'.join(parts)} is not inside a config.")
  names = [f.name for f in dataclasses.fields(node)]
  head = parts[0]
  check(head in names, f"--override={full}: unknown field {head!r}; "
                       f"{type(node).__name__} has {names}.")
  current = getattr(node, head)
  if len(parts) > 1:
    value = _replace(current, parts[1:], text, full)
  else:
    check(not dataclasses.is_dataclass(current),
          f"--override={full}: {head} is a config; set one of its fields.")
    like = _field_types(type(node)).get(head, current)
    value = coerce(full, text, like)
  try:
    return dataclasses.replace(node, **{head: value})
  except (TypeError, ValueError) as e:
    raise CbenchError(f"--override={full}: {e}") from e


def apply_overrides(config: Any, assignments) -> Any:
  """`override` for each of `assignments`, in order."""
  for a in assignments:
    config = override(config, a)
  return config
