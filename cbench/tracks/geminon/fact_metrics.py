"""Which facts of a release occur in synthetic text (a cheap, model-free probe).

A fact is a (creature, feature) pair with its canonical answer and aliases,
taken from the release's QA records (``public_val + public_test`` for the
public facts, ``sensitive_val + sensitive_test`` for the sensitive ones). It
counts as *reproduced* if at least one synthetic text both mentions the
creature's name and contains the answer or an alias, each as a whole word
(`cbench.corpus.answers.answer_in_text`: case-insensitive, '-' is a word
character, decimals are not split).

Caveat: the name and the answer need not be in the same sentence, so short
numeric answers ("60") can match by coincidence in a text that mentions the
creature; compare against a `public_only` baseline, whose texts carry no
private information, to read the false-positive level.
"""

from __future__ import annotations

from typing import Iterable, Sequence, Union

from cbench.corpus import answers
from cbench.corpus import release as release_lib

PUBLIC_SETS = ("public_val", "public_test")
SENSITIVE_SETS = ("sensitive_val", "sensitive_test")


def release_facts(release: release_lib.Release, sets: Sequence[str]
                  ) -> dict[tuple[str, str], tuple[str, tuple[str, ...]]]:
  """{(creature, feature): (answer, aliases)} of the named QA sets."""
  facts = {}
  for name in sets:
    if name not in release.qa_names():
      continue
    for rec in release.qa(name):
      facts[(rec["creature"], rec["feature"])] = (
          rec["answer"], tuple(rec["aliases"]))
  return facts


def reproduced_facts(facts: dict, texts: Iterable[str]
                     ) -> set[tuple[str, str]]:
  """The facts some text reproduces (name + answer, see module docstring)."""
  by_creature: dict[str, list] = {}
  for (creature, feature), (answer, aliases) in facts.items():
    by_creature.setdefault(creature, []).append(
        ((creature, feature), answers.answer_matcher(answer, aliases)))
  names = {c: answers.answer_matcher(c, ()) for c in by_creature}
  found = set()
  for text in texts:
    for creature, mentions in names.items():
      if not mentions(text):
        continue
      for fact, matches in by_creature[creature]:
        if fact not in found and matches(text):
          found.add(fact)
  return found


def fact_coverage(release: Union[str, release_lib.Release],
                  texts: Iterable[str]) -> dict:
  """Fractions of the release's public and sensitive facts in `texts`.

  Args:
    release: a `Release` or its directory.
    texts: synthetic documents.

  Returns:
    {"fraction_public_facts", "fraction_sensitive_facts" (None when the
    release has no such facts), "public_facts", "sensitive_facts" (totals),
    "public_reproduced", "sensitive_reproduced" (counts)}.
  """
  if isinstance(release, str):
    release = release_lib.load_release(release)
  texts = list(texts)
  out = {}
  for kind, sets in (("public", PUBLIC_SETS), ("sensitive", SENSITIVE_SETS)):
    facts = release_facts(release, sets)
    hit = reproduced_facts(facts, texts)
    out[f"{kind}_facts"] = len(facts)
    out[f"{kind}_reproduced"] = len(hit)
    out[f"fraction_{kind}_facts"] = (len(hit) / len(facts) if facts
                                     else None)
  return out
