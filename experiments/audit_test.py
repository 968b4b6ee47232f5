"""The audit binary: a summary and audit.md on success; one named error line
(exit 1, nothing written) on bad flags."""

import json
import os
import subprocess
import sys

import pytest

from cbench.testing import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return str(tmp_path_factory.mktemp("audit_bin"))


@pytest.fixture(scope="module")
def release_dir(root):
  return fixtures.demo_release(root)


def _run(*args):
  return subprocess.run([sys.executable, "-m", "experiments.audit", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_exposure_audit_of_public_only(root, release_dir, tmp_path):
  base = fixtures.micro_base_model(root)
  w = str(tmp_path / "w")
  proc = _run(f"--release={release_dir}", f"--base={base}", "--config=micro",
              "--method=public_only", "--epsilon=1", f"--workdir={w}",
              "--singles=16", "--option=max_new_tokens=8")
  assert proc.returncode == 0, proc.stderr[-2000:]
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  assert summary["exposure"]["membership"]["epsilon_lb"] == 0.0
  assert "one_run" not in summary
  with open(os.path.join(w, "audit.md")) as f:
    text = f.read()
  assert "Canary exposure" in text and "| 16 |" in text


@pytest.mark.parametrize("args,needle", [
    (["--method=public_only", "--epsilon=1", "--audits=one_run"],
     "one-run audit is for 'dp_finetune'"),
    (["--method=bogus", "--epsilon=1"], "--method='bogus'"),
    (["--method=dp_finetune", "--epsilon=-1"], "--epsilon"),
    (["--method=dp_finetune", "--epsilon=1", "--audit_seed=x"],
     "--audit_seed"),
    (["--method=dp_finetune", "--epsilon=1", "--audits=magic"],
     "Unknown audit"),
    (["--method=dp_finetune", "--epsilon=1", "--num_probes=1"],
     "num_probes"),
    (["--epsilon=1"], "--method is required"),
])
def test_bad_flags_give_one_line(root, release_dir, tmp_path, args, needle):
  base = fixtures.micro_base_model(root)
  w = tmp_path / "w"
  proc = _run(f"--release={release_dir}", f"--base={base}", "--config=micro",
              f"--workdir={w}", *args)
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and needle in lines[0], proc.stderr[-2000:]
  assert not os.path.exists(w / "audit.json")
