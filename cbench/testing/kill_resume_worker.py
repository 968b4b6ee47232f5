r"""A tiny DP fine-tuning run that `kill_resume_test` SIGKILLs and restarts.

`run_scenario(workdir)` trains a small random transformer on random token
rows with `cbench.synthesis.dp_finetune.finetune` (Poisson batches, or with
``sampler="cyclic"`` fixed batches of 8 records, 8 steps per epoch; clipped
and noised gradients, the write-ahead step ledger, orbax checkpoints, the
one training loop) for `STEPS` steps, resuming from `workdir` if a previous
run was killed. So that a watcher can kill it at a chosen point, it appends
to ``workdir/progress.jsonl`` (flushed, one JSON object per line):

  {"event": "start", "step": s}   step s is charged and about to run
  {"event": "done", "step": s}    step s has run
  {"event": "save", "step": s}    a checkpoint of s steps is being saved
  {"event": "finish", ...}        the run completed (final.npz written)

and to ``workdir/batches.jsonl`` the real record indices of each batch as
it is drawn. ``step_delay`` seconds of sleep after each charge keep the
steps slow enough to be hit.

Run as a worker (what the test launches):

  python -m cbench.testing.kill_resume_worker --workdir=DIR \
      [--cache_dir=DIR] [--step_delay=0.2] [--sampler=cyclic]

``--cache_dir`` turns on JAX's persistent compilation cache so restarts
skip most compiles (the executables, hence the numbers, are identical).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import jax
import numpy as np

from cbench.io import files
from cbench.models import config as config_lib
from cbench.models import registry
from cbench.parallel import mesh as mesh_lib
from cbench.privacy import ledger as ledger_lib
from cbench.synthesis import dp_finetune as dpft
from cbench.train import text_data

VOCAB = 64
SEQ = 16
NUM_RECORDS = 64
BATCH = 8            # expected batch size
PAD_UNIT = 16        # buckets of 16 rows (2 per device on 8 devices)
STEPS = 12
CHECKPOINT_EVERY = 3
SIGMA = 1.0
CLIP = 1.0
SEED = 7


def rows():
  """The private records as `TokenRows` (random ids, random lengths)."""
  rng = np.random.default_rng(1234)
  tokens = rng.integers(4, VOCAB, (NUM_RECORDS, SEQ + 1), dtype=np.int32)
  lengths = rng.integers(4, SEQ + 2, NUM_RECORDS).astype(np.int32)
  tokens[np.arange(SEQ + 1)[None, :] >= lengths[:, None]] = 0
  return text_data.TokenRows(tokens, lengths, 0)


def model_config():
  return config_lib.ModelConfig(vocab_size=VOCAB, d_model=16, num_layers=1,
                                num_heads=2, num_kv_heads=1, head_dim=8,
                                mlp_dim=32, max_len=32)


def make_plan(sampler: str = "poisson"):
  """A fixed plan (sigma given, not calibrated: no PLD search per start);
  'cyclic' runs under replace_one (add_remove is not accounted for it)."""
  relation = "replace_one" if sampler == "cyclic" else "add_remove"
  o = dpft.Options(steps=STEPS, batch_size=float(BATCH), clip_norm=CLIP,
                   seq_len=SEQ, pad_unit=PAD_UNIT,
                   checkpoint_every=CHECKPOINT_EVERY, log_every=1,
                   learning_rate=1e-2, sampler=sampler, relation=relation)
  q = None if sampler == "cyclic" else BATCH / NUM_RECORDS
  p = dpft.Plan(target_epsilon=math.nan, delta=1e-5, num_records=NUM_RECORDS,
                num_docs=0, steps=STEPS, expected_batch_size=float(BATCH),
                sampling_prob=q, noise_multiplier=SIGMA, clip_norm=CLIP,
                relation=relation, planned_epsilon=math.nan, options=o)
  return p


class _Progress:
  """Loop hook appending progress events (see the module docstring)."""

  def __init__(self, path: str, step_delay: float):
    self._f = open(path, "a", encoding="utf-8")
    self._delay = step_delay

  def write(self, **record) -> None:
    record["t"] = round(time.time(), 3)
    self._f.write(json.dumps(record, sort_keys=True) + "\n")
    self._f.flush()

  def before_step(self, step: int) -> None:
    self.write(event="start", step=int(step), pid=os.getpid())
    if self._delay:
      time.sleep(self._delay)

  def after_step(self, step: int, metrics) -> None:
    del metrics
    self.write(event="done", step=int(step))

  def before_save(self, step: int) -> None:
    self.write(event="save", step=int(step))

  def close(self) -> None:
    self._f.close()


def flat_params(params) -> dict[str, np.ndarray]:
  return {"/".join(k): np.asarray(v) for k, v in
          dpft._flatten(jax.device_get(params)).items()}  # pylint: disable=protected-access


def run_scenario(workdir: str, step_delay: float = 0.0,
                 sampler: str = "poisson") -> dict:
  """Trains (or resumes) to `STEPS` with `sampler`; returns params and
  counts.

  Returns:
    {"params": {path: array}, "executed": steps run by this call,
    "charges": ledger count, "epsilon": ledger epsilon}.
  """

  os.makedirs(workdir, exist_ok=True)
  mesh = mesh_lib.make_mesh()
  cfg = model_config()
  params = registry.init_params_sharded(None, cfg, mesh, jax.random.key(0))
  p = make_plan(sampler)
  sampler = p.make_sampler(SEED, dpft.pad_unit(p.options, mesh))
  header = dpft.make_ledger_header(p, sampler, {"scenario": "kill_resume",
                                                "seed": SEED})
  progress = _Progress(os.path.join(workdir, "progress.jsonl"), step_delay)
  batches = open(os.path.join(workdir, "batches.jsonl"), "a",
                 encoding="utf-8")

  def on_batch(step, b):
    real = b.indices[~b.is_padding].tolist()
    batches.write(json.dumps({"step": int(step), "indices": real,
                              "bucket": int(len(b.indices))}) + "\n")
    batches.flush()

  try:
    with ledger_lib.Ledger.open(os.path.join(workdir, "ledger.jsonl"),
                                header) as ledger:
      res = dpft.finetune(params, cfg, rows(), p,
                          os.path.join(workdir, "work"), ledger, seed=SEED,
                          mesh=mesh, hooks=(progress,), on_batch=on_batch)
      out = {"params": flat_params(res.params), "executed": res.executed,
             "charges": ledger.count, "epsilon": ledger.epsilon()}
    with files.atomic_open(os.path.join(workdir, "final.npz"), "wb") as f:
      np.savez(f, **out["params"])
    progress.write(event="finish", executed=out["executed"],
                   charges=out["charges"])
    return out
  finally:
    progress.close()
    batches.close()


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--cache_dir", default=None)
  parser.add_argument("--step_delay", type=float, default=0.0)
  parser.add_argument("--sampler", default="poisson",
                      choices=("poisson", "cyclic"))
  args = parser.parse_args()
  if args.cache_dir:
    jax.config.update("jax_compilation_cache_dir", args.cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  run_scenario(args.workdir, args.step_delay, args.sampler)


if __name__ == "__main__":
  main()
