"""The harness recipe: how a base model is pretrained and how any corpus is
fine-tuned (frozen dataclasses; the named recipes are configs).

`HarnessConfig` holds every number of the benchmark's measuring instrument;
the standard ones are built by `tiny_family` in the config files of
`cbench.configs` (``micro``, ``demo``, ``tiny``, ``accelerator``), so a run
names its recipe with ``--config`` and changes a field with ``--override``.

Which fine-tuning recipe a base gets (`finetune_recipe`): a base model
directory built by `pretrain` is fine-tuned with the recipe's `finetune`
(every parameter, public-world replay); a pretrained model name
('gemma3_270m', 'smollm2_135m') with `HarnessConfig.pretrained_finetune`,
by default the same step/batch/sequence budget with LoRA (rank
`PRETRAINED_LORA_RANK`, alpha `PRETRAINED_LORA_ALPHA`, peak learning rate
`PRETRAINED_LORA_LR`) on the frozen pretrained weights and no replay (a
pretrained model has no public-world rows).
"""

from __future__ import annotations

import dataclasses

from cbench.models import model_store
from cbench.train.lm_train import TrainRecipe
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
  pair_fraction: float = 0.5     # Copy-world document pairs, per document.
  reading_fraction: float = 0.0  # Copy-world document + Q/A texts, per doc.
  num_shots: int = 7             # Few-shot exemplars stored for scoring.
  # The practice world replayed in fine-tuning (`pretrain.practice_texts`,
  # a `release.SIZES` name); "" replays the public-world pretraining rows.
  practice_size: str = ""
  practice_qa_repeats: int = 16

  def to_dict(self) -> dict:
    # TrainRecipe.to_dict, not asdict: full-training bindings stay as before
    # the LoRA fields existed.
    return {**dataclasses.asdict(self), "train": self.train.to_dict()}


# LoRA fine-tuning of a pretrained model. The reference recipe (Gemma 3 1B,
# LoRA rank 128) uses 2e-4; a 270M model with rank-8 adapters and ~1k steps
# gets a larger peak rate. Not tuned for accuracy yet.
PRETRAINED_LORA_RANK = 8
PRETRAINED_LORA_ALPHA = 16.0
PRETRAINED_LORA_LR = 1e-3


def pretrained_variant(recipe: TrainRecipe) -> TrainRecipe:
  """`recipe`'s budget with LoRA on a frozen pretrained base, no replay."""
  return dataclasses.replace(
      recipe, lora_rank=PRETRAINED_LORA_RANK,
      lora_alpha=PRETRAINED_LORA_ALPHA, replay_fraction=0.0,
      optimizer=dataclasses.replace(recipe.optimizer,
                                    peak_learning_rate=PRETRAINED_LORA_LR))


@dataclasses.dataclass(frozen=True, kw_only=True)
class HarnessConfig:
  """Pretraining plus the fixed fine-tuning recipe for any corpus.

  Attributes:
    name: the recipe's name.
    pretrain: how the base model is built (when the release's track builds
      it: Geminon pretrains on its public world).
    base_model: a pretrained model name to fine-tune instead ("": the
      track's own base model, or ``--base``).
    finetune: fine-tuning recipe for that base model (a directory).
    pretrained_finetune: fine-tuning recipe for a pretrained model name;
      None means ``pretrained_variant(finetune)``.
  """
  name: str
  finetune: TrainRecipe
  pretrain: PretrainConfig | None = None
  base_model: str = ""
  pretrained_finetune: TrainRecipe | None = None

  def finetune_recipe(self, base: str, lora_rank: int | None = None
                      ) -> TrainRecipe:
    """The fine-tuning recipe for `base` (see the module doc).

    Args:
      base: a base model directory or a pretrained model name
        (`model_store.is_pretrained`).
      lora_rank: override of the recipe's ``lora_rank`` (0: full
        fine-tuning); None keeps it.

    Raises:
      CbenchError: a negative or non-integer `lora_rank`.
    """
    if model_store.is_pretrained(base):
      recipe = self.pretrained_finetune or pretrained_variant(self.finetune)
    else:
      recipe = self.finetune
    if lora_rank is not None:
      recipe = dataclasses.replace(recipe, lora_rank=lora_rank)
    return recipe


TINY_MODEL = (("d_model", 192), ("num_heads", 4), ("num_kv_heads", 4),
              ("head_dim", 48), ("mlp_dim", 768), ("max_len", 320))


def tiny_family(name: str, *, pretrain_steps: int, finetune_steps: int,
                finetune_lr: float, finetune_batch_size: int = 32,
                pretrain_batch_size: int = 32, practice_size: str = "demo",
                model: str = "tiny",
                model_overrides: tuple[tuple[str, object], ...] = TINY_MODEL,
                vocab_size: int = 2048, seq_len: int = 256,
                pretrain_lr: float = 2e-3) -> HarnessConfig:
  """A cbench transformer, its pretraining data mix, and a step budget.

  Pretraining: the public world's documents and Q/A, one copy-world
  document pair per document and a reading text for every other one
  (`pretrain.pretraining_texts`). Fine-tuning batches are half corpus rows,
  half practice-world rows (a release of fresh creatures of size
  `practice_size`, 'demo': ~5,400 documents and 30 public creatures,
  'mini': ~1,100 and 6, plus 16 passes of Q/A about its public creatures;
  `pretrain.practice_texts`). Every run of the CPU recipes (`tiny`, `demo`)
  uses the 6M-parameter tiny model (`TINY_MODEL`).
  """
  return HarnessConfig(
      name=name,
      pretrain=PretrainConfig(
          model=model, model_overrides=model_overrides,
          vocab_size=vocab_size, pair_fraction=1.0, reading_fraction=0.5,
          practice_size=practice_size, practice_qa_repeats=16,
          train=TrainRecipe(num_steps=pretrain_steps,
                            batch_size=pretrain_batch_size,
                            seq_len=seq_len,
                            optimizer=OptimizerConfig(
                                peak_learning_rate=pretrain_lr))),
      finetune=TrainRecipe(num_steps=finetune_steps,
                           batch_size=finetune_batch_size,
                           seq_len=seq_len, replay_fraction=0.5,
                           optimizer=OptimizerConfig(
                               peak_learning_rate=finetune_lr)))
