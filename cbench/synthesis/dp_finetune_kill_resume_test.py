"""SIGKILL a DP training run at random points and restart it (F1).

`kill_resume_worker` runs a tiny DP fine-tuning (Poisson batches, clipped +
noised gradients, write-ahead step ledger, orbax checkpoints every 3 of 12
steps). The test

1. runs the scenario uninterrupted in this process (the reference);
2. launches it as a subprocess and SIGKILLs it right after a randomly
   chosen step has been charged and started, then again right after a
   checkpoint save has begun (a kill during the save), then lets a third
   start finish;
3. checks: final parameters bitwise equal to the reference; every batch
   drawn (including replays after a restart) has the reference's indices
   for its step; the ledger holds exactly one charge per step, ids
   step:0..11 (never twice, never forgotten), and the reference's epsilon;
   at each kill, every step reported done had been charged, and the
   charges are the reference's first ones (a cyclic run killed mid-epoch
   has already paid that epoch: its charge is at the epoch's first step).

The cyclic variant (8 steps per epoch, 2 epochs; slow) kills mid-epoch.

Both runs see the same 8 fake devices (the subprocess inherits XLA_FLAGS).
Restarts share a persistent compilation cache, so they compile little.

Runtime: four JAX start-ups (imports, compiles, orbax saves), about 40 s
of CPU time; measured 38 s wall on the 2-core machine when quiet, 320 s at
load average ~15 (hence the generous deadline).
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cbench.privacy import ledger as ledger_lib
from cbench.testing import kill_resume_worker as worker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEADLINE_S = 400
STEP_DELAY_S = 0.15


def _events(path):
  if not os.path.exists(path):
    return []
  out = []
  with open(path) as f:
    for line in f:
      if line.endswith("\n"):
        out.append(json.loads(line))
  return out


def _launch(workdir, cache_dir, sampler):
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = "cpu"
  return subprocess.Popen(
      [sys.executable, "-m", "cbench.testing.kill_resume_worker",
       f"--workdir={workdir}", f"--cache_dir={cache_dir}",
       f"--step_delay={STEP_DELAY_S}", f"--sampler={sampler}"],
      cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True)


def _kill_when(proc, progress, predicate, deadline):
  """SIGKILLs `proc` as soon as a new progress event satisfies predicate."""
  seen = len(_events(progress))
  while time.monotonic() < deadline:
    events = _events(progress)[seen:]
    if any(predicate(e) for e in events):
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      return events
    if proc.poll() is not None:
      raise AssertionError(f"worker exited ({proc.returncode}) before the "
                           f"kill point: {proc.stderr.read()[-2000:]}")
    time.sleep(0.005)
  proc.kill()
  raise AssertionError("worker did not reach the kill point in time")


def _charges(workdir):
  with open(os.path.join(workdir, "ledger.jsonl")) as f:
    lines = [json.loads(line) for line in f if line.endswith("\n")]
  return [(r["id"], r["event"]) for r in lines[1:]]


def _ledger_ids(workdir):
  return [i for i, _ in _charges(workdir)]


@pytest.mark.parametrize("sampler", [
    "poisson", pytest.param("cyclic", marks=pytest.mark.slow)])
def test_sigkill_at_random_steps_then_resume_is_bitwise_identical(tmp_path,
                                                                   sampler):
  deadline = time.monotonic() + DEADLINE_S
  ref = worker.run_scenario(str(tmp_path / "ref"), sampler=sampler)
  ref_charges = _charges(tmp_path / "ref")
  assert ref["executed"] == ref["charges"] == worker.STEPS
  ref_batches = {b["step"]: b["indices"]
                 for b in _events(tmp_path / "ref" / "batches.jsonl")}
  assert sorted(ref_batches) == list(range(worker.STEPS))

  workdir = str(tmp_path / "killed")
  cache = str(tmp_path / "jax_cache")
  progress = os.path.join(workdir, "progress.jsonl")
  rng = np.random.default_rng(20261130)
  kill_step = int(rng.integers(1, worker.STEPS - 1))
  k = worker.NUM_RECORDS // worker.BATCH          # cyclic steps per epoch
  if sampler == "cyclic" and kill_step % k == 0:
    kill_step += 1                                # mid-epoch

  # Kill 1: right after a random step is charged and started.
  proc = _launch(workdir, cache, sampler)
  _kill_when(proc, progress, lambda e: e["event"] == "start"
             and e["step"] >= kill_step, deadline)
  done = {e["step"] for e in _events(progress) if e["event"] == "done"}
  ids = _ledger_ids(workdir)
  assert set(ids) >= {f"step:{s}" for s in done}       # charged before run
  assert len(ids) == len(set(ids))
  assert _charges(workdir) == ref_charges[:len(ids)]   # the epoch is paid
  first_kill = max(int(i.split(":")[1]) for i in ids)

  # Kill 2: right after the next checkpoint save begins.
  proc = _launch(workdir, cache, sampler)
  _kill_when(proc, progress, lambda e: e["event"] == "save"
             and e["step"] > first_kill, deadline)
  ids = _ledger_ids(workdir)
  done = {e["step"] for e in _events(progress) if e["event"] == "done"}
  assert set(ids) >= {f"step:{s}" for s in done}
  assert len(ids) == len(set(ids))
  assert _charges(workdir) == ref_charges[:len(ids)]

  # Third start runs to the end.
  proc = _launch(workdir, cache, sampler)
  try:
    proc.wait(timeout=max(1.0, deadline - time.monotonic()))
  except subprocess.TimeoutExpired:
    proc.kill()
    raise
  assert proc.returncode == 0, proc.stderr.read()[-2000:]

  events = _events(progress)
  starts = [e for e in events if e["event"] == "start"]
  assert len({e["pid"] for e in starts}) == 3           # three processes ran
  finish = [e for e in events if e["event"] == "finish"]
  assert len(finish) == 1
  # Ledger: one charge per step, in order; same epsilon as the reference.
  assert _ledger_ids(workdir) == [f"step:{s}" for s in range(worker.STEPS)]
  assert _charges(workdir) == ref_charges           # never twice
  summary = ledger_lib.verify_file(os.path.join(workdir, "ledger.jsonl"))
  assert summary["charges"] == worker.STEPS
  assert summary["epsilon"] == ref["epsilon"]
  # Some steps were replayed after a kill, and the final call ran the rest.
  assert len(starts) > worker.STEPS
  assert finish[0]["charges"] == worker.STEPS
  # The same batch-index stream, replays included.
  drawn = _events(os.path.join(workdir, "batches.jsonl"))
  assert {b["step"] for b in drawn} == set(range(worker.STEPS))
  for b in drawn:
    assert b["indices"] == ref_batches[b["step"]], b["step"]
  if sampler == "cyclic":   # the full epoch: every record exactly once
    first = sorted(i for s in range(k) for i in ref_batches[s])
    assert first == list(range(worker.NUM_RECORDS))
  # Final parameters: bitwise equal to the uninterrupted run.
  with np.load(os.path.join(workdir, "final.npz")) as z:
    got = {k: z[k] for k in z.files}
  assert set(got) == set(ref["params"])
  for k, v in ref["params"].items():
    np.testing.assert_array_equal(got[k], v, err_msg=k)
