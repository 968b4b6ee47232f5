"""`make demo`'s driver on the micro recipe: release, public world, base,
grid, results store and leaderboard site; a second run only reads."""

import os

import pytest

from cbench.benchmark import demo
from cbench.benchmark import runner
from cbench.configs import micro
from cbench.leaderboard import store


@pytest.mark.slow
def test_demo_writes_results_store_and_site(tmp_path):
  config = demo.DemoConfig(
      release_id="2026q4", size="mini",
      benchmark=runner.BenchmarkConfig(harness=micro.harness(),
                                       methods=("public_only",),
                                       epsilons=(10.0,), num_docs=2))
  workdir = str(tmp_path / "demo")
  out = demo.run_demo(config, workdir)
  assert [r["cell"] for r in out["rows"]] == ["base", "real",
                                             "public_only-eps0"]
  recs = store.read(os.path.join(workdir, "results_store.jsonl"))
  assert sorted(r["method"] for r in recs) == ["base", "public_only", "real"]
  assert out["site"] == os.path.join(workdir, "site", "index.html")
  page = open(os.path.join(workdir, "site", "geminon-2026q4.html")).read()
  assert "public_only" in page and "<svg" in page
  mtime = os.path.getmtime(os.path.join(workdir, "results_store.jsonl"))
  again = demo.run_demo(config, workdir)                 # cached
  assert [r["cell"] for r in again["rows"]] == [r["cell"] for r in out["rows"]]
  assert len(store.read(os.path.join(workdir, "results_store.jsonl"))) == 3
  assert os.path.getmtime(os.path.join(workdir, "results_store.jsonl")) >= mtime
