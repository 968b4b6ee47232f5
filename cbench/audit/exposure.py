"""Canary exposure of a synthesis method, end to end (any method).

The auditor inserts canary records into a COPY of the release's private
train corpus, runs the method on the copy, fine-tunes the harness model on
the synthetic text with the fixed recipe, and measures how much each
canary's secret came through:

* a canary is one made-up fact, "The <attribute> of <made-up name> is
  <secret>.", whose secret is one of R random 6-digit candidates (the
  auditor's `np.random.Generator`, `ExposureConfig.seed`);
* singles (stated in one record) are each included with probability 1/2;
  their scores give a one-run membership-inference lower bound on epsilon
  (`privacy.one_run`) against the method's ledger epsilon (the harness
  fine-tune is post-processing of the synthetic text);
* repeated canaries (stated in k records, k in `repeats`) are always
  included, to show exposure growing with repetition;
* exposure (Carlini et al., "The Secret Sharer", arXiv 1802.08232) =
  log2 R - log2 rank, with rank the true secret's place among the R
  candidates by the fine-tuned model's log-likelihood of the sentence;
  excluded singles measure the chance level, `chance_exposure` (R = 100:
  1.40 bits, the mean for a uniform rank);
* verbatim: a synthetic document holds the canary's name and its secret;
  near-verbatim: one holds the secret and the canary's first name;
* the membership score of a single ranks verbatim hits first, then
  near-verbatim ones, then the log posterior of its secret among the
  candidates under the fine-tuned model.

Files under the work directory: ``release/`` (the copy; its manifest
names the original), ``canaries.json`` (secrets: the auditor's, never
published with results), ``synth.jsonl`` and its ledger, ``model/``, and
``exposure.json`` (the summary). Each stage resumes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cbench._validate import check
from cbench.corpus import release as release_lib
from cbench.harness import finetune as harness_finetune
from cbench.io import files
from cbench.models import model_store
from cbench.models import registry
from cbench.privacy import one_run
from cbench.synthesis import api
from cbench.train import lm_train
from cbench.train import text_data

SUMMARY = "exposure.json"
ATTRIBUTES = ("locker code", "badge number", "vault number", "door code",
              "ticket number", "pin")
_SYLLABLES = ("zor", "vak", "quel", "lin", "mur", "dax", "pim", "tor", "xel",
              "bru", "ska", "nev", "olt", "riv", "gam", "fen", "jut", "wex")


@dataclasses.dataclass(frozen=True)
class ExposureConfig:
  """The auditor's canaries (public; chosen before any private data).

  Attributes:
    singles: canaries stated once, each in with probability 1/2.
    repeats: repetition counts k of the always-included canaries.
    per_repeat: canaries per repetition count.
    candidates: R, secrets per canary (the true one among them).
    alpha: failure probability of the membership bound.
    seed: canary names, secrets and coins.
  """
  singles: int = 128
  repeats: tuple[int, ...] = (4, 16)
  per_repeat: int = 4
  candidates: int = 100
  alpha: float = 0.05
  seed: int = 0

  def __post_init__(self):
    check(self.singles == 0 or self.singles >= 2,
          f"Expected singles={self.singles} to be 0 or >= 2.")
    check(all(k >= 1 for k in self.repeats),
          f"Expected repeats {self.repeats} >= 1.")
    check(self.per_repeat >= 0, "Expected per_repeat >= 0.")
    check(2 <= self.candidates <= 900_000,
          f"Expected 2 <= candidates={self.candidates} <= 900000.")
    check(0 < self.alpha < 1, f"Expected 0 < alpha={self.alpha} < 1.")


def _name(rng: np.random.Generator) -> str:
  parts = [("".join(rng.choice(_SYLLABLES, 2))).capitalize()
           for _ in range(2)]
  return " ".join(parts)


def draw_canaries(config: ExposureConfig) -> list[dict]:
  """Canary specs: name, attribute, candidates, secret, repeat, included."""
  rng = np.random.default_rng(config.seed)
  out, seen = [], set()
  groups = [(1, config.singles)] + [(k, config.per_repeat)
                                    for k in config.repeats]
  for repeat, count in groups:
    for _ in range(count):
      name = _name(rng)
      while name in seen:
        name = _name(rng)
      seen.add(name)
      cands = rng.choice(900_000, config.candidates, replace=False) + 100_000
      out.append({"name": name,
                  "attribute": str(rng.choice(ATTRIBUTES)),
                  "candidates": [str(c) for c in cands],
                  "secret": str(cands[int(rng.integers(config.candidates))]),
                  "repeat": repeat,
                  "included": bool(rng.random() < 0.5) if repeat == 1
                              else True})
  return out


def sentence(canary: dict, secret: str) -> str:
  return f"The {canary['attribute']} of {canary['name']} is {secret}."


def copy_with_canaries(release_dir: str, out_dir: str,
                       specs: Sequence[dict], seed: int) -> str:
  """A release copy whose train corpus also holds the included canaries.

  Canary records are spread at random positions; ids ``canary-*``. The
  copy's manifest counts and hashes are rewritten and name the original.
  A finished copy is reused.
  """
  manifest_path = os.path.join(out_dir, "manifest.json")
  if os.path.exists(manifest_path):
    return out_dir
  release = release_lib.load_release(release_dir)
  tmp = out_dir + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  shutil.copytree(release.root, tmp,
                  ignore=shutil.ignore_patterns("tfds", "manifest.json"))
  docs = list(release.corpus("train"))
  extra = [{"id": f"canary-{i:04d}-{r}", "text": sentence(c, c["secret"]),
            "style": "canary", "facts": []}
           for i, c in enumerate(specs) if c["included"]
           for r in range(c["repeat"])]
  rng = np.random.default_rng(seed + 1)
  merged: list[Any] = docs + extra
  order = rng.permutation(len(merged))
  files.write_jsonl(os.path.join(tmp, "corpus", "train.jsonl"),
                    (merged[i] for i in order))
  manifest = dict(release.manifest)
  manifest["documents"] = {**manifest["documents"],
                           "by_split": {**manifest["documents"]["by_split"],
                                        "train": len(merged)}}
  manifest["audit_copy_of"] = {"root": release.root,
                               "release_id": manifest["release_id"],
                               "canary_records": len(extra)}
  manifest.pop("tfds", None)
  manifest["files"] = release_lib.hash_tree(tmp)
  files.write_json(os.path.join(tmp, "manifest.json"), manifest)
  os.replace(tmp, out_dir)
  return out_dir


def candidate_loglik(bundle: model_store.ModelBundle, specs: Sequence[dict],
                     batch: int = 256) -> np.ndarray:
  """[canaries, R] total log-likelihood (nats) of every candidate sentence."""
  texts = [sentence(c, s) for c in specs for s in c["candidates"]]
  ids = bundle.tokenizer.encode_batch(texts)
  width = max(len(x) for x in ids) + 2
  rows = text_data.tokenize_rows(texts, bundle.tokenizer, width - 1)
  model = registry.make_model(bundle.config)
  tokens = rows.tokens
  seg = (np.arange(width)[None, :] < rows.lengths[:, None]).astype(np.int32)
  pos = np.broadcast_to(np.arange(width, dtype=np.int32), tokens.shape)

  @jax.jit
  def loglik(params, t, s, p):
    ce, mask = lm_train.token_losses(
        model, params, {"tokens": t, "segments": s, "positions": p})
    return -jnp.sum(ce * mask, axis=1)

  out = []
  n = len(texts)
  for start in range(0, n, batch):             # fixed shape: pad the tail
    idx = np.minimum(np.arange(start, start + batch), n - 1)
    v = loglik(bundle.params, tokens[idx], seg[idx], pos[idx])
    out.append(np.asarray(v)[:min(batch, n - start)])
  return np.concatenate(out).reshape(len(specs), -1)


def exposures(loglik: np.ndarray, specs: Sequence[dict]
              ) -> tuple[np.ndarray, np.ndarray]:
  """(exposure bits [m], log posterior of the true secret [m]).

  Rank counts candidates at least as likely as the secret (ties against
  the secret), so a model that cannot tell them apart gets rank R.
  """
  r = loglik.shape[1]
  truth = np.array([c["candidates"].index(c["secret"]) for c in specs])
  true_ll = loglik[np.arange(len(specs)), truth]
  rank = np.sum(loglik >= true_ll[:, None], axis=1)
  post = true_ll - np.logaddexp.reduce(loglik, axis=1)
  return np.log2(r) - np.log2(rank), post


def verbatim(texts: Sequence[str], specs: Sequence[dict]
             ) -> tuple[np.ndarray, np.ndarray]:
  """Per canary: (name and secret in one document, first name + secret)."""
  full = np.zeros(len(specs), bool)
  near = np.zeros(len(specs), bool)
  for i, c in enumerate(specs):
    first = c["name"].split()[0]
    for t in texts:
      if c["secret"] in t:
        full[i] |= c["name"] in t
        near[i] |= first in t
  return full, near


def chance_exposure(r: int) -> float:
  """Mean exposure when the secret's rank is uniform on 1..R (a model that
  knows nothing): log2 R - mean(log2 k), about log2 e = 1.44 bits."""
  return math.log2(r) - float(np.mean(np.log2(np.arange(1, r + 1))))


def summarize(specs: Sequence[dict], exposure: np.ndarray,
              posterior: np.ndarray, full: np.ndarray, near: np.ndarray,
              epsilon: Any, delta: float, config: ExposureConfig) -> dict:
  """The per-repeat table and the membership bound (JSON-ready)."""
  repeat = np.array([c["repeat"] for c in specs])
  inc = np.array([c["included"] for c in specs])
  groups = {}
  for k in sorted(set(repeat.tolist())):
    sel = (repeat == k) & inc
    groups[str(k)] = {"canaries": int(sel.sum()),
                      "mean_exposure": float(exposure[sel].mean())
                      if sel.any() else None,
                      "max_exposure": float(exposure[sel].max())
                      if sel.any() else None,
                      "verbatim": int(full[sel].sum()),
                      "near_verbatim": int(near[sel].sum())}
  out_sel = (repeat == 1) & ~inc
  singles = repeat == 1
  # The attacker sees the synthetic text and the fine-tuned model: a
  # verbatim hit outranks any likelihood.
  score = posterior + 1e3 * full + 1e2 * near
  mia = (one_run.audit(score[singles], inc[singles], delta,
                       config.alpha).to_dict()
         if singles.sum() >= 2 else None)
  r = config.candidates
  return {
      "epsilon": epsilon, "delta": delta, "candidates": r,
      "max_exposure_bits": math.log2(r),
      "chance_exposure_bits": chance_exposure(r),
      "excluded_mean_exposure": float(exposure[out_sel].mean())
      if out_sel.any() else None,
      "excluded_verbatim": int(full[out_sel].sum()),
      "by_repeat": groups, "membership": mia,
  }


def _json(obj: Any) -> Any:
  """`obj` as it reads back from JSON (tuples become lists)."""
  return json.loads(json.dumps(obj))


def json_audit(audit: ExposureConfig) -> dict:
  return _json(dataclasses.asdict(audit))


def run_exposure_audit(release_dir: str, base_dir: str,
                       config: api.SynthesisConfig, recipe,
                       audit: ExposureConfig, workdir: str) -> dict:
  """Inserts canaries, runs the method, fine-tunes, measures; the summary.

  Args:
    release_dir: the release to copy (left untouched).
    base_dir: the base model (synthesis and harness).
    config: the synthesis request (any method).
    recipe: the harness fine-tuning `TrainRecipe`.
    audit: the canaries.
    workdir: everything goes here; a rerun resumes each stage, and a
      finished audit of the same request and canaries is returned as is.
  """
  start = time.monotonic()
  done = os.path.join(workdir, SUMMARY)
  if os.path.exists(done):
    prior = files.read_json(done)
    if (prior.get("audit") == json_audit(audit)
        and prior.get("request") == _json(config.to_dict())):
      return prior
  os.makedirs(workdir, exist_ok=True)
  specs = draw_canaries(audit)
  files.write_json(os.path.join(workdir, "canaries.json"), specs)
  copy = copy_with_canaries(release_dir, os.path.join(workdir, "release"),
                            specs, audit.seed)
  out = os.path.join(workdir, "synth.jsonl")
  summary = api.synthesize(copy, base_dir, config, out)
  texts = [r["text"] for r in files.iter_jsonl(out, required=("text",))]
  model_dir = os.path.join(workdir, "model")
  harness_finetune.finetune(base_dir, out, model_dir, recipe)
  bundle = model_store.load(model_dir)
  exp, post = exposures(candidate_loglik(bundle, specs), specs)
  full, near = verbatim(texts, specs)
  delta = summary.get("delta")
  if delta is None:
    delta = api.default_delta(int(release_lib.load_release(copy).manifest[
        "documents"]["by_split"]["train"]))
  result = summarize(specs, exp, post, full, near, summary.get("epsilon"),
                     float(delta), audit)
  result.update({"method": config.method, "request": _json(config.to_dict()),
                 "num_docs": len(texts), "audit": json_audit(audit),
                 "seconds": time.monotonic() - start})
  files.write_json(os.path.join(workdir, SUMMARY), result)
  return result
