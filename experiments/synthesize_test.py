"""The synthesize binary: a JSON summary on success, one named error line on
a bad flag or an unreachable epsilon (exit status 1, no output written)."""

import json
import os
import subprocess
import sys

import pytest

from cbench.testing import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--option=batch_size=4", "--option=num_batches=3",
        "--option=prompt_tokens=24", "--option=max_new_tokens=12",
        "--option=groups_per_call=2"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return str(tmp_path_factory.mktemp("synth_bin"))


@pytest.fixture(scope="module")
def release_dir(root):
  return fixtures.demo_release(root)


def _run(*args):
  return subprocess.run([sys.executable, "-m", "experiments.synthesize",
                         *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=600)


def test_writes_corpus_and_prints_summary(root, release_dir, tmp_path):
  base = fixtures.micro_base_model(root)
  out = str(tmp_path / "synth.jsonl")
  proc = _run(f"--release={release_dir}", f"--base={base}",
              "--method=private_prediction", "--epsilon=inf",
              "--num_docs=3", f"--out={out}", *TINY)
  assert proc.returncode == 0, proc.stderr
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  assert summary["method"] == "private_prediction"
  assert summary["epsilon"] == "inf" and summary["num_docs"] == 3
  assert 0 < summary["delta"] < 1.0 / 4882      # the default δ is printed
  assert summary["private_token_fraction"] == 1.0
  with open(out) as f:
    assert len(f.read().splitlines()) == 3
  assert os.path.exists(out[:-len(".jsonl")] + ".ledger.jsonl")


@pytest.mark.parametrize("args,needle", [
    (["--method=private_prediction", "--epsilon=0.001"], "Infeasible"),
    (["--method=bogus", "--epsilon=1"], "method"),
    (["--method=invisible_ink", "--epsilon=abc"], "--epsilon"),
    (["--method=invisible_ink", "--epsilon=1", "--option=nonsense"],
     "--option"),
    (["--method=invisible_ink", "--epsilon=1", "--option=bogus=1"],
     "bogus"),
    (["--epsilon=1"], "--method is required"),
])
def test_bad_flags_print_one_named_error(release_dir, tmp_path, args,
                                         needle):
  out = tmp_path / "o" / "synth.jsonl"
  proc = _run(f"--release={release_dir}", f"--base={tmp_path / 'nobase'}",
              f"--out={out}", "--num_docs=3", *TINY, *args)
  assert proc.returncode == 1, proc.stdout
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  assert needle in lines[0]
  assert not out.parent.exists()
