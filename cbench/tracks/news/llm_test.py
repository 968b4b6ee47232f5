"""The optional LLM path: its interfaces, the acceptance rule, the wiring."""

import dataclasses

from cbench.tracks.news import build
from cbench.tracks.news import facts as facts_lib
from cbench.tracks.news import llm
from cbench.tracks.news.facts_test import _article

ITEM = llm.WriteItem("The fire destroyed 193 homes.", "193", "number",
                     "10 March 2026")


def test_acceptance_rule():
  ok = "How many homes did the fire destroy, reported on 10 March 2026?"
  assert llm.acceptable(ok, ITEM)
  assert not llm.acceptable(ok[:-1], ITEM)                       # No '?'.
  assert not llm.acceptable("Homes on 10 March 2026?", ITEM)  # Short.
  assert not llm.acceptable("Were 193 homes destroyed on 10 March 2026?",
                            ITEM)                                # Answer.
  assert not llm.acceptable(ok.replace("10 March 2026", "Monday"), ITEM)
  assert llm.ClozeWriter().write([ITEM, ITEM]) == [None, None]
  assert isinstance(llm.question_writer(""), llm.ClozeWriter)
  assert llm.answer_checker("") is None


class _Writer:
  model = "fake-writer"

  def write(self, items):
    return [f"Q about {i.answer} on {i.date}?" if i.kind == "number" else None
            for i in items]


class _Checker:
  model = "fake-checker"

  def __init__(self):
    self.seen = []

  def check(self, items):
    self.seen.extend(items)
    return ["keep" in i.text for i in items]


def _fact(i, kind, support):
  return facts_lib.Fact(id=f"f{i}", event="e", kind=kind, answer=str(i),
                        aliases=(), question=f"cloze {i}", sentence="s",
                        date="2026-03-10", supports=(support,), outlets=("o",),
                        sensitive=False)


def test_use_llm_rewrites_and_checks():
  arts = [_article(0, "a.test", "keep this one"), _article(1, "b.test", "no")]
  facts = [_fact(1, "number", 0), _fact(2, "name", 0), _fact(3, "number", 1)]
  checker = _Checker()
  out, stats = build.use_llm(facts, arts, _Writer(), checker)
  assert [f.id for f in out] == ["f1", "f2"]
  assert out[0].question == "Q about 1 on 10 March 2026?"
  assert out[1].question == "cloze 2"
  assert stats == {"question_writer": "fake-writer",
                   "answer_checker": "fake-checker",
                   "dropped_by_checker": 1, "rewritten": 1}
  assert [i.answer for i in checker.seen] == ["1", "2", "3"]
  same, stats = build.use_llm(facts, arts, llm.ClozeWriter(), None)
  assert same == facts and stats["rewritten"] == 0


def test_model_backed_path_runs_on_a_packaged_model_interface(micro_base_dir):
  writer = llm.ModelQuestionWriter(micro_base_dir)
  checker = llm.ModelAnswerChecker(micro_base_dir)
  written = writer.write([ITEM, dataclasses.replace(ITEM, answer="x")])
  assert len(written) == 2
  assert all(q is None or llm.acceptable(q, ITEM) for q in written)
  verdicts = checker.check([llm.CheckItem("The fire destroyed 193 homes.",
                                          "How many?", "193")])
  assert len(verdicts) == 1 and isinstance(verdicts[0], bool)
