r"""Curation rounds with a weak verifier (Amin et al. 2025, arXiv 2502.08924).

  python -m experiments.curation_rounds --out=DIR [--base=BASE] \
      [--release=REL] [--rounds=2] [--gamma=0.1] [--budget=64] \
      [--weighted] [--seed=0]

Round 0 fine-tunes the base model on a real slice of a Geminon release
(200 documents); each later round the previous model writes 192 short
documents, a γ-noisy labeler checks `--budget` of them (no curation,
random, hardest-first), the kept ones join the next corpus. Defaults of
`cbench.curation.rounds.CurationConfig`: the `mini` release 2026q4 (built
into DIR/release unless --release) and the tiny model with the `demo`
pretraining (built into DIR/base unless --base; a `make demo` base
serves), 150-step fine-tunes. Writes DIR/curation_rounds.{json,md,png}
and prints a one-line summary. ``--weighted`` adds the arm
``none+weighted``: no verification, synthetic documents weighted 0.5.
"""

from absl import flags

from cbench._validate import CbenchError
from cbench.curation import report
from cbench.curation import rounds
from experiments import common

_OUT = flags.DEFINE_string("out", None, "Output (and work) directory.")
_RELEASE = flags.DEFINE_string("release", "", "A Geminon release directory "
                               "(default: build the mini release in --out).")
_BASE = flags.DEFINE_string("base", "", "A finished base model directory "
                            "(default: pretrain one in --out).")
_PUBLIC_WORLD = flags.DEFINE_string("public_world", "", "The public world "
                                    "for pretraining (default: built).")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Curation rounds after round 0.")
_GAMMA = flags.DEFINE_float("gamma", 0.1, "The labeler's flip rate, in "
                            "[0, 0.5).")
_BUDGET = flags.DEFINE_integer("budget", 64, "Labels per round and arm.")
_WEIGHTED = flags.DEFINE_bool("weighted", False, "Add the arm "
                              "none+weighted (provenance-weighted "
                              "fine-tuning, no verification).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed (>= 0).")
flags.mark_flags_as_required(["out"])


def main(argv):
  if len(argv) > 1:
    raise CbenchError(f"Unexpected arguments: {argv[1:]}")
  arms = rounds.CurationConfig().policies + (
      ("none+weighted",) if _WEIGHTED.value else ())
  s = report.run_curation(rounds.CurationConfig(
      release_dir=_RELEASE.value, base_dir=_BASE.value,
      public_world_dir=_PUBLIC_WORLD.value, rounds=_ROUNDS.value,
      gamma=_GAMMA.value, budget=_BUDGET.value, policies=arms,
      seed=_SEED.value), _OUT.value)
  curves = "; ".join(f"{a}: " + " ".join(f"{100 * x:.1f}" for x in c)
                     for a, c in s["accuracy"].items())
  print(f"public test EM % by round: {curves}; claims held "
        f"{s['claims_held']}; rounds {s['compute_seconds'] / 60:.1f} min; "
        f"wrote {_OUT.value}")


if __name__ == "__main__":
  common.run(main)
