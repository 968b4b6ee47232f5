"""The curation loop: fine-tune, generate, verify, mix, repeat.

One arm per policy (`policies.POLICIES`, optionally ``+weighted``), all
starting from the same round 0:

  round 0   the harness fine-tune (`cbench.harness.finetune`) of the base
            model on the real slice (`real_docs` train documents drawn
            with the config's seed), scored by the harness scorer on
            public_test (reported) and public_val (per-entity difficulty).
  round k   the previous round's model of the arm writes `docs_per_round`
            documents (the shared KV-cached decoder at `temperature`; each
            prompt is the name of one public creature, in turn); the
            policy picks up to `budget` of them for the weak labeler
            (`verifier.WeakLabeler`, flip rate `gamma`); the kept ones are
            tagged "synthetic-k" and join the real slice (with
            ``accumulate``, so do those kept in earlier rounds); the base
            model is fine-tuned afresh on that corpus and scored.

Every arm of a round uses the same decoding key, labeler seed and policy
seed (common random numbers). Per round and arm the record holds public
test accuracy, the fact coverage and wrong-claim share of the synthetic
part of the corpus and of the round's generated documents
(`verifier.corpus_stats`), and the labeler's counts: labeled, accepted,
the accepted documents' true precision and its measured flip rate.

Resuming: the config is bound to the workdir (``config.json``; another
config there is refused); a round directory with ``round.json`` is reused
as is; a fine-tune resumes from its own checkpoints.

Layout of `workdir`::

  config.json                        the binding
  real.jsonl                         the real slice
  round0/{model,scores.json,round.json}
  <arm>/round<k>/{generated.jsonl,corpus.jsonl,model,scores.json,round.json}
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Sequence

import jax
import numpy as np

from cbench import _validate
from cbench.corpus import release as release_lib
from cbench.curation import policies
from cbench.curation import verifier
from cbench.decoding import decoder
from cbench.decoding import token_samplers
from cbench.harness import finetune
from cbench.harness import recipes
from cbench.harness import score
from cbench.io import files
from cbench.models import model_store
from cbench.text import prompts as prompts_lib
from cbench.tracks import registry as track_registry
from cbench.tracks.geminon import generator as geminon

log = logging.getLogger("cbench")
SPLITS = ("public_test", "public_val")
REAL_TAG = "real"
_POLICY_STREAM, _LABELER_STREAM, _DECODE_STREAM, _SLICE_STREAM = 1, 2, 3, 4


def default_harness() -> recipes.HarnessConfig:
  """The tiny model with the `demo` recipe's pretraining (so a `demo` base
  model serves) and 150-step fine-tunes (batch 8, LR 5e-3)."""
  return recipes.tiny_family(
      "curation", pretrain_steps=400, finetune_steps=150, finetune_lr=5e-3,
      finetune_batch_size=8, pretrain_batch_size=8, practice_size="mini")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CurationConfig:
  """A curation experiment (see the module doc).

  Attributes:
    harness: fine-tuning (and, without `base_dir`, pretraining) recipe.
    release_dir: a Geminon release; "" builds `release_id`/`size` into
      ``out/release``.
    release_id, size: the release to build when `release_dir` is "".
    base_dir: a base model; "" pretrains one into ``out/base``.
    public_world_dir: the public world for that ("" builds one).
    rounds: K, curation rounds after round 0.
    policies: arms, `policies.POLICIES` names, each optionally with the
      suffix ``+weighted``.
    synthetic_weight: weight of synthetic documents in ``+weighted`` arms
      (real documents weigh 1).
    real_docs: documents in the real slice.
    docs_per_round: documents generated per round and arm.
    budget: labels per round and arm (random, hardest_first).
    gamma: the labeler's flip rate, 0 <= γ < 1/2.
    temperature: sampling temperature of the generator.
    max_new_tokens: generated tokens per document (after the name).
    accumulate: kept documents stay in later corpora (else only the
      round's own).
    decode_batch: decoding batch (fixed call shape).
    seed: the real slice, the decoder, the labeler and the policies.
  """
  harness: recipes.HarnessConfig = dataclasses.field(
      default_factory=default_harness)
  release_dir: str = ""
  release_id: str = "2026q4"
  size: str = "mini"
  base_dir: str = ""
  public_world_dir: str = ""
  rounds: int = 2
  policies: tuple[str, ...] = ("none", "random", "hardest_first")
  synthetic_weight: float = 0.5
  real_docs: int = 200
  docs_per_round: int = 192
  budget: int = 64
  gamma: float = 0.1
  temperature: float = 1.0
  max_new_tokens: int = 32
  accumulate: bool = True
  decode_batch: int = 64
  seed: int = 0

  def validate(self) -> None:
    """Raises CbenchError naming the first bad field."""
    for name in ("rounds", "real_docs", "docs_per_round", "decode_batch",
                 "max_new_tokens"):
      value = getattr(self, name)
      _validate.check(isinstance(value, int) and value >= 1,
                      f"Expected {name}={value!r} to be an integer >= 1.")
    _validate.check(isinstance(self.budget, int) and self.budget >= 0,
                    f"Expected budget={self.budget!r} to be an integer >= 0.")
    _validate.check(isinstance(self.seed, int) and self.seed >= 0,
                    f"Expected seed={self.seed!r} to be an integer >= 0.")
    _validate.check(len(self.policies) > 0, "Expected at least one policy.")
    _validate.check(len(set(self.policies)) == len(self.policies),
                    f"Duplicate policies in {self.policies}.")
    for p in self.policies:
      policies.split_name(p)
    verifier.check_gamma(self.gamma)
    _validate.positive("temperature", self.temperature)
    _validate.finite("temperature", self.temperature)
    _validate.in_range("synthetic_weight", self.synthetic_weight, 0.0, 1.0)

  def weight_table(self) -> tuple[tuple[str, float], ...]:
    """Provenance weights of a ``+weighted`` arm: real 1, synthetic-k
    `synthetic_weight` (k = 1..rounds)."""
    return ((REAL_TAG, 1.0), *((f"synthetic-{k}", float(self.synthetic_weight))
                               for k in range(1, self.rounds + 1)))


def generate_documents(bundle: model_store.ModelBundle,
                       prompts: Sequence[str], *, max_new_tokens: int,
                       temperature: float, key: jax.Array,
                       batch_size: int) -> list[str]:
  """One document per prompt: the prompt and the model's continuation at
  `temperature` (shared decoder, fixed batch shape), up to EOS or a
  document end (`prompts.document_end_ids`)."""
  tok = bundle.tokenizer
  _validate.check(max_new_tokens + 16 <= bundle.config.max_len,
                  f"max_new_tokens={max_new_tokens} leaves no room for a "
                  f"prompt in the model's max_len={bundle.config.max_len}.")
  stops = prompts_lib.document_end_ids(tok)
  sampler = token_samplers.Temperature(temperature)
  out: list[str] = []
  for c, start in enumerate(range(0, len(prompts), batch_size)):
    chunk = list(prompts[start:start + batch_size])
    n = len(chunk)
    chunk += [chunk[-1]] * (batch_size - n)
    result = decoder.generate(
        bundle.params, bundle.config,
        decoder.prepare_prompts(tok, chunk, bucket=16), max_new_tokens,
        sampler, jax.random.fold_in(key, c), eos_id=tok.eos_id,
        stop_token_ids=stops, pad_id=tok.pad_id)
    tokens, lengths = jax.device_get((result.tokens, result.lengths))
    for p, t, m in zip(chunk[:n], tokens[:n], lengths[:n]):
      # Decoded with the prompt so the joint text keeps its spacing.
      out.append(tok.decode(tok.encode(p) + t[:m].tolist()).strip())
  return out


def _rng(seed: int, *stream: int) -> np.random.Generator:
  return np.random.default_rng((seed, *stream))


def _score(release_dir: str, model_dir: str, out_dir: str,
           qa_val: Sequence[dict]) -> dict:
  s = score.score_qa(release_dir, model_dir, SPLITS,
                     os.path.join(out_dir, "scores.json"))
  test = s["splits"]["public_test"]["exact"]
  return {"accuracy": test["mean"], "accuracy_low": test["low"],
          "accuracy_high": test["high"],
          "val_accuracy": s["splits"]["public_val"]["exact"]["mean"],
          "difficulty": policies.entity_difficulty(
              s["splits"]["public_val"]["rows"], qa_val)}


def _finetune(config: CurationConfig, base_dir: str, corpus: str,
              model_dir: str, weighted: bool) -> None:
  recipe = config.harness.finetune_recipe(base_dir)
  if weighted:
    recipe = dataclasses.replace(recipe,
                                 provenance_weights=config.weight_table())
  finetune.finetune(base_dir, corpus, model_dir, recipe)


@dataclasses.dataclass
class _Context:
  config: CurationConfig
  release: release_lib.Release
  base_dir: str
  workdir: str
  checker: verifier.FactChecker
  entities: tuple[str, ...]
  real: list[dict]
  qa_val: list[dict]


def _round0(ctx: _Context) -> dict:
  out = os.path.join(ctx.workdir, "round0")
  done = os.path.join(out, "round.json")
  if os.path.exists(done):
    return files.read_json(done)
  t0 = time.monotonic()
  os.makedirs(out, exist_ok=True)
  corpus = os.path.join(ctx.workdir, "real.jsonl")
  _finetune(ctx.config, ctx.base_dir, corpus, os.path.join(out, "model"),
            weighted=False)
  rec = {"round": 0, "real_docs": len(ctx.real), "synthetic_docs": 0,
         **_score(ctx.release.root, os.path.join(out, "model"), out,
                  ctx.qa_val),
         "real_stats": verifier.corpus_stats(
             ctx.checker, [r["text"] for r in ctx.real]),
         "synthetic_stats": None, "generated_stats": None,
         "labeled": 0, "accepted": 0, "kept": 0, "kept_precision": None,
         "accepted_precision": None, "measured_flip_rate": None}
  rec["seconds"] = time.monotonic() - t0
  files.write_json(done, rec)
  return rec


def _arm_round(ctx: _Context, arm: str, k: int, prev: dict,
               kept_before: list[dict]) -> tuple[dict, list[dict]]:
  config = ctx.config
  policy, weighted = policies.split_name(arm)
  out = os.path.join(ctx.workdir, arm, f"round{k}")
  done = os.path.join(out, "round.json")
  if os.path.exists(done):
    rec = files.read_json(done)
    kept = list(files.iter_jsonl(os.path.join(out, "kept.jsonl")))
    return rec, kept
  t0 = time.monotonic()
  os.makedirs(out, exist_ok=True)
  bundle = model_store.load(prev["model_dir"])
  prompts = [ctx.entities[i % len(ctx.entities)]
             for i in range(config.docs_per_round)]
  texts = generate_documents(
      bundle, prompts, max_new_tokens=config.max_new_tokens,
      temperature=config.temperature,
      key=jax.random.fold_in(jax.random.key(config.seed),
                             _DECODE_STREAM * 1000 + k),
      batch_size=config.decode_batch)
  del bundle
  labeler = verifier.WeakLabeler(ctx.checker, config.gamma,
                                 _rng(config.seed, _LABELER_STREAM, k))
  truth = labeler.truth(texts)
  noisy = labeler.flip(truth)  # One draw per generated document.
  picked = policies.curate(
      policy, lambda idx: noisy[idx], prompts, prev["difficulty"],
      config.budget, _rng(config.seed, _POLICY_STREAM, k))
  labeled, kept_idx = picked["labeled"], picked["kept"]
  in_labeled, in_kept = set(labeled.tolist()), set(kept_idx.tolist())
  files.write_jsonl(os.path.join(out, "generated.jsonl"), [
      {"text": t, "entity": e, "truth": bool(truth[i]),
       "labeled": i in in_labeled, "kept": i in in_kept}
      for i, (t, e) in enumerate(zip(texts, prompts))])
  kept = [{"text": texts[i], "provenance": f"synthetic-{k}",
           "entity": prompts[i]} for i in kept_idx]
  files.write_jsonl(os.path.join(out, "kept.jsonl"), kept)
  synthetic = (kept_before + kept) if config.accumulate else kept
  corpus = os.path.join(out, "corpus.jsonl")
  files.write_jsonl(corpus, ctx.real + synthetic)
  model_dir = os.path.join(out, "model")
  _finetune(config, ctx.base_dir, corpus, model_dir, weighted)
  accepted = picked["verdicts"]
  rec = {"round": k, "arm": arm, "policy": policy, "weighted": weighted,
         "real_docs": len(ctx.real), "synthetic_docs": len(synthetic),
         **_score(ctx.release.root, model_dir, out, ctx.qa_val),
         "synthetic_stats": verifier.corpus_stats(
             ctx.checker, [r["text"] for r in synthetic]),
         "generated_stats": verifier.corpus_stats(ctx.checker, texts),
         "labeled": int(labeled.size), "accepted": int(accepted.sum()),
         "kept": int(kept_idx.size),
         "kept_precision": (float(truth[kept_idx].mean()) if kept_idx.size
                            else None),
         "accepted_precision": (float(truth[labeled[accepted]].mean())
                                if accepted.any() else None),
         "measured_flip_rate": (float(np.mean(
             truth[labeled] != accepted)) if labeled.size else None),
         "labeled_entities": sorted(set(prompts[i] for i in labeled))}
  rec["seconds"] = time.monotonic() - t0
  files.write_json(done, rec)
  return rec, kept


def _base(config: CurationConfig, release: release_lib.Release,
          workdir: str) -> str:
  if config.base_dir:
    if not model_store.is_done(config.base_dir):
      raise _validate.CbenchError(
          f"--base={config.base_dir} is not a finished model directory.")
    finetune.check_base_recipe(config.harness, config.base_dir)
    return config.base_dir
  return track_registry.get(release.track).build_base(
      config.harness, workdir, config.public_world_dir or None)


def _release(config: CurationConfig, workdir: str) -> release_lib.Release:
  path = config.release_dir or os.path.join(workdir, "release")
  if not config.release_dir and not os.path.exists(
      os.path.join(path, "manifest.json")):
    log.info("building the %s release %s in %s", config.size,
             config.release_id, path)
    geminon.build_release(geminon.make_config(
        "geminon", config.release_id, config.size), path)
  if not os.path.isdir(path):
    raise _validate.CbenchError(f"--release directory not found: {path}")
  return release_lib.load_release(path)


def config_dict(config: CurationConfig) -> dict:
  """The config as JSON (the harness through its recipes' `to_dict`)."""
  out = dataclasses.asdict(config)
  harness = config.harness
  out["harness"] = {
      "name": harness.name, "base_model": harness.base_model,
      "finetune": harness.finetune.to_dict(),
      "pretrain": harness.pretrain and harness.pretrain.to_dict(),
      "pretrained_finetune": (harness.pretrained_finetune and
                              harness.pretrained_finetune.to_dict())}
  return json.loads(json.dumps(out, sort_keys=True))


def _bind(config: CurationConfig, workdir: str) -> None:
  path = os.path.join(workdir, "config.json")
  want = config_dict(config)
  if os.path.exists(path):
    bound = files.read_json(path)
    if bound != want:
      diff = sorted(k for k in set(bound) | set(want)
                    if bound.get(k) != want.get(k))
      raise _validate.CbenchError(
          f"{workdir} holds a curation run with another config ({diff} "
          f"differ); use a new output directory.")
    return
  files.write_json(path, want)


def run_rounds(config: CurationConfig, workdir: str) -> dict:
  """Runs (or resumes) round 0 and every arm's rounds 1..K.

  Returns:
    {"round0": record, "arms": {arm: [record of round 1..K]}, "entities",
    "release", "base_dir"}; each record as in the module doc.

  Raises:
    CbenchError: a bad config, a release that is not Geminon or a base
      that does not fit the harness recipe (before any training).
  """
  config.validate()
  os.makedirs(workdir, exist_ok=True)
  _bind(config, workdir)
  release = _release(config, workdir)
  checker = verifier.FactChecker(release)  # Refuses a non-Geminon release.
  train = [r["text"] for r in release.corpus("train")]
  _validate.check(config.real_docs <= len(train),
                  f"real_docs={config.real_docs} exceeds the release's "
                  f"{len(train)} train documents.")
  base_dir = _base(config, release, workdir)
  pick = np.sort(_rng(config.seed, _SLICE_STREAM).choice(
      len(train), size=config.real_docs, replace=False))
  real = [{"text": train[i], "provenance": REAL_TAG} for i in pick]
  real_path = os.path.join(workdir, "real.jsonl")
  if not os.path.exists(real_path):
    files.write_jsonl(real_path, real)
  entities = tuple(sorted({c for c, _ in checker.public_facts}))
  ctx = _Context(config, release, base_dir, workdir, checker, entities, real,
                 release.qa("public_val"))
  r0 = _round0(ctx)
  r0["model_dir"] = os.path.join(workdir, "round0", "model")
  log.info("round 0: public test %.3f (val %.3f)", r0["accuracy"],
           r0["val_accuracy"])
  arms = {}
  for arm in config.policies:
    prev, kept, recs = r0, [], []
    for k in range(1, config.rounds + 1):
      rec, new = _arm_round(ctx, arm, k, prev, kept)
      kept = kept + new
      rec["model_dir"] = os.path.join(workdir, arm, f"round{k}", "model")
      log.info("%s round %d: public test %.3f, kept %d/%d, synthetic wrong "
               "share %s", arm, k, rec["accuracy"], rec["kept"],
               config.docs_per_round,
               rec["synthetic_stats"]["wrong_share"])
      recs.append(rec)
      prev = rec
    arms[arm] = recs
  return {"round0": r0, "arms": arms, "entities": list(entities),
          "release": release.manifest["release_id"], "release_dir":
          release.root, "base_dir": base_dir}
