"""What every synthesis method shares: options parsing, canonical JSON,
config hashes and work-directory binding. Written once; methods import it.

A method module implements (see README "Where to add things"):

  METHOD (or METHODS)      its name(s) in `api.METHODS`
  Options                  a frozen dataclass of public knobs with defaults
  parse_options(config)    `parse_options` below plus its own checks
  plan(config, n)          every parameter derived from the target (ε, δ);
                           raises CbenchError before any IO if infeasible
  check_feasible(config, n)
  run(release_dir, base_dir, config, out_path) -> summary
                           writes documents and a write-ahead ledger; ε in
                           the summary comes from the ledger's events

`tests/synthesis_contract_test.py` checks every registered method for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from typing import Any, Callable, Mapping, Optional

import numpy as np

from cbench import options as options_lib
from cbench._validate import check
from cbench.io import files


def jsonable(x: Any) -> Any:
  """inf/nan floats -> strings, tuples -> lists (canonical JSON)."""
  if isinstance(x, dict):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, (float, np.floating)):
    x = float(x)
    if math.isinf(x):
      return "inf" if x > 0 else "-inf"
    if math.isnan(x):
      return "nan"
  return x


def config_hash(obj: Mapping) -> str:
  """sha256 of the canonical (sorted, compact) JSON of `obj`."""
  blob = json.dumps(obj, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(blob.encode()).hexdigest()


def bind_workdir(workdir: str, binding_hash: str, method: str) -> None:
  """Binds `workdir` to one run (``run.json``); another run is refused."""
  path = os.path.join(workdir, "run.json")
  if os.path.exists(path):
    bound = files.read_json(path).get("config_hash")
    check(bound == binding_hash,
          f"{workdir} belongs to another {method} run (config hash "
          f"{bound} != {binding_hash}); remove it or use another --out.")
    return
  files.write_json(path, {"config_hash": binding_hash})


def parse_options(options_cls: type, items, method: str,
                  special: Optional[Mapping[str, Callable[[Any], Any]]] = None
                  ) -> dict[str, Any]:
  """Typed values of ``--option NAME=VALUE`` items for `options_cls`.

  Each value is coerced to the type of the field's default by the one
  options parser (`cbench.options.coerce`); `special` maps a field to its
  own coercion (e.g. a value that may also be "auto"). An unknown name is
  refused with the known ones listed. Returns the given fields only (the
  dataclass fills the rest); range checks stay with the method.
  """
  fields = {f.name: f for f in dataclasses.fields(options_cls)}
  special = special or {}
  values = {}
  for name, value in items:
    check(name in fields, f"Unknown synthesis option {name!r} for method "
          f"{method}; known: {sorted(fields)}.")
    if name in special:
      values[name] = special[name](value)
    else:
      values[name] = options_lib.coerce(name, value, fields[name].default)
  return values


def describe_options(options_cls: type) -> list[tuple[str, Any, str]]:
  """(name, default, type name) of every option, for ``--list_methods``."""
  return [(f.name, f.default, type(f.default).__name__)
          for f in dataclasses.fields(options_cls)]
