r"""ERM on synthetic-contaminated data (Amin et al. 2026, arXiv 2601.15468).

  python -m experiments.erm_limits --out=DIR [--seed=0]

Simulates mean estimation (ERM's pooled mean vs generation-weighted
estimator, ERM's regime change in α) and threshold learning (repeated ERM
vs a reweighted learner) with the defaults of
`cbench.provenance.report.ErmLimitsConfig` (about ten seconds on two
cores). Writes DIR/erm_limits.{json,md} and DIR/erm_limits_{mean,pac}.png
and prints a one-line summary.
"""

from absl import flags

from cbench._validate import CbenchError
from cbench.provenance import report
from experiments import common

_OUT = flags.DEFINE_string("out", None, "Output directory.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of both simulations (>= 0).")
flags.mark_flags_as_required(["out"])


def main(argv):
  if len(argv) > 1:
    raise CbenchError(f"Unexpected arguments: {argv[1:]}")
  s = report.run_erm_limits(report.ErmLimitsConfig(seed=_SEED.value),
                            _OUT.value)
  ratios = ", ".join(f"{a}: {v:.2f}" for a, v in s["mean_ratio_last"].items())
  pac_last = ", ".join(f"{a}: {v['erm']:.4f} vs {v['reweighted']:.4f}"
                       for a, v in s["pac_last_error"].items())
  print(f"alpha*={s['alpha_star']:.3f} (paper: 1/2); claims held "
        f"{s['claims_held']}; ERM/weighted MSE by alpha {{{ratios}}}; PAC "
        f"error ERM vs reweighted {{{pac_last}}}; {s['wall_seconds']:.1f} s; "
        f"wrote {_OUT.value}")


if __name__ == "__main__":
  common.run(main)
