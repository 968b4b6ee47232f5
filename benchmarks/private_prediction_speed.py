r"""Private-prediction decoding speed against plain decoding of the same rows.

  python -m benchmarks.private_prediction_speed [--models=micro] \
      [--vocab_size=2048] [--batch_sizes=8,32,64] [--num_docs=4] \
      [--prompt_len=32] [--steps=200] [--rounds=5] [--plain=temperature] \
      [--methods=svt,invisible_ink,median,public_only] [--sampler_calls=50]

  # Gemma 3 270M (262,144-id head; real GGUF weights when installed):
  python -m benchmarks.private_prediction_speed --models=gemma3_270m \
      --batch_sizes=8 --num_docs=1 --rounds=3 --methods=svt,median

What is compared, like with like. For a model, s (`--batch_sizes`) and G
(`--num_docs`), one `Inputs` holds ONE prompt array of G * (s + 1) rows
(G groups: s private prompts, then the public one). Every side runs
`cbench.decoding.decoder.generate` on that same array, with
``group_size = s + 1``, the same key, the same number of new tokens and
output bucket (one compiled program per side), EOS disabled and budgets
above the length (no stream ends early; `check_like_with_like` checks
all of this). So prefill, KV cache, and the forward of every step
(G * (s + 1) rows) are the same; the sides differ only in the sampler,
which gets logits ``[G, s + 1, V]`` and emits one token per group:

* plain (`--plain`): `token_samplers.Temperature(1)` reads each group's
  first row and draws ONE token per stream it emits (G draws over V per
  step, G x V random words, checked from its jaxpr), as plain decoding
  samples; or `Greedy` (no draw). The old baseline decoded the rows as
  independent streams and drew rows x V Gumbels, which inflated it.
* private: the method's sampler (aggregation of the s rows, its own exact
  Gumbel draw: 4 words per value, part of its real cost).

A side's run decodes ``n1 = --short`` then ``n2 = n1 + --steps`` new
tokens, each call blocked once (no host sync per step: the decoder's loop
is one jitted `while_loop`); its step time is ``(t(n2) - t(n1)) / steps``
(prefill and dispatch cancel) and ``G / t(n2)`` its end-to-end documents/s
(documents of n2 tokens, prefill included). Every round runs, for each
method, a plain run and that method's run back to back (plain first in
even rounds, second in odd ones, methods in reversed order), so each
ratio compares two runs adjacent in time. One JSON line per model, s and
method: ``ratio`` = private / paired plain step time over the rounds as
min/median/max (the target is a median <= 1.2), ``ratio_of_min_steps``
(best private / best paired plain step, as many runs each: load on a
shared machine only adds time), the medians of both step times and both
documents/s. ``public_only`` does the plain side's work (one draw from one
row per group), so its ratio shows the noise floor.

``"bench": "sampler"`` lines time the samplers alone: `--sampler_calls`
calls of ``next_tokens`` on logits ``[G, s + 1, V]`` inside one jitted
`fori_loop` (the logits shift by the call index, so nothing is hoisted),
ms per call min/median/max over rounds, the plain sampler beside them;
``median_sort`` is the median sampler as it was before issue #21 (a full
`jnp.sort` over the s rows) for a before/after.

Models (`--models`): a named cbench size (`cbench.models.config.MODEL_NAMES`:
micro, tiny, ...) with random weights and `--vocab_size` ids; or a
pretrained name (``gemma3_270m``, ``smollm2_135m``), loaded with its REAL
GGUF weights and vocabulary when the 'models' extra is installed
(``"weights": "gguf"``), else random weights of the same architecture and
vocabulary (``"weights": "random"``; `benchmarks.model_speed.load`).
Speed depends on shapes only (Gemma 3: 262,144-id vocabulary).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from typing import Any, Callable, NamedTuple

from absl import app
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

from benchmarks import bench_flags
from benchmarks import model_speed
from cbench.decoding import decoder
from cbench.decoding import token_samplers as plain_samplers
from cbench.models import config as config_lib
from cbench.models import gguf_loader
from cbench.models import registry
from cbench.privacy import pp_accounting
from cbench.synthesis import aggregation
from cbench.synthesis import private_samplers

_MODELS = bench_flags.DEFINE_list(
    "models", ["micro"], "Models: named cbench sizes (random weights, "
    "--vocab_size ids) and/or gemma3_270m, smollm2_135m (real weights when "
    "installed).")
_VOCAB = bench_flags.DEFINE_integer(
    "vocab_size", 2048, "Vocabulary size of the named cbench sizes.")
_SIZES = bench_flags.DEFINE_list(
    "batch_sizes", ["8", "32", "64"], "Private prompts per document (s).")
_M = bench_flags.DEFINE_integer("num_docs", 4, "Documents decoded at once.")
_PROMPT = bench_flags.DEFINE_integer("prompt_len", 32, "Prompt tokens per row.")
_SHORT = bench_flags.DEFINE_integer("short", 8, "n1: the short run's tokens.")
_STEPS = bench_flags.DEFINE_integer(
    "steps", 200, "Timed steps per round: n2 - n1 (>= 200 for reporting).")
_ROUNDS = bench_flags.DEFINE_integer("rounds", 5, "Timed rounds.")
_PLAIN = bench_flags.DEFINE_enum(
    "plain", "temperature", ["temperature", "greedy"], "Plain sampler.")
_METHODS = bench_flags.DEFINE_list(
    "methods", ["svt", "invisible_ink", "median", "public_only"],
    "Samplers: svt, exp_mech, invisible_ink, median, median_sort, "
    "public_only.")
_CALLS = bench_flags.DEFINE_integer(
    "sampler_calls", 50, "Sampler-alone calls per round (0: skip).")
_SAMPLER_METHODS = bench_flags.DEFINE_list(
    "sampler_methods", ["svt", "invisible_ink", "median", "median_sort",
                        "public_only"], "Samplers timed alone.")

_NO_EOS = -1
_BUCKET = 32


@dataclasses.dataclass(frozen=True)
class _SortedMedianSampler(private_samplers.MedianSampler):
  """The median sampler before issue #21: a full sort over the s rows."""

  def median_and_gaps(self, logits, state):
    priv = logits[:, :self.batch_size].astype(self.dtype)
    return aggregation.clipped_median(priv, self.clip, state.row_mask)


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
    return private_samplers.InvisibleInkSampler(batch_size, 1.0, 1.0,
                                                max_tokens, top_k=50)
  if method == "median":
    return private_samplers.MedianSampler(batch_size, 5.0, 1.0, max_tokens)
  if method == "median_sort":
    return _SortedMedianSampler(batch_size, 5.0, 1.0, max_tokens)
  if method == "public_only":
    return private_samplers.PublicOnlySampler()
  raise ValueError(f"Unknown method {method!r}.")


def make_plain(name: str):
  """The plain sampler: one token per emitted stream (see module doc)."""
  if name == "temperature":
    return plain_samplers.Temperature(1.0)
  if name == "greedy":
    return plain_samplers.Greedy()
  raise ValueError(f"Unknown plain sampler {name!r}.")


def _sig(x: float) -> float:
  return float(f"{x:.4g}")


def _spread(xs) -> dict:
  return {"min": _sig(min(xs)), "median": _sig(statistics.median(xs)),
          "max": _sig(max(xs))}


def load_model(model: str, vocab_size: int, max_len: int):
  """``(config, params, weights)``: "gguf" or "random" (see module doc)."""
  if model in gguf_loader.PRETRAINED_NAMES:
    return model_speed.load(model, "float32")
  cfg = config_lib.get_model_config(model, vocab_size, max_len=max_len)
  return cfg, registry.init_params(cfg, jax.random.key(0)), "random"


class Inputs(NamedTuple):
  """What both sides decode: one prompt array, one key, one length pair."""

  config: Any
  params: Any
  weights: str
  prompts: np.ndarray     # [num_docs * (batch_size + 1), prompt_len] int32
  batch_size: int         # s
  num_docs: int           # G
  key: jax.Array
  n1: int
  n2: int
  bucket: int             # output buffer: one compiled program for n1, n2

  @property
  def group_size(self) -> int:
    return self.batch_size + 1


def make_inputs(loaded, *, batch_size: int, num_docs: int, prompt_len: int,
                short: int, steps: int) -> Inputs:
  """Random prompts for G groups of s + 1 rows on ``load_model(...)``."""
  if short < 1 or steps < 1:
    raise ValueError(f"Expected short={short} >= 1 and steps={steps} >= 1.")
  cfg, params, weights = loaded
  n2 = short + steps
  bucket = -(-n2 // _BUCKET) * _BUCKET
  if prompt_len + bucket > cfg.max_len:
    raise ValueError(f"prompt_len={prompt_len} + {bucket} new tokens exceed "
                     f"the model's max_len={cfg.max_len}.")
  rows = (batch_size + 1) * num_docs
  prompts = np.asarray(jax.random.randint(
      jax.random.key(1), (rows, prompt_len), 4, cfg.vocab_size), np.int32)
  return Inputs(cfg, params, weights, prompts, batch_size, num_docs,
                jax.random.key(2), short, n2, bucket)


def decode_fn(inputs: Inputs, sampler) -> Callable[[int], jax.Array]:
  """``n -> tokens [G, n]``: the shared decoder on `inputs` with `sampler`.

  Every side of the benchmark is built here, so all get the same prompt
  array, group size, key, bucket and end-of-stream settings.
  """
  def run(n: int) -> jax.Array:
    return decoder.generate(
        inputs.params, inputs.config, inputs.prompts, n, sampler, inputs.key,
        group_size=inputs.group_size, eos_id=_NO_EOS,
        new_tokens_bucket=inputs.bucket).tokens
  return run


def random_words(sampler, num_groups: int, group_size: int,
                 vocab_size: int) -> int:
  """Random 32-bit words one ``next_tokens`` call draws (from its jaxpr)."""
  logits = jax.ShapeDtypeStruct((num_groups, group_size, vocab_size),
                                jnp.float32)
  key = jax.random.key(0)
  state = jax.eval_shape(lambda k: sampler.init_state(num_groups, k), key)
  jaxpr = jax.make_jaxpr(sampler.next_tokens)(logits, key, state).jaxpr
  words, todo = 0, [jaxpr]
  while todo:
    j = todo.pop()
    for eqn in j.eqns:
      if eqn.primitive.name == "random_bits":
        words += sum(math.prod(v.aval.shape) for v in eqn.outvars)
      todo.extend(jax.extend.core.jaxprs_in_params(eqn.params))
  return words


def check_like_with_like(inputs: Inputs, plain, samplers: dict) -> int:
  """Raises ValueError unless the sides compare like with like.

  Checks that every sampler gets the same ``[G, s + 1, V]`` logits and emits
  G tokens, that none ends a stream before ``n2`` (so all run the same
  steps), and that the plain sampler draws at most one token per stream it
  emits (<= G x V random words per step, not one per row). Returns the
  plain sampler's random words per step.
  """
  g, gs, v = inputs.num_docs, inputs.group_size, inputs.config.vocab_size
  if inputs.prompts.shape[0] != g * gs:
    raise ValueError(f"Expected {g} x {gs} prompt rows; got "
                     f"{inputs.prompts.shape}.")
  words = random_words(plain, g, gs, v)
  if words > g * v:
    raise ValueError(
        f"The plain sampler draws {words} random words per step for {g} "
        f"streams of {v} ids: more than one draw per emitted token (rows x "
        f"V = {g * gs * v} would be one per row).")
  logits = jax.ShapeDtypeStruct((g, gs, v), jnp.float32)
  for name, sampler in {"plain": plain, **samplers}.items():
    key = jax.random.key(0)
    state = jax.eval_shape(lambda k, s=sampler: s.init_state(g, k), key)
    tokens, stop, _ = jax.eval_shape(sampler.next_tokens, logits, key, state)
    if tokens.shape != (g,) or stop.shape != (g,):
      raise ValueError(f"{name}: expected {g} tokens per step; got "
                       f"{tokens.shape}.")
    for attr in ("max_tokens", "max_private_tokens"):
      budget = getattr(getattr(sampler, "params", sampler), attr, None)
      if budget is not None and budget < inputs.n2:
        raise ValueError(f"{name}: {attr}={budget} < n2={inputs.n2} would "
                         f"end streams early.")
  return words


def _timed(fn, n: int) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn(n))
  return time.perf_counter() - start


def measure(inputs: Inputs, methods, *, rounds: int, plain: str = "temperature",
            model: str = "") -> list[dict]:
  """One dict per method: per-step ratio to plain and documents/s.

  Each method's runs are paired with plain runs adjacent in time (see the
  module doc); the first call of each side compiles and is not timed.
  """
  samplers = {m: make_sampler(m, inputs.batch_size, inputs.n2)
              for m in methods}
  plain_sampler = make_plain(plain)
  words = check_like_with_like(inputs, plain_sampler, samplers)
  sides = {"plain": decode_fn(inputs, plain_sampler)}
  sides.update({m: decode_fn(inputs, s) for m, s in samplers.items()})
  for run in sides.values():
    toks = jax.block_until_ready(run(inputs.n2))       # compile + warm
    if toks.shape != (inputs.num_docs, inputs.n2):
      raise ValueError(f"Expected tokens {(inputs.num_docs, inputs.n2)}; got "
                       f"{toks.shape}.")
  steps = inputs.n2 - inputs.n1

  def timed(name):
    t1 = _timed(sides[name], inputs.n1)
    t2 = _timed(sides[name], inputs.n2)
    return (t2 - t1) / steps, t2
  step_s = {name: [] for name in sides}   # plain: every plain run
  e2e_s = {name: [] for name in sides}
  paired = {m: [] for m in methods}       # the plain run beside m's
  for r in range(rounds):
    for m in (methods if r % 2 == 0 else methods[::-1]):
      for name in (("plain", m) if r % 2 == 0 else (m, "plain")):
        step, e2e = timed(name)
        step_s[name].append(step)
        e2e_s[name].append(e2e)
        if name == "plain":
          paired[m].append(step)
  g = inputs.num_docs
  out = []
  for m in methods:
    ratios = [p / b for p, b in zip(step_s[m], paired[m])]
    out.append({
        "bench": "decode", "method": m, "model": model,
        "weights": inputs.weights, "vocab_size": inputs.config.vocab_size,
        "batch_size": inputs.batch_size, "num_docs": g,
        "rows": g * inputs.group_size, "prompt_len": inputs.prompts.shape[1],
        "n1": inputs.n1, "n2": inputs.n2, "rounds": rounds, "plain": plain,
        "plain_random_words_per_step": words,
        "ratio": _spread(ratios),
        "ratio_of_min_steps": _sig(min(step_s[m]) / min(paired[m])),
        "plain_ms_per_step": _sig(1e3 * statistics.median(step_s["plain"])),
        "private_ms_per_step": _sig(1e3 * statistics.median(step_s[m])),
        "private_docs_per_s": _sig(g / statistics.median(e2e_s[m])),
        "plain_docs_per_s": _sig(g / statistics.median(e2e_s["plain"])),
        "device": jax.devices()[0].device_kind,
    })
    if min(step_s[m] + step_s["plain"]) <= 0:
      out[-1]["note"] = ("t(n2) - t(n1) <= 0 in a round: timing noise "
                         "exceeds the steps' time; raise --steps.")
  return out


def _call_loop(sampler, num_groups: int, calls: int):
  """Jitted: `calls` sampler calls on shifted logits, one result."""
  @jax.jit
  def loop(logits, key):
    state = sampler.init_state(num_groups, key)

    def body(i, carry):
      acc, st = carry
      shifted = logits + i.astype(logits.dtype) * 1e-3
      tok, _, st = sampler.next_tokens(shifted, jax.random.fold_in(key, i),
                                       st)
      return acc + tok, st
    acc = jnp.zeros((num_groups,), jnp.int32)
    return jax.lax.fori_loop(0, calls, body, (acc, state))[0]
  return loop


def measure_samplers(*, num_groups: int, batch_size: int, vocab_size: int,
                     methods, calls: int, rounds: int,
                     plain: str = "temperature") -> list[dict]:
  """ms per ``next_tokens`` call of each sampler alone, plain beside."""
  logits = jax.random.normal(
      jax.random.key(3), (num_groups, batch_size + 1, vocab_size)) * 3.0
  key = jax.random.key(4)
  loops = {"plain": _call_loop(make_plain(plain), num_groups, calls)}
  loops.update({m: _call_loop(make_sampler(m, batch_size, 10**6), num_groups,
                              calls) for m in methods})
  for loop in loops.values():
    jax.block_until_ready(loop(logits, key))           # compile
  times = {name: [] for name in loops}
  order = list(loops)
  for r in range(rounds):
    for name in (order if r % 2 == 0 else order[::-1]):
      start = time.perf_counter()
      jax.block_until_ready(loops[name](logits, key))
      times[name].append((time.perf_counter() - start) / calls)
  plain_ms = 1e3 * statistics.median(times["plain"])
  return [{"bench": "sampler", "method": m, "batch_size": batch_size,
           "num_docs": num_groups, "vocab_size": vocab_size, "calls": calls,
           "rounds": rounds, "ms_per_call": _spread(
               [1e3 * t for t in times[m]]),
           "plain_ms_per_call": _sig(plain_ms),
           "device": jax.devices()[0].device_kind}
          for m in methods]


def main(argv):
  del argv
  sizes = [int(s) for s in _SIZES.value]
  for model in _MODELS.value:
    bucket = -(-(_SHORT.value + _STEPS.value) // _BUCKET) * _BUCKET
    loaded = load_model(model, _VOCAB.value, _PROMPT.value + bucket)
    for s in sizes:
      inputs = make_inputs(loaded, batch_size=s, num_docs=_M.value,
                           prompt_len=_PROMPT.value, short=_SHORT.value,
                           steps=_STEPS.value)
      for row in measure(inputs, _METHODS.value, rounds=_ROUNDS.value,
                         plain=_PLAIN.value, model=model):
        print(json.dumps(row), flush=True)
      if _CALLS.value > 0:
        for row in measure_samplers(
            num_groups=_M.value, batch_size=s,
            vocab_size=loaded[0].vocab_size, methods=_SAMPLER_METHODS.value,
            calls=_CALLS.value, rounds=_ROUNDS.value, plain=_PLAIN.value):
          print(json.dumps({"model": model, **row}), flush=True)
    del loaded


if __name__ == "__main__":
  app.run(main)
