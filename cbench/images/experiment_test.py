"""Tests of the coarse-to-fine experiment (DP stage 1, stage-2 provenance,
the grid end to end)."""

import dataclasses
import math
import os

import jax
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.images import digits
from cbench.images import experiment
from cbench.images import pipeline
from cbench.images import superres
from cbench.images import world
from cbench.models import registry
from cbench.parallel import mesh as mesh_lib
from cbench.privacy import ledger as ledger_lib

from cbench.images.conftest import CLS, SR, TOK
TINY = experiment.ImagesConfig(
    world=world.WorldConfig(), num_private=64, num_public=256, num_test=32,
    vocab_size=TOK.vocab_size, pretrain_steps=4, pretrain_batch_size=16,
    dp_steps=2, dp_batch_size=16.0, pad_unit=16, epsilons=(2.0,),
    num_samples=16, decode_batch=16, superres=SR, classifier=CLS)
TINY_DIGITS = dataclasses.replace(
    TINY, world=digits.DigitsConfig(), num_public=128, num_test=32,
    levels=1, superres=dataclasses.replace(SR, levels=1), num_samples=20,
    decode_batch=20)
needs_sklearn = pytest.mark.skipif(
    digits.sklearn_datasets is None,
    reason=f"needs the 'images' extra ({digits.INSTALL})")


def _setup(small_world, public_stages):
  tok = public_stages.tokenizer
  return experiment.Setup(
      small_world, small_world.private, experiment.public_view(small_world),
      public_stages, {"c2f": tok}, None, 0.0)


def test_config_validation_and_named_configs():
  assert experiment.named_config("default") == experiment.get_config()
  acc = experiment.named_config("accelerator")
  assert acc.world.size == 32 and acc.model == "tiny"
  assert acc.superres.levels == acc.levels
  dig = experiment.named_config("digits")
  assert dig.dataset == "digits" and experiment.get_config().dataset == (
      "generated")
  assert dig.world.size == 8 and dig.levels == dig.superres.levels == 1
  assert dig.num_private + dig.num_test <= 896 and dig.num_public <= 901
  assert "python -m experiments.images_c2f" in (
      experiment.get_digits_config.__doc__) and "Expected" in (
          experiment.get_digits_config.__doc__)
  with pytest.raises(CbenchError, match="does not match"):
    dataclasses.replace(TINY, levels=3)
  with pytest.raises(CbenchError, match="methods"):
    dataclasses.replace(TINY, methods=("c2f", "c2f"))
  with pytest.raises(CbenchError, match="epsilon"):
    dataclasses.replace(TINY, epsilons=(0.0,))
  with pytest.raises(CbenchError, match="config"):
    experiment.named_config("huge")


def test_class_tokens_and_prompts(small_world):
  wc = small_world.config
  assert experiment.num_class_tokens(wc) == wc.num_classes + 2
  idx = experiment.class_index(wc, small_world.public.labels)
  assert set(np.unique(idx)) == {4, 5, 6, 7, wc.num_classes}
  assert experiment.null_class(wc) == wc.num_classes + 1
  labels = experiment.sample_labels(10, 4)
  np.testing.assert_array_equal(np.bincount(labels), [3, 3, 2, 2])
  p = pipeline.prompts(3, 16, np.array([0, 5, 9]), 10,
                       np.array([[0, 1], [2, 3], [15, 0]]))
  np.testing.assert_array_equal(p[:, 0], pipeline.BOS)
  np.testing.assert_array_equal(p[:, 1], pipeline.OFFSET + 16 + np.array(
      [0, 5, 9]))
  np.testing.assert_array_equal(p[:, 2:], [[3, 4], [5, 6], [18, 3]])
  with pytest.raises(CbenchError, match="Class indices"):
    pipeline.prompts(1, 16, np.array([10]), 10)


@pytest.mark.parametrize("dataset", [
    "generated", pytest.param("digits", marks=needs_sklearn)])
def test_public_stages_get_an_empty_private_split(dataset, request,
                                                  monkeypatch, tmp_path):
  """Stage 2 (conv and transformer), the tokenizers and the metric network
  only ever receive `public_view`: with a NaN-poisoned private split every
  trainer still sees exactly the public images (NaNs would be refused), in
  both image worlds."""
  if dataset == "generated":
    cfg, w = TINY, request.getfixturevalue("small_world")
  else:
    cfg = TINY_DIGITS
    w, _ = experiment.make_worlds(cfg)
  num_private_classes = cfg.world.num_private_classes
  bad = dataclasses.replace(w, private=world.ImageSet(
      np.full_like(w.private.images, np.nan),
      np.full_like(w.private.labels, 999)))
  monkeypatch.setattr(experiment, "make_worlds",
                      lambda config: (bad, w.private))
  seen = {}

  def recorder(name, result):
    def fake(images, *args, **kw):
      del args
      seen.setdefault(name, []).append(
          (np.asarray(images), kw.get("classes")))
      return result
    return fake

  monkeypatch.setattr(superres, "train", recorder("conv", {"w": 0}))
  monkeypatch.setattr(experiment.metrics, "train_classifier",
                      recorder("metric", None))
  setup = experiment.fit_public(cfg, str(tmp_path / "w"))
  assert len(setup.public.private) == 0
  assert len(setup.public.public) == cfg.num_public
  assert setup.world is bad
  assert setup.tokenizers["full"].seq_len == cfg.world.size ** 2
  monkeypatch.setattr(pipeline, "pretrain_stage1",
                      lambda tok, images, *a, **kw: recorder(
                          "transformer", ({"w": 0}, {}))(images, **kw))
  for method in ("c2f", "full"):
    experiment.pretrain(cfg, setup, method, str(tmp_path), None)
  assert [len(seen[k]) for k in ("conv", "metric", "transformer")] == [
      1, 1, 2]
  for name, calls in seen.items():
    for images, classes in calls:
      np.testing.assert_array_equal(images, w.public.images)
      if classes is not None:
        assert classes.min() >= num_private_classes   # never private
  rec = experiment.stage2_record(setup, experiment.Model(None, {"w": 0}))
  assert rec["private_images_read"] == 0
  assert rec["public_images"] == cfg.num_public


@pytest.mark.slow
def test_dp_stage1_ledger_within_target(small_world, public_stages,
                                        tmp_path):
  setup = _setup(small_world, public_stages)
  tok = public_stages.tokenizer
  c = experiment.num_class_tokens(small_world.config)
  cfg = pipeline.model_config(tok, "micro", num_classes=c, num_layers=1)
  base = experiment.Model(cfg, registry.init_params(cfg, jax.random.key(0)))
  mesh = mesh_lib.make_mesh()
  run_dir = str(tmp_path / "run")
  stage2 = {"trained_on": "public split only", "private_images_read": 0}
  # q = 1 (B = n): the PLD calibration is quick; the Poisson sampler,
  # ledger and accountant are the same.
  cfg1 = dataclasses.replace(TINY, dp_batch_size=64.0, pad_unit=64)
  model, rec = experiment.dp_run(cfg1, setup, "c2f", 2.0, base, run_dir,
                                 mesh, stage2)
  assert 0 < rec["ledger_epsilon"] <= 2.0
  assert rec["executed_steps"] == 2 and rec["noise_multiplier"] > 0
  summary = ledger_lib.verify_file(rec["ledger"])
  assert summary["epsilon"] <= 2.0 and summary["charges"] == 2
  header = summary["header"]
  assert header["config"]["stage2"] == stage2 and header["steps"] == 2
  assert header["sampler"]["kind"] == "poisson"
  # The base is copied, not donated: it is still usable.
  assert np.all(np.isfinite(jax.tree.leaves(base.params)[0]))
  assert not all(np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(base.params), jax.tree.leaves(model.params)))
  # An infeasible target fails before any file is written.
  with pytest.raises(CbenchError, match="Infeasible"):
    experiment.dp_run(cfg1, setup, "c2f", 1e-4, base,
                      str(tmp_path / "never"), mesh, stage2)
  assert not os.path.exists(tmp_path / "never")


@pytest.mark.slow
def test_run_images_end_to_end(tmp_path):
  cfg = dataclasses.replace(
      TINY, world=world.WorldConfig(size=16), num_private=96,
      superres=dataclasses.replace(SR, steps=5), epsilons=(2.0, math.inf))
  out = str(tmp_path / "out")
  s = experiment.run_images(cfg, out)
  for name in s["files"]:
    assert os.path.getsize(os.path.join(out, name)) > 0
  rows = {(r["method"], r["target_epsilon"]): r for r in s["rows"]}
  assert set(rows) == {(m, e) for m in experiment.ROWS
                       for e in (0.0, 2.0, math.inf)}
  for (m, e), r in rows.items():
    assert r["ledger_epsilon"] <= e
    assert math.isfinite(r["frechet"]) and 0 <= r["downstream_accuracy"] <= 1
    if m != "full":
      assert r["stage2_private_images_read"] == 0
  assert s["stage2"]["private_images_read"] == 0
  header = ledger_lib.verify_file(rows[("c2f", 2.0)]["ledger"])["header"]
  assert header["config"]["stage2"] == s["stage2"]
  table = open(os.path.join(out, experiment.MARKDOWN_NAME)).read()
  assert "| coarse-to-fine | 2 |" in table and "full-resolution" in table
  with pytest.raises(CbenchError, match="another config"):
    experiment.run_images(dataclasses.replace(cfg, seed=1), out)


@needs_sklearn
@pytest.mark.slow
def test_digits_grid_end_to_end(tmp_path):
  cfg = dataclasses.replace(
      TINY_DIGITS, epsilons=(math.inf,), conv_stage2=False,
      superres=dataclasses.replace(TINY_DIGITS.superres, steps=5))
  out = str(tmp_path / "out")
  s = experiment.run_images(cfg, out)
  assert s["dataset"] == "digits" and s["image_size"] == 8
  for name in s["files"]:
    assert os.path.getsize(os.path.join(out, name)) > 0
  rows = {(r["method"], r["target_epsilon"]): r for r in s["rows"]}
  assert set(rows) == {(m, e) for m in ("c2f", "full")
                       for e in (0.0, math.inf)}
  for r in rows.values():
    assert math.isfinite(r["frechet"]) and 0 <= r["downstream_accuracy"] <= 1
  assert s["stage2"]["private_images_read"] == 0
  header = ledger_lib.verify_file(rows[("c2f", math.inf)]["ledger"])[
      "header"]
  assert header["config"]["stage2"] == s["stage2"]
  assert "digits world, 8x8 images" in open(
      os.path.join(out, experiment.MARKDOWN_NAME)).read()
