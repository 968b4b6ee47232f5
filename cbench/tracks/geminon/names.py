"""Pronounceable creature names that are provably disjoint across releases.

Every release id maps to an integer *slot* (`release_slot`); the public world
has its own fixed slot `PUBLIC_SLOT`. A candidate name is accepted for slot
`i` only if `name_slot(name) == i % NUM_SLOTS`, where `name_slot` is a keyed
BLAKE2b hash of the lowercase name. Two worlds whose slots differ modulo
`NUM_SLOTS` can therefore never share a name (whatever their seeds), and the
proof does not depend on chance. Valid release ids (`2000q1` .. `2254q4`) map
to slots 1..1020, all distinct, and the public world uses slot 0.

Cost: about `NUM_SLOTS` candidates are drawn per accepted name (~1 s per
600 names on one core).
"""

from __future__ import annotations

import hashlib
import re
from typing import AbstractSet

import numpy as np

from cbench._validate import CbenchError

NUM_SLOTS = 1024
PUBLIC_SLOT = 0
FIRST_YEAR = 2000
LAST_YEAR = FIRST_YEAR + NUM_SLOTS // 4 - 2  # 2254: slots stay < NUM_SLOTS.
_KEY = b"cbench-geminon-names-v1"
RELEASE_ID_RE = re.compile(r"^\d{4}q[1-4]$")

# Names are: first syllable (onset, vowel, light coda) + 1-2 open middle
# syllables (single consonant + vowel) + an optional final coda, e.g. "Velaro",
# "Brintoxa", "Skadimel".
_ONSETS = ("b", "br", "c", "d", "dr", "f", "fl", "g", "gl", "gr", "h", "j",
           "k", "kr", "l", "m", "n", "p", "pl", "pr", "qu", "r", "s", "sh",
           "sk", "sl", "sn", "st", "t", "th", "tr", "v", "vr", "w", "z", "",
           "")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ae", "ai", "ou", "y")
_LIGHT_CODAS = ("", "", "", "", "n", "r", "l", "s", "x", "m")
_MID_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t",
               "v", "z", "th", "sh", "dr", "tr", "br")
_MID_VOWELS = ("a", "e", "i", "o", "u", "a", "o", "ia", "eo")
_FINAL_CODAS = ("", "", "", "", "", "n", "r", "l", "x", "s", "th", "sh",
                "nd", "k", "m", "rk", "lt")


def release_slot(release_id: str, flag: str = "release") -> int:
  """Maps `YYYYqQ` to `(YYYY - 2000) * 4 + Q` in 1..1020."""
  if not isinstance(release_id, str) or not RELEASE_ID_RE.match(release_id):
    raise CbenchError(
        f"Malformed --{flag}={release_id!r}; expected YYYYqQ, e.g. 2026q4.")
  year, quarter = int(release_id[:4]), int(release_id[5])
  if not FIRST_YEAR <= year <= LAST_YEAR:
    raise CbenchError(
        f"--{flag}={release_id!r}: year must be in {FIRST_YEAR}..{LAST_YEAR}.")
  return (year - FIRST_YEAR) * 4 + quarter


def name_slot(name: str) -> int:
  """Keyed hash of the lowercase name, modulo `NUM_SLOTS`."""
  digest = hashlib.blake2b(name.lower().encode("utf-8"), key=_KEY,
                           digest_size=8).digest()
  return int.from_bytes(digest, "little") % NUM_SLOTS


def _combine(*parts: tuple[str, ...]) -> np.ndarray:
  out = [""]
  for part in parts:
    out = [a + b for a in out for b in part]
  return np.array(sorted(set(out)), dtype=object)


_FIRST = _combine(_ONSETS, _VOWELS, _LIGHT_CODAS)
_MID = _combine(_MID_ONSETS, _MID_VOWELS)
_FINAL = np.array(_FINAL_CODAS, dtype=object)
_BAD_RUN = re.compile(r"([aeiouy])\1|[^aeiouy]{4}|(.)\2\2|^[aeiouy]{3}")


def _pronounceable(name: str) -> bool:
  return 4 <= len(name) <= 11 and not _BAD_RUN.search(name)


def generate_names(rng: np.random.Generator, n: int, slot: int,
                   forbidden: AbstractSet[str] = frozenset(),
                   batch: int = 8192) -> list[str]:
  """Draws `n` distinct capitalised names whose `name_slot` is `slot`.

  Args:
    rng: the generator (consumed deterministically).
    n: how many names.
    slot: the world's slot; every returned name has
      `name_slot(name) == slot % NUM_SLOTS`.
    forbidden: lowercase words a name must not equal (e.g. the grammar's
      vocabulary), so a name never reads as an ordinary word.
    batch: candidates drawn per vectorised round.

  Returns:
    Names in the order they were accepted.
  """
  target = slot % NUM_SLOTS
  names: list[str] = []
  seen: set[str] = set()
  while len(names) < n:
    first = _FIRST[rng.integers(0, len(_FIRST), size=batch)]
    mid1 = _MID[rng.integers(0, len(_MID), size=batch)]
    mid2 = _MID[rng.integers(0, len(_MID), size=batch)]
    two_mid = rng.random(batch) < 0.35
    final = _FINAL[rng.integers(0, len(_FINAL), size=batch)]
    for k in range(batch):
      low = (first[k] + mid1[k] + (mid2[k] if two_mid[k] else "")
             + final[k])
      if low in seen or low in forbidden or not _pronounceable(low):
        continue
      if name_slot(low) != target:
        continue
      seen.add(low)
      names.append(low.capitalize())
      if len(names) == n:
        break
  return names
