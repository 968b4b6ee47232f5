"""Templated questions, canonical answers, aliases and the answer matcher.

One question per (creature, feature) in `world.FEATURES`. Answers are strings:
integers as digits (aliases: the number in words, with and without hyphen and
"and"), weight with one decimal ("52.9", aliases "52.9 lbs", "52.9 pounds"),
height with two decimals ("1.27", aliases "1.27 m", "1.27 meters"), types as
"t1 and t2" (aliases "t2 and t1", "t1/t2", "t2/t1") or "t1".

`answer_in_text` (`cbench.corpus.answers`, shared by every track) is THE
matcher: the renderer lists a fact in a document's provenance only if it
matches, and tests use it to check supports, so "every fact claimed is in
the text" is checked with the same rule everywhere.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from cbench.corpus import answers
from cbench.tracks.geminon import world as world_lib
from cbench.tracks.geminon.world import Creature

# Geminon QA records also name their creature.
QA_FIELDS = answers.QA_FIELDS + ("creature",)
QA_SETS = answers.QA_SETS

STAT_LABELS = {"hp": "HP", "attack": "Attack", "defense": "Defense",
               "special_attack": "Special Attack",
               "special_defense": "Special Defense", "speed": "Speed"}

def format_weight(c: Creature) -> str:
  return f"{c.weight_lbs:.1f}"


def format_height(c: Creature) -> str:
  return f"{c.height_m:.2f}"


def types_answer(c: Creature) -> str:
  return " and ".join(c.types)


def answer_for(c: Creature, feature: str) -> tuple[str, list[str]]:
  """(canonical answer, aliases) of `feature` of creature `c`."""
  if feature == "classification":
    return c.classification, []
  if feature == "types":
    if c.type2 is None:
      return c.type1, []
    a, b = c.type1, c.type2
    return f"{a} and {b}", [f"{b} and {a}", f"{a}/{b}", f"{b}/{a}"]
  if feature == "ability":
    return c.ability, []
  if feature == "move":
    return c.move_name, []
  if feature == "weight":
    w = format_weight(c)
    return w, [f"{w} lbs", f"{w} pounds"]
  if feature == "height":
    h = format_height(c)
    return h, [f"{h} m", f"{h} meters"]
  if feature in world_lib.STATS or feature == "base_stat_total":
    n = c.stat(feature)
    return str(n), answers.number_aliases(n)
  raise ValueError(f"Unknown feature {feature!r}.")


def question_for(name: str, feature: str) -> str:
  """The templated question about `feature` of the creature `name`."""
  if feature == "classification":
    return f"What is the classification of {name}?"
  if feature == "types":
    return f"What are the types of {name}?"
  if feature == "ability":
    return f"What is the ability of {name}?"
  if feature == "move":
    return f"What is the signature move of {name}?"
  if feature == "weight":
    return f"What is the weight (in lbs) of {name}?"
  if feature == "height":
    return f"What is the height (in meters) of {name}?"
  if feature == "base_stat_total":
    return f"What is the base stat total of {name}?"
  if feature in STAT_LABELS:
    return f"What is the {STAT_LABELS[feature]} stat of {name}?"
  raise ValueError(f"Unknown feature {feature!r}.")


def question_record(c: Creature, feature: str,
                    supports: Sequence[int]) -> dict:
  answer, aliases = answer_for(c, feature)
  return {"id": f"{c.name.lower()}-{feature}",
          "question": question_for(c.name, feature),
          "answer": answer, "aliases": aliases, "creature": c.name,
          "feature": feature, "supports": [int(s) for s in supports]}


def build_qa(world: world_lib.World,
             supports: Mapping[tuple[str, str], Sequence[int]],
             min_support: int,
             rng: np.random.Generator,
             include_train: bool = False) -> tuple[dict[str, list[dict]],
                                                   dict]:
  """Builds the QA sets of a world.

  Args:
    world: the world.
    supports: {(creature name, feature): sorted train-document ids whose
      provenance states that fact}; missing keys mean no support.
    min_support: public questions with fewer supports are dropped (sensitive
      questions are always kept: their low support is the point).
    rng: splits each creature's questions half/half into val/test.
    include_train: also return "public_train" = every public question,
      none dropped (used by the public world).

  Returns:
    ({set name: records}, stats) where stats has "dropped_public" (count)
    and "questions" ({set: count}).
  """
  sets: dict[str, list[dict]] = {name: [] for name in QA_SETS}
  if include_train:
    sets["public_train"] = []
  dropped = 0
  for c in world.creatures:
    prefix = "sensitive" if c.sensitive else "public"
    records = []
    for feature in world_lib.FEATURES:
      rec = question_record(c, feature, supports.get((c.name, feature), ()))
      if include_train and not c.sensitive:
        sets["public_train"].append(rec)
      if not c.sensitive and len(rec["supports"]) < min_support:
        dropped += 1
        continue
      records.append(rec)
    order = rng.permutation(len(records))
    n_val = (len(records) + int(rng.integers(2))) // 2
    val_idx = set(order[:n_val].tolist())
    for i, rec in enumerate(records):
      sets[f"{prefix}_{'val' if i in val_idx else 'test'}"].append(rec)
  stats = {"dropped_public": dropped,
           "questions": {k: len(v) for k, v in sorted(sets.items())}}
  return sets, stats
