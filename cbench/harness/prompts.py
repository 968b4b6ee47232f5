"""Q/A text formats shared by base-model pretraining and QA scoring.

Scoring prompt: a few-shot prefix of public-world exemplars, then
``"Q: {question}\nA:"``; the model's greedy completion is cut at its first
newline. Pretraining shows the base model the same layout (blocks of Q/A pairs
about *public-world* creatures), so it learns the answer format and nothing of
a release.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

# Q/A pairs are separated by one newline; a blank line separates documents
# (document pairs in pretraining, a record and its continuation in private
# prediction), so after a blank line the base model writes a document, not Q:.
SEPARATOR = "\n"
DOCUMENT_SEPARATOR = "\n\n"


def qa_pair(question: str, answer: str) -> str:
  return f"Q: {question}\nA: {answer}"


def select_exemplars(public_qa: Sequence[Mapping], num_shots: int = 7,
                     seed: int = 0) -> list[Mapping]:
  """Deterministic exemplars: one per feature (round-robin), distinct creatures."""
  rng = np.random.default_rng(seed)
  by_feature: dict[str, list[Mapping]] = {}
  for q in public_qa:
    by_feature.setdefault(q["feature"], []).append(q)
  features = sorted(by_feature)
  rng.shuffle(features)
  chosen, used = [], set()
  i = 0
  while len(chosen) < num_shots and i < 10 * num_shots and features:
    pool = by_feature[features[i % len(features)]]
    for j in rng.permutation(len(pool)):
      if pool[j]["creature"] not in used:
        chosen.append(pool[j])
        used.add(pool[j]["creature"])
        break
    i += 1
  return chosen


def few_shot_prefix(exemplars: Sequence[Mapping]) -> str:
  return "".join(qa_pair(e["question"], e["answer"]) + SEPARATOR for e in exemplars)


def question_prompt(prefix: str, question: str) -> str:
  return f"{prefix}Q: {question}\nA:"


def qa_blocks(qa: Sequence[Mapping], *, pairs_per_block: int, seed: int,
              repeats: int = 1) -> list[str]:
  """Training texts: shuffled blocks of Q/A pairs (each pair ends a line)."""
  rng = np.random.default_rng(seed)
  texts = []
  for _ in range(repeats):
    order = rng.permutation(len(qa))
    for start in range(0, len(order), pairs_per_block):
      block = [qa[k] for k in order[start:start + pairs_per_block]]
      texts.append(SEPARATOR.join(qa_pair(q["question"], q["answer"]) for q in block))
  return texts
