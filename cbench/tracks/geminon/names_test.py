"""Names: slots, provable disjointness, pronounceability."""

import re

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.tracks.geminon import names


def test_release_slot_mapping():
  assert names.release_slot("2026q4") == 26 * 4 + 4
  assert names.release_slot("2000q1") == 1
  assert names.release_slot("2254q4") == 1020
  ids = [f"{y}q{q}" for y in range(2000, 2255) for q in range(1, 5)]
  slots = {names.release_slot(i) % names.NUM_SLOTS for i in ids}
  # Distinct modulo NUM_SLOTS, and never the public world's slot.
  assert len(slots) == len(ids) and names.PUBLIC_SLOT not in slots


@pytest.mark.parametrize("bad", ["2026q5", "2026q0", "26q4", "2026Q4",
                                 "2026-q4", "", "1999q4", "2255q1"])
def test_malformed_release_id_names_the_flag(bad):
  with pytest.raises(CbenchError, match="--release"):
    names.release_slot(bad)


def test_names_carry_their_slot_and_are_unique():
  got = names.generate_names(np.random.default_rng(0), 200, slot=108)
  assert len(set(n.lower() for n in got)) == 200
  assert all(names.name_slot(n) == 108 for n in got)
  assert all(re.fullmatch(r"[A-Z][a-z]{3,10}", n) for n in got)


def test_different_slots_never_share_a_name_even_with_the_same_seed():
  a = names.generate_names(np.random.default_rng(7), 300, slot=5)
  b = names.generate_names(np.random.default_rng(7), 300, slot=6)
  assert not set(a) & set(b)
  # The check can fail: the same slot and seed reproduce the same names.
  c = names.generate_names(np.random.default_rng(7), 300, slot=5)
  assert set(a) & set(c)


def test_name_slot_is_case_insensitive_and_spread():
  assert names.name_slot("Velaro") == names.name_slot("VELARO")
  got = names.generate_names(np.random.default_rng(1), 20, slot=0)
  counts = np.bincount([names.name_slot(n + "x") for n in got],
                       minlength=names.NUM_SLOTS)
  assert counts.max() <= 3  # A hash, not a constant.


def test_forbidden_words_are_never_names():
  rng = np.random.default_rng(3)
  first = names.generate_names(rng, 50, slot=2)
  again = names.generate_names(np.random.default_rng(3), 50, slot=2,
                               forbidden=frozenset(n.lower()
                                                   for n in first[:10]))
  assert not set(first[:10]) & set(again)
