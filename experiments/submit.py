r"""Scores a submission from outside cbench and adds it to the results store.

  python -m experiments.submit --release=DIR --submission=SUB --workdir=W \
      --results=results_store.jsonl [--config=tiny] [--base=BASE]

SUB holds ``synth.jsonl`` ({"text"} per line), ``ledger.jsonl`` (cbench's
ledger format) and ``metadata.json`` (name, method, link, base_model,
epsilon, delta, relation, tuned_on_private, release_id, release_sha256; see
`cbench.leaderboard.submission`). The submission and the store are checked
before any compute; ε is recomputed from the ledger for a method cbench
implements ("verified"), else it is shown "as declared". The harness
(fine-tune + QA scoring, cached in W) runs on the corpus beside the
release's reference rows, and the rows are appended to the store. Prints
the submission's record as one JSON line; a bad submission prints one line
naming the problem, exits 1 and leaves the store untouched.
"""

import dataclasses
import json

from absl import flags

from cbench._validate import CbenchError
from cbench.benchmark import submit
from cbench.corpus import release as release_lib
from cbench.tracks import registry
from experiments import common

_RELEASE = flags.DEFINE_string("release", None, "Release directory.")
_SUBMISSION = flags.DEFINE_string("submission", None, "Submission directory.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Harness working directory.")
_RESULTS = flags.DEFINE_string("results", None, "Results store (JSONL).")
_BASE = flags.DEFINE_string("base", None, "Base model directory (optional).")
_CONFIG = common.define_config_flags(None)


def main(argv):
  if len(argv) > 1:
    raise CbenchError(f"Unexpected arguments: {argv[1:]}")
  for name, value in (("release", _RELEASE.value),
                      ("submission", _SUBMISSION.value),
                      ("workdir", _WORKDIR.value),
                      ("results", _RESULTS.value)):
    if not value:
      raise CbenchError(f"--{name} is required.")
  release = release_lib.load_release(_RELEASE.value)
  config = _CONFIG.benchmark(registry.get(release.track).defaults.config)
  if _BASE.value:
    config = dataclasses.replace(config, base_dir=_BASE.value)
  record = submit.submit(release.root, _SUBMISSION.value, _WORKDIR.value,
                         config, _RESULTS.value)
  print(json.dumps(record, sort_keys=True, default=str))


if __name__ == "__main__":
  common.run(main)
