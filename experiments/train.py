r"""Standardized harness fine-tune of the base model on any {"text"} JSONL.

  python -m experiments.train --base=W --corpus=FILE.jsonl --workdir=W2 [--recipe=tiny]

``--model=gemma3_270m`` (or ``smollm2_135m``) fine-tunes that pretrained
model instead of a ``--base`` directory (no public-world replay).

AdamW (b2 0.995, weight decay 0.1), 10% warmup, cosine to 0, fixed sequence
length and token budget per recipe. Killed and restarted, it resumes and ends
with the same parameters as an uninterrupted run.
"""

import json

from absl import flags

from cbench._validate import CbenchError
from cbench.harness import finetune
from cbench.harness import recipes
from cbench.models import gguf_loader
from experiments import common

_BASE = flags.DEFINE_string("base", None, "Base model directory.")
_CORPUS = flags.DEFINE_string("corpus", None, "JSONL corpus with a 'text' field.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output model directory.")
_RECIPE = flags.DEFINE_enum("recipe", "tiny", list(recipes.RECIPE_NAMES),
                            "Harness recipe (must match the base model's).")
_MODEL = flags.DEFINE_enum(
    "model", "tiny", ["tiny", *gguf_loader.PRETRAINED_NAMES],
    "tiny: fine-tune the --base directory; otherwise that pretrained model.")
flags.mark_flags_as_required(["corpus", "workdir"])


def main(argv):
  del argv
  base = _BASE.value
  if _MODEL.value != "tiny":
    if base:
      raise CbenchError(f"Give --base or --model={_MODEL.value}, not both.")
    base = _MODEL.value
  if not base:
    raise CbenchError("--base is required (or --model=<pretrained>).")
  cfg = recipes.get_harness_config(_RECIPE.value)
  info = finetune.finetune(base, _CORPUS.value, _WORKDIR.value, cfg.finetune)
  print(json.dumps({"workdir": _WORKDIR.value, "train": info.get("train")}, indent=2))


if __name__ == "__main__":
  common.run(main)
