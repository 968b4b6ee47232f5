"""--model on train / score_qa / synthesize: tiny keeps the directory flags;
a pretrained name replaces them (one named error line when both are given or
neither). Runs the binaries (no model is loaded on these paths)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(binary, *args):
  return subprocess.run([sys.executable, "-m", f"experiments.{binary}",
                         *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)


@pytest.mark.parametrize("binary,dir_flag,extra", [
    ("train", "base", ["--corpus=c.jsonl", "--workdir=w"]),
    ("score_qa", "checkpoint", ["--release=r"]),
    ("synthesize", "base", ["--release=r", "--method=public_only",
                            "--epsilon=1", "--out=o.jsonl"]),
])
def test_model_flag(binary, dir_flag, extra):
  both = _run(binary, "--model=gemma3_270m", f"--{dir_flag}=x", *extra)
  assert both.returncode == 1
  assert both.stderr.strip().splitlines()[-1] == (
      f"error: Give --{dir_flag} or --model=gemma3_270m, not both.")
  neither = _run(binary, *extra)
  assert neither.returncode == 1
  assert f"--{dir_flag} is required" in neither.stderr
  bad = _run(binary, "--model=gpt9", *extra)
  assert bad.returncode != 0 and "gemma3_270m" in bad.stderr
