"""The Logit-DP probe comparison end to end at a tiny size, and its data."""

import json
import math
import os

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.contrastive import data as data_lib
from cbench.contrastive import probe
from cbench.privacy import accounting
from cbench.privacy import logit_dp


def test_generated_data_shapes_and_views():
  cfg = data_lib.ImageDataConfig(num_classes=3, image_size=5)
  rng = np.random.default_rng(0)
  protos = data_lib.prototypes(cfg, rng)
  np.testing.assert_allclose(np.sqrt(np.mean(protos ** 2, (1, 2))), 1.0,
                             rtol=1e-6)
  x, y = data_lib.records(cfg, protos, 7, rng)
  assert x.shape == (7, 5, 5) and x.dtype == np.float32
  assert set(y) <= {0, 1, 2}
  a, b = data_lib.augment(cfg, x, rng), data_lib.augment(cfg, x, rng)
  assert a.shape == (7, 25) and not np.allclose(a, b)
  with pytest.raises(CbenchError, match="dropout"):
    data_lib.ImageDataConfig(dropout=1.0)


def test_run_comparison_tiny(tmp_path):
  cfg = probe.ProbeConfig(
      data=data_lib.ImageDataConfig(num_classes=3, image_size=4),
      num_train=48, num_probe_train=30, num_probe_test=60, hidden=8,
      rep_dim=6, proj_dim=4, batch_size=8, epochs=2, epsilons=(4.0,),
      logit_clip_norm=0.5, naive_clip_norm=0.5, probe_steps=30,
      timing_reps=1, value_discretization_interval=1e-2,
      out_dir=str(tmp_path / "out"))
  out = probe.run_comparison(cfg)
  for path in out["paths"].values():
    assert os.path.getsize(path) > 0
  with open(out["paths"]["json"], encoding="utf-8") as f:
    saved = json.load(f)
  runs = {(r["method"], r["epsilon"]): r for r in saved["runs"]}
  assert set(runs) == {("non_private", math.inf), ("naive", 4.0),
                       ("logit_dp", 4.0)}
  sigma = saved["noise_multipliers"][0]
  assert runs["naive", 4.0]["noise_multiplier"] == sigma > 0
  # Equal epsilon, each mechanism's noise from its own sensitivity.
  assert runs["logit_dp", 4.0]["epsilon_spent"] <= 4.0
  eps = accounting.epsilon(logit_dp.dp_event(sigma, 2), cfg.delta,
                           logit_dp.RELATION,
                           value_discretization_interval=1e-2)
  assert eps == pytest.approx(runs["naive", 4.0]["epsilon_spent"])
  assert runs["logit_dp", 4.0]["noise_std"] == pytest.approx(
      sigma * logit_dp.logit_dp_sensitivity(8, 0.5, cfg.temperature))
  assert runs["naive", 4.0]["noise_std"] == pytest.approx(sigma * 2 * 8 * 0.5)
  assert runs["non_private", math.inf]["noise_std"] == 0.0
  for r in saved["runs"]:
    assert r["steps"] == 2 * (48 // 8)
    assert 0.0 <= r["probe_accuracy"] <= 1.0
  assert set(saved["references"]) == {"raw pixels", "random init"}
  assert saved["step_times"]["ms"]["logit_dp"] > 0
  assert "| Logit-DP | 11.19 |" in out["markdown"]
  with pytest.raises(CbenchError, match="batch_size"):
    probe.ProbeConfig(num_train=4, batch_size=8)
