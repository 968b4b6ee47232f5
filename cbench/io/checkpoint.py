"""Orbax checkpoints of a training state, resumable after a kill.

Orbax writes each step to a temporary directory and renames it when complete,
so a process killed mid-save leaves the previous checkpoint intact and the
incomplete one is ignored on restore. A checkpoint damaged after it was
written (a truncated parameter file or ``_METADATA``, a missing
``manifest.ocdbt``) is a `CbenchError` naming it, in one line:
`Checkpointer.restore_latest` then falls back to the newest complete step
and says so; `load_params` (a finished model's parameters) refuses.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from cbench._validate import CbenchError

PyTree = Any
log = logging.getLogger("cbench")


def _damaged(path: str, e: BaseException) -> CbenchError:
  first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
  return CbenchError(f"Checkpoint {path} is damaged or incomplete "
                     f"({type(e).__name__}: {first}).")


class Checkpointer:
  """Saves and restores a pytree state under `directory/<step>`."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: PyTree, *, force: bool = False) -> None:
    self._manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def restore(self, target: PyTree, step: int | None = None) -> PyTree:
    """Restores `step` (default latest) with the shapes/shardings of `target`.

    Raises:
      CbenchError: the checkpoint is damaged (names it).
    """
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
      return self._manager.restore(step,
                                   args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # Orbax/tensorstore raise many types on bad files.
      raise _damaged(os.path.join(self.directory, str(step)), e) from e

  def restore_latest(self, target: PyTree) -> tuple[PyTree, int] | None:
    """(state, step) of the newest step that restores, or None if there is
    no checkpoint. A damaged newer step is skipped with a log line.

    Raises:
      CbenchError: every checkpoint is damaged.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    errors = []
    for step in steps:
      try:
        state = self.restore(target, step)
      except CbenchError as e:
        errors.append(str(e))
        log.warning("%s; trying an older step.", e)
        continue
      if errors:
        log.warning("resuming from step %d: the newer checkpoint(s) were "
                    "damaged.", step)
      return state, step
    if errors:
      raise CbenchError(f"No checkpoint under {self.directory} restores: "
                        f"{errors[0]}")
    return None

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def save_params(path: str, params: PyTree) -> None:
  """Writes a final parameter tree (atomic: orbax finalises by rename)."""
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(os.path.abspath(path), params, force=True)
  ckptr.wait_until_finished()


def load_params(path: str, target: PyTree) -> PyTree:
  """Parameters saved by `save_params`, shaped like `target`.

  Raises:
    CbenchError: a missing or damaged checkpoint (names it).
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise CbenchError(f"Checkpoint {path} not found.")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  try:
    return ocp.StandardCheckpointer().restore(path, abstract)
  except Exception as e:  # Orbax/tensorstore raise many types on bad files.
    raise _damaged(path, e) from e
