"""Sums of per-example clipped gradients (the DP-SGD query).

`clipped_grad_sum(loss_fn, params, batch, is_padding, clip_norm)` returns
  sum_i 1[valid_i] * min(1, C / ||g_i||) * g_i,  g_i = grad loss_fn(params, x_i)
where ||.|| is the global L2 norm over all leaves of example i's gradient and
valid_i = (not is_padding_i) and ||g_i|| finite. Padding rows and examples
with a NaN/inf gradient contribute exactly 0 (their rows are zeroed with
`where` before the reduction, so NaN never reaches the sum). The sum's L2
sensitivity is `sensitivity(C, relation)`: C (add/remove, zero-out) or 2C
(replace-one). An example whose squared norm overflows float32 counts as
non-finite and contributes 0 (still within the sensitivity).

Shapes: every leaf of `batch` has leading axis B; `is_padding` is bool (B,).
`loss_fn(params, example) -> scalar` sees ONE example (leaves without the B
axis); it must not mix examples (no batch statistics).

Methods:
  'vmap'   per-example grads with `jax.vmap(jax.grad(...))`, reduced with a
           tensordot (on XLA:CPU, (f * g).sum(0) is ~14x slower).
  'ghost'  per-layer norms from layer inputs and output grads, then one
           weighted reduction; `loss_fn` must be a `ghost.GhostLoss`.
`microbatch_size` scans over chunks of the logical batch (memory knob only:
the same sum up to float reassociation).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from cbench._validate import CbenchError, one_of
from cbench.privacy.params import combine_params
from cbench.privacy.relations import sensitivity  # re-exported

PyTree = Any
METHODS = ("vmap", "ghost")
_TINY = 1e-30

__all__ = ["METHODS", "sensitivity", "per_example_grads", "global_norms",
           "clip_factors", "weighted_sum", "clipped_per_example_grads",
           "clipped_grad_sum", "varying_axes"]


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


def _with_frozen(loss_fn: Callable, frozen: Optional[PyTree]) -> Callable:
  if frozen is None:
    return loss_fn
  return lambda p, ex: loss_fn(combine_params(p, frozen), ex)


def clipped_per_example_grads(loss_fn: Callable, params: PyTree,
                              batch: PyTree, is_padding: jax.Array,
                              clip_norm: float, *, frozen=None
                              ) -> tuple[PyTree, jax.Array]:
  """Per-example clipped gradients (B, ...) and raw norms (diagnostics)."""
  g = per_example_grads(_with_frozen(loss_fn, frozen), params, batch)
  norms = global_norms(g)
  f, valid = clip_factors(norms, is_padding, clip_norm)

  def one(x):
    shape = (-1,) + (1,) * (x.ndim - 1)
    x = jnp.where(valid.reshape(shape), x, jnp.zeros((), x.dtype))
    return x * f.reshape(shape).astype(x.dtype)
  return jax.tree.map(one, g), norms


def _vmap_chunk(loss_fn, params, batch, is_padding, clip_norm, frozen):
  g = per_example_grads(_with_frozen(loss_fn, frozen), params, batch)
  norms = global_norms(g)
  f, valid = clip_factors(norms, is_padding, clip_norm)
  return weighted_sum(g, f, valid), norms


def _ghost_chunk(loss_fn, params, batch, is_padding, clip_norm, frozen,
                 ghost_reduce):
  from cbench.privacy import ghost  # pylint: disable=g-import-not-at-top
  if not isinstance(loss_fn, ghost.GhostLoss):
    raise CbenchError("clipping method='ghost' needs a ghost.GhostLoss "
                      f"loss_fn, got {type(loss_fn).__name__}.")
  return ghost.ghost_clipped_grad_sum(loss_fn, params, batch, is_padding,
                                      clip_norm, frozen=frozen,
                                      reduce=ghost_reduce)


def clipped_grad_sum(loss_fn: Callable, params: PyTree, batch: PyTree,
                     is_padding: jax.Array, clip_norm: float,
                     method: str = "vmap",
                     microbatch_size: Optional[int] = None, *,
                     frozen: Optional[PyTree] = None,
                     ghost_reduce: str = "bookkeeping"
                     ) -> tuple[PyTree, jax.Array]:
  """Sum of per-example clipped gradients, and per-example norms.

  Args:
    loss_fn: (params, example) -> scalar loss of one example; for
      method='ghost' a `ghost.GhostLoss`.
    params: the parameters differentiated (the trainable part).
    batch: pytree, leaves with leading axis B.
    is_padding: bool (B,); padding rows contribute exactly 0.
    clip_norm: C > 0 (inf: no clipping, non-private use only).
    method: 'vmap' | 'ghost'.
    microbatch_size: None (one chunk) or a divisor of B; chunks are reduced
      in a `lax.scan`.
    frozen: parameters the loss sees but that get no gradient
      (`combine_params(params, frozen)`).
    ghost_reduce: 'bookkeeping' | 'backward' (see `ghost.py`).

  Returns:
    (grad_sum like params, norms float32 (B,)). `norms` are the UNCLIPPED
    per-example gradient norms (0 on padding rows): private data, never
    release them.
  """
  one_of("clipping method", method, METHODS)
  b = is_padding.shape[0]
  for leaf in jax.tree.leaves(batch):
    if leaf.shape[:1] != (b,):
      raise CbenchError(f"Batch leaf of shape {leaf.shape} does not have "
                        f"leading axis B={b} (is_padding).")
  if method == "vmap":
    chunk = lambda bt, pad: _vmap_chunk(loss_fn, params, bt, pad, clip_norm,
                                        frozen)
  else:
    chunk = lambda bt, pad: _ghost_chunk(loss_fn, params, bt, pad, clip_norm,
                                         frozen, ghost_reduce)
  if microbatch_size is None or microbatch_size == b:
    total, norms = chunk(batch, is_padding)
  else:
    m = int(microbatch_size)
    if m < 1 or b % m:
      raise CbenchError(f"microbatch_size={microbatch_size} must divide the "
                        f"batch size {b}.")
    split = lambda x: x.reshape((b // m, m) + x.shape[1:])
    mb, mpad = jax.tree.map(split, batch), split(is_padding)

    def body(acc, xs):
      s, n = chunk(*xs)
      acc = jax.tree.map(lambda a, y: a + y.astype(a.dtype), acc, s)
      return acc, n
    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    axes = varying_axes((mb, mpad))
    if axes:  # inside shard_map: the carry must vary like the chunk sums
      zeros = jax.lax.pcast(zeros, axes, to="varying")
    total, norms = jax.lax.scan(body, zeros, (mb, mpad))
    total = jax.tree.map(lambda t, p: t.astype(p.dtype), total, params)
    norms = norms.reshape(b)
  norms = jnp.where(is_padding, 0.0, norms)
  return total, norms
