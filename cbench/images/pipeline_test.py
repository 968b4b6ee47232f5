"""Tests of the coarse-to-fine pipeline pieces (public stages, stage-1 rows,
sampling through the shared decoder)."""

import dataclasses

import jax
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.images import pipeline
from cbench.images import superres
from cbench.images import world

def _poisoned(w):
  bad = np.full_like(w.private.images, np.nan)
  return dataclasses.replace(
      w, private=world.ImageSet(bad, np.full_like(w.private.labels, 999)))


def test_public_stages_never_read_the_private_split(small_world,
                                                    public_stages, tmp_path):
  clean = public_stages
  sr, tok_cfg = clean.superres_config, clean.tokenizer.config
  poisoned = pipeline.fit_public_stages(_poisoned(small_world), tok_cfg, sr,
                                        str(tmp_path / "b"))
  np.testing.assert_array_equal(clean.tokenizer.edges,
                                poisoned.tokenizer.edges)
  np.testing.assert_array_equal(clean.tokenizer.centers,
                                poisoned.tokenizer.centers)
  flat_a = jax.tree.leaves(clean.superres_params)
  flat_b = jax.tree.leaves(poisoned.superres_params)
  assert all(np.all(np.isfinite(a)) for a in flat_a)
  for a, b in zip(flat_a, flat_b):
    np.testing.assert_array_equal(a, b)
  # The check can fail: had the private split been read, NaNs are refused.
  with pytest.raises(CbenchError, match="non-finite"):
    superres.train(_poisoned(small_world).private.images, sr,
                   str(tmp_path / "c"))
  with pytest.raises(CbenchError, match="detail_levels"):
    pipeline.fit_public_stages(
        small_world, dataclasses.replace(tok_cfg, detail_levels=1), sr,
        str(tmp_path / "d"))


def test_token_rows_round_trip_and_config(small_world, public_stages):
  tok = public_stages.tokenizer
  ids = np.asarray(tok.encode(small_world.private.images))
  rows = pipeline.token_rows(ids, tok.vocab_size)
  assert rows.tokens.shape == (64, tok.seq_len + 2)
  assert np.all(rows.tokens[:, 0] == pipeline.BOS)
  assert np.all(rows.tokens[:, -1] == pipeline.EOS)
  np.testing.assert_array_equal(rows.tokens[:, 1:-1] - pipeline.OFFSET, ids)
  assert np.all(rows.lengths == tok.seq_len + 2) and rows.segments is None
  cfg = pipeline.model_config(tok)
  assert cfg.vocab_size == 16 + pipeline.OFFSET
  assert cfg.max_len == tok.seq_len + 2
  with pytest.raises(CbenchError, match="Image tokens"):
    pipeline.token_rows(ids + 16, tok.vocab_size)


def test_sampler_never_emits_special_ids():
  s = pipeline.ImageTokenSampler(1.0)
  logits = np.zeros((512, 1, 8), np.float32)
  logits[:, :, :pipeline.OFFSET] = 50.0     # the model prefers specials
  tokens, stop, _ = s.next_tokens(logits, jax.random.key(0), ())
  tokens = np.asarray(tokens)
  assert tokens.min() >= pipeline.OFFSET and not np.any(np.asarray(stop))
  assert len(np.unique(tokens)) == 8 - pipeline.OFFSET


@pytest.mark.slow
def test_public_pretrain_then_sample_and_render(small_world, public_stages,
                                                tmp_path):
  stages = public_stages
  tok = stages.tokenizer
  cfg = pipeline.model_config(tok)
  recipe = pipeline.default_recipe(tok, num_steps=30, batch_size=16)
  params, info = pipeline.pretrain_stage1(
      tok, small_world.public.images, cfg, recipe, str(tmp_path / "lm"))
  assert info["steps"] == 30
  images, tokens = pipeline.generate_images(
      params, cfg, stages, 6, jax.random.key(0), decode_batch=4)
  assert tokens.shape == (6, tok.seq_len)
  assert tokens.min() >= 0 and tokens.max() < tok.vocab_size
  assert images.shape == (6, 32, 32) and np.all(np.isfinite(images))
  coarse = pipeline.render(tokens, stages, with_stage2=False)
  assert coarse.shape == images.shape
