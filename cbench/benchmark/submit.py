"""A submission from outside cbench through the standard harness.

`submit` validates the submission (`leaderboard.submission`) and the
results store before any compute, runs the harness on the submitted corpus
beside the release's reference rows (`runner.run_benchmark`, cached in the
workdir), and appends the rows to the store: the submission's row carries
its metadata, the ε recomputed from its ledger ("verified") or the declared
one ("as declared"). A refused submission leaves the store untouched.
"""

from __future__ import annotations

import dataclasses
import math

from cbench._validate import check
from cbench.benchmark import runner
from cbench.corpus import release as release_lib
from cbench.leaderboard import store
from cbench.leaderboard import submission as submission_lib


def submit(release_dir: str, submission_dir: str, workdir: str,
           config: runner.BenchmarkConfig, store_path: str) -> dict:
  """Validates, runs the harness, appends; returns the submission's row.

  Raises:
    CbenchError: the first problem with the submission or the store (one
      line), before any compute or write.
  """
  release = release_lib.load_release(release_dir)
  sub = submission_lib.validate(submission_dir, release)
  store.read(store_path)                  # a damaged store is refused now
  cfg = dataclasses.replace(
      config, release_dir=release.root, methods=(), synthetic=sub.corpus_path,
      ledger=sub.ledger_path, reference_rows=True, results_store=None)
  rows = runner.run_benchmark(cfg, workdir)
  own = [r for r in rows if r["method"] == "own"]
  check(len(own) == 1, "The harness gave no row for the submission.")
  eps = "inf" if math.isinf(sub.epsilon) else sub.epsilon
  row = {**own[0], "epsilon": eps, "delta": sub.delta,
         "epsilon_verified": sub.status == "verified"}
  meta = {**sub.metadata, "num_docs": sub.num_docs}
  records = runner.store_records(
      [r for r in rows if r["method"] in ("base", "real")], release,
      config.seed)
  sub_record = runner.store_records(
      [row], release, config.seed, source="submission", status=sub.status,
      method=sub.metadata["method"], submission=meta)[0]
  store.append(store_path, records + [sub_record])
  return sub_record
