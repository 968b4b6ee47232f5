r"""Coarse-to-fine vs full-resolution DP image generation (issue #25).

  python -m experiments.images_c2f --out=DIR
      [--config=default|accelerator|digits] [--seed=0]

Bayrooti et al.'s two-stage method (DP fine-tuning of the project's
transformer on the coarse wavelet band of private images, public stage 2
for the fine bands) against DP fine-tuning on full-resolution tokens, at
ε ∈ {1, 10, ∞} (`cbench.images.experiment.run_images`). ``default``
(generated 16x16 images, micro transformer) is sized for two CPU cores;
``accelerator`` (generated 32x32, tiny transformer, 10k private records)
for one GPU; ``digits`` (scikit-learn's bundled 8x8 handwritten digits:
private 5-9, public 0-4; needs ``pip install 'cbench[images]'``) for two
CPU cores. Writes DIR/images_c2f.{json,md}, DIR/images_samples.png,
DIR/images_curves.png and DIR/runs/*/ledger.jsonl; a rerun in DIR resumes.
Prints one line per row and the wall time.
"""

import dataclasses

from absl import flags

from cbench._validate import CbenchError
from cbench.images import experiment
from experiments import common

_OUT = flags.DEFINE_string("out", None, "Output directory.")
_CONFIG = flags.DEFINE_enum("config", "default", list(experiment.CONFIGS),
                            "Named grid (image world and size).")
_SEED = flags.DEFINE_integer("seed", 0, "World (or digits split), training "
                             "and sampling seed (>= 0).")
flags.mark_flags_as_required(["out"])


def main(argv):
  if len(argv) > 1:
    raise CbenchError(f"Unexpected arguments: {argv[1:]}")
  config = dataclasses.replace(experiment.named_config(_CONFIG.value),
                               seed=_SEED.value)
  s = experiment.run_images(config, _OUT.value)
  for r in s["rows"]:
    print(f"{r['method']} ε={r['target_epsilon']}: ledger ε="
          f"{r['ledger_epsilon']:.3g}, Fréchet {r['frechet']:.3f}, "
          f"downstream acc {r['downstream_accuracy']:.3f}")
  print(f"{s['wall_seconds']:.0f} s wall, {s['cpu_seconds']:.0f} CPU s; "
        f"wrote {_OUT.value}")


if __name__ == "__main__":
  common.run(main)
