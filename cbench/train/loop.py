"""The one training loop: resume, step, metrics, checkpoints, hooks.

Every trainer in cbench (base-model pretraining, harness fine-tuning, DP-SGD
fine-tuning of a generator) runs through `run`. What differs between them is
the jitted `step_fn` and the `batch_fn`; bookkeeping such as the privacy
ledger plugs in as a hook.

Determinism contract: `batch_fn(step)` is a pure function of the step and the
step key is `fold_in(key, step)`, so a run killed at any point and resumed
from its last checkpoint replays exactly the steps it lost and ends with the
same parameters as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Callable, Mapping, Protocol, Sequence

import flax
import jax
import jax.numpy as jnp

from cbench.io import checkpoint as checkpoint_lib
from cbench.train import metrics_writer

PyTree = Any
log = logging.getLogger("cbench")


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: PyTree
  opt_state: PyTree


class Hook(Protocol):
  """Optional callbacks; implement any subset."""

  def before_step(self, step: int) -> None: ...
  def before_save(self, step: int) -> None: ...
  def after_step(self, step: int, metrics: Mapping[str, float] | None) -> None: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoopConfig:
  num_steps: int
  log_every: int = 50
  checkpoint_every: int = 200
  progress_seconds: float = 10.0
  name: str = "train"


def _call(hooks: Sequence[Any], method: str, *args) -> None:
  for h in hooks:
    fn = getattr(h, method, None)
    if fn is not None:
      fn(*args)


def run(
    state: TrainState,
    step_fn: Callable[[TrainState, PyTree, jax.Array], tuple[TrainState, PyTree]],
    batch_fn: Callable[[int], PyTree],
    *,
    config: LoopConfig,
    key: jax.Array,
    workdir: str,
    hooks: Sequence[Any] = (),
    stop_after: int | None = None,
) -> TrainState:
  """Trains from the latest checkpoint in `workdir/checkpoints` (or `state`).

  Args:
    state: the initial state (also the restore target: shapes and shardings).
    step_fn: jitted `(state, batch, key) -> (state, metrics)`; may donate state.
    batch_fn: `step -> batch` (device-ready pytree), pure in `step`.
    config: step count and cadences.
    key: base PRNG key; step `i` uses `fold_in(key, i)`.
    workdir: checkpoints and `metrics.jsonl` go here.
    hooks: objects with optional `before_step`, `before_save`, `after_step`.
    stop_after: stop (without finishing) after this many steps; for tests
      that simulate a crash.

  Returns:
    The final state; checkpointed at the last step.
  """
  ckpt = checkpoint_lib.Checkpointer(f"{workdir}/checkpoints")
  writer = metrics_writer.MetricsWriter(workdir)
  try:
    restored = ckpt.restore_latest(state)
    if restored is not None:
      state, latest = restored
      writer.forget_after(latest)  # Its later rows are replayed below.
      log.info("%s: resumed from step %d", config.name, latest)
    start = int(jax.device_get(state.step))
    progress = metrics_writer.Progress(config.num_steps, name=config.name,
                                       every_seconds=config.progress_seconds,
                                       start_step=start)
    pending = None  # Metrics of the last step, fetched lazily.
    executed = 0
    for step in range(start, config.num_steps):
      if stop_after is not None and executed >= stop_after:
        break
      _call(hooks, "before_step", step)
      state, metrics = step_fn(state, batch_fn(step), jax.random.fold_in(key, step))
      executed += 1
      done = step + 1
      fetched = None
      if done % config.log_every == 0 or done == config.num_steps:
        fetched = {k: float(v) for k, v in jax.device_get(metrics).items()}
        loss = fetched.get("loss")
        if loss is not None and not math.isfinite(loss):
          raise FloatingPointError(f"{config.name}: non-finite loss {loss} at step {done}.")
        writer.write(done, fetched)
        pending = fetched
      _call(hooks, "after_step", step, fetched)
      if done % config.checkpoint_every == 0 or done == config.num_steps:
        _call(hooks, "before_save", done)
        ckpt.save(done, state)
      extra = f"loss {pending['loss']:.4f}" if pending and "loss" in pending else ""
      progress.update(done, extra, force=done == config.num_steps)
    ckpt.wait()
    return state
  finally:
    ckpt.close()
    writer.close()


def global_norm(tree: PyTree) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32)))
                      for x in jax.tree.leaves(tree)))
