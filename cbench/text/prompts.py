"""Q/A text formats shared by base-model pretraining and QA scoring.

Scoring prompt: a few-shot prefix of public-world exemplars, then
``"Q: {question}\nA:"``; the model's greedy completion is cut at its first
newline: decoding stops at any token whose text contains one
(`answer_stop_ids`: Gemma's ``"\\n"`` and ``"\\n\\n"`` alike) and
`cut_answer` cuts the text. Pretraining shows the base model the same layout
(blocks of Q/A pairs about *public-world* creatures), so it learns the answer
format and nothing of a release. Synthetic documents end at a blank line
(`document_end_ids`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from cbench import _validate

# Q/A pairs are separated by one newline; a blank line separates documents
# (document pairs in pretraining, a record and its continuation in private
# prediction), so after a blank line the base model writes a document, not Q:.
SEPARATOR = "\n"
DOCUMENT_SEPARATOR = "\n\n"


def answer_stop_ids(tokenizer) -> tuple[int, ...]:
  """Ids that end a QA answer (besides EOS): every id with a newline."""
  return tuple(tokenizer.newline_ids)


def document_separator_ids(tokenizer) -> list[int]:
  """`DOCUMENT_SEPARATOR` as the tokenizer writes it between paragraphs.

  The ids of the blank line in running text (``"x." + DOCUMENT_SEPARATOR +
  "The"``), i.e. as pretraining text holds it: the tiny sentencepiece model
  ``[nl, nl]``; Gemma 3 ``[108]`` (``"\\n\\n"``); SmolLM2 ``[198, 198]``
  (its pre-tokeniser leaves the last newline before a word on its own).

  Raises:
    CbenchError: the blank line does not come out as newline-only ids.
  """
  head = tokenizer.encode("x.")
  full = tokenizer.encode("x." + DOCUMENT_SEPARATOR + "The")
  newline = set(tokenizer.newline_ids)
  sep = []
  if full[:len(head)] == head:
    for i in full[len(head):]:
      if i not in newline:
        break
      sep.append(i)
  _validate.check(
      bool(sep) and tokenizer.decode(sep) == DOCUMENT_SEPARATOR,
      f"The tokenizer does not write the blank line "
      f"{DOCUMENT_SEPARATOR!r} as newline-only ids after 'x.' ({full}).")
  return sep


def document_end_ids(tokenizer) -> tuple[int, ...]:
  """Ids that end a synthetic document (besides EOS), sorted.

  Where the tokenizer writes a paragraph break as one piece (Gemma 3:
  ``"\\n\\n"``, see `document_separator_ids`), every id whose text holds a
  blank line (``blank_line_ids``: ``"\\n\\n"`` ... 31 newlines): a single
  ``"\\n"`` inside a document does not end it. Where a paragraph break is
  several tokens (tiny: two ``"\\n"`` pieces; SmolLM2: two ``"Ċ"``), a
  static stop set cannot see the pair, so every newline id ends the document
  (``newline_ids``; documents of this benchmark are one paragraph).
  """
  sep = document_separator_ids(tokenizer)
  if len(sep) == 1 and sep[0] in set(tokenizer.blank_line_ids):
    return tuple(tokenizer.blank_line_ids)
  return tuple(tokenizer.newline_ids)


def cut_answer(completion: str) -> str:
  """A completion up to (excluding) its first newline."""
  return completion.split("\n", 1)[0]


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
