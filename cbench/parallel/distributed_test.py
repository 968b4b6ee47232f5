"""Single-process checks of the multi-host helpers (the 2-process run is in
multihost_test.py) and of the explicit-argument distributed start-up."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cbench._validate import CbenchError
from cbench.parallel import distributed
from cbench.parallel import mesh as mesh_lib


def test_one_process_holds_every_row_and_builds_global_batches():
  mesh = mesh_lib.make_mesh()
  sharding = NamedSharding(mesh, P("data"))
  assert distributed.process_rows(sharding, 16) == (0, 16)
  rows = np.arange(16 * 3, dtype=np.int32).reshape(16, 3)
  batch = distributed.global_batch({"x": rows}, mesh, 16)
  assert batch["x"].shape == (16, 3)
  assert batch["x"].sharding.spec == P("data")
  assert len(batch["x"].addressable_shards) == 8
  np.testing.assert_array_equal(distributed.host_value(batch)["x"], rows)
  with pytest.raises(CbenchError, match=r"rows \[0, 16\)"):
    distributed.global_batch({"x": rows[:8]}, mesh, 16)


def test_sampled_batch_loads_only_the_batch_rows_once():
  mesh = mesh_lib.make_mesh(data=4, fsdp=2)
  data = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 2))
  calls = []

  def load(idx):
    calls.append(np.array(idx))
    return data[idx]

  idx = np.array([5, 9, 11, 40, 41, 77, 0, 0])
  pad = np.array([False] * 6 + [True] * 2)
  batch, is_pad = distributed.sampled_batch(idx, pad, load, mesh,
                                            axes=("data", "fsdp"))
  assert len(calls) == 1
  np.testing.assert_array_equal(calls[0], idx)
  np.testing.assert_array_equal(np.asarray(batch), data[idx])
  np.testing.assert_array_equal(np.asarray(is_pad), pad)
  assert batch.sharding.spec == P(("data", "fsdp"))
  with pytest.raises(CbenchError, match="multiple of the 8 devices"):
    distributed.sampled_batch(idx[:6], pad[:6], load, mesh,
                              axes=("data", "fsdp"))


def test_process_rows_rejects_interleaved_layouts():
  class _Fake:
    def addressable_devices_indices_map(self, shape):
      del shape
      return {0: (slice(0, 4),), 1: (slice(8, 12),)}

  with pytest.raises(CbenchError, match="non-contiguous"):
    distributed.process_rows(_Fake(), 16)


def test_primary_only_hook(monkeypatch):
  seen = []

  class Hook:
    def before_step(self, step):
      seen.append(("before", step))

    def after_step(self, step, metrics):
      seen.append(("after", step, metrics))

  h = distributed.PrimaryOnly(Hook())
  h.before_step(3)
  h.after_step(3, {"a": 1.0})
  h.before_save(4)  # Hook has none: ignored.
  assert seen == [("before", 3), ("after", 3, {"a": 1.0})]
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert not distributed.is_primary()
  quiet = distributed.PrimaryOnly(Hook())
  quiet.before_step(5)
  quiet.after_step(5, None)
  assert len(seen) == 2


def test_describe_and_sync_single_process():
  d = distributed.describe()
  assert d["process_count"] == 1 and d["global_devices"] == 8
  distributed.sync("noop")  # No collective with one process.


def test_explicit_arguments_override_the_environment(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize",
                      lambda **kw: calls.append(kw))
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  monkeypatch.delenv("CBENCH_DISTRIBUTED", raising=False)
  monkeypatch.setenv("CBENCH_COORDINATOR", "10.0.0.1:1")
  monkeypatch.setenv("CBENCH_NUM_PROCESSES", "4")
  assert not mesh_lib.maybe_initialize_distributed(False)
  assert mesh_lib.maybe_initialize_distributed(
      True, coordinator="127.0.0.1:5", process_id=3,
      initialization_timeout=7, local_device_ids=[0])
  assert calls == [dict(coordinator_address="127.0.0.1:5", num_processes=4,
                        process_id=3, local_device_ids=[0],
                        initialization_timeout=7)]
  # The environment alone still works, and can be switched off explicitly.
  monkeypatch.setenv("CBENCH_DISTRIBUTED", "1")
  monkeypatch.setenv("CBENCH_PROCESS_ID", "1")
  assert mesh_lib.maybe_initialize_distributed()
  assert calls[-1] == dict(coordinator_address="10.0.0.1:1",
                           num_processes=4, process_id=1)
  assert not mesh_lib.maybe_initialize_distributed(False)
  assert len(calls) == 2
  with pytest.raises(CbenchError, match="process_id"):
    mesh_lib.maybe_initialize_distributed(True, process_id=4)
  with pytest.raises(CbenchError, match="num_processes"):
    mesh_lib.maybe_initialize_distributed(True, num_processes=0)


def test_already_initialized_is_a_no_op(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize",
                      lambda **kw: calls.append(kw))
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
  assert mesh_lib.maybe_initialize_distributed(True)
  assert calls == []
