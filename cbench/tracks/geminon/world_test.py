"""World generation: structure, inheritance, bounded growth, chance level."""

import math

import pytest

from cbench._validate import CbenchError
from cbench.tracks.geminon import names
from cbench.tracks.geminon import world as world_lib

OFFICIAL = {1: 100, 2: 100, 3: 100}
OFFICIAL_SENSITIVE = {1: 20, 2: 20, 3: 20}


@pytest.fixture(scope="module")
def official():
  return world_lib.generate_world(123, OFFICIAL, OFFICIAL_SENSITIVE,
                                  names.release_slot("2026q4"))


def test_counts_and_sensitive_lines(official):
  assert len(official.creatures) == 600
  assert len(official.sensitive) == 120
  assert len(official.lines) == 300
  for line in official.lines:
    assert len({c.sensitive for c in line}) == 1  # Whole lines.
    assert tuple(c.name for c in line) == line[0].evolution_line
    assert [c.stage for c in line] == list(range(len(line)))
  per_length = {k: sum(1 for l in official.lines
                       if len(l) == k and l[0].sensitive) for k in (1, 2, 3)}
  assert per_length == OFFICIAL_SENSITIVE


def test_creature_fields(official):
  cls_words = set(world_lib.CLASSIFICATION_WORDS)
  for c in official.creatures:
    word, suffix = c.classification.split(" ")
    assert suffix == "Geminon" and word in cls_words
    assert c.type1 in world_lib.TYPES
    assert c.type2 is None or (c.type2 in world_lib.TYPES
                               and c.type2 != c.type1)
    assert c.base_stat_total == sum(c.stat(s) for s in world_lib.STATS)
    assert all(10 <= c.stat(s) <= world_lib.STAT_CAP
               for s in world_lib.STATS)
    assert c.weight_lbs >= 0.2 and c.height_m >= 0.1
    assert round(c.weight_lbs, 1) == c.weight_lbs
    assert round(c.height_m, 2) == c.height_m
    assert 1 <= len(c.ability.split()) <= 2
    assert 1 <= len(c.move_name.split()) <= 2
    assert c.move_description.endswith(".")
    assert names.name_slot(c.name) == official.name_slot


def test_later_stages_inherit_types_and_grow_boundedly(official):
  changed = kept = 0
  for line in official.lines:
    for prev, cur in zip(line, line[1:]):
      assert cur.type1 == prev.type1
      if prev.type2 is not None:
        kept += cur.type2 == prev.type2
        changed += cur.type2 != prev.type2
      for s in world_lib.STATS:
        a, b = prev.stat(s), cur.stat(s)
        assert a <= b <= min(world_lib.STAT_CAP, math.ceil(2 * a) + 1)
      assert cur.weight_lbs >= prev.weight_lbs
      assert cur.height_m >= prev.height_m
  assert 0.05 < changed / (changed + kept) < 0.4  # ~0.2 change probability.


def test_type2_probability_rises_with_stage(official):
  def frac(length, stage):
    cs = [l[stage] for l in official.lines if len(l) == length]
    return sum(c.type2 is not None for c in cs) / len(cs)
  assert frac(3, 0) < frac(3, 2)
  assert frac(2, 0) < frac(2, 1)
  assert 0.3 < frac(1, 0) < 0.7


def test_deterministic():
  a = world_lib.generate_world(5, {1: 2, 2: 2, 3: 2}, {1: 1}, 9)
  b = world_lib.generate_world(5, {1: 2, 2: 2, 3: 2}, {1: 1}, 9)
  c = world_lib.generate_world(6, {1: 2, 2: 2, 3: 2}, {1: 1}, 9)
  assert a == b and a != c


def _chance_bounds(world):
  n = len(world.creatures)
  k = {"classification": len(world_lib.CLASSIFICATION_WORDS),
       "ability": 2800, "move": 2970}
  bounds = {f: math.ceil(n / k[f]) / n for f in k}
  bounds["types"] = 2 / len(world_lib.TYPES)
  for f in world_lib.FEATURES:
    bounds.setdefault(f, 0.05)  # Stats, weight, height: wide ranges.
  return bounds


def test_chance_accuracy_near_one_over_values(official):
  chance = world_lib.chance_accuracy(official)
  assert list(chance) == list(world_lib.FEATURES)
  bounds = _chance_bounds(official)
  for f, acc in chance.items():
    assert 1 / len(official.creatures) <= acc <= bounds[f], (f, acc)


def test_chance_accuracy_flags_a_guessable_world(official, monkeypatch):
  bounds = _chance_bounds(official)
  monkeypatch.setattr(world_lib, "CLASSIFICATION_WORDS", ("Beacon", "Ember"))
  broken = world_lib.generate_world(123, OFFICIAL, OFFICIAL_SENSITIVE, 108)
  chance = world_lib.chance_accuracy(broken)
  assert chance["classification"] == pytest.approx(0.5)
  assert chance["classification"] > bounds["classification"]


def test_bad_sensitive_count_raises():
  with pytest.raises(CbenchError, match="sensitive_lines_per_length"):
    world_lib.generate_world(1, {1: 2}, {1: 3}, 1)
