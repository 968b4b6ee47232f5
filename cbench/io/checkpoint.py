"""Orbax checkpoints of a training state, resumable after a kill.

Orbax writes each step to a temporary directory and renames it when complete,
so a process killed mid-save leaves the previous checkpoint intact and the
incomplete one is ignored on restore.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

PyTree = Any


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
    """Restores `step` (default latest) with the shapes/shardings of `target`."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def save_params(path: str, params: PyTree) -> None:
  """Writes a final parameter tree (atomic: orbax finalises by rename)."""
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(os.path.abspath(path), params, force=True)
  ckptr.wait_until_finished()


def load_params(path: str, target: PyTree) -> PyTree:
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  return ocp.StandardCheckpointer().restore(os.path.abspath(path), abstract)
