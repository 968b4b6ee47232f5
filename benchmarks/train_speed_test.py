"""Smoke test of benchmarks.train_speed at micro size (seconds), and its
FLOP accounting checked against the parameter tree and XLA's count."""

import jax
import numpy as np
import pytest

from benchmarks import train_speed
from cbench._validate import CbenchError
from cbench.models import config as config_lib
from cbench.models import registry
from cbench.parallel import mesh as mesh_lib


@pytest.fixture(scope="module")
def rows():
  # 8 fake CPU devices (root conftest): batch 8 = one row per device.
  return train_speed.measure(
      recipe="micro", batch_size=8, seq_len=32, rounds=2, steps=1,
      decode_batch=8, prompt_len=8, new_tokens=64, matmul_n=128)


def test_measure_reports_positive_rates_and_plausible_mfu(rows):
  mm, tr, de = rows
  assert [r["bench"] for r in rows] == ["matmul", "train", "decode"]
  assert mm["devices"] == 8 and mm["peak_dtype"] == "float32"
  assert mm["peak_tflop_per_s"] >= mm["median_tflop_per_s"] > 0
  for r in (tr, de):
    assert "note" not in r, r
    assert r["tokens_per_s"] > 0 and r["model_tflop_per_s"] > 0, r
    assert 0 < r["mfu"] < 1.5, r
    assert 0 <= r["mfu_paired"] < 1.5, r
  assert tr["batch_size"] == 8 and tr["seq_len"] == 32
  assert tr["forward_ms"] > 0 and tr["step_ms"] > 0
  assert de["n1"] == 1 and de["n2"] == 64
  assert de["mean_context"] == 8 + (1 + 64 + 1) / 2
  assert de["end_to_end_tokens_per_s"] > 0


def test_model_flops_agree_with_xla_count(rows):
  # XLA counts the unpartitioned step's matmuls plus element-wise work
  # (softmax, norms, AdamW); the model formula must come within 10%
  # (dropping the LM head, 6 * 400 * 64 per token, would give ~0.75).
  assert 0.9 < rows[1]["model_over_xla_flops"] < 1.1, rows[1]


def test_table_has_every_measurement(rows):
  table = train_speed.format_table(rows)
  assert "matmul peak (float32, n=128, x1)" in table
  lines = {line.split()[0] for line in table.splitlines() if line.strip()}
  assert {"train", "decode"} <= lines
  assert "train step split (ms): forward" in table


@pytest.mark.parametrize("arch", ["cbench", "gemma3"])
def test_flops_formula_counts_every_matrix_of_the_parameter_tree(arch):
  config = config_lib.get_model_config("micro", 300, arch=arch)
  shapes = jax.eval_shape(lambda r: registry.init_params(config, r),
                          jax.random.key(0))
  # Kernels and the tied embedding (used once as the head): 2 FLOPs per
  # weight per token forward; vectors (norm scales) are not matmuls.
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)
          if x.ndim >= 2)
  lhq = config.num_layers * config.num_heads * config.head_dim
  assert train_speed.train_flops_per_token(config, 64) == pytest.approx(
      6 * n + 12 * lhq * 64)
  assert train_speed.forward_flops_per_token(config, 40.5) == pytest.approx(
      2 * n + 4 * lhq * 40.5)


def test_recipe_model_and_cpu_peak_defaults():
  config, recipe = train_speed.make_config("tiny")
  assert (config.d_model, config.vocab_size, config.max_len) == (192, 2048,
                                                                 320)
  assert (recipe.batch_size, recipe.seq_len) == (16, 256)  # configs/tiny.py
  assert train_speed.make_config("tiny", dtype="bfloat16")[0].dtype == (
      "bfloat16")
  assert train_speed.resolve_peak() == ("float32", 1024, 1)
  assert train_speed.resolve_peak("bfloat16", 64, 3) == ("bfloat16", 64, 3)


def test_bad_input_is_a_named_error():
  config, recipe = train_speed.make_config("micro")
  mesh = mesh_lib.make_mesh()
  with pytest.raises(CbenchError, match="batch_size=3"):
    train_speed.TrainBench(config, recipe, mesh, batch_size=3, seq_len=8)
  with pytest.raises(CbenchError, match="new_tokens=64"):
    train_speed.DecodeBench(config, None, mesh, batch=2, prompt_len=2000,
                            new_tokens=64)
  with pytest.raises(CbenchError, match="peak_dtype"):
    train_speed.resolve_peak("int8")
  with pytest.raises(CbenchError, match="model"):
    train_speed.make_config("tiny", model="gpt5")
