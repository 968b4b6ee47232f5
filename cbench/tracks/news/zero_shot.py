"""Stage 7: drop questions the base model answers closed-book.

A question the track's base model already answers correctly without the
corpus (greedy decoding, the harness's own few-shot prompt with the
release's exemplars, `harness.score.answer_questions`; exact match with
aliases, `harness.qa_metrics.exact_match`) measures nothing: it is dropped,
and the manifest records the model and how many were asked and dropped.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

from cbench.harness import qa_metrics
from cbench.harness import score
from cbench.models import model_store

log = logging.getLogger("cbench")


def answered(questions: Sequence[dict], model: str,
             exemplars: Sequence[dict]) -> list[bool]:
  """Whether `model` answers each question exactly right, closed-book."""
  if not questions:
    return []
  bundle = dataclasses.replace(model_store.load(model),
                               fewshot=list(exemplars))
  log.info("zero-shot filter: %s answers %d questions", model,
           len(questions))
  preds = score.answer_questions(bundle, [q["question"] for q in questions])
  return [qa_metrics.exact_match(p, q["answer"], q.get("aliases", ()))
          for p, q in zip(preds, questions)]


def filter_questions(questions: Sequence[dict], model: str,
                     exemplars: Sequence[dict]) -> tuple[list[dict], dict]:
  """The questions `model` gets wrong, and the stage's record."""
  if not model:
    return list(questions), {"model": None, "asked": 0, "dropped": 0,
                             "note": "skipped: no zero_shot_model"}
  right = answered(questions, model, exemplars)
  kept = [q for q, r in zip(questions, right) if not r]
  return kept, {"model": model, "asked": len(questions),
                "dropped": len(questions) - len(kept)}
