"""submit + leaderboard binaries (the end-to-end test is `slow`: ~90 s;
`submission_test`, `store_test` and `site_test` cover its parts in-process): a hand-written submission goes through the
harness into the store and onto the site marked "as declared"; a tampered
ledger is refused in one line and the store is left as it was."""

import json
import os
import subprocess
import sys

import pytest

from cbench.leaderboard import store
from cbench.leaderboard import submission_test
from cbench.testing import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return str(tmp_path_factory.mktemp("submit_bin"))


def _run(module, *args):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_submission_to_site_and_tampered_ledger(root, tmp_path):
  release = fixtures.demo_release(root)
  base = fixtures.micro_base_model(root)
  sub = submission_test.write_submission(str(tmp_path / "sub"), release)
  results = str(tmp_path / "results.jsonl")
  common = [f"--release={release}", f"--base={base}", "--config=micro",
            f"--results={results}"]
  proc = _run("experiments.submit", *common, f"--submission={sub}",
              f"--workdir={tmp_path / 'w'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  rec = json.loads(proc.stdout.strip().splitlines()[-1])
  assert rec["epsilon_status"] == "as declared" and rec["epsilon"] == 3.0
  assert rec["source"] == "submission"
  recs = store.read(results)
  assert sorted(r["method"] for r in recs) == ["base", "my_method", "real"]
  before = open(results, "rb").read()

  bad = submission_test.write_submission(str(tmp_path / "bad"), release)
  submission_test._tamper(os.path.join(bad, "ledger.jsonl"))  # pylint: disable=protected-access
  proc = _run("experiments.submit", *common, f"--submission={bad}",
              f"--workdir={tmp_path / 'w2'}")
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "hash chain" in lines[0], proc.stderr[-2000:]
  assert open(results, "rb").read() == before
  assert not os.path.exists(tmp_path / "w2")

  out = tmp_path / "site"
  proc = _run("experiments.leaderboard", f"--results={results}",
              f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  page = (out / "geminon-2026q4.html").read_text()
  assert "hand team (my_method)" in page and "as declared" in page


def test_leaderboard_refuses_an_empty_store(tmp_path):
  proc = _run("experiments.leaderboard", f"--results={tmp_path / 'none'}",
              f"--out={tmp_path / 'site'}")
  assert proc.returncode == 1 and "holds no results" in proc.stderr
