"""Decoder-only transformer (flax.linen) with a functional KV cache.

Architecture: token embedding scaled by sqrt(d_model) -> ``num_layers``
pre-norm blocks (RMSNorm -> grouped-query attention with RoPE -> residual;
RMSNorm -> SwiGLU MLP -> residual) -> final RMSNorm -> tied output head
(``logits = h @ E^T``). No biases. Logits are float32; everything else is
computed in ``config.dtype`` with parameters stored in ``config.param_dtype``.

Every parameter carries logical axis names (`nn.with_logical_partitioning`):

| parameter                     | shape                | logical axes |
|-------------------------------|----------------------|--------------|
| embed/embedding               | [vocab, d]           | ('vocab', 'embed') |
| blocks_i/attn/{q}/kernel      | [d, heads, hd]       | ('embed', 'heads', 'head_dim') |
| blocks_i/attn/{k,v}/kernel    | [d, kv_heads, hd]    | ('embed', 'kv_heads', 'head_dim') |
| blocks_i/attn/o/kernel        | [heads, hd, d]       | ('heads', 'head_dim', 'embed') |
| blocks_i/mlp/{gate,up}/kernel | [d, mlp]             | ('embed', 'mlp') |
| blocks_i/mlp/down/kernel      | [mlp, d]             | ('mlp', 'embed') |
| .../{attn_norm,mlp_norm,final_norm}/scale | [d]      | ('norm',) |

Instrumentation for ghost-norm (book-keeping) clipping. Every parameterised
op is a small module that records its input with
``self.sow('intermediates', <inputs name>, x)`` and passes its output through
``self.perturb(<out name>, y)``. Both are no-ops in a plain
``apply({'params': p}, ...)``. With ``mutable=['intermediates']`` the inputs
come back; taking ``jax.grad`` with respect to a zero ``'perturbations'``
collection (created by ``init``) gives dLoss/d(output) of every op without
any weight gradient. Per op, with ``a`` the sown input and ``g`` the output
gradient of one example (``t`` runs over its tokens):

* `Projection` (``inputs``/``out``): ``y = a . W`` contracting the trailing
  ``len(kernel.shape) - len(out)`` axes of ``a`` with the leading axes of
  ``W``; per-example grad ``sum_t a_t (x) g_t``.
* `RMSNorm` (``inputs``/``out``): ``y = a * (1 + scale)`` where the sown ``a``
  is the already-normalised activation ``x / rms(x)``; grad ``sum_t a_t g_t``.
* `Embed` lookup (``inputs``/``out``): ``inputs`` are the int ids and ``out``
  is the raw row ``E[ids]`` (the sqrt(d_model) scale is applied outside the
  module); grad row ``v`` is ``sum_{t: id_t = v} g_t``.
* `Embed.attend` (``attend_inputs``/``attend_out``): ``logits = a . E^T``
  (float32 output); grad ``sum_t g_t (x) a_t``. The tied embedding gets the
  sum of the lookup and attend gradients.

Under ``config.remat`` the blocks are rematerialised; sow/perturb still work.

Two entry points share the same parameters:

* ``Transformer(config).apply({'params': p}, tokens, positions, segment_mask)``
  -> ``[B, T, vocab]`` float32 logits (training / scoring).
* ``Transformer(config).apply({'params': p}, tokens, positions, cache,
  valid=..., method=Transformer.extend)`` -> ``(logits, cache)``: the KV-cached
  path used by `cbench.decoding.decoder` (prefill with T > 1, decode with
  T = 1). Cache slot = token position.

``Transformer(config).apply({'params': p}, tokens, valid,
method=Transformer.mean_hidden)`` -> ``[B, d_model]``: final-norm states
averaged over each right-padded row's real tokens (a text embedding).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from cbench.models.config import ModelConfig

_NEG_INF = -1e30  # finite, so fully masked rows stay NaN-free


class KVCache(NamedTuple):
  """Per-layer keys/values indexed by token position (slot = position).

  Attributes:
    k: per layer, ``[batch, cache_len, num_kv_heads, head_dim]`` in
      ``config.dtype`` (RoPE already applied).
    v: per layer, same shape as ``k``.
    written: ``[batch, cache_len]`` bool, True where a slot holds a real
      token (padding tokens are never written).
  """

  k: tuple[jax.Array, ...]
  v: tuple[jax.Array, ...]
  written: jax.Array


def init_cache(config: ModelConfig, batch: int, cache_len: int) -> KVCache:
  """An empty cache for `batch` rows and positions ``0 .. cache_len - 1``."""
  shape = (batch, cache_len, config.num_kv_heads, config.head_dim)
  zeros = lambda: jnp.zeros(shape, config.compute_dtype)
  return KVCache(
      k=tuple(zeros() for _ in range(config.num_layers)),
      v=tuple(zeros() for _ in range(config.num_layers)),
      written=jnp.zeros((batch, cache_len), jnp.bool_))


def _dtype(name: str) -> jnp.dtype:
  return jnp.dtype(name)


class Projection(nn.Module):
  """``y = x . W``: contracts the trailing axes of x with W's leading axes.

  The kernel has shape ``x.shape[-n_in:] + features`` with
  ``n_in = len(axes) - len(features)``. Sows ``inputs`` (x) and perturbs
  ``out`` (y) for ghost clipping.

  Attributes:
    features: output feature shape.
    axes: logical axis names of the kernel (input axes, then output axes).
    init_scale: the kernel's variance is ``init_scale / fan_in``.
  """

  features: tuple[int, ...]
  axes: tuple[str, ...]
  dtype: str = "float32"
  param_dtype: str = "float32"
  init_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n_in = len(self.axes) - len(self.features)
    in_shape = x.shape[x.ndim - n_in:]
    init = nn.initializers.variance_scaling(
        self.init_scale, "fan_in", "truncated_normal",
        in_axis=tuple(range(n_in)),
        out_axis=tuple(range(n_in, len(self.axes))))
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(init, self.axes),
        tuple(in_shape) + tuple(self.features), _dtype(self.param_dtype))
    self.sow("intermediates", "inputs", x)
    dtype = _dtype(self.dtype)
    y = jax.lax.dot_general(
        x.astype(dtype), kernel.astype(dtype),
        ((tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in))), ((), ())))
    return self.perturb("out", y)


class RMSNorm(nn.Module):
  """``y = x / rms(x) * (1 + scale)``; scale starts at 0.

  Normalises in float32. Sows the normalised ``x / rms(x)`` as ``inputs``
  and perturbs ``out``.
  """

  eps: float = 1e-6
  dtype: str = "float32"
  param_dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param(
        "scale", nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)),
        (x.shape[-1],), _dtype(self.param_dtype))
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(
        jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
    normed = normed.astype(_dtype(self.dtype))
    self.sow("intermediates", "inputs", normed)
    y = normed * (1.0 + scale.astype(_dtype(self.dtype)))
    return self.perturb("out", y)


class Embed(nn.Module):
  """Tied embedding table ``E [vocab, d]``: lookup and output head.

  ``__call__(ids)`` returns the raw rows ``E[ids]`` (sows ``inputs`` = ids,
  perturbs ``out``). ``attend(h)`` returns float32 ``h . E^T`` (sows
  ``attend_inputs`` = h, perturbs ``attend_out``).
  """

  vocab_size: int
  features: int
  dtype: str = "float32"
  param_dtype: str = "float32"

  def setup(self):
    self.embedding = self.param(
        "embedding",
        nn.with_logical_partitioning(
            nn.initializers.normal(stddev=self.features ** -0.5),
            ("vocab", "embed")),
        (self.vocab_size, self.features), _dtype(self.param_dtype))

  def __call__(self, ids: jax.Array) -> jax.Array:
    self.sow("intermediates", "inputs", ids)
    y = jnp.take(self.embedding, ids, axis=0).astype(_dtype(self.dtype))
    return self.perturb("out", y)

  def attend(self, h: jax.Array) -> jax.Array:
    self.sow("intermediates", "attend_inputs", h)
    dtype = _dtype(self.dtype)
    logits = jnp.einsum("...d,vd->...v", h.astype(dtype),
                        self.embedding.astype(dtype),
                        preferred_element_type=jnp.float32)
    return self.perturb("attend_out", logits)


def apply_rope(x: jax.Array, positions: jax.Array, base: float) -> jax.Array:
  """Rotate-half RoPE. x: ``[B, T, heads, hd]``; positions: ``[B, T]``."""
  hd = x.shape[-1]
  inv_freq = base ** (-jnp.arange(0, hd, 2, dtype=jnp.float32) / hd)
  angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B,T,hd/2]
  sin = jnp.sin(angles)[:, :, None, :]
  cos = jnp.cos(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


def _write(buffer: jax.Array, slots: jax.Array, values: jax.Array) -> jax.Array:
  """buffer[b, slots[b, t]] = values[b, t]; out-of-range slots are dropped."""
  rows = jnp.arange(buffer.shape[0])[:, None]
  return buffer.at[rows, slots].set(values.astype(buffer.dtype), mode="drop")


def grouped_attention(q, k, v, mask, scale: float) -> jax.Array:
  """Grouped-query softmax attention (float32 scores).

  Args:
    q: ``[B, T, H, D]``; k, v: ``[B, S, K, D]`` with H a multiple of K.
    mask: ``[B, T, S]`` bool, True where a query may attend.
    scale: multiplier of q.k.

  Returns:
    ``[B, T, H, D]`` in v's dtype.
  """
  b, t, heads, head_dim = q.shape
  kv_heads = k.shape[2]
  q = q.reshape(b, t, kv_heads, heads // kv_heads, head_dim)
  scores = jnp.einsum("btkgd,bskd->bkgts", q, k,
                      preferred_element_type=jnp.float32)
  scores = scores * scale
  scores = jnp.where(mask[:, None, None], scores, _NEG_INF)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  out = jnp.einsum("bkgts,bskd->btkgd", probs, v)
  return out.reshape(b, t, heads, head_dim)


class Attention(nn.Module):
  """Grouped-query causal self-attention with RoPE."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x, positions, mask, kv=None, slots=None):
    """Attends; returns ``(y, kv)``.

    Args:
      x: ``[B, T, d]``.
      positions: ``[B, T]`` int32 RoPE positions.
      mask: ``[B, T, S]`` bool, True where query t may attend key s.
      kv: None (keys are this call's tokens, S = T) or ``(k, v)`` cache
        buffers ``[B, S, kv_heads, hd]`` that this call's keys are written
        into at `slots` before attending over all S slots.
      slots: ``[B, T]`` int32 cache slots (>= S: not written).
    """
    c = self.config
    proj = lambda feats, axes, name, scale=1.0: Projection(
        feats, axes, c.dtype, c.param_dtype, scale, name=name)
    q = proj((c.num_heads, c.head_dim), ("embed", "heads", "head_dim"), "q")(x)
    k = proj((c.num_kv_heads, c.head_dim), ("embed", "kv_heads", "head_dim"),
             "k")(x)
    v = proj((c.num_kv_heads, c.head_dim), ("embed", "kv_heads", "head_dim"),
             "v")(x)
    q = apply_rope(q, positions, c.rope_base)
    k = apply_rope(k, positions, c.rope_base)
    if kv is not None:
      k = _write(kv[0], slots, k)
      v = _write(kv[1], slots, v)
      kv = (k, v)
    out = grouped_attention(q, k, v, mask, 1.0 / math.sqrt(c.head_dim))
    y = proj((c.d_model,), ("heads", "head_dim", "embed"), "o",
             1.0 / (2 * c.num_layers))(out)
    return y, kv


class Mlp(nn.Module):
  """SwiGLU: ``down(silu(gate(x)) * up(x))``."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x):
    c = self.config
    gate = Projection((c.mlp_dim,), ("embed", "mlp"), c.dtype, c.param_dtype,
                      name="gate")(x)
    up = Projection((c.mlp_dim,), ("embed", "mlp"), c.dtype, c.param_dtype,
                    name="up")(x)
    return Projection((c.d_model,), ("mlp", "embed"), c.dtype, c.param_dtype,
                      1.0 / (2 * c.num_layers), name="down")(
                          jax.nn.silu(gate) * up)


class Block(nn.Module):
  """Pre-norm transformer block."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x, positions, mask, kv=None, slots=None):
    c = self.config
    norm = lambda name: RMSNorm(c.norm_eps, c.dtype, c.param_dtype, name=name)
    h, kv = Attention(c, name="attn")(norm("attn_norm")(x), positions, mask,
                                      kv, slots)
    x = x + h
    x = x + Mlp(c, name="mlp")(norm("mlp_norm")(x))
    return x, kv


class Transformer(nn.Module):
  """The decoder-only LM. See the module docstring for the API."""

  config: ModelConfig

  def setup(self):
    c = self.config
    self.embed = Embed(c.vocab_size, c.d_model, c.dtype, c.param_dtype)
    block = nn.remat(Block) if c.remat else Block
    self.blocks = [block(c) for _ in range(c.num_layers)]
    self.final_norm = RMSNorm(c.norm_eps, c.dtype, c.param_dtype)

  def _embed(self, tokens):
    return self.embed(tokens) * jnp.asarray(
        math.sqrt(self.config.d_model), _dtype(self.config.dtype))

  def __call__(self, tokens: jax.Array, positions: jax.Array | None = None,
               segment_mask: jax.Array | None = None) -> jax.Array:
    """Full-sequence forward.

    Args:
      tokens: ``[B, T]`` int32 ids.
      positions: ``[B, T]`` int32 RoPE positions; default ``arange(T)``.
      segment_mask: ``[B, T]`` or None (all tokens one segment). Token t
        attends to token s <= t (by index) iff both have the same nonzero
        value; 0 marks padding. A bool valid-token mask works (True = 1);
        int segment ids give packed sequences (then pass per-segment
        positions).

    Returns:
      ``[B, T, vocab]`` float32 logits.
    """
    b, t = tokens.shape
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    idx = jnp.arange(t)
    mask = jnp.broadcast_to(idx[:, None] >= idx[None, :], (b, t, t))
    if segment_mask is not None:
      seg = segment_mask.astype(jnp.int32)
      mask = mask & (seg[:, :, None] == seg[:, None, :]) & (
          seg[:, None, :] != 0)
    x = self._embed(tokens)
    for block in self.blocks:
      x, _ = block(x, positions, mask)
    return self.embed.attend(self.final_norm(x))

  def mean_hidden(self, tokens: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean of the final-norm hidden states over each row's real tokens.

    A text embedding from the LM itself (used to cluster records with a
    public model). Rows are RIGHT-padded: real tokens first, ``valid`` True
    on them; positions are ``arange(T)``.

    Args:
      tokens: ``[B, T]`` int32.
      valid: ``[B, T]`` bool; at least one True per row for a defined mean.

    Returns:
      ``[B, d_model]`` float32; rows with no valid token give zeros.
    """
    b, t = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    idx = jnp.arange(t)
    seg = valid.astype(jnp.int32)
    mask = (idx[:, None] >= idx[None, :])[None] & (
        seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] != 0)
    x = self._embed(tokens)
    for block in self.blocks:
      x, _ = block(x, positions, mask)
    h = self.final_norm(x).astype(jnp.float32)
    w = valid.astype(jnp.float32)[..., None]
    return jnp.sum(h * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)

  def extend(self, tokens: jax.Array, positions: jax.Array, cache: KVCache,
             valid: jax.Array | None = None, last_only: bool = False
             ) -> tuple[jax.Array, KVCache]:
    """KV-cached forward: writes this call's keys/values, attends the cache.

    Each valid token is written at cache slot ``positions[b, t]`` and
    attends to every written slot s with ``s <= positions[b, t]``. Use for
    prefill (left-padded prompts: ``valid`` False on padding, positions
    ``0 .. len - 1`` on the real tokens) and for one-token decode steps.

    Args:
      tokens: ``[B, T]`` int32.
      positions: ``[B, T]`` int32, < cache_len.
      cache: from `init_cache` or a previous call.
      valid: ``[B, T]`` bool or None (all valid). Invalid tokens are not
        written and their logits are meaningless.
      last_only: return only the logits of the last column ``[B, vocab]``.

    Returns:
      ``(logits, cache)``; logits ``[B, T, vocab]`` (or ``[B, vocab]``)
      float32.
    """
    cache_len = cache.written.shape[1]
    if valid is None:
      valid = jnp.ones(tokens.shape, jnp.bool_)
    slots = jnp.where(valid, positions, cache_len).astype(jnp.int32)
    written = _write(cache.written, slots, jnp.ones(tokens.shape, jnp.bool_))
    mask = written[:, None, :] & (
        jnp.arange(cache_len)[None, None, :] <= positions[:, :, None])
    x = self._embed(tokens)
    ks, vs = [], []
    for i, block in enumerate(self.blocks):
      x, (k, v) = block(x, positions, mask, (cache.k[i], cache.v[i]), slots)
      ks.append(k)
      vs.append(v)
    if last_only:
      x = x[:, -1]
    logits = self.embed.attend(self.final_norm(x))
    return logits, KVCache(tuple(ks), tuple(vs), written)


def cross_entropy_loss(logits: jax.Array, targets: jax.Array,
                       mask: jax.Array | None = None
                       ) -> tuple[jax.Array, jax.Array]:
  """Per-example mean token cross-entropy (nats).

  Uses `optax.softmax_cross_entropy_with_integer_labels` (much faster than
  log_softmax + take_along_axis on XLA:CPU).

  Args:
    logits: ``[B, T, V]`` (cast to float32).
    targets: ``[B, T]`` int32.
    mask: ``[B, T]`` weights (1 = counted) or None (all counted).

  Returns:
    ``(loss [B], count [B])``: mean loss over each example's counted tokens
    (0 where it has none) and the number of counted tokens, float32.
  """
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), targets)
  if mask is None:
    mask = jnp.ones(targets.shape, jnp.float32)
  mask = mask.astype(jnp.float32)
  count = jnp.sum(mask, axis=-1)
  loss = jnp.sum(ce * mask, axis=-1) / jnp.maximum(count, 1.0)
  return loss, count
