"""Which synthetic documents the verifier labels, and which join the corpus.

Policies (`POLICIES`), each given the same generated documents (one
prompt entity per document) and the same labeling budget:

  none            no verification: every generated document joins the next
                  corpus (the self-consuming loop).
  random          the budget is spent on documents drawn uniformly without
                  replacement; those the labeler accepts join.
  hardest_first   the budget is spent on the documents of the hardest
                  entities first (`entity_difficulty`: the current model's
                  error rate on the entity's validation questions; ties
                  between entities in a seeded random order, documents of
                  one entity in a seeded random order); those the labeler
                  accepts join.

A policy name with the suffix ``+weighted`` (`WEIGHTED_SUFFIX`) curates
the same way and fine-tunes with provenance weights (real documents 1,
synthetic ones less; `cbench.train.lm_train.TrainRecipe`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from cbench import _validate

POLICIES = ("none", "random", "hardest_first")
WEIGHTED_SUFFIX = "+weighted"


def split_name(name: str) -> tuple[str, bool]:
  """``(policy, weighted)`` of an arm name such as 'random+weighted'.

  Raises:
    CbenchError: an unknown policy.
  """
  weighted = name.endswith(WEIGHTED_SUFFIX)
  policy = name[:-len(WEIGHTED_SUFFIX)] if weighted else name
  _validate.one_of("policy", policy, POLICIES)
  return policy, weighted


def entity_difficulty(rows: Sequence[Mapping], questions: Sequence[Mapping]
                      ) -> dict[str, float]:
  """``{creature: error rate}`` of scored QA rows (`qa_metrics` rows, by
  "id") over their questions' creatures (exact match)."""
  creature = {q["id"]: q["creature"] for q in questions}
  wrong: dict[str, list[bool]] = {}
  for r in rows:
    wrong.setdefault(creature[r["id"]], []).append(not r["exact"])
  return {c: float(np.mean(v)) for c, v in sorted(wrong.items())}


def hardest_first(entities: Sequence[str], difficulty: Mapping[str, float],
                  budget: int, rng: np.random.Generator) -> np.ndarray:
  """Indices of up to `budget` documents, hardest entities first.

  Entities are ranked by `difficulty` (higher first; an entity without a
  score counts as 0), ties in a random order; the documents of one entity
  come in a random order. Every document of a harder entity comes before
  any of an easier one.
  """
  _validate.non_negative("budget", budget)
  names = sorted(set(entities))
  tie = dict(zip(names, rng.permutation(len(names))))
  within = rng.permutation(len(entities))
  order = sorted(range(len(entities)), key=lambda i: (
      -difficulty.get(entities[i], 0.0), tie[entities[i]], within[i]))
  return np.asarray(order[:budget], np.int64)


def select_for_labeling(policy: str, entities: Sequence[str],
                        difficulty: Mapping[str, float], budget: int,
                        rng: np.random.Generator) -> np.ndarray:
  """Indices of the documents the labeler sees (none for 'none')."""
  _validate.one_of("policy", policy, POLICIES)
  _validate.non_negative("budget", budget)
  if policy == "none":
    return np.zeros((0,), np.int64)
  if policy == "random":
    k = min(budget, len(entities))
    return np.sort(rng.choice(len(entities), size=k, replace=False)).astype(
        np.int64)
  return hardest_first(entities, difficulty, budget, rng)


def curate(policy: str, verdicts_fn, entities: Sequence[str],
           difficulty: Mapping[str, float], budget: int,
           rng: np.random.Generator) -> dict:
  """Selects, labels and keeps documents.

  Args:
    policy: one of `POLICIES`.
    verdicts_fn: ``indices -> [k] bool`` accept verdicts of those
      documents (the weak labeler).
    entities: the prompt entity of each generated document.
    difficulty: per-entity difficulty (hardest_first).
    budget: labels per round.
    rng: the policy's generator.

  Returns:
    {"labeled": indices, "verdicts": [k] bool, "kept": indices of the
    documents that join the corpus (all of them under 'none')}.
  """
  labeled = select_for_labeling(policy, entities, difficulty, budget, rng)
  if policy == "none":
    return {"labeled": labeled, "verdicts": np.zeros((0,), bool),
            "kept": np.arange(len(entities), dtype=np.int64)}
  verdicts = np.asarray(verdicts_fn(labeled), bool)
  return {"labeled": labeled, "verdicts": verdicts,
          "kept": np.sort(labeled[verdicts])}
