r"""Pretrains the base model on the public world.

  python -m experiments.pretrain_base --public_world=DIR --workdir=W \
      [--config=tiny] [--override=harness.pretrain.train.num_steps=800]

Deterministic and cached: re-running with a finished workdir does nothing.
Writes W/{tokenizer.model,model_config.json,fewshot.json,params/,DONE.json,
metrics.jsonl}.
"""

import json

from absl import flags

from cbench._validate import CbenchError
from cbench.tracks.geminon import pretrain
from experiments import common

_PUBLIC_WORLD = flags.DEFINE_string("public_world", None, "Public world directory.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output model directory.")
_CONFIG = common.define_config_flags("tiny")
flags.mark_flags_as_required(["public_world", "workdir"])


def main(argv):
  del argv
  cfg = _CONFIG.harness()
  if cfg.pretrain is None:
    raise CbenchError(f"--config={cfg.name} fine-tunes a pretrained model "
                      f"({cfg.base_model}); it has nothing to pretrain.")
  info = pretrain.pretrain_base(_PUBLIC_WORLD.value, _WORKDIR.value,
                                cfg.pretrain)
  print(json.dumps({"workdir": _WORKDIR.value, "num_params": info["num_params"],
                    "train": info["train"]}, indent=2))


if __name__ == "__main__":
  common.run(main)
