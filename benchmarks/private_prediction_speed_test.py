"""Smoke test: the speed benchmark runs end to end on a micro model."""

import math

import jax
import numpy as np
import pytest

from benchmarks import private_prediction_speed as bench
from cbench.decoding import decoder
from cbench.models import config as config_lib
from cbench.models import registry


def test_measure_runs_and_reports_a_ratio():
  out = bench.measure("svt", model="micro", vocab_size=64, batch_size=2,
                      num_docs=2, prompt_len=4, n1=3, n2=6, repeats=1)
  assert out["rows"] == 6 and out["method"] == "svt"
  # Timings this short are noise on a shared CPU; check they are numbers.
  for k in ("plain_ms_per_step", "private_ms_per_step", "ratio",
            "synthetic_tokens_per_s"):
    assert math.isfinite(out[k]) and out[k] > 0, (k, out)


def test_every_method_builds_a_sampler_that_never_stops_early():
  """Every timed sampler decodes the full length (no EOS, budget = length):
  a stream that stopped early would make the per-step time too small."""
  cfg, params, _ = bench.load_model("micro", 64, 40)
  batch_size, groups, n = 3, 2, 20
  prompts = np.asarray(jax.random.randint(
      jax.random.key(1), ((batch_size + 1) * groups, 4), 4, 64), np.int32)
  for method in ("svt", "exp_mech", "invisible_ink", "median", "public_only"):
    sampler = bench.make_sampler(method, batch_size, n)
    out = decoder.generate(params, cfg, prompts, n, sampler,
                           jax.random.key(2), group_size=batch_size + 1,
                           eos_id=bench._NO_EOS)  # pylint: disable=protected-access
    lengths = np.asarray(out.lengths)
    assert lengths.shape == (groups,), method  # One document per group.
    np.testing.assert_array_equal(lengths, n, err_msg=method)


def test_pretrained_names_use_their_own_weights_and_vocabulary(monkeypatch):
  # A micro model of the gemma3 architecture stands in for Gemma 3 270M
  # (loading the real one takes a minute); the dispatch is what is tested.
  cfg = config_lib.get_model_config("micro", 96, arch="gemma3", max_len=64)
  calls = []

  def fake_load(name, dtype):
    calls.append((name, dtype))
    return cfg, registry.init_params(cfg, jax.random.key(0)), "gguf"
  monkeypatch.setattr(bench.model_speed, "load", fake_load)
  loaded = bench.load_model("gemma3_270m", 512, 40)
  assert calls == [("gemma3_270m", "float32")]
  out = bench.measure("svt", model="gemma3_270m", vocab_size=512,
                      batch_size=2, num_docs=1, prompt_len=4, n1=3, n2=6,
                      repeats=1, loaded=loaded)
  assert out["weights"] == "gguf" and out["vocab_size"] == 96  # not 512
  assert out["rows"] == 3 and out["synthetic_tokens_per_s"] > 0
  micro = bench.load_model("micro", 64, 40)
  assert micro[0].vocab_size == 64 and micro[2] == "random"
  assert not calls[1:]                     # named sizes never load GGUF
  with pytest.raises(ValueError, match="max_len"):
    bench.measure("svt", model="gemma3_270m", vocab_size=512, batch_size=2,
                  num_docs=1, prompt_len=60, n1=3, n2=6, repeats=1,
                  loaded=loaded)
