r"""Standardized harness fine-tune of the base model on any {"text"} JSONL.

  python -m experiments.train --base=W --corpus=FILE.jsonl --workdir=W2 \
      [--config=tiny] [--override=harness.finetune.num_steps=300]

``--model=gemma3_270m`` (or ``smollm2_135m``) fine-tunes that pretrained
model instead of a ``--base`` directory (no public-world replay), with LoRA
adapters on the frozen weights by default (rank 8;
`HarnessConfig.finetune_recipe`). The recipe is the config's harness part
(`cbench.configs`; it must match the base model's).
``--lora_rank=R`` overrides the recipe's rank (0: every parameter).

AdamW (b2 0.995, weight decay 0.1), 10% warmup, cosine to 0, fixed sequence
length and token budget per recipe. Killed and restarted, it resumes and ends
with the same parameters as an uninterrupted run.
"""

import json

from absl import flags

from cbench.harness import finetune
from cbench.models import gguf_loader
from experiments import common

_BASE = flags.DEFINE_string("base", None, "Base model directory.")
_CORPUS = flags.DEFINE_string("corpus", None, "JSONL corpus with a 'text' field.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output model directory.")
_CONFIG = common.define_config_flags("tiny")
_MODEL = flags.DEFINE_enum(
    "model", "tiny", ["tiny", *gguf_loader.PRETRAINED_NAMES],
    "tiny: fine-tune the --base directory; otherwise that pretrained model.")
_LORA_RANK = flags.DEFINE_integer(
    "lora_rank", None,
    "LoRA rank (0: full fine-tuning). Default: the recipe's (LoRA rank 8 for "
    "a pretrained --model, full fine-tuning of a --base directory).")
flags.mark_flags_as_required(["corpus", "workdir"])


def main(argv):
  del argv
  base = common.model_or_dir("base", _BASE.value, _MODEL.value)
  harness = _CONFIG.harness()
  finetune.check_base_recipe(harness, base)
  recipe = harness.finetune_recipe(base, _LORA_RANK.value)
  info = finetune.finetune(base, _CORPUS.value, _WORKDIR.value, recipe)
  print(json.dumps({"workdir": _WORKDIR.value, "train": info.get("train")}, indent=2))


if __name__ == "__main__":
  common.run(main)
