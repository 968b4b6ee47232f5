"""Tests for mesh construction and the distributed start-up switch."""

import jax
import pytest

from cbench._validate import CbenchError
from cbench.parallel import mesh as mesh_lib


def test_make_mesh_shapes():
  assert len(jax.devices()) == 8  # conftest's fake CPU devices
  m = mesh_lib.make_mesh()
  assert m.axis_names == ("data", "fsdp", "model")
  assert dict(m.shape) == {"data": 8, "fsdp": 1, "model": 1}
  m = mesh_lib.make_mesh(data=2, fsdp=-1, model=2)
  assert dict(m.shape) == {"data": 2, "fsdp": 2, "model": 2}
  m = mesh_lib.make_mesh(data=1, devices=jax.devices()[:1])
  assert m.devices.size == 1


@pytest.mark.parametrize("kwargs", [dict(data=3), dict(data=-1, fsdp=-1),
                                    dict(data=2, fsdp=2, model=1),
                                    dict(data=0, fsdp=8)])
def test_make_mesh_errors(kwargs):
  with pytest.raises(CbenchError, match="[Mm]esh"):
    mesh_lib.make_mesh(**kwargs)


def test_distributed_is_opt_in(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize",
                      lambda **kw: calls.append(kw))
  monkeypatch.delenv("CBENCH_DISTRIBUTED", raising=False)
  assert not mesh_lib.maybe_initialize_distributed()
  assert calls == []
  monkeypatch.setenv("CBENCH_DISTRIBUTED", "1")
  monkeypatch.setenv("CBENCH_COORDINATOR", "10.0.0.1:1234")
  monkeypatch.setenv("CBENCH_NUM_PROCESSES", "4")
  monkeypatch.setenv("CBENCH_PROCESS_ID", "2")
  assert mesh_lib.maybe_initialize_distributed()
  assert calls == [dict(coordinator_address="10.0.0.1:1234",
                        num_processes=4, process_id=2)]
  monkeypatch.setenv("CBENCH_PROCESS_ID", "two")
  with pytest.raises(CbenchError, match="CBENCH_PROCESS_ID"):
    mesh_lib.maybe_initialize_distributed()
