"""Gemma 3 decoder (flax.linen) behind the `Transformer` interface.

Same entry points, parameter layout conventions, logical axis names, KV
cache and ghost-clipping instrumentation as `cbench.models.transformer`
(``__call__``, ``extend``, ``mean_hidden``; call them by name, e.g.
``method="extend"``). Differences from the 'cbench' block, following Gemma 3:

* qk-norm: RMSNorm over head_dim on every query and key head, before RoPE
  (``attn/q_norm/scale``, ``attn/k_norm/scale``: ``[head_dim]``, ('norm',));
* post-norms: RMSNorm on the attention and MLP outputs before each residual
  add (``post_attn_norm``, ``post_mlp_norm``);
* MLP ``down(gelu_tanh(gate(x)) * up(x))``;
* local/global layers: layer i is global iff
  ``config.is_global_layer(i)``; local layers use ``config.local_rope_base``
  and attend only to keys fewer than ``config.sliding_window`` positions
  back; global layers use ``config.rope_base`` with positions divided by
  ``config.rope_scale``;
* attention logits scaled by ``config.attn_scale``
  (``query_pre_attn_scalar ** -0.5``).

Every norm is ``x / rms(x) * (1 + scale)`` as in Gemma's own code (GGUF
files store ``1 + scale``; the loader subtracts 1). The embedding is scaled
by ``sqrt(d_model)`` in the compute dtype and tied to the output head; no
logit soft-capping (Gemma 3 has none).

DeepMind `gemma` / cbench orbax checkpoints load with
`cbench.models.gemma_checkpoint.load_checkpoint`.

The KV cache holds every position for local layers too (no ring buffer):
the window is applied as a mask, so decoding equals full recomputation at
any length up to the cache size.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cbench import _validate
from cbench.models import transformer as tf
from cbench.models.config import ModelConfig


def rope(x: jax.Array, positions: jax.Array, base: float,
         scale: float = 1.0) -> jax.Array:
  """Rotate-half RoPE at ``positions / scale``.

  Args:
    x: ``[B, T, heads, hd]``.
    positions: ``[B, T]`` int32.
    base: wavelength base.
    scale: linear position scaling (1: none).
  """
  hd = x.shape[-1]
  inv_freq = base ** (-jnp.arange(0, hd, 2, dtype=jnp.float32) / hd) / scale
  angles = positions.astype(jnp.float32)[..., None] * inv_freq
  sin = jnp.sin(angles)[:, :, None, :]
  cos = jnp.cos(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


def window_mask(positions: jax.Array, key_positions: jax.Array,
                window: int) -> jax.Array:
  """``[B, T, S]`` True where ``positions[b, t] - key_positions[b, s] <
  window`` (0 < window; keys in the future are masked elsewhere)."""
  return (positions[:, :, None] - key_positions[:, None, :]) < window


class Attention(nn.Module):
  """Grouped-query attention with qk-norm, per-layer RoPE and window."""

  config: ModelConfig
  layer: int

  @nn.compact
  def __call__(self, x, positions, mask, kv=None, slots=None):
    """Same contract as `cbench.models.transformer.Attention`."""
    c = self.config
    proj = lambda feats, axes, name, scale=1.0: tf.Projection(
        feats, axes, c.dtype, c.param_dtype, scale, name=name)
    norm = lambda name: tf.RMSNorm(c.norm_eps, c.dtype, c.param_dtype,
                                   name=name)
    q = proj((c.num_heads, c.head_dim), ("embed", "heads", "head_dim"), "q")(x)
    k = proj((c.num_kv_heads, c.head_dim), ("embed", "kv_heads", "head_dim"),
             "k")(x)
    v = proj((c.num_kv_heads, c.head_dim), ("embed", "kv_heads", "head_dim"),
             "v")(x)
    q = norm("q_norm")(q)
    k = norm("k_norm")(k)
    is_global = c.is_global_layer(self.layer)
    if is_global:
      base, scale = c.rope_base, c.rope_scale
    else:
      base, scale = c.local_rope_base, 1.0
    q = rope(q, positions, base, scale)
    k = rope(k, positions, base, scale)
    if kv is not None:
      k = tf._write(kv[0], slots, k)  # pylint: disable=protected-access
      v = tf._write(kv[1], slots, v)  # pylint: disable=protected-access
      kv = (k, v)
      key_pos = jnp.broadcast_to(jnp.arange(k.shape[1]),
                                 (k.shape[0], k.shape[1]))
    else:
      key_pos = positions
    if not is_global and c.sliding_window:
      mask = mask & window_mask(positions, key_pos, c.sliding_window)
    out = tf.grouped_attention(q, k, v, mask, c.attn_scale)
    y = proj((c.d_model,), ("heads", "head_dim", "embed"), "o",
             1.0 / (2 * c.num_layers))(out)
    return y, kv


class Mlp(nn.Module):
  """``down(gelu_tanh(gate(x)) * up(x))``."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x):
    c = self.config
    gate = tf.Projection((c.mlp_dim,), ("embed", "mlp"), c.dtype,
                         c.param_dtype, name="gate")(x)
    up = tf.Projection((c.mlp_dim,), ("embed", "mlp"), c.dtype, c.param_dtype,
                       name="up")(x)
    return tf.Projection((c.d_model,), ("mlp", "embed"), c.dtype,
                         c.param_dtype, 1.0 / (2 * c.num_layers),
                         name="down")(jax.nn.gelu(gate, approximate=True) * up)


class Block(nn.Module):
  """Gemma 3 block: pre- and post-norms around attention and MLP."""

  config: ModelConfig
  layer: int

  @nn.compact
  def __call__(self, x, positions, mask, kv=None, slots=None):
    c = self.config
    norm = lambda name: tf.RMSNorm(c.norm_eps, c.dtype, c.param_dtype,
                                   name=name)
    h, kv = Attention(c, self.layer, name="attn")(
        norm("attn_norm")(x), positions, mask, kv, slots)
    x = x + norm("post_attn_norm")(h)
    h = Mlp(c, name="mlp")(norm("mlp_norm")(x))
    x = x + norm("post_mlp_norm")(h)
    return x, kv


class Gemma3(tf.Transformer):
  """The Gemma 3 LM; entry points as `cbench.models.transformer.Transformer`.

  Parameters (besides the `Transformer` ones, same names and axes):
  ``blocks_i/attn/{q_norm,k_norm}/scale [head_dim]`` and
  ``blocks_i/{post_attn_norm,post_mlp_norm}/scale [d_model]``.
  """

  def setup(self):
    c = self.config
    self.embed = tf.Embed(c.vocab_size, c.d_model, c.dtype, c.param_dtype)
    block = nn.remat(Block) if c.remat else Block
    self.blocks = [block(c, i) for i in range(c.num_layers)]
    self.final_norm = tf.RMSNorm(c.norm_eps, c.dtype, c.param_dtype)


# Named Gemma 3 text configurations (vocab 262144). 270M is what the GGUF
# package ships; the others are for orbax checkpoints on accelerators.
_GEMMA3 = {
    "gemma3_270m": dict(d_model=640, num_layers=18, num_heads=4,
                        num_kv_heads=1, head_dim=256, mlp_dim=2048,
                        sliding_window=512, query_pre_attn_scalar=256),
    "gemma3_1b": dict(d_model=1152, num_layers=26, num_heads=4,
                      num_kv_heads=1, head_dim=256, mlp_dim=6912,
                      sliding_window=512, query_pre_attn_scalar=256),
    "gemma3_4b": dict(d_model=2560, num_layers=34, num_heads=8,
                      num_kv_heads=4, head_dim=256, mlp_dim=10240,
                      sliding_window=1024, rope_scale=8.0,
                      query_pre_attn_scalar=256),
    "gemma3_12b": dict(d_model=3840, num_layers=48, num_heads=16,
                       num_kv_heads=8, head_dim=256, mlp_dim=15360,
                       sliding_window=1024, rope_scale=8.0,
                       query_pre_attn_scalar=256),
    "gemma3_27b": dict(d_model=5376, num_layers=62, num_heads=32,
                       num_kv_heads=16, head_dim=128, mlp_dim=21504,
                       sliding_window=1024, rope_scale=8.0,
                       query_pre_attn_scalar=168),
}
GEMMA3_NAMES = tuple(_GEMMA3)
GEMMA3_VOCAB = 262_144


def gemma3_config(name: str, **overrides) -> ModelConfig:
  """A named Gemma 3 text config (see `GEMMA3_NAMES`).

  Defaults: vocab 262144, RMS eps 1e-6, RoPE base 1e6 (global layers) and
  1e4 (local), every 6th layer global, max_len 32768, float32.
  """
  _validate.one_of("model", name, GEMMA3_NAMES)
  fields = dict(name=name, arch="gemma3", vocab_size=GEMMA3_VOCAB,
                rope_base=1_000_000.0, local_rope_base=10_000.0,
                global_every=6, norm_eps=1e-6, max_len=32_768)
  fields.update(_GEMMA3[name])
  fields.update(overrides)
  return ModelConfig(**fields)
