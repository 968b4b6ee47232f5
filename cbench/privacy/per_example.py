"""Per-example gradients, norms, clip factors and the masked weighted sum.

The primitives of the DP-SGD query that both clipping methods share
(`cbench.privacy.clipping` for the vmap path, `cbench.privacy.ghost` for
ghost norms). Shapes: per-example trees have leading axis B; `is_padding`
is bool (B,). Norms are float32 global L2 norms over all leaves.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from cbench.privacy.params import combine_params

PyTree = Any
_TINY = 1e-30


def per_example_grads(loss_fn: Callable, params: PyTree, batch: PyTree
                      ) -> PyTree:
  """Gradients of loss_fn(params, x_i) for each row i; leaves (B, *shape)."""
  return jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))(params, batch)


def global_norms(per_example: PyTree) -> jax.Array:
  """Per-example L2 norm over all leaves, float32 (B,)."""
  leaves = jax.tree.leaves(per_example)
  b = leaves[0].shape[0]
  sq = sum(jnp.sum(jnp.square(x.astype(jnp.float32)).reshape(b, -1), axis=1)
           for x in leaves)
  return jnp.sqrt(sq)


def clip_factors(norms: jax.Array, is_padding: jax.Array, clip_norm: float
                 ) -> tuple[jax.Array, jax.Array]:
  """(factors, valid): min(1, C/norm) for valid rows, exactly 0 otherwise.

  clip_norm = inf gives factor 1 (no clipping; non-private use only).
  """
  valid = jnp.isfinite(norms) & jnp.logical_not(is_padding)
  f = jnp.minimum(1.0, clip_norm / jnp.maximum(norms, _TINY))
  return jnp.where(valid, f, 0.0).astype(jnp.float32), valid


def weighted_sum(per_example: PyTree, factors: jax.Array, valid: jax.Array
                 ) -> PyTree:
  """sum_i factors_i * x_i over axis 0 with invalid rows zeroed first."""
  def one(x):
    mask = valid.reshape((-1,) + (1,) * (x.ndim - 1))
    x = jnp.where(mask, x, jnp.zeros((), x.dtype))
    s = jnp.tensordot(factors.astype(x.dtype), x, axes=1,
                      precision=jax.lax.Precision.HIGHEST,
                      preferred_element_type=jnp.float32)
    return s.astype(x.dtype)
  return jax.tree.map(one, per_example)


def varying_axes(tree: PyTree) -> tuple:
  """Mesh axes over which `tree` varies inside `shard_map` (else ()).

  Values created inside shard_map (zeros, perturbations, scan carries) are
  device-invariant; differentiating w.r.t. them or mixing them with the
  batch needs `jax.lax.pcast(..., to='varying')` over these axes.
  """
  axes = set()
  for leaf in jax.tree.leaves(tree):
    mat = getattr(jax.typeof(leaf), "manual_axis_type", None)
    axes |= set(getattr(mat, "varying", ()) or ())
  return tuple(sorted(axes))


def with_frozen(loss_fn: Callable, frozen: Optional[PyTree]) -> Callable:
  """`loss_fn` of the trainable params with `frozen` combined in (or as is)."""
  if frozen is None:
    return loss_fn
  return lambda p, ex: loss_fn(combine_params(p, frozen), ex)


def clipped_per_example_grads(loss_fn: Callable, params: PyTree,
                              batch: PyTree, is_padding: jax.Array,
                              clip_norm: float, *, frozen=None
                              ) -> tuple[PyTree, jax.Array]:
  """Per-example clipped gradients (B, ...) and raw norms (diagnostics)."""
  g = per_example_grads(with_frozen(loss_fn, frozen), params, batch)
  norms = global_norms(g)
  f, valid = clip_factors(norms, is_padding, clip_norm)

  def one(x):
    shape = (-1,) + (1,) * (x.ndim - 1)
    x = jnp.where(valid.reshape(shape), x, jnp.zeros((), x.dtype))
    return x * f.reshape(shape).astype(x.dtype)
  return jax.tree.map(one, g), norms
