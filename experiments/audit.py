r"""Empirical privacy audit of one synthesis method at one ε.

  python -m experiments.audit --release=DIR --method=dp_finetune \
      --epsilon=10 --workdir=W [--base=BASE] [--config=demo] \
      [--audits=one_run,exposure] [--audit_seed=0|random] [--option=K=V ...]

* ``one_run`` (DP fine-tuning only): one DP-SGD run through the shipped
  training loop with white-box gradient canaries and black-box input
  canaries, each included with probability 1/2; a 95% lower bound on ε
  (Steinke, Nasr, Jagielski 2023) beside the ledger's ε.
* ``exposure`` (every method): canaries with random secrets (stated 1, 4 or
  16 times) in a copy of the private corpus; the method; the harness
  fine-tune on its synthetic text; secret-sharer exposure, verbatim hits
  and a membership lower bound on ε.

The method's options and the harness recipe come from ``--config`` (the
release track's default config when absent; ``--config=demo`` audits the
demo's DP fine-tune), ``--option`` adds method options. The base model is
``--base`` or the one the config builds into W/base. Writes W/audit.json
and W/audit.md and prints the summary as one JSON line; a rerun resumes.
A bound above the ledger's ε exits with status 1 and says so.
"""

import dataclasses
import json
import os

from absl import flags

from cbench._validate import CbenchError
from cbench.audit import dpsgd as dpsgd_audit
from cbench.audit import exposure
from cbench.audit import run as audit_run
from cbench.benchmark import runner
from cbench.corpus import release as release_lib
from cbench.synthesis import api
from cbench.tracks import registry
from experiments import common

_RELEASE = flags.DEFINE_string("release", None, "Release directory.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Audit working directory.")
_BASE = flags.DEFINE_string("base", None, "Base model directory (optional).")
_METHOD = flags.DEFINE_string("method", None, f"One of {list(api.METHODS)}.")
_EPSILON = flags.DEFINE_string("epsilon", None, "Target epsilon (> 0 or inf).")
_AUDITS = flags.DEFINE_list(
    "audits", None, f"Which audits, of {list(audit_run.KINDS)} (default: "
    "both for dp_finetune, exposure for the others).")
_AUDIT_SEED = flags.DEFINE_string(
    "audit_seed", "0", "Coins and canary contents: an integer or 'random'.")
_OPTION = flags.DEFINE_multi_string(
    "option", [], "Method option NAME=VALUE (repeatable).")
_NUM_PROBES = flags.DEFINE_integer("num_probes", 1000,
                                   "White-box gradient canaries (one_run).")
_NUM_INPUTS = flags.DEFINE_integer("num_inputs", 256,
                                   "Black-box input canaries (one_run).")
_AUDIT_DELTA = flags.DEFINE_float(
    "audit_delta", None, "one_run: audit the ledger's claim at this delta "
    "(default: the run's own).")
_SINGLES = flags.DEFINE_integer("singles", 128,
                                "Canaries stated once (exposure).")
_CONFIG = common.define_config_flags(None)


def main(argv):
  if len(argv) > 1:
    raise CbenchError(f"Unexpected arguments: {argv[1:]}")
  for name, value in (("release", _RELEASE.value), ("method", _METHOD.value),
                      ("workdir", _WORKDIR.value)):
    if not value:
      raise CbenchError(f"--{name} is required.")
  if _METHOD.value not in api.METHODS:
    raise CbenchError(f"--method={_METHOD.value!r} is not one of "
                      f"{list(api.METHODS)}.")
  release = release_lib.load_release(_RELEASE.value)
  config = _CONFIG.benchmark(registry.get(release.track).defaults.config)
  seed = common.parse_seed(_AUDIT_SEED.value, "--audit_seed")
  syn = runner.synthesis_config(config, _METHOD.value,
                                common.parse_epsilon(_EPSILON.value))
  syn = dataclasses.replace(
      syn, options=syn.options + common.parse_method_options(_OPTION.value))
  kinds = _AUDITS.value or audit_run.default_kinds(_METHOD.value)
  one_run = dpsgd_audit.OneRunConfig(num_probes=_NUM_PROBES.value,
                                     num_inputs=_NUM_INPUTS.value, seed=seed,
                                     delta=_AUDIT_DELTA.value)
  canaries = exposure.ExposureConfig(singles=_SINGLES.value, seed=seed)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  base = runner.ensure_base(
      dataclasses.replace(config, release_dir=release.root,
                          base_dir=_BASE.value or config.base_dir),
      release, _WORKDIR.value)
  summary = audit_run.run_audit(
      release.root, base, syn, config.harness.finetune_recipe(base),
      _WORKDIR.value, kinds=kinds, one_run=one_run, canaries=canaries)
  print(json.dumps(summary, sort_keys=True, default=str))
  audit_run.check_not_broken(summary)


if __name__ == "__main__":
  common.run(main)
