r"""The full benchmark recipe for one accelerator host (GPU or TPU VM).

  python -m experiments.make_release --track=geminon --public_world --out=PW
  python -m experiments.make_release --track=geminon --release=2026q4 \
      --size=small --out=R
  python -m experiments.run_benchmark --config=accelerator --release=R \
      --public_world=PW --workdir=W
  # on a pod or cluster: launch/ (README "Running on a cluster")

The `small` model (25M parameters, bfloat16 compute) pretrained on the
public world for 4,000 steps of 64 x 256 tokens, the `small` release (600
creatures, ~180k train documents), a fine-tune of 8,000 steps of 64 x 256
tokens (half of each batch from the practice world: about 1.4 passes over
the corpus), every method at ε ∈ {1, 4, 10, ∞}: 2,000 documents per
private-prediction cell, and DP fine-tuning with expected batch 512 for
2,000 steps (sampling rate ≈ 0.003) writing 20,000 documents.

Expected: not measured yet (no accelerator has run this config). The CPU
recipes bound it from below: `tiny` reaches 93% public-test exact match on
the 36-creature `demo` release; DP rows need this config's batch sizes
(DP-SGD noise std per coordinate σC/B falls with B), which 2 CPU cores
cannot afford. Record the result here when it has been run.
"""

import math

from cbench.benchmark.runner import BenchmarkConfig
from cbench.harness.recipes import HarnessConfig
from cbench.harness.recipes import tiny_family


def harness() -> HarnessConfig:
  return tiny_family("accelerator", model="small", model_overrides=(),
                     pretrain_steps=4000, pretrain_batch_size=64,
                     pretrain_lr=1e-3, finetune_steps=8000,
                     finetune_batch_size=64, finetune_lr=2e-3)


def get_config() -> BenchmarkConfig:
  return BenchmarkConfig(
      harness=harness(),
      methods=("public_only", "private_prediction", "invisible_ink",
               "cluster_median", "dp_finetune"),
      epsilons=(1.0, 4.0, 10.0, math.inf), num_docs=2000,
      method_options=(("dp_finetune", (("steps", 2000), ("batch_size", 512),
                                       ("learning_rate", 1e-3),
                                       ("temperature", 0.7),
                                       ("num_docs", 20000))),))
