"""Split parameters into a trainable part (DP applies) and a frozen part.

Parameters are nested dicts (flax `params`). `partition_params` returns two
nested dicts holding disjoint subsets of the leaves; `combine_params` merges
them back. DP-SGD clips, noises and updates only the trainable part (LoRA
adapters or selected subtrees); the frozen part is public or pretrained and
never sees gradients, so it needs no noise.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Union

from flax import traverse_util

from cbench._validate import CbenchError

Predicate = Union[str, Callable[[str, Any], bool]]


_flatten = traverse_util.flatten_dict
_unflatten = traverse_util.unflatten_dict


def partition_params(params: Mapping, trainable: Predicate
                     ) -> tuple[dict, dict]:
  """Splits `params` into (trainable, frozen) nested dicts.

  Args:
    params: nested dict of arrays.
    trainable: a regex searched in the '/'-joined leaf path (e.g. 'lora'),
      or a callable (path: str, leaf) -> bool.

  Raises:
    CbenchError: if nothing is trainable.
  """
  if isinstance(trainable, str):
    pattern = re.compile(trainable)
    pred = lambda path, leaf: bool(pattern.search(path))
  else:
    pred = trainable
  flat = _flatten(params)
  train = {p: v for p, v in flat.items() if pred("/".join(p), v)}
  if not train:
    raise CbenchError(f"trainable={trainable!r} selects no parameter.")
  frozen = {p: v for p, v in flat.items() if p not in train}
  return _unflatten(train), _unflatten(frozen)


def combine_params(trainable: Mapping, frozen: Mapping | None) -> dict:
  """Inverse of `partition_params` (raises on overlapping leaves)."""
  if not frozen:
    return dict(trainable)
  a, b = _flatten(trainable), _flatten(frozen)
  both = set(a) & set(b)
  if both:
    raise CbenchError(f"Parameters both trainable and frozen: {sorted(both)}")
  return _unflatten({**b, **a})
