"""Canary exposure: public_only leaks nothing; a method that copies its
private records is caught (verbatim hits, a membership bound above the
epsilon it claims); the exposure arithmetic."""

import json
import os

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.audit import exposure
from cbench.configs import micro
from cbench.corpus import release as release_lib
from cbench.io import files
from cbench.synthesis import api
from cbench.testing import fixtures

AUDIT = exposure.ExposureConfig(singles=48, repeats=(4,), per_repeat=2,
                                candidates=20, seed=fixtures.stat_seed(3))


def _recipe(base):
  return micro.harness().finetune_recipe(base)


def test_public_only_leaks_nothing(tmp_path, demo_release_dir,
                                   micro_base_dir):
  cfg = api.SynthesisConfig(method="public_only", epsilon=1.0, num_docs=2,
                            options=(("max_new_tokens", 8),))
  s = exposure.run_exposure_audit(demo_release_dir, micro_base_dir, cfg,
                                  _recipe(micro_base_dir), AUDIT,
                                  str(tmp_path / "w"))
  assert s["epsilon"] == 0
  assert s["membership"]["epsilon_lb"] == 0.0
  assert all(g["verbatim"] == 0 for g in s["by_repeat"].values())
  assert s["by_repeat"]["4"]["canaries"] == 2
  # The copy holds the included canaries; the original is untouched.
  copy = release_lib.load_release(str(tmp_path / "w" / "release"))
  copy.verify()
  orig = release_lib.load_release(demo_release_dir)
  orig.verify()
  n_in = sum(c["repeat"] for c in json.load(
      open(tmp_path / "w" / "canaries.json")) if c["included"])
  assert (copy.manifest["documents"]["by_split"]["train"]
          == orig.manifest["documents"]["by_split"]["train"] + n_in)
  assert os.path.exists(tmp_path / "w" / exposure.SUMMARY)


def test_a_method_that_copies_private_records_is_caught(
    tmp_path, monkeypatch, demo_release_dir, micro_base_dir):
  def leaky(release_dir, base_dir, config, out_path):
    del base_dir
    docs = list(release_lib.load_release(release_dir).corpus("train"))
    files.write_jsonl(out_path, ({"id": d["id"], "text": d["text"]}
                                 for d in docs[:: 1]))
    return {"method": config.method, "epsilon": 0.0, "delta": 1e-6}
  monkeypatch.setattr(api, "synthesize", leaky)
  cfg = api.SynthesisConfig(method="public_only", epsilon=1.0, num_docs=2)
  s = exposure.run_exposure_audit(demo_release_dir, micro_base_dir, cfg,
                                  _recipe(micro_base_dir), AUDIT,
                                  str(tmp_path / "w"))
  specs = json.load(open(tmp_path / "w" / "canaries.json"))
  singles_in = sum(c["included"] for c in specs if c["repeat"] == 1)
  assert s["by_repeat"]["1"]["verbatim"] == singles_in
  assert s["by_repeat"]["4"]["verbatim"] == 2
  assert s["excluded_verbatim"] == 0
  assert s["membership"]["epsilon_lb"] > s["epsilon"] + 1.0


def test_exposure_is_log_rank_and_ties_count_against_the_secret():
  specs = [{"candidates": ["1", "2", "3", "4"], "secret": "2"},
           {"candidates": ["1", "2", "3", "4"], "secret": "4"}]
  ll = np.array([[0.0, 5.0, 1.0, 2.0],      # secret ranked first: 2 bits
                 [1.0, 1.0, 1.0, 1.0]])     # no idea: rank 4, 0 bits
  exp, post = exposure.exposures(ll, specs)
  assert exp.tolist() == [2.0, 0.0]
  assert post[1] == pytest.approx(np.log(0.25))


def test_canaries_are_reproducible_and_coins_only_on_singles():
  a = exposure.draw_canaries(AUDIT)
  assert a == exposure.draw_canaries(AUDIT)
  assert all(c["included"] for c in a if c["repeat"] > 1)
  assert 10 < sum(c["included"] for c in a if c["repeat"] == 1) < 38
  assert all(c["secret"] in c["candidates"] for c in a)
  assert len({c["name"] for c in a}) == len(a)
  with pytest.raises(CbenchError, match="candidates"):
    exposure.ExposureConfig(candidates=1)


def test_chance_exposure_is_the_mean_over_a_uniform_rank():
  rng = np.random.default_rng(0)
  ll = rng.normal(size=(20_000, 100))                # a model that knows nothing
  specs = [{"candidates": [str(i) for i in range(100)], "secret": "7"}] * 1
  exp, _ = exposure.exposures(ll[:, :], specs * len(ll))
  assert exp.mean() == pytest.approx(exposure.chance_exposure(100), abs=0.03)
  assert exposure.chance_exposure(100) == pytest.approx(1.396, abs=1e-3)
