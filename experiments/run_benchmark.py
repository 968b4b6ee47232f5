r"""Runs the benchmark grid: synthesis -> standard fine-tune -> QA scoring.

  python -m experiments.run_benchmark --release=DIR --workdir=W [--config=tiny]
  python -m experiments.run_benchmark --release=DIR \
      --methods=public_only,private_prediction,invisible_ink,cluster_median,dp_finetune \
      --epsilons=1,10,100,inf --workdir=W

  # One method at its own grid (here: also its non-private run):
  python -m experiments.run_benchmark ... --epsilons=10 --method_epsilons=dp_finetune=10,inf

  # A researcher's own synthetic corpus through the same harness:
  python -m experiments.run_benchmark --release=DIR --synthetic=mine.jsonl \
      [--ledger=mine.ledger.jsonl] --workdir=W

``--config`` (default: the config the release's track declares, `tiny` for
Geminon, `news` for News; `cbench.configs`) gives the harness recipe and
the grid; the grid flags below replace the config's values when given, and
``--override=FIELD=VALUE`` changes any other field. Cells are cached in W:
an interrupted run resumes at the first unfinished cell, and a changed
config recomputes only the cells it touches. Writes W/results.jsonl,
W/results.md, W/accuracy_vs_epsilon.png and W/report.html.

``--audit`` adds a canary exposure audit of every synthetic cell
(`cbench.audit.exposure`: canaries in a copy of the private corpus, the
method, the harness fine-tune, exposure, verbatim hits and a membership
lower bound on ε) to the rows and a table beside them in the report.
"""

import dataclasses
import os

from absl import flags

from cbench import options
from cbench.audit import exposure
from cbench._validate import CbenchError
from cbench.benchmark import runner
from cbench.corpus import release as release_lib
from cbench.tracks import registry
from experiments import common

_RELEASE = flags.DEFINE_string("release", None, "Release directory.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Benchmark working directory.")
_CONFIG = common.define_config_flags(None)
_METHODS = flags.DEFINE_list("methods", None,
                             "Synthesis methods (default: the config's).")
_EPSILONS = flags.DEFINE_list(
    "epsilons", None, "Target epsilons, inf allowed (default: the config's).")
_METHOD_EPSILONS = flags.DEFINE_multi_string(
    "method_epsilons", [],
    "METHOD=EPS,EPS,...: this method's own epsilon grid instead of --epsilons "
    "(repeatable), e.g. dp_finetune=10,inf.")
_NUM_DOCS = flags.DEFINE_integer(
    "num_docs", None, "Synthetic documents per cell (default: the config's).")
_DELTA = flags.DEFINE_float("delta", None, "Target delta (default: each method's, < 1/n).")
_BASE = flags.DEFINE_string("base", None, "Existing base model directory (optional).")
_PUBLIC_WORLD = flags.DEFINE_string("public_world", None, "Existing public world (optional).")
_SYNTHETIC = flags.DEFINE_string("synthetic", None, "Your own synthetic JSONL ({'text'}).")
_LEDGER = flags.DEFINE_string("ledger", None, "Its privacy ledger (optional).")
_NO_REFERENCE = flags.DEFINE_bool("skip_reference_rows", False,
                                  "Skip the base-model and real-data rows.")
_SEED = flags.DEFINE_integer("seed", None, "Synthesis seed (default: the config's).")
_RESULTS_STORE = flags.DEFINE_string(
    "results_store", None, "Append the rows to this results store (JSONL; "
    "`python -m experiments.leaderboard` makes a site of it).")
_AUDIT = flags.DEFINE_bool(
    "audit", False, "Also run a canary exposure audit of every synthetic "
    "cell (its table sits beside the accuracy rows).")
_AUDIT_SEED = flags.DEFINE_string(
    "audit_seed", "0", "The canaries' seed (an integer, or 'random').")
flags.mark_flags_as_required(["release", "workdir"])


def _parse_epsilons(values, flag="--epsilons"):
  """Flag strings -> floats ('inf' allowed; the grid rule is the runner's)."""
  if not values:
    raise CbenchError(f"{flag} is empty; give at least one epsilon.")
  return tuple(options.coerce(flag, v, float) for v in values)


def _parse_method_epsilons(values):
  out = []
  for v in values:
    method, sep, grid = v.partition("=")
    if not sep or not method.strip() or not grid.strip():
      raise CbenchError(f"--method_epsilons: {v!r} is not METHOD=EPS,EPS,...")
    out.append((method.strip(), _parse_epsilons(
        grid.split(","), f"--method_epsilons={method.strip()}")))
  return tuple(out)


def _methods(values):
  if not values:
    raise CbenchError("--methods is empty; name at least one method (or "
                      "leave the flag out for the config's).")
  return tuple(values)


def make_config() -> runner.BenchmarkConfig:
  """The config of --config/--override with the grid flags applied."""
  given = {
      "release_dir": _RELEASE.value, "base_dir": _BASE.value,
      "public_world_dir": _PUBLIC_WORLD.value, "synthetic": _SYNTHETIC.value,
      "ledger": _LEDGER.value, "delta": _DELTA.value, "seed": _SEED.value,
      "num_docs": _NUM_DOCS.value, "results_store": _RESULTS_STORE.value,
      "methods": None if _METHODS.value is None else _methods(_METHODS.value),
      "epsilons": (None if _EPSILONS.value is None
                   else _parse_epsilons(_EPSILONS.value)),
      "method_epsilons": (_parse_method_epsilons(_METHOD_EPSILONS.value)
                          or None),
  }
  manifest = os.path.join(_RELEASE.value or "", "manifest.json")
  default = (registry.get(release_lib.load_release(_RELEASE.value).track)
             .defaults.config if os.path.exists(manifest) else "tiny")
  config = _CONFIG.benchmark(default)
  config = dataclasses.replace(
      config, **{k: v for k, v in given.items() if v is not None})
  if _NO_REFERENCE.value:
    config = dataclasses.replace(config, reference_rows=False)
  if _AUDIT.value:
    config = dataclasses.replace(config, audit=dataclasses.replace(
        config.audit or exposure.ExposureConfig(),
        seed=common.parse_seed(_AUDIT_SEED.value, "--audit_seed")))
  return config


def main(argv):
  del argv
  runner.run_benchmark(make_config(), _WORKDIR.value)
  with open(f"{_WORKDIR.value}/results.md", encoding="utf-8") as f:
    print(f.read())


if __name__ == "__main__":
  common.run(main)
