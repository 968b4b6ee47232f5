"""The embedded default run behind `make demo`.

Builds the `mini` release (6 public and 6 sensitive creatures, ~1k
documents) and the public world, pretrains the base model, and runs the
benchmark grid on CPU: reference rows (untouched base model, fine-tune on
the real corpus), every synthesis method at ε = 10, and DP fine-tuning also
at ε = ∞ (the same code path without noise or clipping's privacy claim).
Every stage is cached in the workdir, so a second `make demo` only prints.
"""

from __future__ import annotations

import logging
import math
import os
import time

from cbench.benchmark import runner
from cbench.corpus import release as release_lib

log = logging.getLogger("cbench")

DEMO_RELEASE = "2026q4"
DEMO_METHODS = ("public_only", "private_prediction", "invisible_ink",
                "cluster_median", "dp_finetune")
DEMO_EPSILONS = (10.0,)
# The non-private synthetic row: DP fine-tuning's generator at ε = ∞.
DEMO_METHOD_EPSILONS = (("dp_finetune", (10.0, math.inf)),)
DEMO_SIZE = "mini"


def demo_config(workdir: str) -> runner.BenchmarkConfig:
  return runner.BenchmarkConfig(
      release_dir=os.path.join(workdir, "release"),
      public_world_dir=os.path.join(workdir, "public_world"),
      methods=DEMO_METHODS, epsilons=DEMO_EPSILONS,
      method_epsilons=DEMO_METHOD_EPSILONS,
      # 16 documents per private-prediction cell: each costs (s + 1) model
      # rows per token (~1 s per document on 2 cores at s = 32).
      num_docs=16,
      recipe="demo",
      # DP fine-tuning's generator trained like the harness (200 steps,
      # expected batch 8, LR 5e-3; the method's defaults are 200 x 64 at
      # 1e-3) and sampled at temperature 0.7; sampling is cheap (512
      # documents in ~15 s). At ε = ∞ this carried 28% of the public facts
      # to the harness where a 60 x 32 generator at temperature 1 carried
      # 0-8% (README "Status").
      method_options=(("dp_finetune", (("steps", 200), ("batch_size", 8),
                                       ("pad_unit", 8),
                                       ("learning_rate", 5e-3),
                                       ("temperature", 0.7),
                                       ("num_docs", 512))),))


def run_demo(workdir: str) -> dict:
  """Runs (or resumes) the demo; returns timings and the result rows."""
  t0 = time.monotonic()
  config = demo_config(workdir)
  if not os.path.exists(os.path.join(config.release_dir, "manifest.json")):
    log.info("building the demo release %s", DEMO_RELEASE)
    release_lib.build_release(
        release_lib.make_config("geminon", DEMO_RELEASE, DEMO_SIZE),
        config.release_dir, overwrite=os.path.exists(config.release_dir))
  if not os.path.exists(os.path.join(config.public_world_dir, "manifest.json")):
    log.info("building the public world")
    release_lib.build_public_world(config.public_world_dir,
                                   overwrite=os.path.exists(config.public_world_dir))
  rows = runner.run_benchmark(config, os.path.join(workdir, "benchmark"))
  return {"rows": rows, "seconds": time.monotonic() - t0,
          "results_md": os.path.join(workdir, "benchmark", "results.md")}
