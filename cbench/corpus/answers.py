"""What every track's QA records share: fields, sets, the answer matcher.

QA record fields (`QA_FIELDS`): "id", "question", "answer" (canonical
string), "aliases" (other accepted strings), "feature" (the kind of fact:
scores are broken down by it) and "supports" (ids of train documents that
state the answer in the question's context). Tracks add their own fields
(Geminon: "creature"; News: "event", "date").

`answer_in_text` is the one matcher of an answer in a text: case-insensitive
whole words, '-' counts as a word character and decimals are not split.
`number_words` / `number_aliases` give the word forms of a number (aliases
of numeric answers).
"""

from __future__ import annotations

import functools
import re
from typing import Iterable, Optional, Sequence

import numpy as np

QA_FIELDS = ("id", "question", "answer", "aliases", "feature", "supports")
QA_SETS = ("public_val", "public_test", "sensitive_val", "sensitive_test")

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


def support_summary(records: Sequence[dict]) -> Optional[dict]:
  """min/median/max/mean support count of a QA set (None if empty)."""
  if not records:
    return None
  counts = np.array([len(r["supports"]) for r in records])
  return {"min": int(counts.min()), "median": float(np.median(counts)),
          "max": int(counts.max()), "mean": round(float(counts.mean()), 3),
          "n": int(counts.size)}
