"""Templated questions, canonical answers, aliases and the answer matcher.

One question per (creature, feature) in `world.FEATURES`. Answers are strings:
integers as digits (aliases: the number in words, with and without hyphen and
"and"), weight with one decimal ("52.9", aliases "52.9 lbs", "52.9 pounds"),
height with two decimals ("1.27", aliases "1.27 m", "1.27 meters"), types as
"t1 and t2" (aliases "t2 and t1", "t1/t2", "t2/t1") or "t1".

`answer_in_text` is THE matcher: the renderer lists a fact in a document's
provenance only if it matches, and tests use it to check supports, so "every
fact claimed is in the text" is checked with the same rule everywhere.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from cbench.corpus import world as world_lib
from cbench.corpus.world import Creature

QA_FIELDS = ("id", "question", "answer", "aliases", "creature", "feature",
             "supports")
QA_SETS = ("public_val", "public_test", "sensitive_val", "sensitive_test")

STAT_LABELS = {"hp": "HP", "attack": "Attack", "defense": "Defense",
               "special_attack": "Special Attack",
               "special_defense": "Special Defense", "speed": "Speed"}

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven",
         "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen",
         "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy",
         "eighty", "ninety")


def _below_100(n: int, hyphen: bool) -> str:
  if n < 20:
    return _ONES[n]
  tens, ones = divmod(n, 10)
  if not ones:
    return _TENS[tens]
  return _TENS[tens] + ("-" if hyphen else " ") + _ONES[ones]


def number_words(n: int, hyphen: bool = True, use_and: bool = False) -> str:
  """English words for 0 <= n < 10000, e.g. 145 -> 'one hundred forty-five'."""
  if not 0 <= n < 10000:
    raise ValueError(f"number_words supports 0..9999, got {n}.")
  if n < 100:
    return _below_100(n, hyphen)
  parts = []
  thousands, rest = divmod(n, 1000)
  if thousands:
    parts.append(_ONES[thousands] + " thousand")
  hundreds, rest = divmod(rest, 100)
  if hundreds:
    parts.append(_ONES[hundreds] + " hundred")
  if rest:
    if use_and:
      parts.append("and")
    parts.append(_below_100(rest, hyphen))
  return " ".join(parts)


def number_aliases(n: int) -> list[str]:
  """Every word form of `n` that the renderer may write."""
  out = []
  for use_and in (False, True):
    for hyphen in (True, False):
      w = number_words(n, hyphen=hyphen, use_and=use_and)
      if w not in out:
        out.append(w)
  return out


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
    return str(n), number_aliases(n)
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


@functools.lru_cache(maxsize=1 << 16)
def _pattern(forms: tuple[str, ...]) -> re.Pattern:
  alts = "|".join(re.escape(f) for f in sorted(set(forms), key=len,
                                               reverse=True) if f)
  # Word boundaries that also treat '-' as part of a word ("forty-five" is
  # not "five") and do not split decimals ("1.25" does not contain "1.2",
  # "11.2" does not contain "1.2").
  return re.compile(rf"(?<![\w\-])(?<!\d\.)(?:{alts})(?![\w\-])(?!\.\d)",
                    re.IGNORECASE)


def answer_matcher(answer: str, aliases: Iterable[str]):
  """`text -> bool`: `answer_in_text` with the pattern compiled once."""
  forms = (answer,) + tuple(aliases)
  if not any(forms):
    return lambda text: False
  search = _pattern(forms).search
  return lambda text: search(text) is not None


def answer_in_text(answer: str, aliases: Iterable[str], text: str) -> bool:
  """Whether the answer or an alias occurs in `text` (case-insensitive,
  whole words; '-' counts as a word character and decimals are not split)."""
  return answer_matcher(answer, aliases)(text)


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


def support_summary(records: Sequence[dict]) -> Optional[dict]:
  """min/median/max/mean support count of a QA set (None if empty)."""
  if not records:
    return None
  counts = np.array([len(r["supports"]) for r in records])
  return {"min": int(counts.min()), "median": float(np.median(counts)),
          "max": int(counts.max()), "mean": round(float(counts.mean()), 3),
          "n": int(counts.size)}
