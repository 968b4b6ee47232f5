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
the same sum up to float reassociation). The per-example primitives (norms,
clip factors, the masked weighted sum) are in `cbench.privacy.per_example`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from cbench._validate import CbenchError, one_of
from cbench.privacy import ghost
from cbench.privacy.per_example import clip_factors
from cbench.privacy.per_example import global_norms
from cbench.privacy.per_example import per_example_grads
from cbench.privacy.per_example import varying_axes
from cbench.privacy.per_example import weighted_sum
from cbench.privacy.per_example import with_frozen
from cbench.privacy.relations import sensitivity  # re-exported

PyTree = Any
METHODS = ("vmap", "ghost")

__all__ = ["METHODS", "sensitivity", "clipped_grad_sum"]


def _vmap_chunk(loss_fn, params, batch, is_padding, clip_norm, frozen):
  g = per_example_grads(with_frozen(loss_fn, frozen), params, batch)
  norms = global_norms(g)
  f, valid = clip_factors(norms, is_padding, clip_norm)
  return weighted_sum(g, f, valid), norms


def _ghost_chunk(loss_fn, params, batch, is_padding, clip_norm, frozen,
                 ghost_reduce):
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
