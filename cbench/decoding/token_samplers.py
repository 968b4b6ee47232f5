"""Non-private token samplers: greedy and temperature.

Both implement `cbench.decoding.sampler_protocol.Sampler` for
``group_size == 1``: with larger groups they read row 0 of each group. They
never stop a stream (``stop`` is all False) and carry no state (``()``).

Convenience: ``sampler.next_tokens(logits [B, V], key)`` (no state argument)
returns just the ``[B]`` int32 tokens.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from cbench import _validate


def _row0(logits: jax.Array) -> jax.Array:
  return logits[:, 0] if logits.ndim == 3 else logits


@dataclasses.dataclass(frozen=True)
class Greedy:
  """Argmax of each stream's logits (ties: lowest id)."""

  def init_state(self, num_groups: int, key: jax.Array) -> Any:
    del num_groups, key
    return ()

  def next_tokens(self, logits: jax.Array, key: jax.Array, state: Any = None):
    """Protocol call with `state`; plain ``[B, V] -> [B]`` call without."""
    del key
    tokens = jnp.argmax(_row0(logits), axis=-1).astype(jnp.int32)
    if state is None:
      return tokens
    return tokens, jnp.zeros(tokens.shape, jnp.bool_), state


@dataclasses.dataclass(frozen=True)
class Temperature:
  """Samples from ``softmax(logits / temperature)``; temperature > 0."""

  temperature: float = 1.0

  def __post_init__(self):
    _validate.positive("temperature", self.temperature)
    _validate.finite("temperature", self.temperature)

  def init_state(self, num_groups: int, key: jax.Array) -> Any:
    del num_groups, key
    return ()

  def next_tokens(self, logits: jax.Array, key: jax.Array, state: Any = None):
    """Protocol call with `state`; plain ``[B, V] -> [B]`` call without."""
    scaled = _row0(logits).astype(jnp.float32) / self.temperature
    tokens = jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)
    if state is None:
      return tokens
    return tokens, jnp.zeros(tokens.shape, jnp.bool_), state
