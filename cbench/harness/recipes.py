"""The standardized recipes: base-model pretraining and harness fine-tuning.

Named recipes keep every number of the benchmark's measuring instrument in
one place. `tiny` is the CPU default; larger ones are for accelerators.
"""

from __future__ import annotations

import dataclasses

from cbench import _validate
from cbench.harness.lm_train import TrainRecipe
from cbench.train.optim import OptimizerConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class PretrainConfig:
  """How the base model is built from the public world."""
  model: str = "tiny"
  model_overrides: tuple[tuple[str, object], ...] = ()
  vocab_size: int = 2048
  train: TrainRecipe
  qa_pairs_per_block: int = 6   # Q/A pairs per training row.
  qa_repeats: int = 8            # Reshuffled passes over the public-world QA.
  pair_fraction: float = 0.5     # Document pairs (in-context copying), per doc.
  num_shots: int = 7             # Few-shot exemplars stored for scoring.

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HarnessConfig:
  """Pretraining plus the fixed fine-tuning recipe for any corpus."""
  name: str
  pretrain: PretrainConfig
  finetune: TrainRecipe


_TINY_MODEL = (("d_model", 192), ("num_heads", 4), ("num_kv_heads", 4),
               ("head_dim", 48), ("mlp_dim", 768), ("max_len", 320))

_RECIPES = {
    # CPU default (2 cores): see README "Harness" for measured accuracy/time.
    "tiny": HarnessConfig(
        name="tiny",
        pretrain=PretrainConfig(
            model="tiny", model_overrides=_TINY_MODEL, vocab_size=2048,
            train=TrainRecipe(num_steps=1500, batch_size=32, seq_len=256,
                              optimizer=OptimizerConfig(peak_learning_rate=2e-3))),
        finetune=TrainRecipe(num_steps=1000, batch_size=32, seq_len=256,
                             replay_fraction=0.25,
                             optimizer=OptimizerConfig(peak_learning_rate=1e-3))),
    # `make demo`: the tiny model on a CPU-sized budget (whole grid on 2 cores).
    "demo": HarnessConfig(
        name="demo",
        pretrain=PretrainConfig(
            model="tiny", model_overrides=_TINY_MODEL, vocab_size=2048,
            train=TrainRecipe(num_steps=200, batch_size=32, seq_len=256,
                              optimizer=OptimizerConfig(peak_learning_rate=2e-3))),
        finetune=TrainRecipe(num_steps=60, batch_size=32, seq_len=256,
                             replay_fraction=0.25,
                             optimizer=OptimizerConfig(peak_learning_rate=2e-3))),
    # Unit tests: seconds, not accuracy.
    "micro": HarnessConfig(
        name="micro",
        pretrain=PretrainConfig(
            model="micro", vocab_size=400, qa_repeats=1,
            model_overrides=(("max_len", 512),),
            train=TrainRecipe(num_steps=4, batch_size=8, seq_len=64,
                              log_every=2, checkpoint_every=2)),
        finetune=TrainRecipe(num_steps=4, batch_size=8, seq_len=64,
                             replay_fraction=0.25,
                             log_every=2, checkpoint_every=2)),
}

RECIPE_NAMES = tuple(_RECIPES)


def get_harness_config(name: str) -> HarnessConfig:
  _validate.one_of("recipe", name, RECIPE_NAMES)
  return _RECIPES[name]
