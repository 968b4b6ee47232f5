"""Scoring rules on a hand-made fixture with known answers."""

import json
import os

import pytest

from cbench.harness import qa_metrics

_FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "testdata",
                        "qa_scoring")


def _load(name):
  with open(os.path.join(_FIXTURE, name)) as f:
    return [json.loads(line) for line in f if line.strip()]


def test_fixture_scores_match_hand_labels():
  questions, preds = _load("questions.jsonl"), _load("predictions.jsonl")
  assert [q["id"] for q in questions] == [p["id"] for p in preds]
  result = qa_metrics.score_predictions(questions, [p["completion"] for p in preds])
  for row, p in zip(result["rows"], preds):
    assert row["exact"] == p["exact"], (p["why"], row)
    assert row["fuzzy"] == p["fuzzy"], (p["why"], row)
  n_exact = sum(p["exact"] for p in preds)
  assert result["exact"]["mean"] == pytest.approx(n_exact / len(preds))
  assert set(result["per_feature"]) == {q["feature"] for q in questions}


def test_clean_completion():
  assert qa_metrics.clean_completion(" 73.\nmore") == "73"
  assert qa_metrics.clean_completion("Fire Q: what") == "Fire"
  assert qa_metrics.clean_completion("  a   b  ") == "a b"


def test_fuzzy_types_requires_every_type():
  assert qa_metrics.fuzzy_match("fire and rock", "Fire and Rock", feature="types")
  assert not qa_metrics.fuzzy_match("fire", "Fire and Rock", feature="types")
  assert qa_metrics.fuzzy_match("mostly fire", "Fire", feature="types")


def test_bootstrap_interval_contains_mean_and_shrinks():
  small = qa_metrics.bootstrap_accuracy([1, 0] * 10)
  large = qa_metrics.bootstrap_accuracy([1, 0] * 1000)
  assert small.low <= 0.5 <= small.high
  assert (large.high - large.low) < (small.high - small.low)
  assert qa_metrics.bootstrap_accuracy([]).n == 0


def test_support_bucket():
  assert qa_metrics.support_bucket(0) == "0-24"
  assert qa_metrics.support_bucket(150) == "100-199"
  assert qa_metrics.support_bucket(5000) == "800+"
