r"""Forward and decode speed of the tiny LM, Gemma 3 270M and SmolLM2-135M.

  python -m benchmarks.model_speed [--models=tiny,gemma3_270m,smollm2_135m] \
      [--batches=1,32] [--seq_len=128] [--repeats=3] [--dtype=float32]

Per model and batch size B, one JSON line each:

* ``forward``: scoring throughput, tokens/s = B * seq_len / time of one
  jitted call computing every position's next-token NLL (all logits,
  computed in chunks of 16 positions so a 262k-vocabulary head never holds
  more than ``B x 16 x vocab`` floats).
* ``decode``: KV-cached greedy decoding through `cbench.decoding.decoder`
  (16-token prompts), tokens/s = B / step time, the step time being
  ``(t(n2) - t(n1)) / (n2 - n1)`` for two lengths in one compiled bucket
  (prefill and dispatch cancel).
* ``private_prediction``: the same decoder with the SVT private-prediction
  sampler over groups of s + 1 = 9 rows (8 private + 1 public): synthetic
  tokens/s = groups / step time, B rounded down to whole groups (at least 1
  group).
* ``head`` (batch 1, for every model): the time share of the output head
  (``h . E^T``, 262,144 x 640 for Gemma) in the forward pass
  (``1 - t(body) / t(forward with all logits)``) and in a decode step
  (``t(one-row head matmul) / t(step)``).

Weights: the real GGUF weights when the 'models' extra is installed
(``"weights": "gguf"``), else random ones of the same shapes
(``"random"``); speed does not depend on them. Timings are medians over
`--repeats` after a compile run; on a shared machine they are noisy.
"""

from __future__ import annotations

import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import bench_flags
from cbench.decoding import decoder
from cbench.decoding import token_samplers as plain_samplers
from cbench.models import config as config_lib
from cbench.models import gemma3
from cbench.models import gguf_loader
from cbench.models import llama
from cbench.models import registry
from cbench.privacy import pp_accounting
from cbench.synthesis import private_samplers

_MODELS = bench_flags.DEFINE_list("models", ["tiny", "gemma3_270m", "smollm2_135m"],
                            "Models: tiny, gemma3_270m, smollm2_135m.")
_BATCHES = bench_flags.DEFINE_list("batches", ["1", "32"], "Batch sizes.")
_SEQ = bench_flags.DEFINE_integer("seq_len", 128, "Forward sequence length.")
_REPEATS = bench_flags.DEFINE_integer("repeats", 3, "Timed repeats (median).")
_DTYPE = bench_flags.DEFINE_string("dtype", "float32", "Compute dtype.")
_CHUNK = 16
_PROMPT = 16
_N1, _N2 = 8, 24  # same 32-token output bucket
_S = 8            # private prompts per group


def load(name: str, dtype: str):
  """``(config, params, weights)`` of a model by name."""
  if name in gguf_loader.PRETRAINED_NAMES and gguf_loader.available(name):
    m = gguf_loader.load_pretrained(name, dtype=dtype)
    return m.config, m.params, "gguf"
  if name == "tiny":
    config = config_lib.get_model_config("tiny", 2048, dtype=dtype)
  elif name == "gemma3_270m":
    config = gemma3.gemma3_config(name, dtype=dtype)
  elif name == "smollm2_135m":
    config = llama.llama_config(name, dtype=dtype)
  else:
    raise ValueError(f"Unknown model {name!r}.")
  return config, registry.init_params(config, jax.random.key(0)), "random"


def _median_time(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _hidden(model, params, tokens):
  """Final-norm states (the head's input, sown by Embed.attend); the logits
  are unused, so XLA drops the head."""
  _, state = model.apply({"params": params}, tokens,
                         mutable=["intermediates"])
  return state["intermediates"]["embed"]["attend_inputs"][0]


def make_nll(config):
  """Jitted ``(params, tokens [B, T]) -> NLL [B, T-1]`` with a chunked head."""
  model = registry.make_model(config)

  @jax.jit
  def nll(params, tokens):
    h = _hidden(model, params, tokens[:, :-1])
    b, t, d = h.shape
    n = t // _CHUNK
    emb = params["embed"]["embedding"].astype(h.dtype)
    hc = h[:, :n * _CHUNK].reshape(b, n, _CHUNK, d).swapaxes(0, 1)
    tc = tokens[:, 1:n * _CHUNK + 1].reshape(b, n, _CHUNK).swapaxes(0, 1)

    def chunk(args):
      hh, tt = args
      logits = jnp.einsum("bcd,vd->bcv", hh, emb,
                          preferred_element_type=jnp.float32)
      lse = jax.nn.logsumexp(logits, axis=-1)
      return lse - jnp.take_along_axis(logits, tt[..., None], -1)[..., 0]
    return jax.lax.map(chunk, (hc, tc)).swapaxes(0, 1).reshape(b, -1)
  return nll


def bench_forward(config, params, batch: int, seq_len: int, repeats: int
                  ) -> dict:
  tokens = jnp.asarray(np.random.default_rng(0).integers(
      4, config.vocab_size, (batch, seq_len + 1)), jnp.int32)
  nll = make_nll(config)
  t = _median_time(lambda: nll(params, tokens), repeats)
  return {"seconds": t, "tokens_per_s": batch * seq_len / t}


def bench_head(config, params, seq_len: int, repeats: int) -> dict:
  """Head time share at batch 1: forward and one decode step."""
  model = registry.make_model(config)
  tokens = jnp.asarray(np.random.default_rng(1).integers(
      4, config.vocab_size, (1, seq_len)), jnp.int32)
  full = jax.jit(lambda p, t: model.apply({"params": p}, t))
  body = jax.jit(lambda p, t: _hidden(model, p, t))
  t_full = _median_time(lambda: full(params, tokens), repeats)
  t_body = _median_time(lambda: body(params, tokens), repeats)
  h = jnp.zeros((1, config.d_model), config.compute_dtype)
  head = jax.jit(lambda p, x: jnp.einsum(
      "bd,vd->bv", x, p["embed"]["embedding"].astype(x.dtype),
      preferred_element_type=jnp.float32))
  t_head1 = _median_time(lambda: head(params, h), repeats)
  step = bench_decode(config, params, 1, repeats)["step_ms"] / 1e3
  return {"forward_full_logits_s": t_full, "forward_body_s": t_body,
          "forward_head_share": 1.0 - t_body / t_full,
          "decode_head_ms": 1e3 * t_head1,
          "decode_head_share": t_head1 / step}


def _prompts(config, rows: int) -> np.ndarray:
  return np.random.default_rng(2).integers(
      4, config.vocab_size, (rows, _PROMPT)).astype(np.int32)


def _step_time(config, params, prompts, sampler, group_size, repeats):
  def run(n):
    return decoder.generate(params, config, prompts, n, sampler,
                            jax.random.key(0), group_size=group_size,
                            eos_id=-1, pad_id=0).tokens
  times = {}
  for n in (_N1, _N2):
    times[n] = _median_time(lambda n=n: run(n), repeats)
  return max(times[_N2] - times[_N1], 1e-9) / (_N2 - _N1)


def bench_decode(config, params, batch: int, repeats: int) -> dict:
  step = _step_time(config, params, _prompts(config, batch),
                    plain_samplers.Greedy(), 1, repeats)
  return {"step_ms": 1e3 * step, "tokens_per_s": batch / step}


def bench_private_prediction(config, params, batch: int, repeats: int
                             ) -> dict:
  groups = max(1, batch // (_S + 1))
  sampler = private_samplers.SvtPrivatePredictionSampler(
      pp_accounting.PrivatePredictionParams(
          batch_size=_S, clip=5.0, temperature=1.0, svt_noise=0.2,
          threshold=0.5, max_private_tokens=_N2 + 8))
  step = _step_time(config, params, _prompts(config, groups * (_S + 1)),
                    sampler, _S + 1, repeats)
  return {"groups": groups, "rows": groups * (_S + 1),
          "step_ms": 1e3 * step, "synthetic_tokens_per_s": groups / step}


def _round(d: dict) -> dict:
  return {k: float(f"{v:.4g}") if isinstance(v, float) else v
          for k, v in d.items()}


def main(argv):
  del argv
  for name in _MODELS.value:
    config, params, weights = load(name, _DTYPE.value)
    base = {"model": name, "weights": weights, "dtype": _DTYPE.value,
            "vocab_size": config.vocab_size,
            "params_millions": round(registry.param_count(params) / 1e6, 1)}
    head = bench_head(config, params, _SEQ.value, _REPEATS.value)
    print(json.dumps({**base, "bench": "head", "batch": 1,
                      "seq_len": _SEQ.value, **_round(head)}), flush=True)
    for b in (int(x) for x in _BATCHES.value):
      for bench, fn in (
          ("forward", lambda b=b: bench_forward(config, params, b, _SEQ.value,
                                                _REPEATS.value)),
          ("decode", lambda b=b: bench_decode(config, params, b,
                                              _REPEATS.value)),
          ("private_prediction", lambda b=b: bench_private_prediction(
              config, params, b, _REPEATS.value))):
        print(json.dumps({**base, "bench": bench, "batch": b,
                          **_round(fn())}), flush=True)
    del params


if __name__ == "__main__":
  app.run(main)
