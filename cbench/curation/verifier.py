"""A weak, noisy verifier of Geminon documents, built from a release's facts.

`FactChecker` reads what a document *claims* and checks it against the
release's facts (the answers and aliases of its QA records, public and
sensitive; `fact_metrics.release_facts`), with the track's matcher
(`cbench.corpus.answers`: case-insensitive whole words, numbers also in
words):

* the document's creatures: every release creature whose name it mentions;
* its claims, each a (feature, value) read off a cue of the renderer's
  phrasing: a number next to a stat label ("148 HP", "its attack stat is
  37", "base stat total of 383", "HP 60"), a number with a unit
  ("51.0 lbs", "0.71 m"), a capitalised type before "type"/"typing"
  ("Psychic/Fire type"), a "<Word> Geminon" classification, and an ability
  or a move (any of the release's, or two capitalised words after a cue
  such as "ability is" / "signature move is");
* a claim is right when its value is that feature's answer for one of the
  document's creatures, else wrong (also when the document names no
  release creature);
* its correct facts: `fact_metrics.reproduced_facts` (name and answer
  anywhere in the text), the rule of the track's fact coverage.

A document is *correct* when it reproduces at least one fact and makes no
wrong claim. The checker is deliberately partial: a wrong value without a
cue goes unseen (a weak verifier). On the real corpus it finds no wrong
claim (`verifier_test.py`).

`WeakLabeler` turns the checker into the β-weak labeler of Escaping
Collapse (Amin et al. 2025, arXiv 2502.08924): each verdict is flipped
independently with probability γ (seeded `np.random.Generator`), so the
label agrees with the truth with probability 1 - γ; its edge over a coin is
β = 1 - 2γ > 0, which needs 0 <= γ < 1/2.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Iterable, Sequence

import numpy as np

from cbench._validate import CbenchError
from cbench.corpus import answers
from cbench.corpus import release as release_lib
from cbench.tracks.geminon import fact_metrics
from cbench.tracks.geminon import world as world_lib

_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven",
          "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen",
          "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
          "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
          "hundred", "thousand")
_WORD = "|".join(sorted(_UNITS, key=len, reverse=True))
_NUM = (rf"\d+(?:\.\d+)?|(?:{_WORD})(?:(?:\s+and\s+|[\s-]+)(?:{_WORD}))*")
# Stat labels of the renderer (and the synonyms it uses), per feature.
_STAT_LABELS = {
    "hp": ("HP", "hit points"),
    "attack": ("physical Attack", "Attack"),
    "defense": ("physical Defense", "Defense"),
    "special_attack": ("Special Attack", "Sp. Atk"),
    "special_defense": ("Special Defense", "Sp. Def"),
    "speed": ("Speed",),
    "base_stat_total": ("base stat total", "stat total", "BST"),
}
_LABEL_FEATURE = {lab.lower(): f for f, labs in _STAT_LABELS.items()
                  for lab in labs}
_LABEL = "|".join(re.escape(x) for x in sorted(_LABEL_FEATURE, key=len,
                                                 reverse=True))
_B = r"(?<![\w\-])"  # Start of a word ('-' is a word character).
_E = r"(?![\w\-])(?!\.\d)"  # End of a word (decimals are not split).
_NUMBER_LABEL = re.compile(
    rf"{_B}(?P<v>{_NUM})\s+(?:base\s+)?(?P<l>{_LABEL}){_E}", re.IGNORECASE)
_LABEL_NUMBER = re.compile(
    rf"{_B}(?P<l>{_LABEL})(?:\s+stat)?(?:\s+is(?:\s+rated\s+at)?|\s+of|"
    rf"\s+sits\s+at|:)?\s+(?P<v>{_NUM}){_E}", re.IGNORECASE)
_TOTAL = re.compile(rf"(?:add\s+up\s+to|sum\s+to|total\s+of)\s+(?P<v>{_NUM})"
                    rf"{_E}|\((?P<w>{_NUM})\s+in\s+total\)", re.IGNORECASE)
_WEIGHT = re.compile(rf"{_B}(?P<v>\d+(?:\.\d+)?)\s*(?:lbs|pounds){_E}",
                     re.IGNORECASE)
_HEIGHT = re.compile(rf"{_B}(?P<v>\d+(?:\.\d+)?)\s*(?:m|meters|metres){_E}",
                     re.IGNORECASE)
_TYPE = "|".join(world_lib.TYPES)  # Case-sensitive: "psychic blast" is not.
_TYPE_PHRASE = rf"(?:{_TYPE})(?:\s*/\s*(?:{_TYPE})|\s+and\s+(?:{_TYPE}))?"
_TYPES = re.compile(rf"\b(?P<v>{_TYPE_PHRASE})\s+typ(?:e|ing)\b|"
                    rf"\btyping\s+is\s+(?P<w>{_TYPE_PHRASE})\b")
_TYPE_WORD = re.compile(rf"\b(?:{_TYPE})\b")
_NOT_A_CLASS = frozenset(("A", "An", "The", "This", "That", "Each", "Every",
                          "No", "One", "Its", "Any", "Which", "What"))
_CLASS = re.compile(r"\b(?P<v>[A-Z][a-z]+ Geminon)\b")
_TWO_CAPS = r"[A-Z][a-z]+ [A-Z][a-z]+"
_ABILITY = re.compile(rf"\bability(?:\s+is|,)?\s+(?P<v>{_TWO_CAPS})\b|"
                      rf"\b(?:the|its)\s+(?P<w>{_TWO_CAPS})\s+ability\b")
_MOVE = re.compile(rf"\bsignature\s+move(?:\s+is|,)?\s+(?P<v>{_TWO_CAPS})\b|"
                   rf"\btechnique,\s+(?P<w>{_TWO_CAPS})\b")


@dataclasses.dataclass(frozen=True)
class DocCheck:
  """What `FactChecker.check` found in one document.

  Attributes:
    creatures: release creatures the document names.
    facts: (creature, feature) facts it reproduces (name + answer).
    claims: every (feature, value) claim read off a cue, in text order.
    wrong: the claims that match no named creature's answer.
  """
  creatures: tuple[str, ...]
  facts: frozenset[tuple[str, str]]
  claims: tuple[tuple[str, str], ...]
  wrong: tuple[tuple[str, str], ...]

  @property
  def correct(self) -> bool:
    """At least one reproduced fact and no wrong claim."""
    return bool(self.facts) and not self.wrong


class FactChecker:
  """Checks documents against a release's facts (see the module doc)."""

  def __init__(self, release: release_lib.Release | str):
    if isinstance(release, str):
      release = release_lib.load_release(release)
    if release.track != "geminon":
      raise CbenchError(f"The fact checker reads Geminon documents; "
                        f"{release.root} is a {release.track!r} release.")
    self.facts = fact_metrics.release_facts(
        release, fact_metrics.PUBLIC_SETS + fact_metrics.SENSITIVE_SETS)
    if not self.facts:
      raise CbenchError(f"{release.root} has no QA facts to check against.")
    self.public_facts = fact_metrics.release_facts(
        release, fact_metrics.PUBLIC_SETS)
    self._by_creature: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {}
    for (creature, feature), value in self.facts.items():
      self._by_creature.setdefault(creature, {})[feature] = value
    self._names = {c: answers.answer_matcher(c, ())
                   for c in self._by_creature}
    vocab = {f: sorted({v[f][0] for v in self._by_creature.values()
                        if f in v}, key=len, reverse=True)
             for f in ("ability", "move")}
    self._vocab = {f: re.compile(
        r"(?<![\w\-])(?P<v>" + "|".join(map(re.escape, words))
        + r")(?![\w\-])", re.IGNORECASE) for f, words in vocab.items()
                   if words}

  @property
  def creatures(self) -> tuple[str, ...]:
    return tuple(sorted(self._by_creature))

  def named(self, text: str) -> tuple[str, ...]:
    """Release creatures whose name `text` mentions, sorted."""
    return tuple(sorted(c for c, m in self._names.items() if m(text)))

  def claims(self, text: str) -> list[tuple[str, str]]:
    """(feature, value) claims of `text`, ordered by position (one claim
    per value span; see the module doc)."""
    found: dict[tuple[int, int], tuple[str, str]] = {}

    def add(feature, m, group="v"):
      if m.group(group) is not None:
        found.setdefault(m.span(group), (feature, m.group(group)))

    for rx in (_NUMBER_LABEL, _LABEL_NUMBER):
      for m in rx.finditer(text):
        add(_LABEL_FEATURE[re.sub(r"\s+", " ", m.group("l")).lower()], m)
    for m in _TOTAL.finditer(text):
      add("base_stat_total", m, "v" if m.group("v") is not None else "w")
    for feature, rx in (("weight", _WEIGHT), ("height", _HEIGHT)):
      for m in rx.finditer(text):
        add(feature, m)
    for m in _TYPES.finditer(text):
      group = "v" if m.group("v") is not None else "w"
      start = m.start(group)
      for t in _TYPE_WORD.finditer(m.group(group)):
        found.setdefault((start + t.start(), start + t.end()),
                         ("types", t.group()))
    for m in _CLASS.finditer(text):
      if m.group("v").split()[0] not in _NOT_A_CLASS:
        add("classification", m)
    for feature, rx in (("ability", _ABILITY), ("move", _MOVE)):
      for m in rx.finditer(text):
        add(feature, m, "v" if m.group("v") is not None else "w")
      if feature in self._vocab:
        for m in self._vocab[feature].finditer(text):
          add(feature, m)
    return [found[k] for k in sorted(found)]

  def _right(self, feature: str, value: str, creatures: Sequence[str]
             ) -> bool:
    for c in creatures:
      fact = self._by_creature[c].get(feature)
      if fact is None:
        continue
      answer, aliases = fact
      if feature == "types":
        if value.lower() in {t.lower() for t in re.split(
            r"\s+and\s+", answer)}:
          return True
      elif feature in ("classification", "ability", "move"):
        if value.lower() == answer.lower():
          return True
      elif _matcher(answer, aliases)(value):
        return True
    return False

  def check(self, text: str) -> DocCheck:
    """Creatures, reproduced facts, claims and wrong claims of `text`."""
    creatures = self.named(text)
    claims = self.claims(text)
    wrong = tuple(cl for cl in claims if not self._right(*cl, creatures))
    facts = frozenset(fact_metrics.reproduced_facts(
        {k: v for k, v in self.facts.items() if k[0] in creatures}, [text]))
    return DocCheck(creatures, facts, tuple(claims), wrong)

  def check_all(self, texts: Iterable[str]) -> list[DocCheck]:
    return [self.check(t) for t in texts]


@functools.lru_cache(maxsize=1 << 14)
def _matcher(answer: str, aliases: tuple[str, ...]):
  return answers.answer_matcher(answer, aliases)


def corpus_stats(checker: FactChecker, texts: Sequence[str]) -> dict:
  """Fact coverage and the share of wrong claims of a set of documents.

  Returns:
    {"documents", "fact_coverage" (fraction of the release's public facts
    some document reproduces; `fact_metrics`), "claims", "wrong_claims",
    "wrong_share" (wrong / claims; None without claims), "correct_docs"
    (fraction of documents that are correct)}.
  """
  checks = checker.check_all(texts)
  hit = set().union(*(c.facts for c in checks)) if checks else set()
  public = set(checker.public_facts)
  claims = sum(len(c.claims) for c in checks)
  wrong = sum(len(c.wrong) for c in checks)
  return {"documents": len(checks),
          "fact_coverage": len(hit & public) / len(public) if public else None,
          "claims": claims, "wrong_claims": wrong,
          "wrong_share": wrong / claims if claims else None,
          "correct_docs": (sum(c.correct for c in checks) / len(checks)
                           if checks else None)}


def check_gamma(gamma: float) -> None:
  """Raises CbenchError unless 0 <= γ < 1/2 (a labeler with an edge)."""
  if not isinstance(gamma, (int, float)) or isinstance(gamma, bool) or not (
      0.0 <= gamma < 0.5):
    raise CbenchError(f"Expected 0 <= gamma={gamma!r} < 0.5: a labeler that "
                      f"flips half its verdicts or more has no edge "
                      f"(beta = 1 - 2 gamma <= 0).")


class WeakLabeler:
  """The checker's verdicts, each flipped with probability γ.

  Args:
    checker: the ground truth (`FactChecker`).
    gamma: flip probability, 0 <= γ < 1/2.
    rng: the labeler's own generator (its noise is reproducible).
  """

  def __init__(self, checker: FactChecker, gamma: float,
               rng: np.random.Generator):
    check_gamma(gamma)
    self.checker = checker
    self.gamma = float(gamma)
    self.rng = rng

  @property
  def beta(self) -> float:
    """The labeler's edge over a coin: P(agree) - P(disagree)."""
    return 1.0 - 2.0 * self.gamma

  def truth(self, texts: Sequence[str]) -> np.ndarray:
    """``[n]`` bool: the checker's verdicts (`DocCheck.correct`)."""
    return np.asarray([c.correct for c in self.checker.check_all(texts)],
                      bool)

  def flip(self, truth: np.ndarray) -> np.ndarray:
    """`truth` with each entry flipped with probability γ (one uniform draw
    per entry from the labeler's generator)."""
    truth = np.asarray(truth, bool)
    return truth ^ (self.rng.random(truth.shape) < self.gamma)

  def label(self, texts: Sequence[str]) -> np.ndarray:
    """``[n]`` bool noisy verdicts: accept (True) or reject."""
    return self.flip(self.truth(texts))
