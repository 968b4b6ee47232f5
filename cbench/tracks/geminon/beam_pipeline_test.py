"""The Beam corpus pipeline (DirectRunner) gives the single-process release
byte for byte: every file, the manifest, the TFDS export; every shard is
generated on its own."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

beam = pytest.importorskip(
    "apache_beam", reason="apache_beam is not installed (pip install "
    "-e '.[beam]'); the Beam release path is untested here")

from cbench._validate import CbenchError  # pylint: disable=g-import-not-at-top
from cbench.corpus import beam as beam_lib  # pylint: disable=g-import-not-at-top
from cbench.corpus import dedup  # pylint: disable=g-import-not-at-top
from cbench.corpus import release  # pylint: disable=g-import-not-at-top
from cbench.io import files  # pylint: disable=g-import-not-at-top
from cbench.tracks.geminon import beam_pipeline  # pylint: disable=g-import-not-at-top
from cbench.tracks.geminon import generator as geminon  # pylint: disable=g-import-not-at-top


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
  config = geminon.make_config("geminon", "2026q4", "demo")
  out = str(tmp_path / "beam")
  log = str(tmp_path / "shards.txt")
  generate = geminon.generate_shard
  write = beam_pipeline._write_shard  # pylint: disable=protected-access

  def spy_generate(config, world, shard):  # Beam pickles by value: a file.
    with open(log, "a") as f:
      f.write(f"generate {shard}\n")
    return generate(config, world, shard)

  def spy_write(shard, removed, seed, scratch):
    with open(log, "a") as f:
      f.write(f"write {shard}\n")
    return write(shard, removed, seed, scratch)

  monkeypatch.setattr(geminon, "generate_shard", spy_generate)
  monkeypatch.setattr(beam_pipeline, "_write_shard", spy_write)
  # 3 key ranges instead of 16: the grouping's partitioning is free too.
  manifest = beam_pipeline.build_release(config, out, partitions=3)
  with open(log) as f:
    calls = sorted(f.read().split("\n")[:-1])
  n = manifest["documents"]["shards"]
  assert n >= 3
  # Every shard generated and written exactly once, each on its own.
  assert calls == sorted([f"generate {k}" for k in range(n)]
                         + [f"write {k}" for k in range(n)])
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


def test_find_removed_reads_signatures_back(tmp_path):
  """A key range's removals, judged from the sig-K.npy files of two shards,
  match the streaming index over the same signatures."""
  rng = np.random.default_rng(0)
  s = geminon.SHARD_DOCS
  sigs = rng.integers(0, 2**32, (s + 10, 128), dtype=np.uint32)
  sigs[s + 3] = sigs[5]  # Exact copy across shards.
  sigs[s + 7] = sigs[s + 3]
  sigs[s + 7, :10] ^= 1  # Near copy (118/128) of a removed document.
  for k in range(2):
    np.save(beam_pipeline._sig_path(str(tmp_path), k),  # pylint: disable=protected-access
            sigs[k * s:(k + 1) * s])
  keys = dedup.band_keys(sigs).ravel()
  idx = np.repeat(np.arange(len(sigs)), dedup.BANDS)
  got = beam_pipeline._find_removed(  # pylint: disable=protected-access
      (0, [(keys[:5000], idx[:5000]), (keys[5000:], idx[5000:])]),
      str(tmp_path))
  assert got.tolist() == [s + 3, s + 7]
  index = dedup.NearDuplicateIndex()
  assert np.flatnonzero(index.add(0, sigs)).tolist() == got.tolist()


def test_unknown_runner_is_named(tmp_path):
  config = geminon.make_config("geminon", "2026q4", "demo")
  with pytest.raises(CbenchError, match="--runner"):
    beam_pipeline.build_release(config, str(tmp_path / "x"),
                                runner="LocalRunner")
  assert not os.path.exists(tmp_path / "x")
  assert beam_lib.parse_pipeline_args(
      "--project=p --temp_location='gs://b/t x'") == [
          "--project=p", "--temp_location=gs://b/t x"]
  with pytest.raises(CbenchError, match="--beam_options"):
    beam_lib.parse_pipeline_args("--a='unterminated")


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
  assert beam_lib.RUNNERS == ("DirectRunner", "DataflowRunner",
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
