"""Harness fine-tuning with LoRA (recipe.lora_rank > 0) on the micro model.

Checks: only adapted kernels move and everything else stays bit-identical;
the base passed in is not donated; checkpoints hold adapters + optimizer
state only; the returned parameters are base + scale A B of the trained
adapters; the loss falls on a small corpus; killed and resumed equals
uninterrupted; an 8-device (data, fsdp, model) run equals a 1-device run;
bad LoRA fields are named errors that leave no workdir; pretrained bases get
LoRA by default and the rank is part of the run's binding.
"""

import dataclasses
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cbench import configs
from cbench._validate import CbenchError
from cbench.configs import micro
from cbench.corpus import release as release_lib
from cbench.harness import finetune
from cbench.harness import recipes
from cbench.io import files
from cbench.models import model_store
from cbench.parallel import mesh as mesh_lib
from cbench.train import lm_train
from cbench.train import lora
from cbench.train import text_data

MICRO = micro.harness()
RECIPE = lm_train.TrainRecipe(num_steps=4, batch_size=8, seq_len=64,
                              lora_rank=2, log_every=2, checkpoint_every=2)


def _host(tree):
  return lora.flatten(jax.device_get(tree))


def _rows(release_dir, tokenizer, n=48):
  texts = [r["text"] for r in
           release_lib.load_release(release_dir).corpus("train")][:n]
  return text_data.tokenize_rows(texts, tokenizer, RECIPE.seq_len)


def _losses(workdir):
  return [r["loss"] for r in files.iter_jsonl(
      os.path.join(workdir, "metrics.jsonl"), required=("loss",))]


def test_only_adapted_kernels_move_and_the_base_survives(
    micro_base_dir, demo_release_dir, tmp_path):
  bundle = model_store.load(micro_base_dir)
  before = _host(bundle.params)
  work = str(tmp_path / "w")
  merged, info = lm_train.train_lm(bundle.params, bundle.config,
                                   _rows(demo_release_dir, bundle.tokenizer),
                                   RECIPE, work)
  # The base arrays were neither donated nor changed.
  assert not any(x.is_deleted() for x in jax.tree.leaves(bundle.params))
  assert _host(bundle.params).keys() == before.keys()
  for k, v in _host(bundle.params).items():
    np.testing.assert_array_equal(v, before[k])
  got = _host(merged)
  targets = set(lora.target_paths(bundle.params, RECIPE.lora_targets))
  moved = {k for k in before if not np.array_equal(before[k], got[k])}
  assert moved == targets   # every adapted kernel moved, nothing else did
  assert info["lora_rank"] == 2 and info["steps"] == 4
  total = sum(np.size(v) for v in before.values())
  assert 0 < info["trainable_params"] < total / 4
  # The checkpoint holds the adapters and their optimizer state only.
  step_dir = os.path.join(work, "checkpoints", "4", "default")
  meta = ocp.StandardCheckpointer().metadata(step_dir)
  tree = getattr(meta, "item_metadata", meta)
  tree = getattr(tree, "tree", tree)
  ckpt_params = lora.flatten(dict(tree["params"]))
  assert ckpt_params and {k[-1] for k in ckpt_params} == {"a", "b"}
  assert {k[:-1] for k in ckpt_params} == {t[:-1] for t in targets}
  # The returned tree is base + scale * A @ B of the checkpointed adapters.
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
  restored = ocp.StandardCheckpointer().restore(step_dir, abstract)
  want = lora.merge(lora.unflatten(before), jax.device_get(restored["params"]),
                    RECIPE.lora_alpha / RECIPE.lora_rank)
  for k, v in lora.flatten(want).items():
    np.testing.assert_allclose(got[k], v, rtol=1e-6, atol=1e-7)


def test_lora_loss_decreases_on_a_small_corpus(micro_base_dir,
                                               demo_release_dir, tmp_path):
  bundle = model_store.load(micro_base_dir)
  recipe = dataclasses.replace(
      RECIPE, num_steps=40, lora_rank=4, log_every=4, checkpoint_every=40,
      optimizer=dataclasses.replace(RECIPE.optimizer,
                                    peak_learning_rate=1e-2))
  work = str(tmp_path / "w")
  lm_train.train_lm(bundle.params, bundle.config,
                    _rows(demo_release_dir, bundle.tokenizer, n=16), recipe,
                    work)
  losses = _losses(work)
  assert len(losses) == 10
  assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.3, losses


def test_sharded_lora_step_equals_one_device(micro_base_dir, demo_release_dir,
                                             tmp_path):
  recipe = dataclasses.replace(RECIPE, num_steps=2, checkpoint_every=2)
  out = []
  for name, mesh in (("one", mesh_lib.make_mesh(devices=jax.devices()[:1])),
                     ("eight", mesh_lib.make_mesh(data=2, fsdp=2, model=2))):
    bundle = model_store.load(micro_base_dir, mesh=mesh)
    merged, _ = lm_train.train_lm(
        bundle.params, bundle.config,
        _rows(demo_release_dir, bundle.tokenizer), recipe,
        str(tmp_path / name), mesh=mesh)
    out.append(_host(merged))
    out.append(_losses(str(tmp_path / name)))
  one, loss_one, eight, loss_eight = out
  np.testing.assert_allclose(loss_one, loss_eight, rtol=1e-5)
  for k in one:
    np.testing.assert_allclose(one[k], eight[k], rtol=1e-4, atol=1e-6)


def test_lora_finetune_resume_equals_uninterrupted(micro_base_dir,
                                                   demo_release_dir, tmp_path):
  corpus = os.path.join(demo_release_dir, "corpus", "train.jsonl")
  recipe = dataclasses.replace(MICRO.finetune, num_steps=5, checkpoint_every=2,
                               lora_rank=2)
  full = str(tmp_path / "full")
  finetune.finetune(micro_base_dir, corpus, full, recipe)
  crashed = str(tmp_path / "crashed")
  # Crash after 3 steps: the checkpoint holds step 2, step 3 is lost.
  out = finetune.finetune(micro_base_dir, corpus, crashed, recipe,
                          stop_after=3)
  assert out["stopped_at"] == 3 and not model_store.is_done(crashed)
  finetune.finetune(micro_base_dir, corpus, crashed, recipe)
  # Both are ordinary model directories (what score_qa loads).
  a, b = _host(model_store.load(full).params), _host(
      model_store.load(crashed).params)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  base = _host(model_store.load(micro_base_dir).params)
  assert any(not np.array_equal(a[k], base[k]) for k in a)
  bound = files.read_json(os.path.join(full, "run.json"))["recipe"]
  assert bound["lora_rank"] == 2
  # A different rank is a different run.
  with pytest.raises(CbenchError, match="another fine-tuning run"):
    finetune.finetune(micro_base_dir, corpus, full,
                      dataclasses.replace(recipe, lora_rank=3))


def test_bad_lora_fields_are_named_and_touch_nothing(micro_base_dir,
                                                     demo_release_dir,
                                                     tmp_path):
  with pytest.raises(CbenchError, match="lora_rank"):
    dataclasses.replace(MICRO.finetune, lora_rank=-1)
  with pytest.raises(CbenchError, match="lora_alpha"):
    dataclasses.replace(MICRO.finetune, lora_rank=2, lora_alpha=-1.0)
  with pytest.raises(CbenchError, match="lora_targets"):
    dataclasses.replace(MICRO.finetune, lora_targets="[")
  corpus = os.path.join(demo_release_dir, "corpus", "train.jsonl")
  workdir = str(tmp_path / "w")
  recipe = dataclasses.replace(MICRO.finetune, lora_rank=2,
                               lora_targets=r"^blocks_\d+/attn/qkv/kernel$")
  with pytest.raises(CbenchError, match="lora_targets=.* selects no kernel"):
    finetune.finetune(micro_base_dir, corpus, workdir, recipe)
  assert not os.path.exists(workdir)


def test_pretrained_bases_get_lora_by_default(micro_base_dir):
  for name in configs.NAMES:
    cfg = configs.harness_config(configs.load(name))
    own = cfg.finetune_recipe(micro_base_dir)
    assert own == cfg.finetune and own.lora_rank == 0
    for model in ("gemma3_270m", "smollm2_135m"):
      r = cfg.finetune_recipe(model)
      assert r.lora_rank == recipes.PRETRAINED_LORA_RANK == 8
      assert r.replay_fraction == 0.0
      assert r.optimizer.peak_learning_rate == recipes.PRETRAINED_LORA_LR
      assert (r.num_steps, r.batch_size, r.seq_len) == (
          cfg.finetune.num_steps, cfg.finetune.batch_size,
          cfg.finetune.seq_len)
      assert cfg.finetune_recipe(model, lora_rank=0).lora_rank == 0
  assert MICRO.finetune_recipe(micro_base_dir, lora_rank=4).lora_rank == 4
  with pytest.raises(CbenchError, match="lora_rank"):
    MICRO.finetune_recipe("gemma3_270m", lora_rank=-1)


def test_full_finetune_bindings_are_unchanged():
  # Full fine-tuning: no LoRA keys in the recipe's (or pretrain config's)
  # binding, so workdirs made before LoRA existed still resume.
  d = MICRO.finetune.to_dict()
  assert not any(k.startswith("lora") for k in d)
  assert not any(k.startswith("lora") for k in
                 MICRO.pretrain.to_dict()["train"])
  with_lora = dataclasses.replace(MICRO.finetune, lora_rank=8).to_dict()
  assert {k: v for k, v in with_lora.items() if not k.startswith("lora")} == d
  assert with_lora["lora_rank"] == 8 and "lora_targets" in with_lora
  json.dumps(with_lora)
