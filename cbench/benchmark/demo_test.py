"""`make demo`'s configuration: its release size and grid are valid."""

import math

from cbench.benchmark import demo
from cbench.benchmark import runner
from cbench.corpus import release as release_lib


def test_demo_grid_is_feasible_on_the_mini_release(tmp_path):
  config = demo.demo_config(str(tmp_path))
  release_lib.build_release(
      release_lib.make_config("geminon", demo.DEMO_RELEASE, demo.DEMO_SIZE),
      config.release_dir)
  release = runner.validate(config)  # Every cell's ε is reachable on it.
  world = release.manifest["world"]
  assert (world["public"], world["sensitive"]) == (6, 6)
  support = release.manifest["support"]
  assert support["public_test"]["min"] >= release.manifest["min_support"]
  assert support["sensitive_test"]["max"] < support["public_test"]["min"]
  cells = runner.plan_cells(config, release, base_key="unused")
  names = [c.name for c in cells]
  assert names[:2] == ["base", "real"]
  # Every method runs at ε = 10; DP fine-tuning also without privacy.
  for method in demo.DEMO_METHODS:
    if method != "public_only":
      assert f"{method}-eps10" in names
  assert "dp_finetune-epsinf" in names
  assert sum(1 for c in cells if c.epsilon is not None and math.isinf(c.epsilon)
             and c.method != "real") == 1
