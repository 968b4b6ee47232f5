"""The curation loop end to end on the micro recipe (2 rounds), and its
config checks."""

import dataclasses
import json
import os

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.configs import micro
from cbench.curation import report
from cbench.curation import rounds
from cbench.models import model_store


def _read_json(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _config(release_dir, base_dir, **kw):
  harness = micro.harness()
  harness = dataclasses.replace(harness, finetune=dataclasses.replace(
      harness.finetune, num_steps=3, checkpoint_every=100))
  defaults = dict(harness=harness, release_dir=release_dir,
                  base_dir=base_dir, rounds=2,
                  policies=("none", "hardest_first+weighted"),
                  real_docs=12, docs_per_round=8, budget=4,
                  max_new_tokens=12, decode_batch=8, gamma=0.2)
  defaults.update(kw)
  return rounds.CurationConfig(**defaults)


@pytest.mark.parametrize("field, value, match", [
    ("gamma", 0.5, "gamma"),
    ("policies", ("none", "easiest"), "policy"),
    ("policies", ("none", "none"), "Duplicate"),
    ("rounds", 0, "rounds"),
    ("budget", -1, "budget"),
    ("synthetic_weight", 1.5, "synthetic_weight"),
])
def test_bad_configs_are_refused(field, value, match):
  with pytest.raises(CbenchError, match=match):
    dataclasses.replace(rounds.CurationConfig(), **{field: value}).validate()


def test_weight_table_weighs_every_synthetic_generation():
  table = rounds.CurationConfig(rounds=2, synthetic_weight=0.25
                                ).weight_table()
  assert table == (("real", 1.0), ("synthetic-1", 0.25),
                   ("synthetic-2", 0.25))


@pytest.mark.slow
def test_two_rounds_end_to_end(micro_base_dir, demo_release_dir, tmp_path):
  config = _config(demo_release_dir, micro_base_dir)
  out = str(tmp_path / "run")
  summary = report.run_curation(config, out)
  for name in (report.JSON_NAME, report.MARKDOWN_NAME, report.PNG_NAME):
    assert os.path.getsize(os.path.join(out, name)) > 0
  with open(os.path.join(out, report.JSON_NAME), encoding="utf-8") as f:
    result = json.load(f)
  assert set(result["arms"]) == set(config.policies)
  assert set(summary["accuracy"]) == set(config.policies)
  for arm, recs in result["arms"].items():
    assert [r["round"] for r in recs] == [1, 2]
    kept_total = 0
    for r in recs:
      assert 0.0 <= r["accuracy"] <= 1.0
      kept_total += r["kept"]
      assert r["synthetic_docs"] == kept_total  # Kept documents accumulate.
      if arm == "none":
        assert r["labeled"] == 0 and r["kept"] == 8
      else:
        assert r["labeled"] == 4 and r["kept"] == r["accepted"] <= 4
      corpus = os.path.join(out, arm, f"round{r['round']}", "corpus.jsonl")
      with open(corpus, encoding="utf-8") as f:
        tags = [json.loads(line)["provenance"] for line in f]
      assert tags.count("real") == 12
      assert len(tags) == 12 + r["synthetic_docs"]
  # hardest_first labeled the documents of the hardest prompted entities
  # (8 documents, one per entity of the first 8; budget 4).
  diff = result["round0"]["difficulty"]
  hard = result["arms"]["hardest_first+weighted"][0]
  prompted = result["entities"][:8]
  labeled = hard["labeled_entities"]
  assert len(labeled) == 4 and set(labeled) <= set(prompted)
  assert min(diff.get(e, 0) for e in labeled) >= max(
      diff.get(e, 0) for e in prompted if e not in labeled)
  # The weighted arm trained with provenance weights; the others did not.
  weighted = _read_json(os.path.join(out, "hardest_first+weighted", "round2",
                                     "model", model_store.DONE))
  plain = _read_json(os.path.join(out, "none", "round2", "model",
                                  model_store.DONE))
  assert "provenance_weights" in weighted["recipe"]
  assert "provenance_weights" not in plain["recipe"]
  if result["arms"]["hardest_first+weighted"][-1]["synthetic_docs"]:
    assert weighted["train"]["mean_token_weight"] < 1.0
  with open(os.path.join(out, report.MARKDOWN_NAME), encoding="utf-8") as f:
    assert "| none | 2 |" in f.read()
  # A second call reuses every round; another config is refused.
  again = report.run_curation(config, out)
  assert again["accuracy"] == summary["accuracy"]
  with pytest.raises(CbenchError, match="another config"):
    report.run_curation(dataclasses.replace(config, gamma=0.1), out)
  assert np.isfinite(again["compute_seconds"])
