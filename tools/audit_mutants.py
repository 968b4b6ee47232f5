r"""One-run audits of deliberately broken DP fine-tunes (for the README).

  python -m tools.audit_mutants --release=DIR --base=BASE --config=demo \
      --epsilon=10 --mutant=quarter_noise --workdir=W

Runs `cbench.audit.dpsgd.run_one_run_audit` on the config's dp_finetune
request with the shipped code (``--mutant=none``), with a quarter of the
accounted noise (``quarter_noise``: the ledger still charges the planned
sigma), or with clipping switched off (``no_clip``). The mutations are
monkeypatches in this process only, the same ones
`cbench/audit/dpsgd_test.py` uses; prints the summary as one JSON line.
"""

import json
import math

from absl import flags

from cbench import configs
from cbench.audit import dpsgd as dpsgd_audit
from cbench.benchmark import runner
from cbench.privacy import clipping
from cbench.privacy import dpsgd
from cbench.synthesis import dp_finetune
from experiments import common

_RELEASE = flags.DEFINE_string("release", None, "Release directory.")
_BASE = flags.DEFINE_string("base", None, "Base model directory.")
_CONFIG = flags.DEFINE_string("config", "demo", "Config with the request.")
_EPSILON = flags.DEFINE_float("epsilon", 10.0, "Target epsilon.")
_MUTANT = flags.DEFINE_enum("mutant", "none",
                            ["none", "quarter_noise", "no_clip"], "Breakage.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.")
_PROBES = flags.DEFINE_integer("num_probes", 1000, "White-box canaries.")
_INPUTS = flags.DEFINE_integer("num_inputs", 256, "Black-box canaries.")
_AUDIT_DELTA = flags.DEFINE_float("audit_delta", None,
                                  "Audited delta (default: the run's).")
_SEED = flags.DEFINE_integer("audit_seed", 0, "Coins and canaries.")


def _break(mutant: str) -> None:
  if mutant == "quarter_noise":
    real = dp_finetune.Plan.dp_config

    def quarter(self):
      cfg = real(self)
      return dpsgd.DpSgdConfig(**{**cfg.to_dict(), "noise_multiplier":
                                  cfg.noise_multiplier / 4})
    dp_finetune.Plan.dp_config = quarter
  elif mutant == "no_clip":
    real_sum = clipping.clipped_grad_sum

    def unclipped(loss_fn, params, batch, is_padding, clip_norm, *a, **kw):
      del clip_norm
      return real_sum(loss_fn, params, batch, is_padding, math.inf, *a, **kw)
    clipping.clipped_grad_sum = unclipped


def main(argv):
  del argv
  config = configs.load(_CONFIG.value, [])
  config = getattr(config, "benchmark", config)
  syn = runner.synthesis_config(config, "dp_finetune", _EPSILON.value)
  _break(_MUTANT.value)
  summary = dpsgd_audit.run_one_run_audit(
      _RELEASE.value, _BASE.value, syn,
      dpsgd_audit.OneRunConfig(num_probes=_PROBES.value,
                               num_inputs=_INPUTS.value, seed=_SEED.value,
                               delta=_AUDIT_DELTA.value),
      _WORKDIR.value)
  print(json.dumps({"mutant": _MUTANT.value, **summary}, default=str))


if __name__ == "__main__":
  common.run(main)
