"""Tests of the stage-2 super-resolution model (public images only)."""

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.images import superres
from cbench.images import wavelets


def test_training_reduces_detail_error_and_keeps_coarse_band(small_world,
                                                            public_stages):
  cfg, params = public_stages.superres_config, public_stages.superres_params
  private = small_world.private.images
  approx = superres.stage2_inputs(private, cfg, public_stages.tokenizer)
  init = superres.init_params(cfg, (32, 32))
  before = float(superres.detail_loss(init, cfg, approx, private))
  after = float(superres.detail_loss(params, cfg, approx, private))
  assert after < 0.95 * before
  out = superres.super_resolve(params, cfg, approx)
  assert out.shape == (64, 32, 32)
  # Stage 2 adds fine bands only: the coarse band passes through exactly.
  np.testing.assert_allclose(wavelets.coarse(out, "db2", 2), approx,
                             atol=1e-5)


def test_rejects_non_finite_and_bad_inputs(small_world, public_stages,
                                           tmp_path):
  cfg = public_stages.superres_config
  bad = small_world.public.images.copy()
  bad[3, 4, 5] = np.nan
  with pytest.raises(CbenchError, match="non-finite"):
    superres.train(bad, cfg, str(tmp_path))
  with pytest.raises(CbenchError, match="multiple of"):
    superres.train(np.zeros((4, 30, 30), np.float32), cfg, str(tmp_path))
  with pytest.raises(CbenchError, match="does not match"):
    superres.stage2_inputs(small_world.public.images,
                           superres.SuperResConfig(levels=3),
                           public_stages.tokenizer)
