r"""Standardized harness fine-tune of the base model on any {"text"} JSONL.

  python -m experiments.train --base=W --corpus=FILE.jsonl --workdir=W2 [--recipe=tiny]

AdamW (b2 0.995, weight decay 0.1), 10% warmup, cosine to 0, fixed sequence
length and token budget per recipe. Killed and restarted, it resumes and ends
with the same parameters as an uninterrupted run.
"""

import json

from absl import flags

from cbench.harness import finetune
from cbench.harness import recipes
from experiments import common

_BASE = flags.DEFINE_string("base", None, "Base model directory.")
_CORPUS = flags.DEFINE_string("corpus", None, "JSONL corpus with a 'text' field.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output model directory.")
_RECIPE = flags.DEFINE_enum("recipe", "tiny", list(recipes.RECIPE_NAMES),
                            "Harness recipe (must match the base model's).")
flags.mark_flags_as_required(["base", "corpus", "workdir"])


def main(argv):
  del argv
  cfg = recipes.get_harness_config(_RECIPE.value)
  info = finetune.finetune(_BASE.value, _CORPUS.value, _WORKDIR.value, cfg.finetune)
  print(json.dumps({"workdir": _WORKDIR.value, "train": info.get("train")}, indent=2))


if __name__ == "__main__":
  common.run(main)
