"""Two local CPU processes (2 x 4 devices) == one process with 8 devices.

`multihost_worker.run_scenario` runs DP-SGD steps through the training loop
and a private-prediction (SVT) batch through `generate`. The test launches
it as two processes joined by `jax.distributed.initialize` on a 127.0.0.1
coordinator (a free port per test), runs it again in this pytest process
(conftest: 8 fake devices, one process), and checks:

* parameters after the DP-SGD steps agree to atol 1e-5 (only the order of
  the cross-process all-reduce differs; measured max |diff| is reported in
  the assertion message) and the decoded tokens, lengths and private-token
  counts are identical;
* each process loaded exactly its half of every sampled batch (rows
  [0, 8) in process 0, [8, 16) in process 1) and nothing else;
* only process 0 wrote metrics (one row per step) and results;
* the 2-process orbax checkpoint restores, bit for bit, in this 1-process
  8-device run.

Workers are killed when one fails or when the deadline passes, so a broken
coordinator never hangs CI.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest

from cbench.io import checkpoint
from cbench.io import files
from cbench.models import registry
from cbench.parallel import mesh as mesh_lib
from cbench.testing import multihost_worker as worker
from cbench.train import lm_train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEADLINE_S = 240
PARAM_ATOL = 1e-5


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(workdir, num_processes, devices_per_process, *, launched=None,
            init_timeout=60, deadline=DEADLINE_S):
  """Runs the worker in `launched` (default all) process ids; returns
  (return codes, log tails). Kills every worker on failure or deadline."""
  port = _free_port()
  env = dict(os.environ)
  env["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count="
                      f"{devices_per_process}")
  env["JAX_PLATFORMS"] = "cpu"
  env.pop("CBENCH_DISTRIBUTED", None)
  procs, logs = [], []
  ids = range(num_processes) if launched is None else launched
  for pid in ids:
    log = open(os.path.join(workdir, f"worker{pid}.log"), "w+")
    logs.append(log)
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "cbench.testing.multihost_worker",
         f"--workdir={workdir}", f"--coordinator=127.0.0.1:{port}",
         f"--num_processes={num_processes}", f"--process_id={pid}",
         f"--init_timeout={init_timeout}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True))
  end = time.monotonic() + deadline
  try:
    while time.monotonic() < end:
      codes = [p.poll() for p in procs]
      if any(c not in (None, 0) for c in codes) or all(c == 0 for c in codes):
        break
      time.sleep(0.2)
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
      p.wait()
  tails = []
  for log in logs:
    log.seek(0)
    tails.append(log.read()[-3000:])
    log.close()
  return [p.returncode for p in procs], tails


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("multihost"))
  t0 = time.monotonic()
  codes, tails = _launch(workdir, 2, 4)
  wall = time.monotonic() - t0
  assert codes == [0, 0], f"codes {codes} after {wall:.0f}s:\n" + "\n".join(
      tails)
  with np.load(os.path.join(workdir, "results.npz")) as z:
    results = dict(z)
  return workdir, results


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
  assert jax.device_count() == 8 and jax.process_count() == 1
  workdir = str(tmp_path_factory.mktemp("singlehost"))
  return workdir, worker.run_scenario(workdir)


def test_two_processes_match_one_process_with_8_devices(two_process_run,
                                                        one_process_run):
  _, two = two_process_run
  _, one = one_process_run
  assert set(two) == set(one)
  params = sorted(k for k in one if k.startswith("param/"))
  assert len(params) > 10
  diffs = {k: float(np.max(np.abs(two[k] - one[k]))) for k in params}
  worst = max(diffs.values())
  print(f"2x4 vs 1x8 devices: max |param diff| {worst:.3g}")  # pytest -s
  assert worst <= PARAM_ATOL, f"max |param diff| {worst}: {diffs}"
  # The steps did something (a vacuous comparison would also pass).
  init = jax.device_get(_init_params())
  moved = max(float(np.max(np.abs(one[k] - v))) for k, v in
              zip(params, _flat(init)))
  assert moved > 1e-3
  for k in ("tokens", "lengths", "private_count", "num_steps", "step",
            "batches"):
    np.testing.assert_array_equal(two[k], one[k], err_msg=k)
  assert int(one["step"]) == worker.STEPS
  assert len({tuple(r) for r in one["tokens"].tolist()}) > 1
  assert one["private_count"].max() >= 1


def test_each_process_loads_only_its_rows(two_process_run, one_process_run):
  _, two = two_process_run
  _, one = one_process_run
  half = worker.BATCH // 2
  batches = two["batches"]
  assert two["loaded"].shape == (2, worker.STEPS * half)
  for p in range(2):
    expect = np.concatenate([b[p * half:(p + 1) * half] for b in batches])
    np.testing.assert_array_equal(two["loaded"][p], expect)
  # One process with 8 devices loads every row of every batch.
  np.testing.assert_array_equal(one["loaded"][0], batches.reshape(-1))


def test_only_process_zero_writes(two_process_run, one_process_run):
  workdir, _ = two_process_run
  rows = list(files.iter_jsonl(os.path.join(workdir, "metrics.jsonl")))
  assert [r["step"] for r in rows] == list(range(1, worker.STEPS + 1))
  ref = list(files.iter_jsonl(os.path.join(one_process_run[0],
                                           "metrics.jsonl")))
  np.testing.assert_allclose([r["noisy_grad_norm"] for r in rows],
                             [r["noisy_grad_norm"] for r in ref], rtol=1e-5)
  assert sorted(f for f in os.listdir(workdir) if f.endswith(".npz")) == [
      "results.npz"]


def test_two_process_checkpoint_restores_in_one_process(two_process_run):
  workdir, two = two_process_run
  ckpt_dir = os.path.join(workdir, "checkpoints")
  assert sorted(os.listdir(os.path.join(ckpt_dir, str(worker.STEPS),
                                        "default", "array_metadatas"))) == [
                                            "process_0", "process_1"]
  mesh = mesh_lib.make_mesh()
  target = lm_train.init_state(_init_params(mesh), optax.adam(1e-2), mesh)
  ckpt = checkpoint.Checkpointer(ckpt_dir)
  try:
    assert ckpt.latest_step() == worker.STEPS
    restored = ckpt.restore(target)
  finally:
    ckpt.close()
  assert int(jax.device_get(restored.step)) == worker.STEPS
  names = sorted(k for k in two if k.startswith("param/"))
  leaves = _flat(jax.device_get(restored.params))
  for k, v in zip(names, leaves):
    np.testing.assert_array_equal(v, two[k], err_msg=k)
  # Restored onto this process's 8-device mesh.
  leaf = jax.tree.leaves(restored.params)[0]
  assert leaf.sharding.mesh.devices.size == 8


def test_a_missing_peer_fails_fast_instead_of_hanging(tmp_path):
  t0 = time.monotonic()
  codes, tails = _launch(str(tmp_path), 2, 4, launched=[0], init_timeout=5,
                         deadline=90)
  assert codes[0] not in (0, None), tails
  assert time.monotonic() - t0 < 90
  assert not os.path.exists(tmp_path / "results.npz")


def _init_params(mesh=None):
  mesh = mesh_lib.make_mesh() if mesh is None else mesh
  return registry.init_params_sharded(None, worker.model_config(), mesh,
                                   jax.random.key(0))


def _flat(tree):
  """Leaves in the sorted order of their `param/<path>` names."""
  pairs = jax.tree_util.tree_leaves_with_path(tree)
  return [np.asarray(v) for _, v in sorted(
      pairs, key=lambda kv: f"param/{jax.tree_util.keystr(kv[0])}")]
