"""Llama-architecture decoder (SmolLM2 and kin) behind the `Transformer` API.

Llama blocks are the 'cbench' blocks (pre-norm RMSNorm, grouped-query
attention with rotate-half RoPE at ``config.rope_base``, SwiGLU MLP, no
biases, tied embedding head); the one difference is that token embeddings
are *not* scaled by ``sqrt(d_model)``. Parameters, logical axes, the KV
cache and the ghost-clipping instrumentation are those of
`cbench.models.transformer`.

Norm convention: cbench norms compute ``x / rms(x) * (1 + scale)``; a Llama
checkpoint's weight ``w`` (``x / rms(x) * w``) is stored as
``scale = w - 1``. Rotate-half RoPE matches Hugging Face checkpoints; GGUF
files permute the Q/K rows for interleaved RoPE and
`cbench.models.gguf_loader` undoes that permutation.
"""

from __future__ import annotations

import jax

from cbench import _validate
from cbench.models import transformer as tf
from cbench.models.config import ModelConfig


class Llama(tf.Transformer):
  """Llama LM: `Transformer` without the embedding scale."""

  def _embed(self, tokens: jax.Array) -> jax.Array:
    return self.embed(tokens)


_LLAMA = {
    "smollm2_135m": dict(vocab_size=49_152, d_model=576, num_layers=30,
                         num_heads=9, num_kv_heads=3, head_dim=64,
                         mlp_dim=1536, rope_base=100_000.0, norm_eps=1e-5,
                         max_len=8192),
}
LLAMA_NAMES = tuple(_LLAMA)


def llama_config(name: str, **overrides) -> ModelConfig:
  """A named Llama-architecture config (see `LLAMA_NAMES`)."""
  _validate.one_of("model", name, LLAMA_NAMES)
  fields = dict(name=name, arch="llama", **_LLAMA[name])
  fields.update(overrides)
  return ModelConfig(**fields)
