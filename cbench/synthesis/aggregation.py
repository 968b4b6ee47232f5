"""Aggregation of private next-token logits (pure jnp, jit-friendly).

Shapes: ``priv`` is ``[..., s, V]`` (the s private rows of a group), ``pub``
is ``[..., V]`` (the public row), ``row_mask`` is ``[..., s]`` bool or None
(None: every row holds a record). A masked row is a *null* row: whatever its
logits (NaN included), it contributes the zero vector, never its values.

Privacy-relevant conventions (see `cbench.privacy.pp_accounting`):

* Recentred clipping (Amin et al. 2024, Eq. 1):
  ``clip_c(z)_i = max(-c, z_i - max_j z_j + c)`` lies in [-c, c] and its
  maximum is exactly c; lossless when the logit range is <= 2c. ``c = inf``
  only recentres (the non-private mode).
* The mean is the SUM over the s rows divided by the public constant s
  (never by the realised number of records), so one row moves every
  coordinate by at most c/s (row <-> null row) or 2c/s (row <-> row).
* The coordinate-wise median is the *lower* median, the order statistic
  k = ceil(s/2) (1-based), a single order statistic for every s. Changing
  one row moves it within [x_(k-1), x_(k+1)] (x_(0) = -c, x_(s+1) = c), so
  the per-coordinate down/up gaps bound its local sensitivity.
* InvisibleInk DClip: ``phi = pub + (1/B) sum_i clip(priv_i - pub, -C, C)``;
  the public row itself would contribute 0, so a null row equals the
  public prompt. The Top-k+ set ``{y: pub(y) >= l_k - 2C/B}`` uses PUBLIC
  logits only.

Nothing here computes a top-k, top-p or min-p from private logits.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp

from cbench._validate import CbenchError


def _check_rows(priv: jax.Array, batch_size: int) -> None:
  if priv.shape[-2] != batch_size:
    raise CbenchError(
        f"Expected {batch_size} private rows (batch_size); got logits of "
        f"shape {priv.shape}.")


def _mask(priv: jax.Array, row_mask: Optional[jax.Array]) -> jax.Array:
  if row_mask is None:
    return jnp.ones(priv.shape[:-1], jnp.bool_)
  return row_mask.astype(jnp.bool_)


def recentred_clip(z: jax.Array, clip: float) -> jax.Array:
  """``max(-c, z - max(z) + c)`` along the last axis; values in [-c, c]."""
  z = z - jnp.max(z, axis=-1, keepdims=True)
  if math.isinf(clip):
    return z
  return jnp.maximum(-clip, z + clip)


def clipped_mean(priv: jax.Array, clip: float, batch_size: int,
                 row_mask: Optional[jax.Array] = None) -> jax.Array:
  """``(1/s) * sum_i clip_c(priv_i)`` over real rows: ``[..., V]``.

  Args:
    priv: ``[..., s, V]`` float logits.
    clip: c > 0 (inf: recentre only).
    batch_size: s, the public divisor; must equal ``priv.shape[-2]``.
    row_mask: ``[..., s]``; False rows contribute 0.
  """
  _check_rows(priv, batch_size)
  x = recentred_clip(priv, clip)
  x = jnp.where(_mask(priv, row_mask)[..., None], x, 0.0)
  return jnp.sum(x, axis=-2) / batch_size


def clipped_median(priv: jax.Array, clip: float,
                   row_mask: Optional[jax.Array] = None
                   ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Coordinate-wise lower median of clipped logits, with its gaps.

  Null rows are zero vectors and take part in the order statistics.

  Returns:
    ``(median, down, up)``, each ``[..., V]``: the median m = x_(k),
    ``down = x_(k) - x_(k-1)`` and ``up = x_(k+1) - x_(k)`` with the
    boundary values -c and c when k - 1 = 0 or k + 1 > s.
  """
  s = priv.shape[-2]
  x = recentred_clip(priv, clip)
  x = jnp.where(_mask(priv, row_mask)[..., None], x, 0.0)
  xs = jnp.sort(x, axis=-2)
  k = (s + 1) // 2                       # 1-based lower median
  med = xs[..., k - 1, :]
  lo = xs[..., k - 2, :] if k >= 2 else jnp.full_like(med, -clip)
  hi = xs[..., k, :] if k < s else jnp.full_like(med, clip)
  return med, med - lo, hi - med


def mean_softmax(priv: jax.Array, batch_size: int,
                 row_mask: Optional[jax.Array] = None) -> jax.Array:
  """``(1/s) * sum_i softmax(priv_i)`` over real rows: ``[..., V]``.

  Each term has L1 norm 1, so one row moves the result by at most 1/s
  (row <-> null) or 2/s (row <-> row) in L1. Not a distribution when rows
  are masked; that is intended (public divisor).
  """
  _check_rows(priv, batch_size)
  p = jax.nn.softmax(priv, axis=-1)
  p = jnp.where(_mask(priv, row_mask)[..., None], p, 0.0)
  return jnp.sum(p, axis=-2) / batch_size


def svt_distance(priv: jax.Array, pub: jax.Array, batch_size: int,
                 row_mask: Optional[jax.Array] = None) -> jax.Array:
  """``|| mean_softmax(priv) - softmax(pub) ||_1``: ``[...]``.

  The p-bar choice of the stoneboat reproduction of Amin et al. (mean of
  per-row distributions, public divisor s): its sensitivity is 1/s
  (row <-> null) whatever the logits, which is what the SVT accounting
  assumes. (Softmax of the clipped mean, the other reading, would have a
  sensitivity that depends on c.)
  """
  q = jax.nn.softmax(pub, axis=-1)
  return jnp.sum(jnp.abs(mean_softmax(priv, batch_size, row_mask) - q),
                 axis=-1)


def dclip_mean(priv: jax.Array, pub: jax.Array, clip: float,
               batch_size: int,
               row_mask: Optional[jax.Array] = None) -> jax.Array:
  """InvisibleInk DClip: ``pub + (1/B) sum_i clip(priv_i - pub, -C, C)``.

  Where ``pub`` is -inf the result is -inf (the public model rules the token
  out for everybody); elsewhere a -inf private logit clips to -C.
  """
  _check_rows(priv, batch_size)
  pub_b = pub[..., None, :]
  diff = jnp.where(jnp.isneginf(pub_b), 0.0, priv - pub_b)
  diff = jnp.clip(diff, -clip, clip)
  diff = jnp.where(_mask(priv, row_mask)[..., None], diff, 0.0)
  return pub + jnp.sum(diff, axis=-2) / batch_size


def topk_plus_mask(pub: jax.Array, top_k: int, clip: float,
                   batch_size: int) -> jax.Array:
  """InvisibleInk's Top-k+ set from PUBLIC logits: ``[..., V]`` bool.

  ``{y: pub(y) >= l_k - 2C/B}`` with l_k the k-th largest public logit.
  ``top_k <= 0`` or ``>= V`` keeps the whole vocabulary.
  """
  v = pub.shape[-1]
  if top_k <= 0 or top_k >= v:
    return jnp.ones(pub.shape, jnp.bool_)
  kth = jax.lax.top_k(pub, top_k)[0][..., top_k - 1]
  return pub >= (kth - 2.0 * clip / batch_size)[..., None]
