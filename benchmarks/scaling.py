r"""Scaling: DP-SGD step throughput over 1/2/4/8 devices; Beam documents/s.

  python -m benchmarks.scaling [--devices=1,2,4,8] [--model=micro] \
      [--batch_size=32] [--seq_len=64] [--rounds=5] \
      [--beam_size=demo] [--beam_workers=1] [--skip_beam]

DP-SGD: for each device count N, a fresh subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (the flag is read
once, at JAX import) builds a 'data' mesh of N devices and times one full
jitted DP-SGD step (`make_dp_grad_fn` over the mesh + adam) on the same
batch, key and initial parameters: compile time, median and min step time,
examples/s. It also runs 2 more steps and saves the parameters, and the
parent reports the largest |difference| from the 1-device parameters: the
functional check that the sharded step computes the same thing (float
reassociation only). On a CPU the "devices" share the same cores, so the
throughput column checks the sharding, it is not a speed claim.

Beam: builds a `--beam_size` release with the corpus stage on the
DirectRunner (`cbench.tracks.geminon.beam_pipeline`: shards generated and
deduplicated in parallel, `--beam_workers` worker processes) and, for
reference, with the single-process path; prints documents/s of both (whole
build and corpus stage alone) and whether the two releases are
byte-identical. On a shared 2-core machine, worker start-up and the
pipeline's shuffles cost more than the second core gives back at `demo`
size; the figure checks the parallel path, it is not a speed claim.

One JSON line per measurement, then a table.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

from benchmarks import bench_flags
from cbench.models import config as config_lib
from cbench.models import registry
from cbench.models.transformer import Transformer
from cbench.parallel import mesh as mesh_lib
from cbench.privacy import dpsgd
from cbench.tracks.geminon import generator as geminon

_DEVICES = bench_flags.DEFINE_list("devices", ["1", "2", "4", "8"],
                             "Fake CPU device counts, one subprocess each.")
_MODEL = bench_flags.DEFINE_string("model", "micro", "cbench model config.")
_VOCAB = bench_flags.DEFINE_integer("vocab_size", 512, "Vocabulary size.")
_B = bench_flags.DEFINE_integer("batch_size", 32, "Global batch (rows).")
_T = bench_flags.DEFINE_integer("seq_len", 64, "Tokens per row.")
_ROUNDS = bench_flags.DEFINE_integer("rounds", 5, "Timed steps per device count.")
_BEAM_SIZE = bench_flags.DEFINE_string("beam_size", "demo", "Release size for Beam.")
_BEAM_WORKERS = bench_flags.DEFINE_integer(
    "beam_workers", 1, "DirectRunner workers (--direct_num_workers).")
_SKIP_BEAM = bench_flags.DEFINE_bool("skip_beam", False, "Skip the Beam part.")
_CHILD = bench_flags.DEFINE_string("child_out", None,
                             "Internal: run one device count, write here.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dp_step_child(out_path: str, *, model: str, vocab_size: int,
                  batch_size: int, seq_len: int, rounds: int) -> dict:
  """Times the DP-SGD step on all local devices (run in a subprocess)."""


  n = jax.device_count()
  mesh = mesh_lib.make_mesh(data=n)
  cfg = config_lib.get_model_config(model, vocab_size, max_len=seq_len)
  net = Transformer(cfg)

  def loss(params, row):
    logits = net.apply({"params": params}, row[None, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, row[None, 1:]).mean()

  dcfg = dpsgd.DpSgdConfig(clip_norm=1.0, noise_multiplier=1.0,
                           expected_batch_size=float(batch_size))
  dp_grad = dpsgd.make_dp_grad_fn(loss, dcfg, mesh)
  opt = optax.adam(1e-3)

  @jax.jit
  def step(params, opt_state, rows, pad, key):
    g, _ = dp_grad(params, rows, pad, key)
    u, opt_state = opt.update(g, opt_state, params)
    return optax.apply_updates(params, u), opt_state

  rows = np.random.default_rng(0).integers(
      0, vocab_size, (batch_size, seq_len + 1), np.int32)
  rows, pad = jax.device_put(
      (rows, np.zeros(batch_size, bool)), NamedSharding(mesh, P("data")))
  params = registry.init_params_sharded(None, cfg, mesh, jax.random.key(0))
  opt_state = opt.init(params)
  key = jax.random.key(1)
  t0 = time.perf_counter()
  jax.block_until_ready(step(params, opt_state, rows, pad, key))
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(rounds):
    t0 = time.perf_counter()
    jax.block_until_ready(step(params, opt_state, rows, pad, key))
    times.append(time.perf_counter() - t0)
  p, s = params, opt_state
  for i in range(3):
    p, s = step(p, s, rows, pad, jax.random.fold_in(key, i))
  flat = {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_leaves_with_path(jax.device_get(p))}
  np.savez(out_path, **flat)
  med = statistics.median(times)
  return {"part": "dpsgd", "devices": n, "model": model,
          "params_m": round(cfg.num_params() / 1e6, 3),
          "batch_size": batch_size, "seq_len": seq_len,
          "rows_per_device": batch_size // n,
          "compile_s": round(compile_s, 2), "median_step_s": round(med, 4),
          "min_step_s": round(min(times), 4),
          "examples_per_s": round(batch_size / med, 1),
          "tokens_per_s": round(batch_size * seq_len / med, 1),
          "finite": bool(all(np.isfinite(v).all() for v in flat.values()))}


def run_device_count(n: int, workdir: str, **kw) -> dict:
  """`dp_step_child` in a subprocess with `n` fake CPU devices."""
  out = os.path.join(workdir, f"params_{n}.npz")
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
  env.pop("CBENCH_DISTRIBUTED", None)
  args = [sys.executable, "-m", "benchmarks.scaling", f"--child_out={out}",
          *(f"--{k}={v}" for k, v in kw.items())]
  proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=1800, check=False)
  if proc.returncode != 0:
    raise RuntimeError(f"devices={n} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def max_param_diff(a_path: str, b_path: str) -> float:
  with np.load(a_path) as a, np.load(b_path) as b:
    assert sorted(a) == sorted(b)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def dpsgd_scaling(devices: list[int], **kw) -> list[dict]:
  rows = []
  workdir = tempfile.mkdtemp(prefix="cbench-scaling-")
  try:
    for n in devices:
      row = run_device_count(n, workdir, **kw)
      if n != devices[0]:
        row[f"max_param_diff_vs_{devices[0]}dev"] = max_param_diff(
            os.path.join(workdir, f"params_{devices[0]}.npz"),
            os.path.join(workdir, f"params_{n}.npz"))
      rows.append(row)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  return rows


def _timed(stage, times: list):
  """A corpus stage that records its wall time in `times`."""
  def run(*args):
    t0 = time.perf_counter()
    out = stage(*args)
    times.append(time.perf_counter() - t0)
    return out
  return run


def beam_throughput(size: str, workers: int) -> list[dict]:
  """Documents/s of the Beam DirectRunner build vs the single process.

  Two figures per path: the whole build (`wall_s`, `docs_per_s`: corpus,
  QA, TFDS export, manifest) and the corpus stage alone (`corpus_s`,
  `corpus_docs_per_s`: generation, dedup, splits, supports), the part Beam
  parallelises over shards. `documents` = document slots generated.
  """
  from cbench.tracks.geminon import beam_pipeline  # pylint: disable=g-import-not-at-top
  config = geminon.make_config("geminon", "2026q4", size)
  tmp = tempfile.mkdtemp(prefix="cbench-beam-")
  rows = []
  try:
    single_stage, beam_stage = [], []
    t0 = time.perf_counter()
    single = geminon.build_release(
        config, os.path.join(tmp, "single"),
        corpus_stage=_timed(geminon.generate_corpus, single_stage))
    single_s = time.perf_counter() - t0
    args = [f"--direct_num_workers={workers}"]
    if workers > 1:
      args.append("--direct_running_mode=multi_processing")
    stage = functools.partial(beam_pipeline.generate_corpus,
                              runner="DirectRunner", pipeline_args=args)
    t0 = time.perf_counter()
    beamed = geminon.build_release(config, os.path.join(tmp, "beam"),
                                   corpus_stage=_timed(stage, beam_stage))
    beam_s = time.perf_counter() - t0
    docs = single["dedup"]["generated"]
    for name, wall, corpus_s in (
        ("single_process", single_s, single_stage[0]),
        (f"beam_direct_{workers}w", beam_s, beam_stage[0])):
      rows.append({"part": "release", "path": name, "size": size,
                   "documents": docs,
                   "shards": single["documents"]["shards"],
                   "wall_s": round(wall, 2),
                   "docs_per_s": round(docs / wall, 1),
                   "corpus_s": round(corpus_s, 2),
                   "corpus_docs_per_s": round(docs / corpus_s, 1),
                   "cpu_count": os.cpu_count(),
                   "byte_identical": beamed["files"] == single["files"]})
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return rows


def main(argv):
  del argv
  kw = dict(model=_MODEL.value, vocab_size=_VOCAB.value,
            batch_size=_B.value, seq_len=_T.value, rounds=_ROUNDS.value)
  if _CHILD.value:
    print(json.dumps(dp_step_child(_CHILD.value, **kw)), flush=True)
    return
  devices = [int(d) for d in _DEVICES.value]
  rows = []
  for row in dpsgd_scaling(devices, **kw):
    print(json.dumps(row), flush=True)
    rows.append(row)
  if not _SKIP_BEAM.value:
    for row in beam_throughput(_BEAM_SIZE.value, _BEAM_WORKERS.value):
      print(json.dumps(row), flush=True)
      rows.append(row)
  print(f"\n{'devices':>7} {'rows/dev':>8} {'compile s':>9} {'median s':>9} "
        f"{'ex/s':>8} {'max|dparam|':>12}")
  for r in rows:
    if r["part"] == "dpsgd":
      diff = next((v for k, v in r.items() if k.startswith("max_param")),
                  0.0)
      print(f"{r['devices']:>7} {r['rows_per_device']:>8} "
            f"{r['compile_s']:>9.2f} {r['median_step_s']:>9.4f} "
            f"{r['examples_per_s']:>8.1f} {diff:>12.2e}")
  for r in rows:
    if r["part"] == "release":
      print(f"release {r['size']} {r['path']:>16}: {r['documents']} docs "
            f"in {r['wall_s']:.2f} s = {r['docs_per_s']:.0f} docs/s; "
            f"corpus stage {r['corpus_s']:.2f} s = "
            f"{r['corpus_docs_per_s']:.0f} docs/s over {r['shards']} shards "
            f"(byte-identical: {r['byte_identical']})")


if __name__ == "__main__":
  app.run(main)
