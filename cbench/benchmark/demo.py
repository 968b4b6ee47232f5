"""The embedded default run behind `make demo`.

Builds the `demo` release and the public world, pretrains the base model,
and runs the benchmark grid on CPU: reference rows (untouched base model,
fine-tune on the real corpus) plus every synthesis method at a small ε grid.
Every stage is cached in the workdir, so a second `make demo` only prints.
"""

from __future__ import annotations

import logging
import os
import time

from cbench.benchmark import runner
from cbench.corpus import release as release_lib

log = logging.getLogger("cbench")

DEMO_RELEASE = "2026q4"
DEMO_METHODS = ("public_only", "private_prediction", "invisible_ink",
                "cluster_median", "dp_finetune")
DEMO_EPSILONS = (10.0,)


def demo_config(workdir: str) -> runner.BenchmarkConfig:
  return runner.BenchmarkConfig(
      release_dir=os.path.join(workdir, "release"),
      public_world_dir=os.path.join(workdir, "public_world"),
      methods=DEMO_METHODS, epsilons=DEMO_EPSILONS, num_docs=64,
      recipe="demo",
      # A CPU-sized DP fine-tune (the method's default is 200 steps).
      method_options=(("dp_finetune", (("steps", 60), ("batch_size", 64))),))


def run_demo(workdir: str) -> dict:
  """Runs (or resumes) the demo; returns timings and the result rows."""
  t0 = time.monotonic()
  config = demo_config(workdir)
  if not os.path.exists(os.path.join(config.release_dir, "manifest.json")):
    log.info("building the demo release %s", DEMO_RELEASE)
    release_lib.build_release(
        release_lib.make_config("geminon", DEMO_RELEASE, "demo"),
        config.release_dir, overwrite=os.path.exists(config.release_dir))
  if not os.path.exists(os.path.join(config.public_world_dir, "manifest.json")):
    log.info("building the public world")
    release_lib.build_public_world(config.public_world_dir,
                                   overwrite=os.path.exists(config.public_world_dir))
  rows = runner.run_benchmark(config, os.path.join(workdir, "benchmark"))
  return {"rows": rows, "seconds": time.monotonic() - t0,
          "results_md": os.path.join(workdir, "benchmark", "results.md")}
