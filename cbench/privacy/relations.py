"""Neighbouring relations and the sensitivity of a clipped sum.

A relation says which datasets are neighbours:

* ``add_remove``: D' = D plus or minus one record. A sum of per-record
  contributions clipped to L2 norm C moves by at most C.
* ``replace_one``: D' = D with one record replaced by another. The sum moves
  by at most 2C (one contribution of norm <= C leaves, another arrives).
* ``zero_out``: one record replaced by a null record that contributes 0
  (sensitivity C). Only `sensitivity` knows it; accounting supports the first
  two relations.

Noise multipliers in cbench are *relative to the sensitivity*: Gaussian noise
has std = sigma * sensitivity(C, relation). dp_accounting's events instead
take std / C and apply the relation themselves (REPLACE_ONE doubles the
distance), so `event_noise_multiplier` converts between the two.
"""

from __future__ import annotations

import math

import dp_accounting

from cbench._validate import CbenchError, one_of

RELATIONS = ("add_remove", "replace_one")
_SENSITIVITY_FACTOR = {"add_remove": 1.0, "replace_one": 2.0, "zero_out": 1.0}


def check_relation(relation: str, name: str = "relation") -> str:
  one_of(name, relation, RELATIONS)
  return relation


def sensitivity(clip_norm: float, relation: str) -> float:
  """L2 sensitivity of a sum of contributions each clipped to `clip_norm`.

  Args:
    clip_norm: C >= 0 (may be inf for an unclipped, non-private sum).
    relation: 'add_remove' | 'replace_one' | 'zero_out'.

  Returns:
    C for add/remove and zero-out, 2C for replace-one.
  """
  one_of("relation", relation, tuple(_SENSITIVITY_FACTOR))
  if clip_norm is None or not clip_norm >= 0:
    raise CbenchError(f"Expected clip_norm={clip_norm} >= 0.")
  return _SENSITIVITY_FACTOR[relation] * float(clip_norm)


def noise_std(noise_multiplier: float, clip_norm: float,
              relation: str) -> float:
  """Std of the Gaussian noise added to the clipped *sum*: sigma * sensitivity.

  sigma = 0 gives 0 (the non-private baseline) even when clip_norm is inf.
  """
  if noise_multiplier is None or not noise_multiplier >= 0:
    raise CbenchError(f"Expected noise_multiplier={noise_multiplier} >= 0.")
  if noise_multiplier == 0:
    return 0.0
  s = sensitivity(clip_norm, relation)
  if not math.isfinite(s):
    raise CbenchError(
        f"noise_multiplier={noise_multiplier} > 0 needs a finite clip_norm "
        f"(got {clip_norm}).")
  return noise_multiplier * s


def event_noise_multiplier(noise_multiplier: float, relation: str) -> float:
  """dp_accounting's noise multiplier (std / C) for cbench's sigma."""
  check_relation(relation)
  return noise_multiplier * _SENSITIVITY_FACTOR[relation]


def to_dp_accounting(relation: str) -> dp_accounting.NeighboringRelation:
  check_relation(relation)
  return {
      "add_remove": dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
      "replace_one": dp_accounting.NeighboringRelation.REPLACE_ONE,
  }[relation]
