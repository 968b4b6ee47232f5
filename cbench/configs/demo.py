r"""`make demo`: the whole benchmark grid on the `mini` release, on CPU.

  make demo        # = python -m experiments.demo --workdir=demo_out

Builds the `mini` release 2026q4 (6 public and 6 sensitive creatures,
1,011 train documents) and the public world, pretrains the tiny model (400
steps of 8 x 256 tokens), and runs 8 cells: the base model, the real-corpus
fine-tune, `public_only`, the four DP methods at ε = 10 and DP fine-tuning
at ε = ∞. Every fine-tune is 200 steps of 8 x 256 tokens.

Expected (2 CPU cores, quiet, measured): 13.4 min plus the install; public
test exact match over 39 questions: base 0.0%, real 30.8% [15.4, 46.2],
dp_finetune at ε = ∞ 28.2% [15.4, 43.6], every ε = 10 row 0.0-2.6%;
sensitive test at most 5.4% (two guesses of 37, the base model's level)
under DP. The table and what it shows are in README "`make demo`".
"""

import math

from cbench.benchmark.demo import DemoConfig
from cbench.benchmark.runner import BenchmarkConfig
from cbench.harness.recipes import HarnessConfig
from cbench.harness.recipes import tiny_family


def harness() -> HarnessConfig:
  # The tiny model on the whole grid's 2-core budget: batch 8 everywhere
  # (bases pretrained for 500 steps at batch 16 and 32 fine-tuned alike:
  # the step count mattered, not the tokens) and a `mini` practice world
  # (6 creatures), which doubled the real-corpus score of a 200-step
  # fine-tune over the 'demo' one (README "Status").
  return tiny_family("demo", pretrain_steps=400, finetune_steps=200,
                     finetune_lr=5e-3, finetune_batch_size=8,
                     pretrain_batch_size=8, practice_size="mini")


def get_config() -> DemoConfig:
  return DemoConfig(
      release_id="2026q4", size="mini",
      benchmark=BenchmarkConfig(
          harness=harness(),
          methods=("public_only", "private_prediction", "invisible_ink",
                   "cluster_median", "dp_finetune"),
          epsilons=(10.0,),
          # The non-private synthetic row: DP fine-tuning at ε = ∞.
          method_epsilons=(("dp_finetune", (10.0, math.inf)),),
          # 16 documents per private-prediction cell: each costs (s + 1)
          # model rows per token (~1 s per document on 2 cores at s = 32).
          num_docs=16,
          # DP fine-tuning's generator trained like the harness (200 steps,
          # expected batch 8, LR 5e-3; the method's defaults are 200 x 64
          # at 1e-3) and sampled at temperature 0.7; sampling is cheap (512
          # documents in ~15 s). At ε = ∞ this carried 28% of the public
          # facts to the harness where a 60 x 32 generator at temperature 1
          # carried 0-8% (README "Status").
          method_options=(("dp_finetune", (("steps", 200),
                                           ("batch_size", 8),
                                           ("pad_unit", 8),
                                           ("learning_rate", 5e-3),
                                           ("temperature", 0.7),
                                           ("num_docs", 512))),)))
