r"""ε of cyclic DP-SGD: all iterates vs last iterate (stated assumptions).

  python -m experiments.cyclic_accounting --out=DIR \
      [--num_examples=60000 --batch_size=600] [--epochs=1,2,5,10,20,50] \
      [--noise_multipliers=0.5,1,2,4] [--delta=1e-5] \
      [--relation=replace_one|zero_out] [--smoothness=0.26 --step_size=4 \
      --lipschitz=1 --clip_norm=1 --update=sgd]

Writes DIR/cyclic_accounting.{json,md,png} (`cbench.privacy.cyclic_report`)
and prints the markdown table. The last-iterate column is conditional on
the assumption flags (defaults: L2-regularised logistic regression with
||x|| <= 1 and weight 0.01, so β = 0.01 + 1/4); a violated one (e.g.
--step_size > 2/--smoothness) is a one-line error.
"""

from absl import flags

from cbench._validate import CbenchError
from cbench.privacy import cyclic
from cbench.privacy import cyclic_report
from cbench.privacy import last_iterate
from experiments import common

_OUT = flags.DEFINE_string("out", None, "Output directory.")
_N = flags.DEFINE_integer("num_examples", 60000, "Public dataset size N.")
_B = flags.DEFINE_integer("batch_size", 600, "Batch size b (normaliser).")
_EPOCHS = flags.DEFINE_list("epochs", ["1", "2", "5", "10", "20", "50"],
                            "Epoch counts.")
_SIGMAS = flags.DEFINE_list("noise_multipliers", ["0.5", "1", "2", "4"],
                            "Noise multipliers σ (std / sensitivity).")
_DELTA = flags.DEFINE_float("delta", 1e-5, "δ.")
_RELATION = flags.DEFINE_enum("relation", "replace_one",
                              list(cyclic.RELATIONS), "Neighbouring relation.")
_SMOOTH = flags.DEFINE_float("smoothness", 0.26,
                             "β of every per-step objective (assumption).")
_STEP = flags.DEFINE_float("step_size", 4.0, "Constant step size η.")
_LIP = flags.DEFINE_float("lipschitz", 1.0,
                          "Per-example gradient norm bound L (assumption).")
_CLIP = flags.DEFINE_float("clip_norm", 1.0, "Clip norm C (>= L).")
_UPDATE = flags.DEFINE_enum("update", "sgd", list(last_iterate.UPDATES),
                            "Update rule.")
flags.mark_flags_as_required(["out"])


def _numbers(values, cast, flag):
  try:
    return [cast(v) for v in values]
  except ValueError as e:
    raise CbenchError(f"--{flag}={values}: {e}") from e


def main(argv):
  if len(argv) > 1:
    raise CbenchError(f"Unexpected arguments: {argv[1:]}")
  assumptions = last_iterate.LastIterateAssumptions(
      convex=True, smoothness=_SMOOTH.value, step_size=_STEP.value,
      lipschitz=_LIP.value, clip_norm=_CLIP.value, update=_UPDATE.value,
      only_last_iterate_released=True)
  summary = cyclic_report.write_report(
      _OUT.value, num_examples=_N.value, batch_size=_B.value,
      epochs=_numbers(_EPOCHS.value, int, "epochs"),
      noise_multipliers=_numbers(_SIGMAS.value, float, "noise_multipliers"),
      delta=_DELTA.value, relation=_RELATION.value, assumptions=assumptions)
  with open(summary["paths"]["md"], encoding="utf-8") as f:
    print(f.read())
  print(f"wall: {summary['wall_seconds']:.1f} s; wrote "
        f"{', '.join(summary['paths'].values())}")


if __name__ == "__main__":
  common.run(main)
