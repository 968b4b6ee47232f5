"""Multi-host data and output: process-local rows -> global arrays, one writer.

Multi-controller JAX runs the same program in every process; each process
owns the devices it can address. The rules cbench follows:

* Start-up: `cbench.parallel.mesh.maybe_initialize_distributed` (env
  ``CBENCH_DISTRIBUTED=1`` or explicit arguments), then a mesh over
  ``jax.devices()`` (all processes' devices).
* Data: every process computes the same PUBLIC batch layout (the sampler is
  a pure function of (seed, step), so all processes draw the same indices
  and padding), then loads only the rows its own devices hold
  (`process_rows`) and assembles global arrays with
  `jax.make_array_from_process_local_data` (`global_batch`,
  `sampled_batch`). No process ever reads another process's rows.
* Output: only process 0 writes metrics, ledgers and results (`is_primary`,
  `PrimaryOnly` for loop hooks); checkpoints are written collectively by
  orbax (every process calls save; each writes the shards it owns).
* Host values of a global array: `host_value` (an all-gather when the array
  spans devices this process cannot address; every process must call it).

Privacy: nothing here touches the privacy mechanism; the sampler's event
and the noise are the same as in a single-process run (one global batch,
one noise draw from the replicated key).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cbench._validate import CbenchError, check

PyTree = Any


def is_primary() -> bool:
  """True in the one process (index 0) that writes files."""
  return jax.process_index() == 0


def sync(name: str) -> None:
  """Barrier across all processes (a no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def batch_spec(axes: str | Sequence[str] = "data") -> P:
  """PartitionSpec splitting the leading (batch) axis over `axes`."""
  axes = (axes,) if isinstance(axes, str) else tuple(axes)
  return P(axes if len(axes) > 1 else axes[0])


def process_rows(sharding: jax.sharding.Sharding, num_rows: int
                 ) -> tuple[int, int]:
  """Rows ``[lo, hi)`` of a ``[num_rows, ...]`` array this process holds.

  Args:
    sharding: the array's sharding (leading axis split over the data axes;
      other axes must not be split across processes).
    num_rows: global leading dimension.

  Returns:
    ``(lo, hi)``; with one process ``(0, num_rows)``.

  Raises:
    CbenchError: this process's rows are not one contiguous block (a mesh
      whose data axis interleaves processes).
  """
  index_map = sharding.addressable_devices_indices_map((num_rows,))
  spans = sorted({(s[0].start or 0, num_rows if s[0].stop is None
                   else s[0].stop) for s in index_map.values()})
  lo, hi = spans[0][0], spans[0][1]
  for a, b in spans[1:]:
    check(a <= hi, f"Process {jax.process_index()} holds non-contiguous "
                   f"batch rows {spans}; order the mesh's data axis by "
                   "process (jax.devices() order does).")
    hi = max(hi, b)
  return lo, hi


def global_batch(local: PyTree, mesh: Mesh, num_rows: int,
                 axes: str | Sequence[str] = "data") -> PyTree:
  """Global arrays ``[num_rows, ...]`` from this process's rows.

  Args:
    local: pytree of host arrays, each ``[hi - lo, ...]`` for the rows
      ``process_rows`` gives this process (same trailing shapes and dtypes
      in every process).
    mesh: the global mesh.
    num_rows: global batch size (a multiple of the data axes' size).
    axes: mesh axes the batch is split over.

  Returns:
    The same pytree of `jax.Array`s, leading axis sharded over `axes`.
  """
  sharding = NamedSharding(mesh, batch_spec(axes))
  lo, hi = process_rows(sharding, num_rows)

  def one(x):
    x = np.asarray(x)
    check(x.ndim >= 1 and x.shape[0] == hi - lo,
          f"Process {jax.process_index()} must pass rows [{lo}, {hi}) "
          f"({hi - lo} rows); got shape {x.shape}.")
    return jax.make_array_from_process_local_data(
        sharding, x, (num_rows,) + x.shape[1:])
  return jax.tree.map(one, local)


def sampled_batch(indices: np.ndarray, is_padding: np.ndarray,
                  load_rows: Callable[[np.ndarray], PyTree], mesh: Mesh,
                  axes: str | Sequence[str] = "data"
                  ) -> tuple[PyTree, jax.Array]:
  """A sampler's batch as global arrays, each process loading its rows only.

  Args:
    indices: int ``[B]`` record indices of the global batch (identical in
      every process: samplers are pure functions of (seed, step)).
    is_padding: bool ``[B]``.
    load_rows: ``indices [b] -> pytree of [b, ...] arrays``; called once,
      with this process's slice of `indices` only.
    mesh: the global mesh.
    axes: mesh axes the batch is split over.

  Returns:
    ``(batch, is_padding)`` as global `jax.Array`s.
  """
  indices = np.asarray(indices)
  b = indices.shape[0]
  n = int(np.prod([mesh.shape[a] for a in ((axes,) if isinstance(axes, str)
                                           else axes)]))
  if b % n:
    raise CbenchError(f"Batch size {b} is not a multiple of the {n} "
                      f"devices on mesh axes {axes}; use a sampler pad_unit "
                      f"that is a multiple of {n}.")
  lo, hi = process_rows(NamedSharding(mesh, batch_spec(axes)), b)
  rows = load_rows(indices[lo:hi])
  pad = np.asarray(is_padding, bool)[lo:hi]
  return global_batch((rows, pad), mesh, b, axes)


def host_value(tree: PyTree) -> PyTree:
  """NumPy values of (possibly multi-host) arrays, identical in every process.

  Fully addressable and fully replicated arrays are read locally; others are
  all-gathered (a collective: every process must call this, in the same
  order).
  """
  def local_ok(x):
    return (not isinstance(x, jax.Array) or x.is_fully_addressable
            or x.is_fully_replicated)

  leaves = jax.tree.leaves(tree)
  if all(local_ok(x) for x in leaves):
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


class PrimaryOnly:
  """Wraps a loop hook so that it runs in process 0 only.

  For hooks that write files (a privacy ledger's `StepChargeHook`, custom
  writers). Hooks with collectives or device work must not be wrapped.
  """

  def __init__(self, hook: Any):
    self._hook = hook
    self._on = is_primary()

  def before_step(self, step: int) -> None:
    if self._on and hasattr(self._hook, "before_step"):
      self._hook.before_step(step)

  def before_save(self, step: int) -> None:
    if self._on and hasattr(self._hook, "before_save"):
      self._hook.before_save(step)

  def after_step(self, step: int, metrics: Mapping[str, float] | None
                 ) -> None:
    if self._on and hasattr(self._hook, "after_step"):
      self._hook.after_step(step, metrics)


def describe() -> dict:
  """Public facts about the runtime, for run summaries."""
  return {"process_index": jax.process_index(),
          "process_count": jax.process_count(),
          "local_devices": jax.local_device_count(),
          "global_devices": jax.device_count(),
          "platform": jax.devices()[0].platform}
