"""Stage 6: candidate answers, matching contexts, public vs sensitive facts."""

import dataclasses

import pytest

from cbench.corpus import answers
from cbench.tracks.news import articles
from cbench.tracks.news import events
from cbench.tracks.news import facts
from cbench.tracks.news.articles_test import CONFIG


def _kinds(sentence):
  return [(kind, norm, surface) for _, _, kind, norm, surface in
          facts.spans(sentence)]


@pytest.mark.parametrize("sentence, want", [
    ("The fire destroyed 193 homes on 10 March.",
     [("number", "193", "193"), ("date", "10 March", "10 March")]),
    ("It cost $4.5 million in 2025, up 12% from March 3rd, 2024.",
     [("number", "$4.5 million", "$4.5 million"),
      ("number", "12 percent", "12%"),
      ("date", "3 March", "March 3rd, 2024")]),
    ("Some 7 people and 1,204 residents left at 10:30 after 2019.",
     [("number", "1204", "1,204")]),
    ("The Mayor of Upper Veltor, Ilona Marsk, met Dr Henrik Dal.",
     [("name", "mayor of upper veltor", "Mayor of Upper Veltor"),
      ("name", "ilona marsk", "Ilona Marsk"),
      ("name", "henrik dal", "Henrik Dal")]),
    ("On Monday March officials said nothing.", []),
])
def test_candidate_answers(sentence, want):
  assert sorted(_kinds(sentence), key=lambda x: sentence.index(x[2])) == want


def test_sentences_respect_abbreviations():
  assert facts.sentences("Mr. Dal met U.S. officials. They agreed! "
                         "42 came.\nNew paragraph") == [
                             "Mr. Dal met U.S. officials.", "They agreed!",
                             "42 came.", "New paragraph"]


def test_aliases():
  assert facts.aliases_of("number", "1204", ["1,204"], "1,204")[:1] == (
      "1204",)
  assert "one thousand two hundred four" in facts.aliases_of(
      "number", "1204", ["1,204"], "1,204")
  assert set(facts.aliases_of("number", "12 percent", ["12%"], "12%")) >= {
      "12 percent"}
  assert set(facts.aliases_of("date", "3 March", ["March 3rd, 2024"],
                              "3 March")) >= {"March 3", "3 March 2024",
                                              "March 3, 2024",
                                              "March 3rd, 2024"}


def _article(i, outlet, text, date="2026-03-12"):
  return articles.Article(key=f"k{i}", url=f"https://{outlet}/{i}",
                          outlet=outlet, date=date, title=f"Story {i}",
                          text=text, words=len(text.split()), cut=False,
                          date_source="page")


def test_public_sensitive_and_giveaway_rules():
  filler = " Residents gathered to hear updates from the council today."
  arts = [
      _article(0, "a.test", "The flood forced officials to close 57 roads in "
               "the district." + filler + " A neighbour, Oskar Velde, said the "
               "water rose within minutes of the alarm."),
      _article(1, "b.test", "Officials closed 57 roads in the district "
               "because of the flood." + filler),
      _article(2, "c.test", "Flooding meant 57 roads in the district were "
               "closed by officials." + filler),
      _article(3, "a.test", "The flood closed 57 roads, officials in the "
               "district said." + filler),
      # A number in an unrelated context does not support the roads fact.
      _article(4, "d.test", "Some 57 volunteers painted a mural at the "
               "school in spring." + filler),
      # The report's own date as the answer would give it away.
      _article(5, "b.test", "The river flooded the district on 12 March "
               "after heavy rain." + filler),
  ]
  event = events.Event("2026-03-e0001", tuple(range(6)),
                       ("a.test", "b.test", "c.test", "d.test"),
                       "2026-03-12", "2026-03-12")
  config = dataclasses.replace(CONFIG, sensitive_per_event=5)
  got, stats = facts.event_facts(arts, event, config)
  by_answer = {f.answer: f for f in got}
  roads = by_answer["57"]
  assert not roads.sensitive and roads.kind == "number"
  assert roads.supports == (0, 1, 2, 3)  # Not 4: another context.
  assert roads.outlets == ("a.test", "b.test", "c.test")
  assert roads.question.startswith('On 12 March 2026, a news report titled')
  assert "___" in roads.question and "57" not in roads.question
  assert roads.question.endswith("What number fills the blank?")
  for s in roads.supports:
    assert answers.answer_in_text(roads.answer, roads.aliases, arts[s].text)
  witness = by_answer["Oskar Velde"]
  assert witness.sensitive and witness.supports == (0,)
  assert "12 March" not in by_answer  # Never asked: its own date.
  assert stats["public"] >= 1 and stats["sensitive"] >= 1
  assert facts.stated_by(witness, arts) == (1, 1)
  assert facts.stated_by(roads, arts) == (5, 4)
  # Fewer outlets than required: the roads fact is not public.
  strict = dataclasses.replace(config, min_fact_outlets=4)
  got, _ = facts.event_facts(arts, event, strict)
  assert all(f.sensitive or f.answer != "57" for f in got)
