"""Private Evolution (Aug-PE; Xie et al. 2024, arXiv 2403.01749).

API-only DP synthesis: the generator (the base model) is used only through
two public calls, never trained on private data:

  RANDOM     N documents sampled from ``[bos]`` (the track's public prefix
             when one is set);
  VARIATION  a continuation of a drawn candidate: its first
             ``keep_fraction`` of tokens are kept and the rest is sampled
             again (Aug-PE's "continuation" variation; masked-span infilling
             is not implemented).

Each of T iterations:
  1. embed the N candidates and the n private records with the run's
     encoder: by default a PUBLIC one (the base model's mean-pooled final
     states, `Transformer.mean_hidden`, of the first ``embed_tokens``
     tokens), or with ``embedder=dp_tuned`` a projection head on those
     states trained on the private records with Logit-DP and charged before
     any vote (see "DP-tuned encoder");
  2. each private record votes for its nearest candidate (k = 1, squared
     L2 distance); the vote histogram has L2 sensitivity 1 under add/remove
     (one record moves one count by one);
  3. Gaussian noise N(0, σ²) is added to every count (one `GaussianDpEvent`
     (σ) charged to the ledger BEFORE the counts are used); counts below
     ``threshold`` H are set to 0;
  4. N candidates are drawn with probability ∝ the thresholded counts
     (uniform if all are 0) and varied into the next population.

The output is the population after the T-th iteration's variation. σ is
calibrated by PLD (discretisation `accounting.discretization_interval` of
the target, recorded in the ledger header) so that the T composed Gaussian
events meet the target (ε, δ); ε = ∞ runs the same code with σ = 0. Post-processing (threshold,
draw, variation) uses only the noisy counts and public randomness. Private
records are embedded in fixed-size chunks and voted in one jitted, padded
kernel (`noisy_votes`): no data-dependent shapes or branches.

Work files (``out_path + ".work"``): ``population_<t>.jsonl`` (the
population entering iteration t) and ``votes_<t>.json`` (its noisy counts,
public). A killed run resumes from them; the noise of iteration t is drawn
from ``fold_in(key, t)``, and a charge records that key's fingerprint, so a
recomputation draws the same noise and is never charged twice.

DP-tuned encoder (``embedder=dp_tuned``)
----------------------------------------
cluster_median's head (`dp_encoder.train_encoder`; its mechanism, relation and
event are documented in private_prediction's "DP-tuned encoder"): a
`cbench.contrastive.head` projection ``d_model -> encoder_hidden ->
encoder_dim`` of the base states, trained with Logit-DP on two views per
record (the base states of ``[bos] + first half`` and ``[bos] + second
half`` of its first ``embed_tokens`` ids) in fixed keyed-hash batches of a
public size n with public padding rows, E = ``encoder_epochs`` passes. Under
add/remove a record changes one row of one batch per epoch, so the head
costs ``head.dp_event(σ_e, E)`` (E Gaussians, no amplification) in the
ledger's add/remove units. The votes' sensitivity is unchanged (one record,
one vote), whatever the embedding.

Budget. σ_e is the smallest σ (relative 1e-3) whose ledger ε (PLD, the
run's discretisation) of the head's event alone is <= ``encoder_epsilon_share
* target``; the votes' σ is then calibrated by PLD on the ledger's own
composition of every charge of a complete run (the head's event + T
Gaussians, `ledger.compose_events`), so the ledger's ε of the whole run is
<= the target. A share whose head needs σ_e > 1e4, or whose remainder needs
a vote σ above ``max_noise_multiplier``, is refused by `plan` (one line
naming encoder_epsilon_share) before any IO. At ε = inf both are 0.

Order and resume. The head is trained and charged (``encoder``; meta: its
parameters' sha256, σ_e, the noise std) right after the ledger opens,
before any private or candidate embedding. It is a deterministic function
of (seed, data): init key ``fold_in(k, 0)``, step t's noise key
``fold_in(fold_in(k, 1), t)`` with ``k = fold_in(key(seed), 14)``, batching
keys from the seed (domain ``pe``), so a resumed run retrains the same head
and its charge is an idempotent no-op. A head that differs on replay (other
hardware) is refused by the ledger (same id, other content): it is never
used uncharged nor charged twice. Candidates (public) are embedded by the
same head (post-processing). Its parameters are never written out and its
training loss is never reported.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from typing import Callable, Optional, Sequence

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np

from cbench import _validate
from cbench._validate import CbenchError, check
from cbench.corpus import release as release_lib
from cbench.decoding import decoder
from cbench.decoding import token_samplers
from cbench.io import files
from cbench.models import model_store
from cbench.privacy import accounting
from cbench.privacy import ledger as ledger_lib
from cbench.synthesis import api
from cbench.synthesis import common
from cbench.synthesis import dp_encoder
from cbench.text import prompts as prompt_lib

log = logging.getLogger("cbench")

METHOD = "private_evolution"
ACCOUNTANT = "pld"
_VOTE_STREAM, _RANDOM_STREAM, _VARIATION_STREAM = 11, 12, 13
_ENCODER_STREAM = 14
EMBEDDERS = ("base", "dp_tuned")


@dataclasses.dataclass(frozen=True)
class Options:
  """Public knobs (``SynthesisConfig.options``); defaults in brackets.

  Attributes:
    iterations: T, noisy votes [4].
    threshold: H, noisy counts below it become 0 [2.0].
    keep_fraction: share of a candidate's tokens a variation keeps [0.5].
    max_new_tokens: most tokens per RANDOM document [128].
    temperature: sampling temperature of both calls [1.0].
    embed_tokens: tokens of a text the encoder sees [64].
    decode_batch: rows per decoder call (fixed shape) [64].
    embed_chunk: rows per encoder call (fixed shape) [64].
    max_noise_multiplier: cap on σ; a target needing more is infeasible
      [1000.0].
    calibration_seconds: time limit of the σ search [120.0].
    public_prefix: public text every RANDOM prompt starts with [""].
    embedder: the votes' embedding: "base" (the base model's mean-pooled
      states, public) or "dp_tuned" (a head on them trained on the private
      records with Logit-DP and charged; see "DP-tuned encoder") [base].
    encoder_epsilon_share: share of the target ε paid by the dp_tuned head
      (ledger ε of its event alone) [0.2].
    encoder_batch_size: n, pairs per head step [64].
    encoder_epochs: passes over the head's batches [2].
    encoder_clip: C, the head's per-logit gradient clip [1].
    encoder_learning_rate: the head's Adam step size [1e-2].
    encoder_hidden, encoder_dim: the head's widths (d_model -> hidden ->
      dim) [128, 64].
    encoder_temperature: tau of the head's cosine logits [1].
  """
  iterations: int = 4
  threshold: float = 2.0
  keep_fraction: float = 0.5
  max_new_tokens: int = 128
  temperature: float = 1.0
  embed_tokens: int = 64
  decode_batch: int = 64
  embed_chunk: int = 64
  max_noise_multiplier: float = 1000.0
  calibration_seconds: float = 120.0
  public_prefix: str = ""
  embedder: str = "base"
  encoder_epsilon_share: float = 0.2
  encoder_batch_size: int = 64
  encoder_epochs: int = 2
  encoder_clip: float = 1.0
  encoder_learning_rate: float = 1e-2
  encoder_hidden: int = 128
  encoder_dim: int = 64
  encoder_temperature: float = 1.0

  def to_dict(self) -> dict:
    """The options; the embedder and its head's knobs only with
    embedder=dp_tuned (a base run binds what it bound before they
    existed, and ignores them)."""
    d = dataclasses.asdict(self)
    if self.embedder == "base":
      for name in [k for k in d if k == "embedder"
                   or k.startswith("encoder_")]:
        del d[name]
    return d


def parse_options(config: api.SynthesisConfig) -> Options:
  """Validated `Options`; an unknown name or bad value raises CbenchError."""
  o = Options(**common.parse_options(Options, config.options, METHOD))
  for name in ("iterations", "max_new_tokens", "embed_tokens",
               "decode_batch", "embed_chunk"):
    check(getattr(o, name) >= 1,
          f"Expected option {name}={getattr(o, name)} >= 1.")
  for name in ("temperature", "max_noise_multiplier", "calibration_seconds"):
    _validate.positive(f"option {name}", getattr(o, name))
    _validate.finite(f"option {name}", getattr(o, name))
  check(0.0 < o.keep_fraction < 1.0,
        f"Expected 0 < option keep_fraction={o.keep_fraction} < 1.")
  check(math.isfinite(o.threshold) and o.threshold >= 0,
        f"Expected a finite option threshold={o.threshold} >= 0.")
  _validate.one_of("option embedder", o.embedder, EMBEDDERS)
  dp_encoder.check_encoder_options(o)
  return o


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a run commits to before touching private data (all public).

  Attributes:
    noise_multiplier: σ of each vote (0 at ε = inf).
    planned_epsilon: the ledger ε of every charge of a complete run.
    encoder: embedder=dp_tuned's head (`dp_encoder.encoder_plan`: its σ_e,
      epochs, batch size, Δ, ...); None with the base embedder.
  """
  target_epsilon: float
  delta: float
  num_records: int
  num_docs: int
  noise_multiplier: float
  planned_epsilon: float
  options: Options
  encoder: Optional[dict] = None

  def iteration_event(self) -> dp_accounting.DpEvent:
    """One noisy vote: Gaussian, L2 sensitivity 1 (add/remove)."""
    if self.noise_multiplier == 0:
      return dp_accounting.NonPrivateDpEvent()
    return dp_accounting.GaussianDpEvent(self.noise_multiplier)

  def encoder_event(self) -> Optional[dp_accounting.DpEvent]:
    """The dp_tuned head's event (add/remove), or None."""
    if self.encoder is None:
      return None
    return dp_encoder.encoder_event(self.encoder)

  def planned_event(self) -> dp_accounting.DpEvent:
    """Every charge of a complete run (head + T votes), composed."""
    return _planned(self.noise_multiplier, self.options.iterations,
                    self.encoder_event())

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["options"] = self.options.to_dict()
    if self.encoder is None:
      del d["encoder"]
    return common.jsonable(d)


def _composed(sigma: float, iterations: int) -> dp_accounting.DpEvent:
  return dp_accounting.SelfComposedDpEvent(
      dp_accounting.GaussianDpEvent(sigma), iterations)


def _planned(sigma: float, iterations: int,
             encoder_event: Optional[dp_accounting.DpEvent]
             ) -> dp_accounting.DpEvent:
  """T votes of σ (and the head's event), composed as the ledger will."""
  if encoder_event is None:
    return _composed(sigma, iterations)
  return ledger_lib.compose_events(
      [encoder_event]
      + [dp_accounting.GaussianDpEvent(sigma)] * iterations)


def plan(config: api.SynthesisConfig, num_records: int) -> Plan:
  """σ for T votes at (ε, δ) (and embedder=dp_tuned's head σ_e, from its
  share); raises CbenchError if infeasible (no IO)."""
  api.check_request(config)
  o = parse_options(config)
  check(num_records >= 1, f"Expected >= 1 private record; got {num_records}.")
  delta = (config.delta if config.delta is not None
           else api.default_delta(num_records))
  vdi = accounting.discretization_interval(config.epsilon)

  def ledger_epsilon(event: dp_accounting.DpEvent) -> float:
    return accounting.epsilon(event, delta, "add_remove", ACCOUNTANT, vdi)

  encoder = None
  if o.embedder == "dp_tuned":      # raises naming encoder_epsilon_share
    encoder = dp_encoder.encoder_plan(o, num_records, config.epsilon,
                                  ledger_epsilon)
  if math.isinf(config.epsilon):
    return Plan(math.inf, delta, num_records, config.num_docs, 0.0, math.inf,
                o, encoder)
  enc_event = None if encoder is None else dp_encoder.encoder_event(encoder)
  try:
    sigma = accounting.calibrate_noise_multiplier(
        lambda s: _planned(s, o.iterations, enc_event), config.epsilon,
        delta, "add_remove", time_limit_s=o.calibration_seconds,
        max_sigma=o.max_noise_multiplier, value_discretization_interval=vdi)
  except accounting.CalibrationTimeout:
    raise
  except CbenchError as e:
    if encoder is not None:
      raise CbenchError(
          f"Infeasible: option encoder_epsilon_share="
          f"{o.encoder_epsilon_share} leaves too little of epsilon="
          f"{config.epsilon} (delta={delta:.3g}) for {METHOD}'s "
          f"{o.iterations} votes: they would need a noise multiplier above "
          f"max_noise_multiplier={o.max_noise_multiplier}; lower "
          f"encoder_epsilon_share or raise epsilon.") from e
    raise CbenchError(f"Infeasible epsilon={config.epsilon} for {METHOD} "
                      f"with {o.iterations} iterations at delta={delta:.3g}"
                      f" (noise above max_noise_multiplier="
                      f"{o.max_noise_multiplier}).") from e
  eps = ledger_epsilon(_planned(sigma, o.iterations, enc_event))
  return Plan(config.epsilon, delta, num_records, config.num_docs, sigma,
              eps, o, encoder)


def check_feasible(config: api.SynthesisConfig, num_records: int) -> None:
  plan(config, num_records)


# ---------------------------------------------------------------------------
# The private step


@jax.jit
def vote_counts(private_emb: jax.Array, valid: jax.Array,
                candidates: jax.Array) -> jax.Array:
  """Votes per candidate ``[N]`` float32: each valid private row ``[n, d]``
  votes for its nearest candidate ``[N, d]`` (squared L2; ties: lowest
  index). Padding rows (``valid`` False) vote for nobody."""
  score = 2.0 * private_emb @ candidates.T - jnp.sum(
      candidates * candidates, axis=1)[None, :]
  nearest = jnp.argmax(score, axis=1)
  return jax.ops.segment_sum(valid.astype(jnp.float32), nearest,
                             num_segments=candidates.shape[0])


@jax.jit
def noisy_votes(private_emb: jax.Array, valid: jax.Array,
                candidates: jax.Array, key: jax.Array,
                sigma: jax.Array) -> jax.Array:
  """`vote_counts` + N(0, σ²) per count (σ × sensitivity 1): the only
  function here that reads private data; its output is the released
  histogram."""
  counts = vote_counts(private_emb, valid, candidates)
  return counts + sigma * jax.random.normal(key, counts.shape, jnp.float32)


def draw_population(noisy: np.ndarray, threshold: float, size: int,
                    rng: np.random.Generator) -> np.ndarray:
  """Indices of `size` candidates ∝ counts ≥ threshold (post-processing)."""
  w = np.where(noisy >= threshold, np.maximum(noisy, 0.0), 0.0)
  if w.sum() <= 0:
    w = np.ones_like(w)
  return rng.choice(len(w), size=size, replace=True, p=w / w.sum())


# ---------------------------------------------------------------------------
# The public calls


def _encode(tok, texts: Sequence[str], limit: int) -> list[list[int]]:
  return [list(ids)[:limit] for ids in tok.encode_batch(list(texts))]


def _embed_width(o: Options) -> int:
  return -(-(o.embed_tokens + 1) // 16) * 16


def embed(bundle, texts: Sequence[str], o: Options,
          head: Optional[dp_encoder.TunedHead] = None) -> np.ndarray:
  """``[len(texts), d]`` float32 embeddings of the first embed_tokens ids:
  the base model's mean-pooled states (d = d_model), or with
  embedder=dp_tuned the charged `head`'s unit-norm outputs on them
  (d = encoder_dim; post-processing)."""
  tok = bundle.tokenizer
  rows = [[tok.bos_id, *ids] for ids in _encode(tok, texts, o.embed_tokens)]
  base = dp_encoder.embed_token_rows(
      bundle.params, bundle.config, rows, _embed_width(o), o.embed_chunk
  ).astype(np.float32)
  if o.embedder == "dp_tuned":
    check(head is not None, "embedder=dp_tuned needs its charged head.")
    return head.embed(base).astype(np.float32)
  return base


def _generate(bundle, prompts: list[list[int]], o: Options, key, mesh
              ) -> list[list[int]]:
  """Continuations of `prompts` (token ids with BOS) in fixed-size calls."""
  tok = bundle.tokenizer
  sampler = token_samplers.Temperature(o.temperature)
  stop = prompt_lib.document_end_ids(tok)
  width = -(-max(len(p) for p in prompts) // 16) * 16
  out: list[list[int]] = []
  for c in range(-(-len(prompts) // o.decode_batch)):
    part = prompts[c * o.decode_batch:(c + 1) * o.decode_batch]
    rows = np.full((o.decode_batch, width), tok.pad_id, np.int32)
    for i, p in enumerate(part + [part[0]] * (o.decode_batch - len(part))):
      rows[i, width - len(p):] = p
    res = decoder.generate(bundle.params, bundle.config, rows,
                           o.max_new_tokens, sampler,
                           jax.random.fold_in(key, c), eos_id=tok.eos_id,
                           pad_id=tok.pad_id, mesh=mesh,
                           stop_token_ids=stop)
    tokens, lengths = jax.device_get((res.tokens, res.lengths))
    out.extend(t[:n].tolist() for t, n in zip(tokens[:len(part)],
                                              lengths[:len(part)]))
  return out


def random_api(bundle, n: int, o: Options, key, mesh) -> list[str]:
  """RANDOM: n documents from the public prompt."""
  tok = bundle.tokenizer
  prefix = _encode(tok, [o.public_prefix], 10**6)[0] if o.public_prefix \
      else []
  gen = _generate(bundle, [[tok.bos_id, *prefix]] * n, o, key, mesh)
  return [tok.decode(prefix + g) for g in gen]


def variation_api(bundle, texts: Sequence[str], o: Options, key, mesh
                  ) -> list[str]:
  """VARIATION: keep the first keep_fraction of each text, sample the rest."""
  tok = bundle.tokenizer
  ids = _encode(tok, texts, bundle.config.max_len - o.max_new_tokens - 2)
  kept = [x[:max(1, int(math.ceil(o.keep_fraction * len(x))))] if x else []
          for x in ids]
  gen = _generate(bundle, [[tok.bos_id, *k] for k in kept], o, key, mesh)
  return [tok.decode(k + g) for k, g in zip(kept, gen)]


# ---------------------------------------------------------------------------
# The run


def _pop_path(work: str, t: int) -> str:
  return os.path.join(work, f"population_{t}.jsonl")


def _read_population(path: str) -> list[str]:
  return [r["text"] for r in files.iter_jsonl(path, required=("text",))]


def run(release_dir: str, base_dir: str, config: api.SynthesisConfig,
        out_path: str, *,
        after_charge: Optional[Callable[[int], None]] = None) -> dict:
  """Writes ``out_path`` (synth.jsonl) and its ledger; returns the summary.

  Args:
    release_dir: the release (its train corpus is the private data).
    base_dir: the base model (the generator and the public encoder).
    config: the request (`api.SynthesisConfig`; options: `Options`).
    out_path: ``*.jsonl`` output; ledger ``api.ledger_path(out_path)``.
    after_charge: test hook, called with t after iteration t is charged
      (raise in it to simulate a crash).

  Raises:
    CbenchError: infeasible ε or bad options (before any file is written),
      a ledger of another run, an output file without its ledger.
  """
  start = time.monotonic()
  release = release_lib.load_release(release_dir)
  n = common.train_size(release)
  p = plan(config, n)                                    # before any IO
  o = p.options
  run_files = common.run_files(out_path)
  bundle = model_store.load(base_dir)
  check(o.max_new_tokens + 2 < bundle.config.max_len,
        f"Option max_new_tokens={o.max_new_tokens} + 2 exceeds the base "
        f"model's max_len={bundle.config.max_len}.")
  records = common.private_records(release, release_dir)
  texts = [r["text"] for r in records]
  binding = common.release_binding(p.to_dict(), config.to_dict(), release,
                                   base=common.jsonable(bundle.info))
  tuned = ({} if p.encoder is None else
           {"embedder": o.embedder,
            "encoder_noise_multiplier": p.encoder["noise_multiplier"]})
  header = ledger_lib.make_header(
      relation="add_remove", sampler="none (every record votes)",
      accountant=ACCOUNTANT, delta=p.delta,
      config_hash=common.config_hash(binding), config=binding,
      value_discretization_interval=accounting.discretization_interval(
          p.target_epsilon),
      method=METHOD, noise_multiplier=p.noise_multiplier,
      iterations=o.iterations, threshold=o.threshold,
      target_epsilon=common.jsonable(p.target_epsilon),
      planned_epsilon=common.jsonable(p.planned_epsilon), **tuned)
  work = run_files.workdir
  key = jax.random.key(config.seed)
  mesh = None
  size = config.num_docs
  with common.open_run(run_files, header, METHOD) as ledger:
    head = None
    if p.encoder is not None:     # trained and charged before any use
      head = dp_encoder.train_encoder(
          bundle, p.encoder, _encode(bundle.tokenizer, texts, o.embed_tokens),
          dp_encoder.encoder_batches([r["id"] for r in records], p.encoder,
                                 config.seed, "pe"),
          jax.random.fold_in(key, _ENCODER_STREAM), ledger.charge,
          width=_embed_width(o), relation="add_remove")
    # Private embeddings, padded to whole chunks (fixed shapes).
    chunk = o.embed_chunk
    n_pad = -(-n // chunk) * chunk
    emb = embed(bundle, texts, o, head)
    priv = np.zeros((n_pad, emb.shape[1]), np.float32)
    priv[:n] = emb
    valid = np.arange(n_pad) < n
    if not os.path.exists(_pop_path(work, 0)):
      files.write_jsonl(_pop_path(work, 0), (
          {"text": t} for t in random_api(
              bundle, size, o, jax.random.fold_in(key, _RANDOM_STREAM),
              mesh)))
    event = p.iteration_event()
    for t in range(o.iterations):
      if os.path.exists(_pop_path(work, t + 1)):
        check(ledger.has(f"iteration:{t}"),
              f"{work}: population {t + 1} exists but the ledger never "
              f"charged iteration {t}; refusing to continue.")
        continue
      population = _read_population(_pop_path(work, t))
      cand = embed(bundle, population, o, head)
      vote_key = jax.random.fold_in(jax.random.fold_in(key, _VOTE_STREAM), t)
      noisy = noisy_votes(jnp.asarray(priv), jnp.asarray(valid),
                          jnp.asarray(cand), vote_key,
                          jnp.float32(p.noise_multiplier))
      fingerprint = ledger_lib.key_fingerprint(
          np.asarray(jax.random.key_data(vote_key)).tobytes(), t)
      ledger.charge(f"iteration:{t}", event,
                    meta={"candidates": len(population),
                          "noise_key": fingerprint})
      if after_charge is not None:
        after_charge(t)
      counts = np.asarray(jax.device_get(noisy), np.float64)
      files.write_json(os.path.join(work, f"votes_{t}.json"),
                       {"noisy_counts": counts.tolist()})
      rng = np.random.default_rng([config.seed, t])
      drawn = draw_population(counts, o.threshold, size, rng)
      varied = variation_api(
          bundle, [population[i] for i in drawn], o,
          jax.random.fold_in(jax.random.fold_in(key, _VARIATION_STREAM), t),
          mesh)
      files.write_jsonl(_pop_path(work, t + 1), ({"text": x} for x in varied))
      log.info("synthesis %s: iteration %d/%d (%d candidates kept above the "
               "threshold)", METHOD, t + 1, o.iterations,
               int(np.sum(counts >= o.threshold)))
    common.require_charges(
        ledger, ([dp_encoder.ENCODER_ENTRY] if p.encoder is not None else [])
        + [f"iteration:{t}" for t in range(o.iterations)], run_files.ledger)
    eps = ledger.epsilon()
  num_docs = common.write_documents(
      out_path, _read_population(_pop_path(work, o.iterations)))
  return common.summary(
      method=METHOD, epsilon=eps, target_epsilon=p.target_epsilon,
      delta=p.delta, relation="add_remove", num_docs=num_docs, start=start,
      run=run_files, noise_multiplier=p.noise_multiplier,
      iterations=o.iterations, threshold=o.threshold,
      **({} if p.encoder is None
         else {"encoder": common.jsonable(p.encoder)}))
