"""Provenance weights through the harness fine-tune (micro recipe).

A uniform table trains bit for bit the parameters of the unweighted
fine-tune (any uniform value: it is divided by the table's maximum); a
non-uniform table trains other parameters; bad corpora are refused before
anything is written.
"""

import dataclasses
import hashlib
import json
import os

import jax
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.configs import micro
from cbench.harness import finetune
from cbench.models import model_store

RECIPE = dataclasses.replace(micro.harness().finetune, num_steps=3,
                             checkpoint_every=100)


def _corpus(release_dir, path, tag_every=True):
  with open(os.path.join(release_dir, "corpus", "train.jsonl"),
            encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for _, line in zip(range(24), f)]
  with open(path, "w", encoding="utf-8") as f:
    for i, t in enumerate(texts):
      rec = {"text": t}
      if tag_every or i:
        rec["provenance"] = "real" if i % 2 else "synthetic-1"
      f.write(json.dumps(rec) + "\n")
  return path


def _sha(model_dir):
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(jax.device_get(
      model_store.load(model_dir).params)):
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()


@pytest.mark.slow
def test_uniform_weights_reproduce_the_unweighted_finetune(
    micro_base_dir, demo_release_dir, tmp_path):
  corpus = _corpus(demo_release_dir, str(tmp_path / "c.jsonl"))
  runs = {
      "plain": RECIPE,
      "uniform": dataclasses.replace(RECIPE, provenance_weights=(
          ("real", 0.5), ("synthetic-1", 0.5))),
      "half": dataclasses.replace(RECIPE, provenance_weights=(
          ("real", 1.0), ("synthetic-1", 0.5))),
  }
  sha, info = {}, {}
  for name, recipe in runs.items():
    info[name] = finetune.finetune(micro_base_dir, corpus,
                                   str(tmp_path / name), recipe)
    sha[name] = _sha(str(tmp_path / name))
  assert sha["uniform"] == sha["plain"]
  assert sha["half"] != sha["plain"]
  assert "mean_token_weight" not in info["plain"]["train"]
  assert info["uniform"]["train"]["mean_token_weight"] == 1.0
  assert 0.5 < info["half"]["train"]["mean_token_weight"] < 1.0
  # The unweighted binding is the one it was before weights existed.
  assert "provenance_weights" not in info["plain"]["recipe"]


def test_bad_tags_are_refused_before_any_write(micro_base_dir,
                                               demo_release_dir, tmp_path):
  weighted = dataclasses.replace(RECIPE, provenance_weights=(
      ("real", 1.0), ("synthetic-1", 0.5)))
  untagged = _corpus(demo_release_dir, str(tmp_path / "u.jsonl"),
                     tag_every=False)
  with pytest.raises(CbenchError, match="provenance"):
    finetune.finetune(micro_base_dir, untagged, str(tmp_path / "a"),
                      weighted)
  corpus = _corpus(demo_release_dir, str(tmp_path / "c.jsonl"))
  only_real = dataclasses.replace(RECIPE, provenance_weights=(
      ("real", 1.0),))
  with pytest.raises(CbenchError, match=r"tagged \['synthetic-1'\]"):
    finetune.finetune(micro_base_dir, corpus, str(tmp_path / "b"),
                      only_real)
  assert not os.path.exists(tmp_path / "a")
  assert not os.path.exists(tmp_path / "b")
  # The unweighted recipe ignores tags (and their absence).
  assert RECIPE.weight_table is None
