r"""Train-step and decoder tokens/s, with MFU against a measured matmul peak.

  python -m benchmarks.train_speed [--config=tiny] [--model=tiny] \
      [--batch_size=B] [--seq_len=T] [--dtype=] [--rounds=5] [--steps=2] \
      [--decode_batch=32] [--prompt_len=32] [--new_tokens=64] \
      [--peak_dtype=] [--matmul_n=0] [--matmul_iters=0]

One run measures three things on whatever backend JAX has, over a
``('data', 'fsdp', 'model')`` mesh of all devices (data parallel):

* ``matmul``: the peak. One jitted call runs `--matmul_iters` chained
  ``[n, n] @ [n, n]`` products in `--peak_dtype` on every device at once
  (``[D, n, n]`` sharded over the D devices), FLOP/s = ``D * iters * 2 n^3 /
  t``. Defaults: float32, n = 1024, 1 product on CPU; bfloat16, n = 8192,
  16 products on GPU/TPU. The peak is the best sample of the run.
* ``train``: the harness step (`cbench.train.lm_train.make_train_step` on
  `init_state`, the optimizer of the `--config`'s fine-tune recipe, its batch
  and sequence length unless overridden), on random tokens, state donated
  and the host batch put on the mesh every step as in the real loop.
  tokens/s = ``steps * batch * seq_len / t`` for `--steps` consecutive steps
  (one block at the end), t the median over rounds. The step is split by timing, in the same round, a
  jitted forward loss and a jitted ``value_and_grad`` on the same batch:
  forward, backward (= grad - forward) and optimizer + input transfer
  (= step - grad); differences of noisy timings, so small negative parts
  can occur on a shared machine.
* ``decode``: `cbench.decoding.decoder.generate` with the greedy sampler on
  `--decode_batch` random prompts of `--prompt_len` tokens, EOS disabled.
  Step time = median over rounds of ``(t(n2) - t(n1)) / (n2 - n1)`` with
  ``n2 = --new_tokens``, ``n1 = 1`` in one compiled program (prefill and
  dispatch cancel); tokens/s = batch / step time. A round whose difference
  is not positive (pure noise) counts as rate 0 in ``mfu_paired``; if the
  median is not positive the row carries a ``note`` instead of rates.
  ``end_to_end_tokens_per_s`` = ``batch * n2 / t(n2)`` includes prefill and
  dispatch.

Every measurement is timed round-robin with a matmul sample (`--rounds`
rounds after a compile/warm-up call), so machine noise hits both alike.

Model FLOPs (`cbench.models.config.ModelConfig.flops_per_token`, the PaLM
appendix B accounting with the LM head counted): with ``N`` the matmul
parameters (attention q/k/v/o and MLP kernels of every layer plus the tied
``vocab x d_model`` head; embedding lookup and norms excluded), ``L`` layers,
``H`` query heads of width ``Q`` and ``T`` attended positions,

  forward per token = 2 N + 4 L H Q T   (QK^T and PV at full length T)
  train per token   = 3 x forward = 6 N + 12 L H Q T,  T = seq_len
  decode per token  = forward at T = mean context of the timed steps
                      (prompt_len + (n1 + n2 + 1) / 2)

Attention is counted over the full (not causally halved) length and without
gemma3 sliding windows, as XLA computes it in training; the decoder actually
attends over its whole cache buffer, so its hardware FLOPs exceed the model
FLOPs. MFU = model FLOP/s / peak FLOP/s: ``mfu`` uses the median rate over
rounds and the run's best peak sample; ``mfu_paired`` is the median over
rounds of each round's rate / that round's matmul sample. XLA's own FLOP
count of the unpartitioned train step (``xla_flops_per_token``; it adds
softmax, norms and optimizer element-wise work) is printed as a check of
the formula.

One JSON line per measurement, then a table. Weights and tokens are random;
speed does not depend on them. On a shared machine the figures are lower
bounds.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
import time
from typing import Any, Callable

from absl import app
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from benchmarks import bench_flags
from cbench import _validate
from cbench import configs
from cbench.decoding import decoder
from cbench.decoding import token_samplers
from cbench.models import config as config_lib
from cbench.models import gemma3
from cbench.models import llama
from cbench.models import registry
from cbench.parallel import mesh as mesh_lib
from cbench.parallel import rules
from cbench.train import lm_train
from cbench.train import optim

MODELS = ("tiny", "gemma3_270m", "smollm2_135m")

_RECIPE = bench_flags.DEFINE_enum("config", "tiny", list(configs.NAMES),
                                  "Harness recipe (model, batch, seq_len, "
                                  "optimizer of its fine-tune).")
_MODEL = bench_flags.DEFINE_enum(
    "model", "tiny", list(MODELS),
    "tiny: the recipe's own model; otherwise that pretrained architecture "
    "(random weights).")
_B = bench_flags.DEFINE_integer("batch_size", None,
                                "Train batch (rows); default the recipe's.")
_T = bench_flags.DEFINE_integer("seq_len", None,
                                "Train tokens per row; default the recipe's.")
_DTYPE = bench_flags.DEFINE_string(
    "dtype", "", "Override the model's compute dtype; empty keeps it.")
_ROUNDS = bench_flags.DEFINE_integer("rounds", 5, "Timed rounds (median).")
_STEPS = bench_flags.DEFINE_integer("steps", 2, "Train steps per round.")
_DB = bench_flags.DEFINE_integer("decode_batch", 32, "Decoded rows.")
_PROMPT = bench_flags.DEFINE_integer("prompt_len", 32, "Prompt tokens per row.")
_NEW = bench_flags.DEFINE_integer("new_tokens", 64,
                                  "Decoded tokens per row (n2; n1 = 1).")
_PEAK_DTYPE = bench_flags.DEFINE_string(
    "peak_dtype", "", "Matmul peak dtype; empty: float32 on CPU, bfloat16 "
    "on accelerators.")
_MM_N = bench_flags.DEFINE_integer("matmul_n", 0,
                                   "Peak matmul size n; 0: 1024 on CPU, 8192 "
                                   "on accelerators.")
_MM_ITERS = bench_flags.DEFINE_integer(
    "matmul_iters", 0, "Chained matmuls per timed call; 0: 1 on CPU, 16 on "
    "accelerators.")

PyTree = Any


def _on_cpu() -> bool:
  return jax.default_backend() == "cpu"


def _sig(x: float) -> float:
  return float(f"{x:.4g}")


def _time(fn: Callable[[], Any]) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


# ------------------------------------------------------------------ config


def make_config(recipe: str, model: str = "tiny", dtype: str = ""
                ) -> tuple[config_lib.ModelConfig, lm_train.TrainRecipe]:
  """The model config and fine-tune recipe of harness recipe `recipe`.

  `model` 'tiny' is the recipe's own model (name, overrides, vocabulary);
  a pretrained name gives that architecture at its real vocabulary. `dtype`
  (non-empty) overrides the compute dtype.
  """
  _validate.one_of("model", model, MODELS)
  harness = configs.harness_config(configs.load(recipe))
  over = {"dtype": dtype} if dtype else {}
  if model == "tiny":
    pre = harness.pretrain
    config = config_lib.get_model_config(
        pre.model, pre.vocab_size, **{**dict(pre.model_overrides), **over})
  elif model in gemma3.GEMMA3_NAMES:
    config = gemma3.gemma3_config(model, **over)
  else:
    config = llama.llama_config(model, **over)
  return config, harness.finetune


def train_flops_per_token(config: config_lib.ModelConfig, seq_len: int
                          ) -> float:
  """Model FLOPs of one trained token: ``6 N + 12 L H Q seq_len``."""
  return config.flops_per_token(seq_len)


def forward_flops_per_token(config: config_lib.ModelConfig,
                            context: float) -> float:
  """Model FLOPs of one forward token attending `context` positions:
  ``2 N + 4 L H Q context``."""
  return config.flops_per_token(context) / 3.0


# ------------------------------------------------------------------ matmul


def resolve_peak(dtype: str = "", n: int = 0, iters: int = 0
                 ) -> tuple[str, int, int]:
  """Backend defaults for the peak matmul's dtype, size and chain length."""
  cpu = _on_cpu()
  dtype = dtype or ("float32" if cpu else "bfloat16")
  _validate.one_of("peak_dtype", dtype, ("float32", "bfloat16", "float16"))
  n = n or (1024 if cpu else 8192)
  iters = iters or (1 if cpu else 16)
  _validate.positive("matmul_n", n)
  _validate.positive("matmul_iters", iters)
  return dtype, n, iters


def make_matmul(mesh, n: int, dtype: str, iters: int
                ) -> tuple[Callable[[], jax.Array], float]:
  """``(run, flops)``: `run()` does `iters` chained ``[n, n] @ [n, n]`` on
  every device of `mesh` at once; `flops` = ``devices * iters * 2 n^3``."""
  d = mesh.devices.size
  sharding = NamedSharding(mesh, P(mesh.axis_names))
  dt = jnp.dtype(dtype)

  @functools.partial(jax.jit, out_shardings=(sharding, sharding))
  def operands(key):
    ka, kb = jax.random.split(key)
    a = jax.random.normal(ka, (d, n, n), jnp.float32)
    b = jax.random.normal(kb, (d, n, n), jnp.float32) / math.sqrt(n)
    return a.astype(dt), b.astype(dt)

  a, b = operands(jax.random.key(0))

  @jax.jit
  def chain(a, b):
    # x <- x @ b keeps unit variance (b ~ N(0, 1/n)); no overflow in bf16.
    return jax.lax.fori_loop(
        0, iters, lambda _, x: jnp.einsum(
            "dij,djk->dik", x, b, preferred_element_type=dt), a)

  return (lambda: chain(a, b)), float(d) * iters * 2.0 * n ** 3


# ------------------------------------------------------------------ train


def _random_batch(config, batch_size: int, seq_len: int, seed: int
                  ) -> dict[str, np.ndarray]:
  """One-document-per-row host batch (`lm_train.row_arrays` layout)."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(4, config.vocab_size, (batch_size, seq_len + 1),
                        dtype=np.int32)
  return {"tokens": tokens,
          "segments": np.ones_like(tokens),
          "positions": np.broadcast_to(
              np.arange(seq_len + 1, dtype=np.int32), tokens.shape).copy()}


def _xla_flops(lowered) -> float | None:
  try:
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) if cost and "flops" in cost else None
  except Exception:  # pylint: disable=broad-except
    return None


class TrainBench:
  """The harness train step plus forward/grad twins for the time split."""

  def __init__(self, config, recipe: lm_train.TrainRecipe, mesh, *,
               batch_size: int, seq_len: int, seed: int = 0):
    data = mesh.shape["data"] * mesh.shape["fsdp"]
    _validate.check(batch_size % data == 0,
                    f"Expected batch_size={batch_size} to be a multiple of "
                    f"the {data} data-parallel devices.")
    _validate.check(seq_len <= config.max_len,
                    f"seq_len={seq_len} exceeds the model's max_len="
                    f"{config.max_len}.")
    self.tokens_per_step = batch_size * seq_len
    optimizer = optim.make_optimizer(recipe.optimizer, recipe.num_steps)
    params = registry.init_params_sharded(None, config, mesh,
                                       jax.random.key(seed))
    self.num_params = registry.param_count(params)
    self.state = lm_train.init_state(params, optimizer, mesh)
    del params  # Donated with the state by the first step.
    self.step_fn = lm_train.make_train_step(config, optimizer)
    model = registry.make_model(config)
    loss = lambda p, b: lm_train.lm_loss(model, p, b)
    self.forward = jax.jit(loss)
    self.grad = jax.jit(jax.value_and_grad(loss))
    self.host_batch = _random_batch(config, batch_size, seq_len, seed)
    self.sharding = rules.batch_sharding(mesh)
    self.key = jax.device_put(jax.random.key(seed),
                              NamedSharding(mesh, P()))
    self.batch = self._put()

  def _put(self):
    return jax.device_put(self.host_batch, self.sharding)

  def steps(self, n: int) -> PyTree:
    """`n` steps as the real loop runs them (batch put, state donated);
    returns the new state (block on it to time the steps)."""
    for _ in range(n):
      self.state, _ = self.step_fn(self.state, self._put(), self.key)
    return self.state

  def xla_flops(self) -> float | None:
    """XLA's FLOP count of one (unpartitioned) step, or None."""
    # Re-jitting lowers whatever `make_train_step` returns (a jitted
    # function or a wrapper around one); nothing runs, nothing is donated.
    return _xla_flops(jax.jit(self.step_fn).lower(self.state, self.batch,
                                                  self.key))


# ------------------------------------------------------------------ decode


class DecodeBench:
  """Greedy KV-cached decoding of random prompts (EOS disabled)."""

  def __init__(self, config, params, mesh, *, batch: int, prompt_len: int,
               new_tokens: int, seed: int = 1):
    _validate.positive("decode_batch", batch)
    _validate.positive("prompt_len", prompt_len)
    _validate.check(new_tokens >= 2,
                    f"Expected new_tokens={new_tokens} >= 2 (n1 = 1).")
    _validate.check(prompt_len + new_tokens <= config.max_len,
                    f"prompt_len={prompt_len} + new_tokens={new_tokens} "
                    f"exceeds the model's max_len={config.max_len}.")
    self.config, self.params, self.mesh = config, params, mesh
    self.batch, self.prompt_len = batch, prompt_len
    self.n1, self.n2 = 1, new_tokens
    self.prompts = np.random.default_rng(seed).integers(
        4, config.vocab_size, (batch, prompt_len)).astype(np.int32)
    self.sampler = token_samplers.Greedy()
    self.key = jax.random.key(seed)

  def run(self, n: int) -> jax.Array:
    # One output bucket of n2 tokens: n1 and n2 share the compiled program.
    return decoder.generate(self.params, self.config, self.prompts, n,
                            self.sampler, self.key, eos_id=-1, pad_id=0,
                            mesh=self.mesh, prompt_bucket=self.prompt_len,
                            new_tokens_bucket=self.n2).tokens

  @property
  def mean_context(self) -> float:
    """Mean attended positions over the timed steps n1 .. n2 - 1."""
    return self.prompt_len + (self.n1 + self.n2 + 1) / 2.0


# ------------------------------------------------------------------ measure


def _mfu_fields(seconds: list[float], peaks: list[float], best_peak: float,
                tokens: int, flops_per_token: float) -> dict:
  """Rates of `tokens` per round taking `seconds` (median > 0), with MFU.

  A round whose time is not positive (a noisy difference) counts as rate
  0 in the paired MFU.
  """
  rate = tokens / statistics.median(seconds)
  paired = statistics.median(
      (tokens / t if t > 0 else 0.0) * flops_per_token / p
      for t, p in zip(seconds, peaks))
  return {"tokens_per_s": _sig(rate),
          "model_flops_per_token": _sig(flops_per_token),
          "model_tflop_per_s": _sig(rate * flops_per_token / 1e12),
          "mfu": _sig(rate * flops_per_token / best_peak),
          "mfu_paired": _sig(paired)}


def measure(*, recipe: str = "tiny", model: str = "tiny", dtype: str = "",
            batch_size: int | None = None, seq_len: int | None = None,
            rounds: int = 5, steps: int = 2, decode_batch: int = 32,
            prompt_len: int = 32, new_tokens: int = 64,
            peak_dtype: str = "", matmul_n: int = 0, matmul_iters: int = 0,
            split: bool = True) -> list[dict]:
  """Matmul peak, train step and decoder rows (see the module docstring).

  Returns:
    ``[matmul_row, train_row, decode_row]``: dicts of JSON-able numbers;
    rates in tokens/s, times in ms, FLOPs per token, MFU as a fraction.
  """
  _validate.positive("rounds", rounds)
  _validate.positive("steps", steps)
  config, train_recipe = make_config(recipe, model, dtype)
  batch_size = batch_size or train_recipe.batch_size
  seq_len = seq_len or train_recipe.seq_len
  _validate.positive("batch_size", batch_size)
  _validate.positive("seq_len", seq_len)
  peak_dtype, matmul_n, matmul_iters = resolve_peak(peak_dtype, matmul_n,
                                                    matmul_iters)
  mesh = mesh_lib.make_mesh()
  devices = mesh.devices.size
  base = {"recipe": recipe, "model": model, "dtype": config.dtype,
          "backend": jax.default_backend(),
          "device": jax.devices()[0].device_kind, "devices": devices}

  matmul, mm_flops = make_matmul(mesh, matmul_n, peak_dtype, matmul_iters)
  train = TrainBench(config, train_recipe, mesh, batch_size=batch_size,
                     seq_len=seq_len)
  xla_flops = train.xla_flops()

  # Warm-up: compile everything and run past first-call effects.
  for fn in (matmul, lambda: train.steps(2)):
    jax.block_until_ready(fn())
  if split:
    for fn in (train.forward, train.grad):
      jax.block_until_ready(fn(train.state.params, train.batch))

  peaks = []
  fwd_s, grad_s, step_s = [], [], []
  for _ in range(rounds):
    peaks.append(mm_flops / _time(matmul))
    t = _time(lambda: train.steps(steps)) / steps
    step_s.append(t)
    if split:
      p = train.state.params
      fwd_s.append(_time(lambda: train.forward(p, train.batch)))
      grad_s.append(_time(lambda: train.grad(p, train.batch)))

  dec = DecodeBench(config, train.state.params, mesh, batch=decode_batch,
                    prompt_len=prompt_len, new_tokens=new_tokens)
  jax.block_until_ready(dec.run(dec.n2))  # compile (n1 shares it)
  dec_steps, dec_peaks, e2e = [], [], []
  for _ in range(rounds):
    dec_peaks.append(mm_flops / _time(matmul))
    t1 = _time(lambda: dec.run(dec.n1))
    t2 = _time(lambda: dec.run(dec.n2))
    dec_steps.append((t2 - t1) / (dec.n2 - dec.n1))
    e2e.append(decode_batch * dec.n2 / t2)
  peaks += dec_peaks
  best_peak = max(peaks)

  matmul_row = {**base, "bench": "matmul", "peak_dtype": peak_dtype,
                "n": matmul_n, "iters": matmul_iters,
                "peak_tflop_per_s": _sig(best_peak / 1e12),
                "median_tflop_per_s": _sig(statistics.median(peaks) / 1e12),
                "samples": len(peaks)}

  train_fpt = train_flops_per_token(config, seq_len)
  step_med = statistics.median(step_s)
  train_row = {**base, "bench": "train", "batch_size": batch_size,
               "seq_len": seq_len, "steps_per_round": steps,
               "params_millions": round(train.num_params / 1e6, 2),
               "step_ms": _sig(1e3 * step_med),
               "min_step_ms": _sig(1e3 * min(step_s)),
               **_mfu_fields(step_s, peaks[:rounds], best_peak,
                             train.tokens_per_step, train_fpt)}
  if xla_flops:
    train_row["xla_flops_per_token"] = _sig(
        xla_flops / train.tokens_per_step)
    train_row["model_over_xla_flops"] = _sig(
        train_fpt * train.tokens_per_step / xla_flops)
  if split:
    fwd, grad = statistics.median(fwd_s), statistics.median(grad_s)
    train_row.update({
        "forward_ms": _sig(1e3 * fwd),
        "backward_ms": _sig(1e3 * (grad - fwd)),
        "optimizer_and_input_ms": _sig(1e3 * (step_med - grad))})

  decode_row = {**base, "bench": "decode", "batch": decode_batch,
                "prompt_len": prompt_len, "n1": dec.n1, "n2": dec.n2,
                "mean_context": dec.mean_context,
                "end_to_end_tokens_per_s": _sig(statistics.median(e2e))}
  dec_step = statistics.median(dec_steps)
  if dec_step > 0:
    decode_row.update(
        step_ms=_sig(1e3 * dec_step),
        **_mfu_fields(dec_steps, dec_peaks, best_peak, decode_batch,
                      forward_flops_per_token(config, dec.mean_context)))
  else:
    decode_row["note"] = ("median t(n2) - t(n1) <= 0: timing noise exceeds "
                          "the decode steps; raise --new_tokens")
  return [matmul_row, train_row, decode_row]


def format_table(rows: list[dict]) -> str:
  """A fixed-width summary of `measure`'s rows."""
  by = {r["bench"]: r for r in rows}
  mm, tr, de = by["matmul"], by["train"], by["decode"]
  lines = [
      f"{mm['device']} x{mm['devices']} ({mm['backend']}); model "
      f"{tr['model']} ({tr['params_millions']}M params, {tr['dtype']}), "
      f"recipe {tr['recipe']}",
      f"matmul peak ({mm['peak_dtype']}, n={mm['n']}, x{mm['iters']}): "
      f"{mm['peak_tflop_per_s']:.4g} TFLOP/s best, "
      f"{mm['median_tflop_per_s']:.4g} median of {mm['samples']}",
      "",
      f"{'bench':7} {'shape':>18} {'tokens/s':>10} {'ms/step':>9} "
      f"{'GFLOP/tok':>10} {'TFLOP/s':>8} {'MFU':>6} {'paired':>6}"]
  for r, shape in (
      (tr, f"{tr['batch_size']}x{tr['seq_len']}"),
      (de, f"{de['batch']}x({de['prompt_len']}+{de['n2']})")):
    if "tokens_per_s" not in r:
      lines.append(f"{r['bench']:7} {shape:>18} n/a: {r.get('note')}")
      continue
    lines.append(
        f"{r['bench']:7} {shape:>18} {r['tokens_per_s']:10.4g} "
        f"{r['step_ms']:9.4g} {r['model_flops_per_token'] / 1e9:10.4g} "
        f"{r['model_tflop_per_s']:8.3g} {r['mfu']:6.3f} "
        f"{r['mfu_paired']:6.3f}")
  if "forward_ms" in tr:
    lines.append(
        f"train step split (ms): forward {tr['forward_ms']:.4g}, backward "
        f"{tr['backward_ms']:.4g}, optimizer+input "
        f"{tr['optimizer_and_input_ms']:.4g} of {tr['step_ms']:.4g}")
  if "xla_flops_per_token" in tr:
    lines.append(
        f"train FLOPs/token: model {tr['model_flops_per_token']:.4g}, XLA "
        f"{tr['xla_flops_per_token']:.4g} (model/XLA "
        f"{tr['model_over_xla_flops']:.3f})")
  lines.append(f"decode end to end (incl. prefill): "
               f"{de['end_to_end_tokens_per_s']:.4g} tokens/s")
  return "\n".join(lines)


def main(argv):
  del argv
  rows = measure(recipe=_RECIPE.value, model=_MODEL.value, dtype=_DTYPE.value,
                 batch_size=_B.value, seq_len=_T.value, rounds=_ROUNDS.value,
                 steps=_STEPS.value, decode_batch=_DB.value,
                 prompt_len=_PROMPT.value, new_tokens=_NEW.value,
                 peak_dtype=_PEAK_DTYPE.value, matmul_n=_MM_N.value,
                 matmul_iters=_MM_ITERS.value)
  for row in rows:
    print(json.dumps(row), flush=True)
  print()
  print(format_table(rows), flush=True)


if __name__ == "__main__":
  app.run(main)
