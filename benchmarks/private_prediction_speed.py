r"""Private-prediction decoding speed against plain KV-cached decoding.

  python -m benchmarks.private_prediction_speed [--models=micro] \
      [--vocab_size=512] [--batch_size=8] [--num_docs=4] \
      [--methods=svt,invisible_ink,median,public_only]

  # Gemma 3 270M beside the tiny LM, in one run (CPU-sized):
  python -m benchmarks.private_prediction_speed --models=tiny,gemma3_270m \
      --vocab_size=2048 --batch_size=8 --num_docs=2 --prompt_len=16 \
      --n1=8 --n2=24 --repeats=1 --methods=svt

For each method, one run of the shared decoder (`cbench.decoding.decoder`)
with that private sampler over ``num_docs`` groups of ``batch_size + 1``
prompt rows, and one run of the same decoder with a plain temperature
sampler over the same ``(batch_size + 1) * num_docs`` rows as independent
streams, same model, prompt length and number of steps (no stream ends
early: eos is disabled and budgets exceed the length). The per-step time is
``(t(n2) - t(n1)) / (n2 - n1)`` for two lengths in the same compiled
bucket, so prefill and dispatch cancel. After a warm-up (compile) run,
the two decoders are timed round-robin `--repeats` times so machine noise
hits both alike; the medians over repeats are reported (the ratio is the
median of per-repeat ratios). Prints one JSON line per
method: ms per step for both, their ratio (target <= 1.2), and synthetic
tokens per second (``num_docs`` tokens per private step).

Models (`--models`, one JSON line per model and method): a named cbench
size (`cbench.models.config.MODEL_NAMES`: micro, tiny, ...) with random
weights and `--vocab_size` ids; or a pretrained name (``gemma3_270m``,
``smollm2_135m``), loaded with its REAL GGUF weights and vocabulary when the
'models' extra is installed (``"weights": "gguf"``), else random weights of
the same architecture and vocabulary (``"weights": "random"``; see
`benchmarks.model_speed.load`). Speed does not depend on the weights'
values, only on shapes (Gemma 3: 262,144-id vocabulary).
"""

from __future__ import annotations

import json
import time

from absl import app
from absl import flags
import jax
import numpy as np

from benchmarks import bench_flags
from benchmarks import model_speed
from cbench.decoding import decoder
from cbench.decoding import token_samplers as plain_samplers
from cbench.models import config as config_lib
from cbench.models import gguf_loader
from cbench.models import registry
from cbench.privacy import pp_accounting
from cbench.synthesis import private_samplers

_MODELS = bench_flags.DEFINE_list(
    "models", ["micro"], "Models: named cbench sizes (random weights, "
    "--vocab_size ids) and/or gemma3_270m, smollm2_135m (real weights when "
    "installed).")
_VOCAB = bench_flags.DEFINE_integer(
    "vocab_size", 512, "Vocabulary size of the named cbench sizes.")
_S = bench_flags.DEFINE_integer("batch_size", 8, "Private prompts per document.")
_M = bench_flags.DEFINE_integer("num_docs", 4, "Documents decoded at once.")
_PROMPT = bench_flags.DEFINE_integer("prompt_len", 32, "Prompt tokens per row.")
_N1 = bench_flags.DEFINE_integer("n1", 40, "Shorter decode length.")
_N2 = bench_flags.DEFINE_integer("n2", 64, "Longer decode length (same bucket).")
_REPEATS = bench_flags.DEFINE_integer("repeats", 5, "Timed rounds (median).")
_METHODS = bench_flags.DEFINE_list(
    "methods", ["svt", "invisible_ink", "median", "public_only"],
    "Samplers to time: svt, exp_mech, invisible_ink, median, public_only.")

_NO_EOS = -1
_BUCKET = 32      # decoder.generate's default new_tokens_bucket


def make_sampler(method: str, batch_size: int, max_tokens: int):
  """A private sampler that never ends a stream before `max_tokens`."""
  if method == "svt":
    params = pp_accounting.PrivatePredictionParams(
        batch_size=batch_size, clip=5.0, temperature=1.0, svt_noise=0.2,
        threshold=0.5, max_private_tokens=max_tokens)
    return private_samplers.SvtPrivatePredictionSampler(params)
  if method == "exp_mech":
    return private_samplers.ExpMechSampler(batch_size, 5.0, 1.0, max_tokens)
  if method == "invisible_ink":
    return private_samplers.InvisibleInkSampler(batch_size, 1.0, 1.0, max_tokens,
                                        top_k=50)
  if method == "median":
    return private_samplers.MedianSampler(batch_size, 5.0, 1.0, max_tokens)
  if method == "public_only":
    return private_samplers.PublicOnlySampler()
  raise ValueError(f"Unknown method {method!r}.")


def _sig(x: float) -> float:
  return float(f"{x:.4g}")


def _time(fn) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def _per_step_pair(run_a, run_b, n1: int, n2: int, repeats: int
                   ) -> tuple[float, float, float]:
  """Per-step seconds of two decoders, timed round-robin (shared noise).

  Each repeat times a(n1), a(n2), b(n1), b(n2) back to back; returns the
  medians over repeats of the two per-step times and of their ratio.
  """
  for run in (run_a, run_b):
    jax.block_until_ready(run(n2))        # compile (both lengths share it)
  per_a, per_b = [], []
  for _ in range(repeats):
    for out, run in ((per_a, run_a), (per_b, run_b)):
      t1 = _time(lambda: run(n1))
      t2 = _time(lambda: run(n2))
      out.append(max(t2 - t1, 1e-9) / (n2 - n1))
  ratios = [b / a for a, b in zip(per_a, per_b)]
  return (float(np.median(per_a)), float(np.median(per_b)),
          float(np.median(ratios)))


def load_model(model: str, vocab_size: int, max_len: int):
  """``(config, params, weights)``: "gguf" or "random" (see module doc)."""
  if model in gguf_loader.PRETRAINED_NAMES:
    return model_speed.load(model, "float32")
  cfg = config_lib.get_model_config(model, vocab_size, max_len=max_len)
  return cfg, registry.init_params(cfg, jax.random.key(0)), "random"


def measure(method: str, *, model: str, vocab_size: int, batch_size: int,
            num_docs: int, prompt_len: int, n1: int, n2: int,
            repeats: int, loaded=None) -> dict:
  """Times one private sampler against plain decoding of the same rows.

  Args:
    loaded: ``load_model(...)`` of `model`, to reuse across methods (None:
      load it here).
  """
  if not 0 < n1 < n2 or -(-n1 // _BUCKET) != -(-n2 // _BUCKET):
    raise ValueError(f"Expected 0 < n1={n1} < n2={n2} in the same bucket of "
                     f"{_BUCKET} new tokens (one compiled program).")
  if loaded is None:
    loaded = load_model(model, vocab_size, prompt_len + n2 + 8)
  cfg, params, weights = loaded
  if prompt_len + n2 > cfg.max_len:
    raise ValueError(f"prompt_len={prompt_len} + n2={n2} exceed {model}'s "
                     f"max_len={cfg.max_len}.")
  vocab_size = cfg.vocab_size
  group = batch_size + 1
  rows = group * num_docs
  prompts = np.asarray(jax.random.randint(
      jax.random.key(1), (rows, prompt_len), 4, vocab_size), np.int32)
  private = make_sampler(method, batch_size, n2)
  plain = plain_samplers.Temperature(1.0)

  def run_private(n):
    return decoder.generate(params, cfg, prompts, n, private,
                            jax.random.key(2), group_size=group,
                            eos_id=_NO_EOS).tokens

  def run_plain(n):
    return decoder.generate(params, cfg, prompts, n, plain, jax.random.key(2),
                            group_size=1, eos_id=_NO_EOS).tokens

  plain_s, private_s, ratio = _per_step_pair(run_plain, run_private, n1,
                                             n2, repeats)
  return {
      "method": method, "model": model, "weights": weights,
      "vocab_size": vocab_size,
      "batch_size": batch_size, "num_docs": num_docs, "rows": rows,
      "prompt_len": prompt_len,
      "plain_ms_per_step": _sig(plain_s * 1e3),
      "private_ms_per_step": _sig(private_s * 1e3),
      "ratio": _sig(ratio),
      "synthetic_tokens_per_s": _sig(num_docs / private_s),
      "plain_row_tokens_per_s": _sig(rows / plain_s),
      "device": jax.devices()[0].device_kind,
  }


def main(argv):
  del argv
  for model in _MODELS.value:
    loaded = load_model(model, _VOCAB.value, _PROMPT.value + _N2.value + 8)
    for method in _METHODS.value:
      print(json.dumps(measure(
          method, model=model, vocab_size=_VOCAB.value,
          batch_size=_S.value, num_docs=_M.value, prompt_len=_PROMPT.value,
          n1=_N1.value, n2=_N2.value, repeats=_REPEATS.value,
          loaded=loaded)), flush=True)
    del loaded


if __name__ == "__main__":
  app.run(main)
