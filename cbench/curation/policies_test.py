"""Labeling policies on small deterministic cases."""

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.curation import policies

# Four documents per entity, entity blocks interleaved.
ENTITIES = ["a", "b", "c"] * 4
DIFFICULTY = {"a": 0.2, "b": 0.9, "c": 0.5}


def _of(indices):
  return [ENTITIES[i] for i in indices]


def test_hardest_first_takes_every_document_of_harder_entities_first():
  picked = policies.hardest_first(ENTITIES, DIFFICULTY, 6,
                                  np.random.default_rng(0))
  assert len(set(picked.tolist())) == 6
  assert _of(picked) == ["b"] * 4 + ["c"] * 2
  everything = policies.hardest_first(ENTITIES, DIFFICULTY, 100,
                                      np.random.default_rng(0))
  assert _of(everything) == ["b"] * 4 + ["c"] * 4 + ["a"] * 4
  assert sorted(everything.tolist()) == list(range(12))


def test_hardest_first_breaks_ties_between_entities_at_random():
  tied = {"a": 0.5, "b": 0.5, "c": 0.1}
  firsts = set()
  for seed in range(20):
    picked = policies.hardest_first(ENTITIES, tied, 4,
                                    np.random.default_rng(seed))
    got = _of(picked)
    assert len(set(got)) == 1 and got[0] in ("a", "b")  # One whole entity.
    firsts.add(got[0])
  assert firsts == {"a", "b"}
  # An unscored entity counts as 0: it comes last.
  picked = policies.hardest_first(ENTITIES, {"a": 0.1}, 4,
                                  np.random.default_rng(0))
  assert _of(picked) == ["a"] * 4


def test_random_labels_a_uniform_subset_of_the_budget():
  counts = np.zeros(12)
  for seed in range(300):
    picked = policies.select_for_labeling("random", ENTITIES, DIFFICULTY, 6,
                                          np.random.default_rng(seed))
    assert len(set(picked.tolist())) == 6
    counts[picked] += 1
  # Each document is labeled half the time (±4 sd of 300 draws).
  assert np.all(np.abs(counts / 300 - 0.5) < 4 * np.sqrt(0.25 / 300))
  assert policies.select_for_labeling(
      "random", ENTITIES, DIFFICULTY, 50, np.random.default_rng(0)).size == 12


def test_curate_keeps_what_the_labeler_accepts():
  seen = []

  def verdicts(idx):
    seen.append(idx.copy())
    return np.asarray([i % 2 == 0 for i in idx])

  out = policies.curate("hardest_first", verdicts, ENTITIES, DIFFICULTY, 4,
                        np.random.default_rng(0))
  np.testing.assert_array_equal(seen[0], out["labeled"])
  assert _of(out["labeled"]) == ["b"] * 4
  assert out["kept"].tolist() == sorted(i for i in out["labeled"].tolist()
                                        if i % 2 == 0)
  none = policies.curate("none", verdicts, ENTITIES, DIFFICULTY, 4,
                         np.random.default_rng(0))
  assert none["labeled"].size == 0 and none["kept"].tolist() == list(
      range(12))
  assert len(seen) == 1  # 'none' asks the labeler nothing.


def test_entity_difficulty_is_the_error_rate_per_creature():
  questions = [{"id": "x1", "creature": "X"}, {"id": "x2", "creature": "X"},
               {"id": "y1", "creature": "Y"}]
  rows = [{"id": "x1", "exact": True}, {"id": "x2", "exact": False},
          {"id": "y1", "exact": False}]
  assert policies.entity_difficulty(rows, questions) == {"X": 0.5, "Y": 1.0}


def test_arm_names():
  assert policies.split_name("random+weighted") == ("random", True)
  assert policies.split_name("hardest_first") == ("hardest_first", False)
  with pytest.raises(CbenchError, match="policy"):
    policies.split_name("easiest_first")
  with pytest.raises(CbenchError, match="budget"):
    policies.select_for_labeling("random", ENTITIES, DIFFICULTY, -1,
                                 np.random.default_rng(0))
