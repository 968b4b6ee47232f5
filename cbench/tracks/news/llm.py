"""The optional LLM path of stage 6: a question writer and an answer checker.

Two small interfaces, so a stronger model (or a remote one, outside cbench)
can replace the default without touching the pipeline:

* `QuestionWriter.write(items) -> [question or None]`: a natural question
  for each fact (`WriteItem`: the anchor sentence, the answer, its kind and
  the report's date). None keeps the extractive cloze question.
* `AnswerChecker.check(items) -> [bool]`: whether each support text states
  the answer to the question (`CheckItem`); facts whose anchor support
  fails are dropped and counted.

The offline default needs no model: `ClozeWriter` (keeps every cloze) and
no checker. `ModelQuestionWriter` / `ModelAnswerChecker` run a packaged
model (``NewsReleaseConfig.question_writer`` / ``answer_checker``: a
pretrained name such as 'gemma3_270m' or a model directory) through the
harness's one decoder (`harness.score.complete_lines`, greedy). A written
question is used only if it ends with '?', has at least six words, names
the report's date and does not contain the answer; otherwise the cloze
stays. Tests never need a model (they use the interfaces with fakes).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Protocol, Sequence

from cbench.corpus import answers
from cbench.harness import score
from cbench.models import model_store

_WRITE_PROMPT = (
    "Write one short question about the news report. Its answer must be "
    "exactly: {answer}\nReport dated {date}: {sentence}\nQuestion "
    "(mention {date}):")
_CHECK_PROMPT = (
    "Text: {text}\nQuestion: {question}\nProposed answer: {answer}\n"
    "Does the text state this answer? Answer yes or no:")
_MAX_CHECK_WORDS = 250


@dataclasses.dataclass(frozen=True)
class WriteItem:
  sentence: str   # the anchor sentence, answer included
  answer: str
  kind: str       # 'number' | 'date' | 'name'
  date: str       # the report's date, e.g. '14 March 2026'


@dataclasses.dataclass(frozen=True)
class CheckItem:
  text: str       # a support document's text
  question: str
  answer: str


class QuestionWriter(Protocol):
  def write(self, items: Sequence[WriteItem]) -> list[Optional[str]]: ...


class AnswerChecker(Protocol):
  def check(self, items: Sequence[CheckItem]) -> list[bool]: ...


class ClozeWriter:
  """The extractive default: keeps every cloze question."""

  def write(self, items: Sequence[WriteItem]) -> list[Optional[str]]:
    return [None] * len(items)


def acceptable(question: str, item: WriteItem) -> bool:
  """Whether a written question may replace the cloze (module docstring)."""
  q = question.strip()
  return (q.endswith("?") and len(q.split()) >= 6 and item.date in q
          and not answers.answer_in_text(item.answer, (), q))


@functools.lru_cache(maxsize=2)
def _bundle(model: str) -> model_store.ModelBundle:
  return dataclasses.replace(model_store.load(model), fewshot=[])


class ModelQuestionWriter:
  """Questions written by a packaged model (greedy, one line each)."""

  def __init__(self, model: str):
    self.model = model

  def write(self, items: Sequence[WriteItem]) -> list[Optional[str]]:
    if not items:
      return []
    prompts = [_WRITE_PROMPT.format(answer=i.answer, date=i.date,
                                    sentence=i.sentence) for i in items]
    out = score.complete_lines(_bundle(self.model), prompts,
                               max_new_tokens=48)
    return [q.strip() if acceptable(q, i) else None
            for q, i in zip(out, items)]


class ModelAnswerChecker:
  """Yes/no support checks by a packaged model (greedy)."""

  def __init__(self, model: str):
    self.model = model

  def check(self, items: Sequence[CheckItem]) -> list[bool]:
    if not items:
      return []
    prompts = [_CHECK_PROMPT.format(
        text=" ".join(i.text.split()[:_MAX_CHECK_WORDS]),
        question=i.question, answer=i.answer) for i in items]
    out = score.complete_lines(_bundle(self.model), prompts,
                               max_new_tokens=3)
    return [o.strip().lower().startswith("yes") for o in out]


def question_writer(model: str) -> QuestionWriter:
  return ModelQuestionWriter(model) if model else ClozeWriter()


def answer_checker(model: str) -> Optional[AnswerChecker]:
  return ModelAnswerChecker(model) if model else None
