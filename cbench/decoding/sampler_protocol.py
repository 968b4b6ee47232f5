"""The contract between the shared decoder and every token sampler.

The decoder (`cbench.decoding.decoder`) runs a batch of ``num_groups`` output
streams. Each stream is backed by ``group_size`` prompt rows that all receive
the same generated token (``group_size == 1`` for plain decoding; ``s + 1``
for private prediction: ``s`` private prompts plus one public prompt, the
public row last). At every step the decoder hands the sampler the next-token
logits of every row, shaped ``[num_groups, group_size, vocab]`` (float32),
and the sampler returns one token per group.

Samplers are frozen dataclasses (hashable, static under ``jax.jit``) with pure
methods; any per-stream state (a noisy threshold, a private-token count) lives
in a pytree that the decoder threads through its ``lax.while_loop``.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax

PyTree = Any


class Sampler(Protocol):
  """What the decoder needs of a sampler."""

  def init_state(self, num_groups: int, key: jax.Array) -> PyTree:
    """Per-stream state before the first generated token."""
    ...

  def next_tokens(
      self, logits: jax.Array, key: jax.Array, state: PyTree
  ) -> tuple[jax.Array, jax.Array, PyTree]:
    """Chooses the next token of every stream.

    Args:
      logits: ``[num_groups, group_size, vocab]`` float32 next-token logits.
      key: a fresh PRNG key for this step (the decoder folds in the step).
      state: the state returned by the previous call (or `init_state`).

    Returns:
      ``(tokens, stop, state)``: ``tokens`` int32 ``[num_groups]``; ``stop``
      bool ``[num_groups]`` set where the sampler ends the stream after this
      token (e.g. its private-token budget is spent); the new state.
    """
    ...
