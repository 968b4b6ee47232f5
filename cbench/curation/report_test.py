"""Claims, table and plot of a hand-made curation result (no training)."""

import os

from cbench.curation import report


def _rec(k, acc, wrong=None):
  stats = None if wrong is None else {"fact_coverage": 0.5,
                                      "wrong_share": wrong}
  return {"round": k, "accuracy": acc, "accuracy_low": acc / 2,
          "accuracy_high": min(1.0, acc * 1.5), "synthetic_docs": 10 * k,
          "synthetic_stats": stats, "generated_stats": stats,
          "labeled": 4 * k, "accepted": 2 * k, "kept_precision": 0.9}


def _result(curves):
  r0 = {**_rec(0, 0.20), "real_stats": {"fact_coverage": 1.0,
                                        "wrong_share": 0.0}}
  return {"round0": r0, "release": "2026q4", "entities": ["A", "B"],
          "config": {"real_docs": 20, "docs_per_round": 8, "budget": 4,
                     "gamma": 0.1},
          "arms": {arm: [_rec(k + 1, a, 0.1) for k, a in enumerate(c)]
                   for arm, c in curves.items()},
          "wall_seconds": 60.0, "compute_seconds": 120.0}


def test_claims_read_the_last_round_against_round_zero():
  result = _result({"none": [0.20, 0.22], "random": [0.25, 0.30],
                    "hardest_first": [0.30, 0.35],
                    "none+weighted": [0.20, 0.20]})
  got = report.claims(result, num_questions=40)  # One question: 2.5 pts.
  assert got["uncurated_stalls"]["holds"]  # +2 points <= one question.
  assert got["curated_improves"]["holds"]
  assert got["hardest_first_beats_random"]["holds"]
  assert not got["weighting_helps"]["holds"]  # 20 vs 22.
  assert "none: 20.0 -> 20.0 -> 22.0" in got["uncurated_stalls"]["measured"]
  worse = report.claims(_result({"none": [0.40, 0.50], "random": [0.1, 0.1],
                                 "hardest_first": [0.1, 0.05]}), 40)
  assert not worse["uncurated_stalls"]["holds"]
  assert not worse["curated_improves"]["holds"]
  assert not worse["hardest_first_beats_random"]["holds"]
  assert "weighting_helps" not in worse
  only = report.claims(_result({"random": [0.3]}), 40)
  assert set(only) == {"curated_improves"}


def test_markdown_and_plot(tmp_path):
  result = _result({"none": [0.2, 0.1], "random+weighted": [0.3, 0.4]})
  result["claims"] = report.claims(result, 40)
  text = report.markdown(result)
  assert "| (all) real slice only | 0 | 20.0 [10.0, 30.0] |" in text
  assert "| random+weighted | 2 | 40.0 [20.0, 60.0] | 20 | 50.0 | 10.0" in text
  assert "Rounds took 2.0 min" in text
  path = str(tmp_path / "p.png")
  report.plot(result, path)
  assert os.path.getsize(path) > 1000
