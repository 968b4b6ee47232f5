"""Smoke test of benchmarks.model_speed on a micro model (seconds)."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from benchmarks import model_speed
from cbench.models import config as config_lib
from cbench.models import registry
from cbench.models import transformer as tf


def _params(config):
  """Random parameters drawn on the host (no init compile)."""
  shapes = jax.eval_shape(
      lambda r: nn.unbox(registry.boxed_init(config, r))["params"],
      jax.random.key(0))
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda x: (0.2 * rng.standard_normal(x.shape)).astype(
      np.float32), shapes)


def test_chunked_nll_equals_full_cross_entropy():
  for arch in ("cbench", "gemma3"):
    config = config_lib.get_model_config("micro", 300, arch=arch)
    params = _params(config)
    tokens = np.random.default_rng(0).integers(4, 300, (2, 33)).astype(
        np.int32)
    got = model_speed.make_nll(config)(params, tokens)
    logits = registry.make_model(config).apply({"params": params},
                                               tokens[:, :-1])
    want, _ = tf.cross_entropy_loss(logits, tokens[:, 1:])
    np.testing.assert_allclose(np.asarray(got).mean(1), want, rtol=1e-5)


def test_benchmarks_report_positive_rates():
  config = config_lib.get_model_config("micro", 300)
  params = _params(config)
  fwd = model_speed.bench_forward(config, params, 2, 32, repeats=1)
  dec = model_speed.bench_decode(config, params, 2, repeats=1)
  pp = model_speed.bench_private_prediction(config, params, 2, repeats=1)
  head = model_speed.bench_head(config, params, 32, repeats=1)
  # Each rate is what it says: the work divided by the time it reports.
  assert fwd["seconds"] > 0
  assert fwd["tokens_per_s"] == pytest.approx(2 * 32 / fwd["seconds"])
  assert dec["step_ms"] > 0
  assert dec["tokens_per_s"] == pytest.approx(2 / (dec["step_ms"] / 1e3))
  assert pp["groups"] == 1 and pp["rows"] == 9
  assert pp["synthetic_tokens_per_s"] > 0
  assert pp["synthetic_tokens_per_s"] == pytest.approx(
      pp["groups"] / (pp["step_ms"] / 1e3), rel=1e-3)
  assert head["forward_full_logits_s"] > 0 and head["decode_head_ms"] > 0
  assert head["forward_head_share"] == pytest.approx(
      1 - head["forward_body_s"] / head["forward_full_logits_s"])
  for v in (*fwd.values(), *dec.values(), *head.values()):
    assert np.isfinite(v)
