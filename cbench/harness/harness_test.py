"""Pretrain -> fine-tune -> score on the micro recipe; resume and bad input."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.configs import micro
from cbench.harness import finetune
from cbench.harness import replay
from cbench.harness import score
from cbench.models import model_store
from cbench.tracks.geminon import pretrain

MICRO = micro.harness()


def _params(path):
  return jax.device_get(model_store.load(path).params)


def test_pretrain_is_cached(micro_base_dir, public_world_dir):
  before = os.path.getmtime(os.path.join(micro_base_dir, model_store.DONE))
  info = pretrain.pretrain_base(public_world_dir, micro_base_dir, MICRO.pretrain)
  assert info["num_params"] > 0
  assert os.path.getmtime(os.path.join(micro_base_dir, model_store.DONE)) == before


def test_pretrain_refuses_other_config(micro_base_dir, public_world_dir):
  other = dataclasses.replace(MICRO.pretrain, qa_repeats=2)
  with pytest.raises(CbenchError, match="different"):
    pretrain.pretrain_base(public_world_dir, micro_base_dir, other)


def test_finetune_resume_equals_uninterrupted(micro_base_dir, demo_release_dir, tmp_path):
  corpus = os.path.join(demo_release_dir, "corpus", "train.jsonl")
  recipe = dataclasses.replace(MICRO.finetune, num_steps=5, checkpoint_every=2)
  full = str(tmp_path / "full")
  finetune.finetune(micro_base_dir, corpus, full, recipe)
  crashed = str(tmp_path / "crashed")
  # Crash after 3 steps: the checkpoint holds step 2, step 3 is lost.
  out = finetune.finetune(micro_base_dir, corpus, crashed, recipe, stop_after=3)
  assert out["stopped_at"] == 3 and not model_store.is_done(crashed)
  finetune.finetune(micro_base_dir, corpus, crashed, recipe)
  a, b = _params(full), _params(crashed)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  base = _params(micro_base_dir)
  assert any(not np.array_equal(x, y) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(base))), "training changed nothing"


def test_score_writes_complete_result(micro_base_dir, demo_release_dir, tmp_path):
  out = str(tmp_path / "scores.json")
  result = score.score_qa(demo_release_dir, micro_base_dir,
                          ["public_test", "sensitive_test"], out)
  with open(out) as f:
    on_disk = json.load(f)
  assert on_disk["splits"].keys() == {"public_test", "sensitive_test"}
  s = result["splits"]["public_test"]
  assert s["num_questions"] == len(s["rows"]) > 0
  assert 0.0 <= s["exact"]["low"] <= s["exact"]["mean"] <= s["exact"]["high"] <= 1.0
  assert s["per_feature"] and s["per_support_bucket"]


def _write(path, lines):
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ([], "no non-empty"),
    (['{"text": "   "}'], "no non-empty"),
    (['{"body": "x"}'], "no field"),
    (['{"text": "ok"}', "not json"], "not a JSON record"),
    (['{"text": 3}'], "non-string"),
])
def test_finetune_bad_corpus(micro_base_dir, tmp_path, content, message):
  corpus = str(tmp_path / "c.jsonl")
  if content is not None:
    _write(corpus, content)
  workdir = str(tmp_path / "w")
  with pytest.raises(CbenchError, match=message):
    finetune.finetune(micro_base_dir, corpus, workdir, MICRO.finetune)
  assert not os.path.exists(workdir), "a rejected corpus must not touch the workdir"


def test_finetune_refuses_foreign_workdir(micro_base_dir, demo_release_dir, tmp_path):
  corpus = os.path.join(demo_release_dir, "corpus", "train.jsonl")
  workdir = str(tmp_path / "w")
  recipe = dataclasses.replace(MICRO.finetune, num_steps=2)
  finetune.finetune(micro_base_dir, corpus, workdir, recipe)
  snapshot = {p: os.path.getmtime(os.path.join(workdir, p)) for p in os.listdir(workdir)}
  other = os.path.join(demo_release_dir, "corpus", "val.jsonl")
  with pytest.raises(CbenchError, match="another fine-tuning run"):
    finetune.finetune(micro_base_dir, other, workdir, recipe)
  assert snapshot == {p: os.path.getmtime(os.path.join(workdir, p)) for p in os.listdir(workdir)}


def test_model_dir_from_other_config_is_refused(micro_base_dir, tmp_path):
  fake = tmp_path / "fake"
  fake.mkdir()
  cfg = model_store.load_config(micro_base_dir)
  with open(fake / "model_config.json", "w") as f:
    json.dump(cfg.replace(d_model=cfg.d_model * 2).to_dict(), f)
  with pytest.raises(CbenchError, match="different configuration"):
    model_store.check_static(str(fake), cfg)
  with pytest.raises(CbenchError, match="not a finished model"):
    model_store.load(str(fake))
  with pytest.raises(CbenchError, match="not found"):
    model_store.load(str(tmp_path / "missing"))


def test_replay_rows_are_the_practice_world(micro_base_dir, public_world_dir):
  """Fine-tuning replays fresh practice creatures, never public-world ones."""
  assert MICRO.pretrain.practice_size
  bundle = model_store.load(micro_base_dir)
  rows = replay.load(micro_base_dir)
  text = "\n".join(bundle.tokenizer.decode(
      [int(t) for t in row[:n]]) for row, n in zip(rows.tokens, rows.lengths))
  public = pretrain._public_names(  # pylint: disable=protected-access
      pretrain.release_lib.load_release(public_world_dir).corpus("train"))
  assert "Q: " in text and "\nA: " in text
  assert not any(name in text for name in public)
  expected = pretrain.practice_texts(
      MICRO.pretrain.practice_size, MICRO.pretrain.practice_qa_repeats,
      MICRO.pretrain.train.seed + 1,
      public, MICRO.pretrain.qa_pairs_per_block)
  assert len(rows.lengths) == len(expected)
