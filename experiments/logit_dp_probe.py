r"""Logit-DP vs naive DP-SGD vs non-private contrastive pre-training, probed.

  python -m experiments.logit_dp_probe --out_dir=logit_dp_probe_out \
      [--epsilons=1,8,64] [--batch_size=256] [--num_train=131072] \
      [--epochs=1] [--seed=0] [--timing_reps=10]

Generates an image-like dataset (no downloads), pre-trains a small MLP
encoder with the InfoNCE loss three ways at equal (epsilon, delta) per
target epsilon, fits a linear probe on the frozen representation and writes
results.json, results.md and probe_accuracy.png into --out_dir
(`cbench.contrastive.probe.run_comparison`). Prints the table.
"""

import dataclasses

from absl import flags

from cbench._validate import CbenchError
from cbench.contrastive import probe
from experiments import common

_DEFAULT = probe.ProbeConfig()
_OUT_DIR = flags.DEFINE_string("out_dir", _DEFAULT.out_dir,
                               "Output directory.")
_EPSILONS = flags.DEFINE_list(
    "epsilons", [f"{e:g}" for e in _DEFAULT.epsilons],
    "Target epsilons of the DP runs (comma-separated).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", _DEFAULT.batch_size,
                                   "Pairs per step (n).")
_NUM_TRAIN = flags.DEFINE_integer("num_train", _DEFAULT.num_train,
                                  "Unlabelled (private) pre-training records.")
_EPOCHS = flags.DEFINE_integer("epochs", _DEFAULT.epochs,
                               "Passes over the pre-training records.")
_SEED = flags.DEFINE_integer("seed", _DEFAULT.seed, "Seed.")
_TIMING_REPS = flags.DEFINE_integer(
    "timing_reps", _DEFAULT.timing_reps,
    "Jitted steps timed per method (0: no step-time measurement).")


def main(argv):
  if len(argv) > 1:
    raise CbenchError(f"Unexpected arguments: {argv[1:]}")
  try:
    epsilons = tuple(float(e) for e in _EPSILONS.value)
  except ValueError as e:
    raise CbenchError(f"--epsilons={_EPSILONS.value}: {e}") from e
  config = dataclasses.replace(
      _DEFAULT, out_dir=_OUT_DIR.value, epsilons=epsilons,
      batch_size=_BATCH_SIZE.value, num_train=_NUM_TRAIN.value,
      epochs=_EPOCHS.value, seed=_SEED.value, timing_reps=_TIMING_REPS.value)
  result = probe.run_comparison(config)
  print(result["markdown"])
  print(f"logit_dp_probe finished in {result['seconds'] / 60:.1f} min; "
        f"outputs in {config.out_dir}")


if __name__ == "__main__":
  common.run(main)
