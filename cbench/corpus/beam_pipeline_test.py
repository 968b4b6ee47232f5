"""The Beam corpus pipeline (DirectRunner) gives the single-process release
byte for byte: every file, the manifest, the TFDS export."""

import json
import os
import subprocess
import sys

import pytest

beam = pytest.importorskip(
    "apache_beam", reason="apache_beam is not installed (pip install "
    "-e '.[beam]'); the Beam release path is untested here")

from cbench._validate import CbenchError  # pylint: disable=g-import-not-at-top
from cbench.corpus import beam_pipeline  # pylint: disable=g-import-not-at-top
from cbench.corpus import release  # pylint: disable=g-import-not-at-top
from cbench.io import files  # pylint: disable=g-import-not-at-top


def _tree(root):
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for fn in sorted(filenames):
      full = os.path.join(dirpath, fn)
      out[os.path.relpath(full, root)] = files.sha256_file(full)
  return out


def test_direct_runner_release_is_byte_identical(demo_release_dir, tmp_path,
                                                 monkeypatch):
  config = release.make_config("geminon", "2026q4", "demo")
  out = str(tmp_path / "beam")
  log = str(tmp_path / "shards.txt")
  write = beam_pipeline._write_fragment  # pylint: disable=protected-access

  def spy(item, scratch):  # Beam pickles it by value: log to a file.
    with open(log, "a") as f:
      f.write(f"{item[0][0]} {item[0][1]}\n")
    return write(item, scratch)

  monkeypatch.setattr(beam_pipeline, "_write_fragment", spy)
  # Small shards: 11 doc-id ranges, each split into train/val/test parts.
  manifest = beam_pipeline.build_release(config, out, shard_docs=500)
  with open(log) as f:
    shards = sorted(tuple(map(int, l.split())) for l in f)
  assert shards == [(s, k) for s in range(3) for k in range(11)]
  single = _tree(demo_release_dir)
  beamed = _tree(out)
  assert sorted(beamed) == sorted(single)
  differ = [k for k in single if beamed[k] != single[k]]
  assert differ == []
  assert manifest == files.read_json(os.path.join(demo_release_dir,
                                                  "manifest.json"))
  assert manifest["documents"]["total"] >= 5000
  assert not any(".beam" in k for k in beamed)  # Scratch removed.
  release.load_release(out).verify()
  # The corpus stage is restored for later single-process builds.
  assert release._generate_corpus.__module__ == release.__name__  # pylint: disable=protected-access


def test_unknown_runner_is_named(tmp_path):
  config = release.make_config("geminon", "2026q4", "demo")
  with pytest.raises(CbenchError, match="--runner"):
    beam_pipeline.build_release(config, str(tmp_path / "x"),
                                runner="LocalRunner")
  assert not os.path.exists(tmp_path / "x")
  assert beam_pipeline.parse_pipeline_args(
      "--project=p --temp_location='gs://b/t x'") == [
          "--project=p", "--temp_location=gs://b/t x"]
  with pytest.raises(CbenchError, match="--beam_options"):
    beam_pipeline.parse_pipeline_args("--a='unterminated")


def _make_release(*args):
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  return subprocess.run([sys.executable, "-m", "experiments.make_release",
                         *args], cwd=root, capture_output=True, text=True,
                        timeout=300)


def test_make_release_runner_flag(demo_release_dir, tmp_path):
  out = str(tmp_path / "rel")
  proc = _make_release("--release=2026q4", "--size=demo", f"--out={out}",
                       "--runner=DirectRunner",
                       "--beam_options=--direct_num_workers=1")
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads(proc.stdout)
  assert summary["release"] == "2026q4"
  assert files.sha256_file(os.path.join(out, "manifest.json")) == (
      files.sha256_file(os.path.join(demo_release_dir, "manifest.json")))
  assert beam_pipeline.RUNNERS == ("DirectRunner", "DataflowRunner",
                                   "FlinkRunner", "SparkRunner")
  bad = _make_release("--release=2026q4", f"--out={tmp_path / 'b'}",
                      "--runner=LocalRunner")
  assert bad.returncode == 1 and "--runner" in bad.stderr
  lone = _make_release("--release=2026q4", f"--out={tmp_path / 'c'}",
                       "--beam_options=--project=p")
  assert lone.returncode == 1
  assert lone.stderr.strip().splitlines() == [
      "error: --beam_options needs --runner."]
  assert not os.path.exists(tmp_path / "b") and not os.path.exists(
      tmp_path / "c")
