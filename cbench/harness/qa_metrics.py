"""Exact and fuzzy QA matching and bootstrap confidence intervals.

The standardized scoring rule (ContinuousBench harness): the completion is cut
at its first newline (or at a following ``Q:``), a trailing period is
stripped, then

* exact match: case-insensitive equality with the gold answer or an alias;
* fuzzy match: the gold answer (or an alias) is contained in the completion;
  for the ``types`` question every type of the gold answer must be contained.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Sequence

import numpy as np

_SPACES = re.compile(r"\s+")


def clean_completion(completion: str) -> str:
  """The part of a raw completion that is scored."""
  text = completion.split("\n", 1)[0]
  text = re.split(r"\bQ:", text, maxsplit=1)[0]
  text = _SPACES.sub(" ", text).strip()
  while text.endswith("."):
    text = text[:-1].rstrip()
  return text


def normalize(text: str) -> str:
  return _SPACES.sub(" ", text).strip().rstrip(".").strip().lower()


def exact_match(prediction: str, answer: str, aliases: Sequence[str] = ()) -> bool:
  pred = normalize(prediction)
  return any(pred == normalize(a) for a in (answer, *aliases) if a)


def _types_of(answer: str) -> list[str]:
  return [t for t in re.split(r"\s+and\s+|/|,", normalize(answer)) if t]


def fuzzy_match(prediction: str, answer: str, aliases: Sequence[str] = (),
                feature: str = "") -> bool:
  pred = normalize(prediction)
  if feature == "types":
    return all(t in pred for t in _types_of(answer))
  return any(normalize(a) in pred for a in (answer, *aliases) if a)


@dataclasses.dataclass(frozen=True)
class Accuracy:
  """A mean accuracy with a percentile-bootstrap 95% interval."""
  mean: float
  low: float
  high: float
  n: int

  def as_dict(self) -> dict[str, float]:
    return dataclasses.asdict(self)


def bootstrap_accuracy(correct: Sequence[bool], *, num_resamples: int = 1000,
                       seed: int = 0, level: float = 0.95) -> Accuracy:
  """Mean of 0/1 outcomes with a percentile bootstrap interval."""
  x = np.asarray(correct, dtype=np.float64)
  if x.size == 0:
    return Accuracy(float("nan"), float("nan"), float("nan"), 0)
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, x.size, size=(num_resamples, x.size))
  means = x[idx].mean(axis=1)
  alpha = (1 - level) / 2
  return Accuracy(float(x.mean()), float(np.quantile(means, alpha)),
                  float(np.quantile(means, 1 - alpha)), int(x.size))


def support_bucket(num_supports: int,
                   edges: Sequence[int] = (0, 25, 50, 100, 200, 400, 800)) -> str:
  """A label like '100-199' for per-support-bucket accuracy."""
  for lo, hi in zip(edges, list(edges[1:]) + [None]):
    if hi is None or num_supports < hi:
      return f"{lo}+" if hi is None else f"{lo}-{hi - 1}"
  raise AssertionError("unreachable")


def score_predictions(questions: Sequence[Mapping], predictions: Sequence[str],
                      *, seed: int = 0) -> dict:
  """Scores raw completions against QA records.

  Args:
    questions: QA records with "answer", "aliases", "feature", "supports".
    predictions: raw completions (cleaned here), aligned with `questions`.
    seed: bootstrap seed.

  Returns:
    A JSON-able dict: overall exact/fuzzy accuracy with 95% CIs, per feature,
    per support bucket, and per-question rows.
  """
  if len(questions) != len(predictions):
    raise ValueError(f"{len(questions)} questions but {len(predictions)} predictions.")
  rows = []
  for q, raw in zip(questions, predictions):
    pred = clean_completion(raw)
    aliases = q.get("aliases", ())
    rows.append({
        "id": q.get("id"), "feature": q.get("feature", ""),
        "answer": q["answer"], "prediction": pred,
        "num_supports": len(q.get("supports", ())),
        "exact": exact_match(pred, q["answer"], aliases),
        "fuzzy": fuzzy_match(pred, q["answer"], aliases, q.get("feature", "")),
    })

  def summarize(subset):
    return {"exact": bootstrap_accuracy([r["exact"] for r in subset], seed=seed).as_dict(),
            "fuzzy": bootstrap_accuracy([r["fuzzy"] for r in subset], seed=seed).as_dict()}

  by_feature, by_bucket = {}, {}
  for r in rows:
    by_feature.setdefault(r["feature"], []).append(r)
    by_bucket.setdefault(support_bucket(r["num_supports"]), []).append(r)
  return {
      "num_questions": len(rows),
      **summarize(rows),
      "per_feature": {k: summarize(v) for k, v in sorted(by_feature.items())},
      "per_support_bucket": {k: summarize(v) for k, v in sorted(by_bucket.items())},
      "rows": rows,
  }
