"""The make_release binary: summary on success, one named error line on
bad flags (exit status 1)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  return subprocess.run([sys.executable, "-m", "experiments.make_release",
                         *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)


def test_builds_demo_and_prints_summary(tmp_path):
  out = str(tmp_path / "rel")
  proc = _run("--track=geminon", "--release=2026q4", "--size=demo",
              f"--out={out}")
  assert proc.returncode == 0, proc.stderr
  summary = json.loads(proc.stdout)
  assert summary["release"] == "2026q4" and summary["size"] == "demo"
  assert sum(summary["documents"].values()) >= 5000
  assert summary["creatures"] == {"creatures": 36, "public": 30,
                                  "sensitive": 6}
  assert summary["support_min_median"]["public_val"][0] >= 20
  assert set(summary["chance_accuracy_public"]) >= {"hp", "types", "move"}
  assert summary["wall_s"] > 0
  assert os.path.exists(os.path.join(out, "manifest.json"))
  # A second run into the same directory is refused ...
  again = _run("--release=2026q4", f"--out={out}")
  assert again.returncode == 1
  assert again.stderr.strip().splitlines()[-1].startswith("error: --out=")
  assert "--overwrite" in again.stderr


def test_builds_a_news_release_from_a_crawl(tmp_path):
  out = str(tmp_path / "news")
  crawl = os.path.join(ROOT, "testdata", "news", "crawl.warc.gz")
  proc = _run("--track=news", f"--crawl={crawl}", "--release=2026-03",
              f"--out={out}", "--override=embedder=hashing",
              "--override=zero_shot_model=")
  assert proc.returncode == 0, proc.stderr
  summary = json.loads(proc.stdout)
  assert summary["track"] == "news" and summary["articles_read"] == 33
  assert summary["kept_per_stage"] == {"extract": 32, "window": 14,
                                       "language": 13, "dedup": 12}
  assert summary["events"] == 3
  assert summary["questions_after_zero_shot"] == sum(
      summary["questions"].values())
  assert set(summary["stage_seconds"]) >= {"read_extract_language", "events"}
  bad = _run("--track=news", f"--crawl={crawl}", "--release=2026-03",
             f"--out={out}", "--override=embedder=bert")
  assert bad.returncode == 1
  assert bad.stderr.strip().splitlines()[-1].startswith(
      "error: --override=embedder: Unknown embedder='bert'")


@pytest.mark.parametrize("args,needle", [
    (["--release=2026q7"], "--release"),
    (["--release=2026-10"], "--release"),
    (["--release=2026q4", "--size=huge"], "--size"),
    (["--track=pokemon", "--release=2026q4"], "--track"),
    (["--track=news", "--release=2026q4"], "--release='2026q4': a News "
                                          "release id is a month"),
    (["--track=news", "--release=2026-03"], "--crawl is required"),
    (["--track=news", "--release=2026-03", "--crawl=/nonexistent"],
     "--crawl=/nonexistent matches no crawl file"),
    (["--track=news", "--release=2026-03", "--size=demo"],
     "--size does not apply to --track=news"),
    (["--release=2026q4", "--crawl=x.warc"], "--crawl does not apply"),
    (["--release=2026q4", "--override=size=huge"], "size"),
    (["--release=2026q4", "--runner=DirectRunner", "--beam_options='x"],
     "--beam_options"),
    ([], "--release is required"),
    (["--public_world", "--release=2026q4"], "--release"),
])
def test_bad_flags_print_one_named_error(tmp_path, args, needle):
  proc = _run(*args, f"--out={tmp_path / 'x'}")
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ")
  assert needle in lines[0]
  assert not os.path.exists(tmp_path / "x")
