"""QA templates, answers, aliases and the shared answer matcher."""

import dataclasses

import numpy as np
import pytest

from cbench.corpus import answers
from cbench.tracks.geminon import qa
from cbench.tracks.geminon import world as world_lib


@pytest.fixture(scope="module")
def world():
  return world_lib.generate_world(11, {1: 3, 2: 3, 3: 3}, {1: 1, 2: 1}, 42)


@pytest.mark.parametrize("n,words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"),
    (73, "seventy-three"), (100, "one hundred"),
    (145, "one hundred forty-five"), (318, "three hundred eighteen"),
    (1000, "one thousand"), (1205, "one thousand two hundred five")])
def test_number_words(n, words):
  assert answers.number_words(n) == words


def test_number_aliases_cover_every_rendered_form():
  assert answers.number_aliases(145) == [
      "one hundred forty-five", "one hundred forty five",
      "one hundred and forty-five", "one hundred and forty five"]
  assert answers.number_aliases(20) == ["twenty"]


@pytest.mark.parametrize("answer,aliases,text,expected", [
    ("45", ["forty-five"], "It has 45 HP.", True),
    ("45", ["forty-five"], "It has 145 HP.", False),
    ("45", ["forty-five"], "It has 45.5 HP.", False),
    ("45", ["forty-five"], "Its HP is Forty-Five.", True),
    ("5", ["five"], "It has forty-five HP.", False),
    ("1.2", ["1.2 m"], "It is 1.25 m tall.", False),
    ("1.2", ["1.2 m"], "It is 11.2 m tall.", False),
    ("1.2", ["1.2 m"], "It stands 1.2.", True),
    ("Fire and Water", ["Water and Fire", "Fire/Water"],
     "a fire/water type", True),
    ("Fire and Water", ["Water and Fire", "Fire/Water"],
     "a Fire type and a Water type", False),
    ("Iron Veil", [], "the ability Iron Veiled", False),
    ("Iron Veil", [], "Its ability, iron veil, helps.", True),
])
def test_answer_in_text(answer, aliases, text, expected):
  assert answers.answer_in_text(answer, aliases, text) is expected


def test_answers_and_questions(world):
  c = world.creatures[0]
  dual = dataclasses.replace(c, type1="Fire", type2="Water")
  single = dataclasses.replace(c, type1="Fire", type2=None)
  assert qa.answer_for(dual, "types") == (
      "Fire and Water", ["Water and Fire", "Fire/Water", "Water/Fire"])
  assert qa.answer_for(single, "types") == ("Fire", [])
  w = qa.answer_for(dataclasses.replace(c, weight_lbs=52.9), "weight")
  assert w == ("52.9", ["52.9 lbs", "52.9 pounds"])
  h = qa.answer_for(dataclasses.replace(c, height_m=1.2), "height")
  assert h == ("1.20", ["1.20 m", "1.20 meters"])
  assert qa.answer_for(dataclasses.replace(c, hp=73), "hp") == (
      "73", ["seventy-three", "seventy three"])
  assert qa.question_for("Velaro", "hp") == "What is the HP stat of Velaro?"
  assert qa.question_for("Velaro", "special_defense") == (
      "What is the Special Defense stat of Velaro?")
  assert qa.question_for("Velaro", "weight") == (
      "What is the weight (in lbs) of Velaro?")
  for f in world_lib.FEATURES:
    assert "Velaro" in qa.question_for("Velaro", f)


def test_build_qa_drops_low_support_and_splits_per_creature(world):
  public = world.public
  supports = {}
  for i, c in enumerate(public):
    for j, f in enumerate(world_lib.FEATURES):
      supports[(c.name, f)] = list(range(10 if (i + j) % 5 else 2))
  sets, stats = qa.build_qa(world, supports, min_support=5,
                            rng=np.random.default_rng(0))
  n_low = sum(1 for i, _ in enumerate(public)
              for j, _ in enumerate(world_lib.FEATURES) if (i + j) % 5 == 0)
  assert stats["dropped_public"] == n_low
  assert all(len(r["supports"]) >= 5
             for k in ("public_val", "public_test") for r in sets[k])
  # Sensitive questions are never dropped, even with zero support.
  assert len(sets["sensitive_val"]) + len(sets["sensitive_test"]) == (
      13 * len(world.sensitive))
  for c in world.creatures:
    prefix = "sensitive" if c.sensitive else "public"
    val = {r["id"] for r in sets[f"{prefix}_val"] if r["creature"] == c.name}
    test = {r["id"] for r in sets[f"{prefix}_test"]
            if r["creature"] == c.name}
    assert not val & test
    assert abs(len(val) - len(test)) <= 1
  for r in sets["public_val"]:
    assert set(r) == set(qa.QA_FIELDS)
