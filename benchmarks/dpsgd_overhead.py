r"""DP-SGD step overhead: DP / non-private step time and peak memory.

  python -m benchmarks.dpsgd_overhead [--models=tiny,small] \
      [--batch_size=64] [--seq_len=128] [--rounds=3] [--methods=vmap,ghost]

For each model config (`cbench.models`, default `tiny` and the ~25M-param
`small`) and batch size, times one full jitted training step (grad + adam)
of: the non-private step (mean loss), DP-SGD with each clipping method
(`cbench.privacy.dpsgd`, Poisson-style padded batch, clip 1, sigma 1), and
jax_privacy's `clipped_grad` when it is importable (skipped otherwise). The
variants are timed round-robin (`--rounds` times each, after one compile
call) so machine noise hits all alike; prints median / min seconds, the
ratio to the non-private median (target <= 1.15), and the compiled
program's temp memory (XLA `memory_analysis`, the step's peak scratch
beyond arguments/outputs) plus the device's peak bytes where the backend
reports it (GPU/TPU), and on one device XLA's FLOP count ratio
(machine-independent). With more than one device the batch is split over a
'data' mesh (shard_map for DP, GSPMD for the non-private step). One JSON
line per variant, then a table. Weights and tokens are random.

On a 2-core CPU `small` at batch 64 x 128 tokens takes minutes per variant;
use `--models=tiny --seq_len=64` for a quick look.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Callable

from absl import app
from absl import flags

from benchmarks import bench_flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cbench.models import config as config_lib
from cbench.models import registry
from cbench.models import transformer as tf
from cbench.privacy import dpsgd
from cbench.privacy import ghost

_MODELS = bench_flags.DEFINE_list("models", ["tiny", "small"], "Model configs.")
_VOCAB = bench_flags.DEFINE_integer("vocab_size", 8000, "Vocabulary size.")
_B = bench_flags.DEFINE_integer("batch_size", 64, "Batch size (rows).")
_T = bench_flags.DEFINE_integer("seq_len", 128, "Tokens per row.")
_ROUNDS = bench_flags.DEFINE_integer("rounds", 3, "Timed calls per variant.")
_METHODS = bench_flags.DEFINE_list("methods", ["vmap", "ghost"],
                             "DP clipping methods to time.")
_MB = bench_flags.DEFINE_integer("microbatch_size", None,
                           "DP microbatch size (per device); None = off.")
_DTYPE = bench_flags.DEFINE_string(
    "dtype", "", "Override the config's compute dtype (e.g. float32 on CPU, "
    "where bfloat16 is slow); empty keeps the config's.")


def _lm_loss(model) -> ghost.GhostLoss:
  return ghost.GhostLoss(
      model, lambda b: (b["inputs"],),
      lambda out, b: tf.cross_entropy_loss(out, b["targets"])[0])


def _compiled_stats(jitted, *args) -> dict:
  """XLA's static view of the step: scratch memory and FLOPs."""
  out = {}
  try:
    compiled = jitted.lower(*args).compile()
    stats = compiled.memory_analysis()
    if stats is not None:
      out["temp_mb"] = round(stats.temp_size_in_bytes / 2**20, 1)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if cost and "flops" in cost:
      out["gflop"] = round(cost["flops"] / 1e9, 1)
  except Exception as e:  # pylint: disable=broad-except
    out["compiled_stats_error"] = type(e).__name__
  dev = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in dev:
    out["device_peak_mb"] = round(dev["peak_bytes_in_use"] / 2**20, 1)
  return out


def _jax_privacy_step(loss, opt, batch_size):
  """jax_privacy.clipped_grad step, or None with the reason."""
  try:
    import jax_privacy  # pylint: disable=g-import-not-at-top
    from jax_privacy import noise_addition  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    return None, f"not importable ({e.name})"
  cg = jax_privacy.clipped_grad(
      lambda p, b: jnp.mean(loss.batched(p, b)), l2_clip_norm=1.0,
      batch_argnums=1, keep_batch_dim=True)

  @jax.jit
  def step(params, opt_state, batch, key):
    s = cg(params, batch)
    priv = noise_addition.gaussian_privatizer(stddev=1.0, prng_key=key)
    g, _ = priv.update(s, priv.init(params))
    g = jax.tree.map(lambda x: x / batch_size, g)
    u, opt_state = opt.update(g, opt_state, params)
    return optax.apply_updates(params, u), opt_state
  return step, None


def measure_model(name: str, *, vocab_size: int, batch_size: int,
                  seq_len: int, rounds: int, methods: list[str],
                  microbatch_size: int | None, dtype: str = "") -> list[dict]:
  """Times the non-private and DP steps of one model config."""
  over = {"dtype": dtype} if dtype else {}
  cfg = config_lib.get_model_config(name, vocab_size, max_len=seq_len, **over)
  model = registry.make_model(cfg)
  params = registry.init_params(cfg, jax.random.key(0))
  loss = _lm_loss(model)
  opt = optax.adam(1e-4)
  opt_state = opt.init(params)
  rng = np.random.default_rng(0)
  tok = rng.integers(0, vocab_size, (batch_size, seq_len + 1), np.int32)
  batch = {"inputs": jnp.asarray(tok[:, :-1]),
           "targets": jnp.asarray(tok[:, 1:])}
  pad = jnp.zeros(batch_size, bool)
  mesh = None
  if jax.device_count() > 1 and batch_size % jax.device_count() == 0:
    mesh = Mesh(np.array(jax.devices()), ("data",))
    batch, pad = jax.device_put((batch, pad), NamedSharding(mesh, P("data")))
    params, opt_state = jax.device_put((params, opt_state),
                                       NamedSharding(mesh, P()))

  @jax.jit
  def plain_step(params, opt_state, batch, key):
    del key
    g = jax.grad(lambda p: jnp.mean(loss.batched(p, batch)))(params)
    u, opt_state = opt.update(g, opt_state, params)
    return optax.apply_updates(params, u), opt_state

  def dp_step_for(method):
    dcfg = dpsgd.DpSgdConfig(clip_norm=1.0, noise_multiplier=1.0,
                             expected_batch_size=float(batch_size),
                             clipping=method, microbatch_size=microbatch_size)
    dp_grad = dpsgd.make_dp_grad_fn(loss, dcfg, mesh)

    @jax.jit
    def step(params, opt_state, batch, key):
      g, _ = dp_grad(params, batch, pad, key)
      u, opt_state = opt.update(g, opt_state, params)
      return optax.apply_updates(params, u), opt_state
    return step

  variants: dict[str, Callable] = {"non_private": plain_step}
  for m in methods:
    variants[f"dp_{m}"] = dp_step_for(m)
  skipped = {}
  jp, why = _jax_privacy_step(loss, opt, batch_size)
  if jp is None:
    skipped["jax_privacy"] = why
  else:
    variants["jax_privacy"] = jp

  key = jax.random.key(1)
  args = (params, opt_state, batch, key)
  info, times = {}, {k: [] for k in variants}
  for k, fn in variants.items():
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    info[k] = {"compile_and_first_s": round(time.perf_counter() - t0, 2),
               **_compiled_stats(fn, *args)}
  for _ in range(rounds):
    for k, fn in variants.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[k].append(time.perf_counter() - t0)
  base = statistics.median(times["non_private"])
  base_flop = info["non_private"].get("gflop")
  rows = []
  for k in variants:
    med = statistics.median(times[k])
    row = {"model": name, "params_m": round(cfg.num_params() / 1e6, 2),
           "dtype": cfg.dtype, "variant": k, "batch_size": batch_size,
           "seq_len": seq_len, "devices": jax.device_count(),
           "median_s": round(med, 4), "min_s": round(min(times[k]), 4),
           "ratio_vs_non_private": round(med / base, 3), **info[k]}
    if mesh is None and base_flop and info[k].get("gflop"):
      # (XLA's cost analysis does not see inside shard_map bodies.)
      row["flop_ratio"] = round(info[k]["gflop"] / base_flop, 3)
    rows.append(row)
  for k, why in skipped.items():
    rows.append({"model": name, "variant": k, "skipped": why})
  return rows


def main(argv):
  del argv
  rows = []
  for name in _MODELS.value:
    for row in measure_model(
        name, vocab_size=_VOCAB.value, batch_size=_B.value,
        seq_len=_T.value, rounds=_ROUNDS.value, methods=_METHODS.value,
        microbatch_size=_MB.value, dtype=_DTYPE.value):
      print(json.dumps(row), flush=True)
      rows.append(row)
  print(f"\n{'model':8} {'variant':12} {'median s':>9} {'min s':>8} "
        f"{'ratio':>6} {'flop ratio':>10} {'temp MB':>8}")
  for r in rows:
    if "skipped" in r:
      print(f"{r['model']:8} {r['variant']:12} skipped: {r['skipped']}")
      continue
    print(f"{r['model']:8} {r['variant']:12} {r['median_s']:9.3f} "
          f"{r['min_s']:8.3f} {r['ratio_vs_non_private']:6.2f} "
          f"{r.get('flop_ratio', float('nan')):10.2f} "
          f"{r.get('temp_mb', float('nan')):8.1f}")


if __name__ == "__main__":
  app.run(main)
