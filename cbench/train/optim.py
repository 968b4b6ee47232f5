"""The standardized optimizer recipe of the harness.

AdamW (b1 0.9, b2 0.995, weight decay 0.1 on matrices only), linear warmup over
the first 10% of steps, cosine decay to 0 (ContinuousBench harness recipe).
"""

from __future__ import annotations

import dataclasses

import jax
import optax


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
  peak_learning_rate: float = 1e-3
  warmup_fraction: float = 0.1
  weight_decay: float = 0.1
  b1: float = 0.9
  b2: float = 0.995
  grad_clip_norm: float | None = 1.0  # Global-norm clip (non-private runs).


def learning_rate_schedule(config: OptimizerConfig, total_steps: int) -> optax.Schedule:
  warmup = max(1, int(round(config.warmup_fraction * total_steps)))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=config.peak_learning_rate,
      warmup_steps=warmup, decay_steps=max(total_steps, warmup + 1),
      end_value=0.0)


def _decay_mask(params):
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
  """AdamW with the harness schedule; optional global-norm clipping first."""
  adamw = optax.adamw(learning_rate_schedule(config, total_steps),
                      b1=config.b1, b2=config.b2,
                      weight_decay=config.weight_decay, mask=_decay_mask)
  if config.grad_clip_norm is None:
    return adamw
  return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), adamw)
