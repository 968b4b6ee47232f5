"""The device mesh (axes 'data', 'fsdp', 'model') and multi-host start-up.

'data' shards the batch (pure data parallelism), 'fsdp' shards the batch and
the parameters' embed axis (fully sharded data parallelism), 'model' shards
heads/mlp/vocab (tensor parallelism). `cbench.parallel.rules` maps the
model's logical axis names onto these.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from cbench import _validate

MESH_AXES = ("data", "fsdp", "model")


def make_mesh(data: int = -1, fsdp: int = 1, model: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ``(data, fsdp, model)`` mesh over `devices` (default: all devices).

  One of the sizes may be -1: it takes whatever the others leave.

  Raises:
    CbenchError: sizes that do not multiply to the number of devices.
  """
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  sizes = {"data": data, "fsdp": fsdp, "model": model}
  auto = [k for k, v in sizes.items() if v == -1]
  _validate.check(len(auto) <= 1,
                  f"At most one mesh axis may be -1; got {sizes}.")
  for k, v in sizes.items():
    _validate.check(v == -1 or v >= 1,
                    f"Expected mesh axis {k}={v} >= 1 (or -1).")
  known = int(np.prod([v for v in sizes.values() if v != -1]))
  if auto:
    _validate.check(n % known == 0,
                    f"Mesh {sizes} does not fit {n} devices.")
    sizes[auto[0]] = n // known
  shape = tuple(sizes[k] for k in MESH_AXES)
  _validate.check(int(np.prod(shape)) == n,
                  f"Mesh {dict(zip(MESH_AXES, shape))} needs "
                  f"{int(np.prod(shape))} devices; have {n}.")
  return Mesh(np.asarray(devices, dtype=object).reshape(shape), MESH_AXES)


def maybe_initialize_distributed(
    enabled: bool | None = None, *, coordinator: str | None = None,
    num_processes: int | None = None, process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
    initialization_timeout: int | None = None) -> bool:
  """Starts multi-controller JAX (`jax.distributed.initialize`) if asked to.

  With no arguments (what `experiments.common.run` does) it is driven by the
  environment: on iff ``CBENCH_DISTRIBUTED=1``, with optional
  ``CBENCH_COORDINATOR`` (host:port), ``CBENCH_NUM_PROCESSES`` and
  ``CBENCH_PROCESS_ID``; when those are absent JAX auto-detects them (TPU
  pods, SLURM, GKE/K8s). Explicit arguments (a flag-driven caller) override
  both: ``enabled=True/False`` overrides ``CBENCH_DISTRIBUTED`` and each
  given value overrides its environment variable.

  Must run before any other JAX call. Calling it again after a successful
  start is a no-op that returns True.

  Args:
    enabled: None = read ``CBENCH_DISTRIBUTED``; else on/off.
    coordinator: ``host:port`` of process 0's coordinator service.
    num_processes: total number of processes.
    process_id: this process's index in ``[0, num_processes)``.
    local_device_ids: restrict this process to these local devices (e.g.
      one GPU per process without CUDA_VISIBLE_DEVICES).
    initialization_timeout: seconds to wait for every process to connect.

  Returns:
    Whether the distributed runtime is (now) initialised.

  Raises:
    CbenchError: a non-integer environment value, or an inconsistent
      process id / count.
  """
  if enabled is None:
    enabled = os.environ.get("CBENCH_DISTRIBUTED", "") == "1"
  if not enabled:
    return False
  if jax.distributed.is_initialized():
    return True
  kwargs = {}
  if coordinator is None and os.environ.get("CBENCH_COORDINATOR"):
    coordinator = os.environ["CBENCH_COORDINATOR"]
  if coordinator is not None:
    kwargs["coordinator_address"] = coordinator
  for env, arg, value in (
      ("CBENCH_NUM_PROCESSES", "num_processes", num_processes),
      ("CBENCH_PROCESS_ID", "process_id", process_id)):
    if value is None and os.environ.get(env):
      try:
        value = int(os.environ[env])
      except ValueError as e:
        raise _validate.CbenchError(
            f"Expected an integer {env}={os.environ[env]!r}.") from e
    if value is not None:
      kwargs[arg] = int(value)
  if "num_processes" in kwargs:
    _validate.positive("num_processes (CBENCH_NUM_PROCESSES)",
                       kwargs["num_processes"])
  if "process_id" in kwargs:
    n = kwargs.get("num_processes")
    _validate.check(
        kwargs["process_id"] >= 0 and (n is None or kwargs["process_id"] < n),
        f"Expected 0 <= process_id (CBENCH_PROCESS_ID)="
        f"{kwargs['process_id']} < num_processes={n}.")
  if local_device_ids is not None:
    kwargs["local_device_ids"] = list(local_device_ids)
  if initialization_timeout is not None:
    kwargs["initialization_timeout"] = int(initialization_timeout)
  jax.distributed.initialize(**kwargs)
  return True
