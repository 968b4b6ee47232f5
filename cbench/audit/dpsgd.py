"""One-run audit of the shipped DP fine-tuning (`synthesis.dp_finetune`).

One DP-SGD run on the release's private train records plus two families of
canaries, each canary included with probability 1/2 by the auditor's coins
(its own `np.random.Generator`, seeded by `OneRunConfig.seed`):

* white-box gradient canaries (m_probe): an included one is an example
  whose gradient is ``probe_scale`` on its own coordinate of a probe vector
  (`privacy.canaries`); the scores are the maximum and the sum over steps of
  the noisy gradient on that coordinate (the DP-SGD transcript);
* black-box input canaries (m_input): random token sequences trained on as
  ordinary records; the score is the drop of the canary's mean token loss
  from the base model to the fine-tuned one.

The run goes through `dp_finetune.finetune` (the sampler, clipping, noise,
normaliser, optimizer, ledger and loop that `synthesize` runs); its plan is
made for N = n + m_probe + m_input records, so q = B / N and sigma are
fixed before the coins (an excluded canary is a zero-gradient row). Each
score family is bounded by `privacy.one_run` at alpha / 3 (Bonferroni over
the three families) against the ledger's epsilon at the audited delta (the
run's own unless `OneRunConfig.delta` names another).

A run is resumable (checkpoints, probe statistics and ledger in `workdir`);
the summary is ``workdir/audit.json``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Optional

import jax
import numpy as np

from cbench._validate import CbenchError, check
from cbench.corpus import release as release_lib
from cbench.io import files
from cbench.models import model_store
from cbench.models import registry
from cbench.models import transformer as tf
from cbench.parallel import mesh as mesh_lib
from cbench.privacy import canaries
from cbench.privacy import one_run
from cbench.synthesis import api
from cbench.synthesis import common
from cbench.synthesis import dp_finetune
from cbench.train import text_data

SUMMARY = "audit.json"


@dataclasses.dataclass(frozen=True)
class OneRunConfig:
  """The auditor's choices (public; none depends on the private data).

  Attributes:
    num_probes: white-box gradient canaries m_probe (>= 2 or 0).
    num_inputs: black-box input canaries m_input (>= 2 or 0).
    input_tokens: random tokens per input canary.
    probe_scale: the probe gradient's norm before clipping, in units of
      the clip norm (> 1: clipping must cut it; a run without clipping shows).
    alpha: total failure probability of the reported bounds.
    seed: the coins and canary contents.
    delta: the δ at which the run's claim is audited (None: the run's own
      δ). A run is (ε(δ), δ)-DP for every δ and the ledger gives ε(δ); the
      one-run bound carries a 2·m·δ term, so with many canaries a δ below
      the run's (e.g. 1e-6) makes a stronger test of a claim that is itself
      larger. Chosen before the run, like everything here.
  """
  num_probes: int = 1000
  num_inputs: int = 256
  input_tokens: int = 24
  probe_scale: float = 10.0
  alpha: float = 0.05
  seed: int = 0
  delta: Optional[float] = None

  def __post_init__(self):
    check(self.delta is None or 0 < self.delta < 1,
          f"Expected 0 < delta={self.delta} < 1 (or None).")
    for name in ("num_probes", "num_inputs"):
      v = getattr(self, name)
      check(v == 0 or v >= 2, f"Expected {name}={v} to be 0 or >= 2.")
    check(self.num_probes + self.num_inputs >= 2,
          "An audit needs canaries: num_probes + num_inputs >= 2.")
    check(self.input_tokens >= 1,
          f"Expected input_tokens={self.input_tokens} >= 1.")
    check(self.probe_scale > 0 and math.isfinite(self.probe_scale),
          f"Expected a finite probe_scale={self.probe_scale} > 0.")
    check(0 < self.alpha < 1, f"Expected 0 < alpha={self.alpha} < 1.")


@dataclasses.dataclass(frozen=True, eq=False)
class Canaries:
  """The coins and contents of one audit (host arrays)."""
  probe_in: np.ndarray      # [m_probe] bool
  input_in: np.ndarray      # [m_input] bool
  input_rows: text_data.TokenRows


def draw_canaries(config: OneRunConfig, vocab_size: int, first_id: int,
                  bos_id: int, eos_id: int, pad_id: int, seq_len: int
                  ) -> Canaries:
  """Coins and random input canaries; ids drawn from [first_id, vocab)."""
  check(config.input_tokens + 2 <= seq_len + 1,
        f"input_tokens={config.input_tokens} + 2 does not fit rows of "
        f"seq_len + 1 = {seq_len + 1} tokens.")
  rng = np.random.default_rng(config.seed)
  probe_in = rng.random(config.num_probes) < 0.5
  input_in = rng.random(config.num_inputs) < 0.5
  k = config.input_tokens
  tokens = np.full((config.num_inputs, seq_len + 1), pad_id, np.int32)
  tokens[:, 0] = bos_id
  tokens[:, 1:k + 1] = rng.integers(first_id, vocab_size,
                                    (config.num_inputs, k))
  tokens[:, k + 1] = eos_id
  lengths = np.full((config.num_inputs,), k + 2, np.int32)
  return Canaries(probe_in, input_in, text_data.TokenRows(tokens, lengths, 0))


def layout(n: int, c: Canaries, scale: float) -> canaries.CanaryLayout:
  """Rows: n real records, then input canaries, then probes."""
  m_in, m_p = len(c.input_in), len(c.probe_in)
  kinds = np.concatenate([
      np.full(n, canaries.KIND_REAL),
      np.where(c.input_in, canaries.KIND_REAL, canaries.KIND_OUT),
      np.where(c.probe_in, canaries.KIND_PROBE, canaries.KIND_OUT)
  ]).astype(np.int32)
  probe_index = np.concatenate([np.zeros(n + m_in), np.arange(m_p)]
                               ).astype(np.int32)
  return canaries.CanaryLayout(kinds, probe_index, m_p, scale)


def _stack(rows: text_data.TokenRows, extra: text_data.TokenRows,
           probes: int) -> text_data.TokenRows:
  # A probe row's tokens are never trained on: any valid row will do.
  return text_data.TokenRows(
      np.concatenate([rows.tokens, extra.tokens,
                      np.repeat(rows.tokens[:1], probes, 0)]),
      np.concatenate([rows.lengths, extra.lengths,
                      np.repeat(rows.lengths[:1], probes, 0)]),
      rows.truncated)


def canary_losses(params: Any, model_config, rows: text_data.TokenRows,
                  batch: int = 64) -> np.ndarray:
  """Mean token cross-entropy (nats) of each row under `params` [m]."""
  model = registry.make_model(model_config)
  arrays = dp_finetune.row_arrays(rows)

  @jax.jit
  def losses(p, b):
    return tf.cross_entropy_loss(model.apply({"params": p}, b["inputs"]),
                                 b["targets"], b["mask"])[0]

  m = rows.tokens.shape[0]
  out = []
  for s in range(0, m, batch):              # fixed shape: pad the last chunk
    idx = np.minimum(np.arange(s, s + batch), m - 1)
    out.append(np.asarray(losses(params, {k: v[idx] for k, v in
                                         arrays.items()}))[:min(batch, m - s)])
  return np.concatenate(out) if out else np.zeros((0,), np.float32)


def bounds(scores: dict[str, np.ndarray], coins: dict[str, np.ndarray],
           delta: float, alpha: float) -> dict[str, dict]:
  """`one_run.audit` per score family at alpha / (number of families)."""
  families = [k for k in scores if len(scores[k]) >= 2]
  return {k: one_run.audit(scores[k], coins[k], delta,
                           alpha / max(1, len(families))).to_dict()
          for k in families}


def run_one_run_audit(release_dir: str, base_dir: str,
                      config: api.SynthesisConfig, audit: OneRunConfig,
                      workdir: str, *, stop_after: Optional[int] = None
                      ) -> dict:
  """Runs (or resumes) the audited DP fine-tune; returns the summary.

  Args:
    release_dir: the release; its train corpus is the private data.
    base_dir: the base model (`model_store`).
    config: the dp_finetune request (epsilon, options) being audited.
    audit: the auditor's choices.
    workdir: checkpoints, ledger (``audit.ledger.jsonl``) and summary.
    stop_after: test hook: stop training after this many steps.

  Returns:
    {"epsilon", "delta" (the ledger's, at the run's delta), "audit_delta",
    "audit_epsilon" (the ledger's epsilon at the audited delta: the claim
    the bounds are compared with), "bounds": {"probe_max", "probe_sum",
    "input_loss"} -> `one_run.OneRunResult` dicts, ...}; scores and coins
    in ``workdir/scores.npz``;
    ``{"stopped_at": step}`` when stopped early.
  """
  check(config.method == dp_finetune.METHOD,
        f"The one-run DP-SGD audit runs method {dp_finetune.METHOD!r}; got "
        f"{config.method!r}.")
  start = time.monotonic()
  release = release_lib.load_release(release_dir)
  n = int(release.manifest["documents"]["by_split"]["train"])
  m = audit.num_probes + audit.num_inputs
  p = dp_finetune.plan(config, n + m)                # raises before any IO
  o = p.options
  check(o.clipping == "vmap", "The audit's probes need option "
        "clipping=vmap (ghost norms cover instrumented model layers only).")
  os.makedirs(workdir, exist_ok=True)
  mesh = (mesh_lib.make_mesh() if o.data_parallel
          else mesh_lib.make_mesh(devices=jax.devices()[:1]))
  bundle = model_store.load(base_dir, mesh=mesh)
  tok = bundle.tokenizer
  check(o.seq_len + 1 <= bundle.config.max_len,
        f"Option seq_len={o.seq_len} + 1 exceeds the base model's max_len="
        f"{bundle.config.max_len}.")
  texts = [r["text"] for r in release.corpus("train")]
  check(len(texts) == n, f"{release_dir}: manifest says {n} train "
        f"documents, corpus has {len(texts)}.")
  first_id = 1 + max(tok.pad_id, tok.bos_id, tok.eos_id)
  c = draw_canaries(audit, bundle.config.vocab_size, first_id, tok.bos_id,
                    tok.eos_id, tok.pad_id, o.seq_len)
  rows = _stack(text_data.tokenize_rows(texts, tok, o.seq_len), c.input_rows,
                audit.num_probes)
  lay = layout(n, c, audit.probe_scale * p.clip_norm
               if math.isfinite(p.clip_norm) else audit.probe_scale)
  base_losses = canary_losses(bundle.params, bundle.config, c.input_rows)
  sampler = p.make_sampler(config.seed, dp_finetune.pad_unit(o, mesh))
  binding = common.release_binding(
      p.to_dict(), config.to_dict(), release,
      audit=dataclasses.asdict(audit), model_config=bundle.config.to_dict(),
      pad_unit=sampler.pad_unit)
  header = dp_finetune.make_ledger_header(p, sampler, binding)
  ledger_file = os.path.join(workdir, "audit.ledger.jsonl")
  run_files = common.RunFiles(out=os.path.join(workdir, "scores.npz"),
                              ledger=ledger_file, workdir=workdir)
  with common.open_run(run_files, header, "audit") as ledger:
    result = dp_finetune.finetune(
        bundle.params, bundle.config, rows, p, workdir, ledger,
        seed=config.seed, mesh=mesh, stop_after=stop_after, audit=lay)
    if result.step < p.steps:
      return {"stopped_at": result.step, "charges": ledger.count}
    eps = ledger.epsilon()
    audit_delta = audit.delta or p.delta
    audit_eps = ledger.epsilon(audit_delta)
  final_losses = canary_losses(result.params, bundle.config, c.input_rows)
  scores = {"probe_max": np.asarray(result.probe.max)[:audit.num_probes],
            "probe_sum": np.asarray(result.probe.sum)[:audit.num_probes],
            "input_loss": base_losses - final_losses}
  coins = {"probe_max": c.probe_in, "probe_sum": c.probe_in,
           "input_loss": c.input_in}
  np.savez(run_files.out,
           **{f"score_{k}": v for k, v in scores.items()},
           **{f"coins_{k}": v for k, v in coins.items()})
  summary = {
      "method": dp_finetune.METHOD,
      "epsilon": common.jsonable(eps),
      "target_epsilon": common.jsonable(p.target_epsilon),
      "delta": p.delta,
      "audit_delta": audit_delta,
      "audit_epsilon": common.jsonable(audit_eps),
      "bounds": bounds(scores, coins, audit_delta, audit.alpha),
      "noise_multiplier": p.noise_multiplier,
      "clip_norm": common.jsonable(p.clip_norm),
      "sampling_prob": p.sampling_prob,
      "steps": p.steps,
      "records": n, "canaries": m,
      "audit": dataclasses.asdict(audit),
      "ledger": ledger_file,
      "seconds": time.monotonic() - start,
  }
  files.write_json(os.path.join(workdir, SUMMARY), summary)
  return summary


def max_bound(summary: dict) -> float:
  """The largest of a summary's lower bounds (0 if none)."""
  return max((b["epsilon_lb"] for b in summary["bounds"].values()),
             default=0.0)


def check_not_broken(summary: dict) -> None:
  """Raises if an audit's bound exceeds the ledger's epsilon at the
  audited delta."""
  eps = summary["audit_epsilon"]
  eps = math.inf if eps == "inf" else float(eps)
  lb = max_bound(summary)
  if lb > eps:
    raise CbenchError(f"Audit lower bound {lb:.3f} exceeds the ledger's "
                      f"epsilon {eps:.3f} at delta {summary['audit_delta']:.2g}"
                      f": the run is not as private as accounted.")
