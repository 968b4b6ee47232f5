"""The train binary: --lora_rank reaches the recipe (bound in run.json); a
bad rank is one named error line before any model is loaded or file is
written."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from cbench.io import files
from cbench.testing import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  return subprocess.run([sys.executable, "-m", "experiments.train", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_negative_lora_rank_is_a_named_error(tmp_path):
  workdir = str(tmp_path / "w")
  proc = _run("--model=gemma3_270m", "--lora_rank=-1",
              f"--corpus={tmp_path / 'c.jsonl'}", f"--workdir={workdir}")
  assert proc.returncode == 1, proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: Expected lora_rank=-1 to be an integer >= 0.")
  assert not os.path.exists(workdir)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return str(tmp_path_factory.mktemp("train_bin"))


def test_lora_rank_flag_trains_adapters(root, tmp_path):
  base = fixtures.micro_base_model(root)
  corpus = os.path.join(fixtures.demo_release(root), "corpus", "train.jsonl")
  workdir = str(tmp_path / "w")
  proc = _run(f"--base={base}", "--config=micro", "--lora_rank=2",
              f"--corpus={corpus}", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr
  summary = json.loads(proc.stdout)
  assert summary["train"]["lora_rank"] == 2
  assert summary["train"]["steps"] == 4
  bound = files.read_json(os.path.join(workdir, "run.json"))["recipe"]
  assert bound["lora_rank"] == 2
  done = files.read_json(os.path.join(workdir, "DONE.json"))
  assert done["train"]["trainable_params"] == summary["train"][
      "trainable_params"] > 0


def test_a_recipe_that_did_not_build_the_base_is_refused(root, tmp_path):
  base = fixtures.micro_base_model(root)
  corpus = os.path.join(fixtures.demo_release(root), "corpus", "train.jsonl")
  workdir = str(tmp_path / "w")
  proc = _run(f"--base={base}", "--config=tiny", f"--corpus={corpus}",
              f"--workdir={workdir}")
  assert proc.returncode == 1, proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: The 'tiny' recipe does not match the base "
                         "model in ") and "'model'" in last, last
  assert not os.path.exists(workdir)


def test_a_damaged_base_model_is_one_named_error(root, tmp_path):
  base = str(tmp_path / "base")
  shutil.copytree(fixtures.micro_base_model(root), base)
  for dirpath, _, names in os.walk(os.path.join(base, "params")):
    for name in names:
      if name == "_METADATA" or name.startswith("d"):
        path = os.path.join(dirpath, name)
        with open(path, "r+b") as f:
          f.truncate(os.path.getsize(path) // 3)
  corpus = os.path.join(fixtures.demo_release(root), "corpus", "train.jsonl")
  proc = _run(f"--base={base}", "--config=micro", f"--corpus={corpus}",
              f"--workdir={tmp_path / 'w'}")
  assert proc.returncode == 1, proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: Checkpoint {base}/params is damaged"), last
  assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr
