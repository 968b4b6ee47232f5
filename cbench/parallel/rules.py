"""Logical axis rules: logical axis names -> mesh axes.

The model names every parameter axis (see `cbench.models.transformer`); this
short table maps those names to mesh axes (t5x's
``standard_logical_axis_rules`` style). A logical axis not in the table, or
a dimension the mesh axes do not divide, is replicated. Parameters born
sharded: `cbench.models.registry.init_params_sharded`.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec


PyTree = Any
Rules = Sequence[tuple[str, Any]]

DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("vocab", "model"),
    ("heads", "model"),
    ("kv_heads", "model"),
    ("mlp", "model"),
    ("head_dim", None),
    ("norm", None),
)


def _axis_size(mesh: Mesh, axes) -> int:
  if axes is None:
    return 1
  if isinstance(axes, str):
    axes = (axes,)
  size = 1
  for a in axes:
    size *= mesh.shape[a]
  return size


def _fit(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh
         ) -> PartitionSpec:
  """Replicates every dimension its mesh axes do not divide."""
  return PartitionSpec(*(
      axes if dim % _axis_size(mesh, axes) == 0 else None
      for axes, dim in zip(tuple(spec) + (None,) * len(shape), shape)))


def logical_to_sharding(logical: PyTree, shapes: PyTree, mesh: Mesh,
                        rules: Rules = DEFAULT_RULES) -> PyTree:
  """NamedShardings for a tree of logical PartitionSpecs and array shapes."""
  mesh_specs = nn.logical_to_mesh(logical, rules)
  return jax.tree.map(
      lambda spec, x: NamedSharding(mesh, _fit(spec, x.shape, mesh)),
      mesh_specs, shapes,
      is_leaf=lambda x: isinstance(x, PartitionSpec))


def batch_sharding(mesh: Mesh, ndim: int = 2,
                   rules: Rules = DEFAULT_RULES) -> NamedSharding:
  """Sharding of a ``[batch, ...]`` input: leading axis over 'batch'."""
  spec = nn.logical_to_mesh(
      PartitionSpec("batch", *([None] * (ndim - 1))), rules)
  return NamedSharding(mesh, spec)
