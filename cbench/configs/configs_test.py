"""The standard configs load, validate and mean what their docstrings say."""

import dataclasses
import math
import os

import pytest

from cbench import configs
from cbench._validate import CbenchError
from cbench.benchmark import demo
from cbench.benchmark import runner
from cbench.harness import recipes
from cbench.synthesis import api
from cbench.tracks.geminon import generator as geminon


@pytest.mark.parametrize("name", configs.NAMES)
def test_every_config_loads_and_documents_its_command(name):
  config = configs.load(name)
  harness = configs.harness_config(config)
  assert isinstance(harness, recipes.HarnessConfig) and harness.name == name
  bench = getattr(config, "benchmark", config)
  assert isinstance(bench, runner.BenchmarkConfig)
  for m in bench.methods:
    assert m in api.METHODS
  doc = configs._CONFIGS[name].__doc__  # pylint: disable=protected-access
  assert "python -m experiments." in doc or "make demo" in doc
  assert "Expected" in doc


def test_recipes_keep_their_measured_values():
  tiny = configs.harness_config(configs.load("tiny"))
  assert (tiny.finetune.num_steps, tiny.finetune.batch_size,
          tiny.finetune.seq_len) == (900, 16, 256)
  assert tiny.finetune.optimizer.peak_learning_rate == 5e-3
  assert tiny.finetune.replay_fraction == 0.5
  assert (tiny.pretrain.train.num_steps, tiny.pretrain.train.batch_size) == (
      500, 32)
  assert tiny.pretrain.practice_size == "demo"
  demo_h = configs.harness_config(configs.load("demo"))
  assert (demo_h.finetune.num_steps, demo_h.finetune.batch_size) == (200, 8)
  assert (demo_h.pretrain.train.num_steps,
          demo_h.pretrain.practice_size) == (400, "mini")
  # Same model and data mix: only the budget differs.
  assert demo_h.pretrain.model_overrides == tiny.pretrain.model_overrides


def test_overrides_reach_nested_fields_and_name_bad_ones():
  cfg = configs.load("tiny", ["harness.finetune.num_steps=12",
                              "epsilons=1,inf", "delta=1e-6"])
  assert cfg.harness.finetune.num_steps == 12
  assert cfg.epsilons == (1.0, math.inf) and cfg.delta == 1e-6
  assert configs.load("tiny", ["delta=none"]).delta is None
  with pytest.raises(CbenchError, match="unknown field 'num_step'"):
    configs.load("tiny", ["harness.finetune.num_step=3"])
  with pytest.raises(CbenchError, match="integer"):
    configs.load("tiny", ["harness.finetune.num_steps=3.5"])
  with pytest.raises(CbenchError, match="FIELD=VALUE"):
    configs.load("tiny", ["harness.finetune.num_steps"])
  with pytest.raises(CbenchError, match="is a config"):
    configs.load("tiny", ["harness.finetune=3"])
  with pytest.raises(CbenchError, match="lora_rank"):  # __post_init__ runs.
    configs.load("tiny", ["harness.finetune.lora_rank=-1"])


def test_config_files_and_bad_names(tmp_path):
  path = tmp_path / "mine.py"
  path.write_text(
      "from cbench.configs import tiny\n"
      "import dataclasses\n"
      "def get_config():\n"
      "  return dataclasses.replace(tiny.get_config(), num_docs=7)\n")
  assert configs.load(str(path)).num_docs == 7
  with pytest.raises(CbenchError, match="Unknown --config='huge'"):
    configs.load("huge")
  with pytest.raises(CbenchError, match="no such file"):
    configs.load(str(tmp_path / "missing.py"))
  (tmp_path / "broken.py").write_text("def get_config(:\n")
  with pytest.raises(CbenchError, match="failed to load: SyntaxError"):
    configs.load(str(tmp_path / "broken.py"))
  (tmp_path / "empty.py").write_text("x = 1\n")
  with pytest.raises(CbenchError, match="no get_config"):
    configs.load(str(tmp_path / "empty.py"))


def test_demo_grid_is_feasible_on_the_mini_release(tmp_path):
  config = configs.load("demo")
  assert isinstance(config, demo.DemoConfig)
  bench = config.in_workdir(str(tmp_path))
  assert bench.release_dir == os.path.join(str(tmp_path), "release")
  geminon.build_release(
      geminon.make_config("geminon", config.release_id, config.size),
      bench.release_dir)
  release = runner.validate(bench)  # Every cell's ε is reachable on it.
  world = release.manifest["world"]
  assert (world["public"], world["sensitive"]) == (6, 6)
  support = release.manifest["support"]
  assert support["public_test"]["min"] >= release.manifest["min_support"]
  assert support["sensitive_test"]["max"] < support["public_test"]["min"]
  cells = runner.plan_cells(bench, release, base_key="unused")
  names = [c.name for c in cells]
  assert names[:2] == ["base", "real"]
  # Every method runs at ε = 10; DP fine-tuning also without privacy.
  for method in bench.methods:
    if method != "public_only":
      assert f"{method}-eps10" in names
  assert "dp_finetune-epsinf" in names
  assert sum(1 for c in cells if c.epsilon is not None
             and math.isinf(c.epsilon) and c.method != "real") == 1
  # An override changes the grid, not the release.
  fewer = dataclasses.replace(bench, num_docs=8)
  assert [c.key for c in runner.plan_cells(fewer, release, "unused")][:2] == [
      c.key for c in cells[:2]]
