r"""The unit-test recipe: a 2-layer model, 4 steps of everything.

  python -m experiments.pretrain_base --public_world=PW --workdir=BASE \
      --config=micro
  python -m experiments.run_benchmark --config=micro --release=DIR \
      --methods=public_only --workdir=W

Expected: seconds per stage on 2 CPU cores; accuracy is meaningless (4
steps teach nothing). The harness, runner and binary tests build their base
model with it (`cbench.testing.fixtures.micro_base_model`).
"""

from cbench.benchmark.runner import BenchmarkConfig
from cbench.harness.recipes import HarnessConfig
from cbench.harness.recipes import PretrainConfig
from cbench.train.lm_train import TrainRecipe


def harness() -> HarnessConfig:
  return HarnessConfig(
      name="micro",
      pretrain=PretrainConfig(
          model="micro", vocab_size=400, qa_repeats=1,
          # 2048 positions: room for a News prompt (three shots + question).
          model_overrides=(("max_len", 2048),),
          practice_size="demo", practice_qa_repeats=1,
          train=TrainRecipe(num_steps=4, batch_size=8, seq_len=64,
                            log_every=2, checkpoint_every=2)),
      finetune=TrainRecipe(num_steps=4, batch_size=8, seq_len=64,
                           replay_fraction=0.25,
                           log_every=2, checkpoint_every=2))


def get_config() -> BenchmarkConfig:
  return BenchmarkConfig(harness=harness(), num_docs=2)
