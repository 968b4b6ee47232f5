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


def maybe_initialize_distributed() -> bool:
  """Calls `jax.distributed.initialize()` iff env ``CBENCH_DISTRIBUTED=1``.

  Optional env: ``CBENCH_COORDINATOR`` (host:port), ``CBENCH_NUM_PROCESSES``,
  ``CBENCH_PROCESS_ID``; when absent JAX auto-detects them (TPU pods, SLURM,
  ...). Must run before any other JAX call. Returns whether it initialised.
  """
  if os.environ.get("CBENCH_DISTRIBUTED", "") != "1":
    return False
  kwargs = {}
  if os.environ.get("CBENCH_COORDINATOR"):
    kwargs["coordinator_address"] = os.environ["CBENCH_COORDINATOR"]
  for env, arg in (("CBENCH_NUM_PROCESSES", "num_processes"),
                   ("CBENCH_PROCESS_ID", "process_id")):
    if os.environ.get(env):
      try:
        kwargs[arg] = int(os.environ[env])
      except ValueError as e:
        raise _validate.CbenchError(
            f"Expected an integer {env}={os.environ[env]!r}.") from e
  jax.distributed.initialize(**kwargs)
  return True
