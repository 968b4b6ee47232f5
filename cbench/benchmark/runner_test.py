"""End-to-end benchmark grid on the micro recipe: files, schema, resume, errors."""

import json
import math
import os

import matplotlib.image
from PIL import Image
import pytest

from cbench._validate import CbenchError
from cbench.audit import exposure
from cbench.benchmark import report
from cbench.benchmark import runner
from cbench.configs import micro
from cbench.corpus import release as news_release
from cbench.leaderboard import site
from cbench.leaderboard import store
from cbench.tracks.news import build as news_build
from cbench.tracks.news import config as news_config
from cbench.tracks.news import crawl_test as news_crawl_test

MICRO = micro.harness()

ROW_FIELDS = {"method", "epsilon", "delta", "num_docs",
              "public_test_exact", "public_test_fuzzy", "sensitive_test_exact",
              "capability_gain", "wall_seconds", "versions", "release_sha256",
              "epsilon_verified", "key", "cell"}


def _config(release, base, **kw):
  defaults = dict(release_dir=release, base_dir=base, harness=MICRO,
                  methods=("public_only", "private_prediction"),
                  epsilons=(10.0,), num_docs=4)
  defaults.update(kw)
  return runner.BenchmarkConfig(**defaults)


def _mtimes(workdir):
  out = {}
  for cell in sorted(os.listdir(os.path.join(workdir, "cells"))):
    path = os.path.join(workdir, "cells", cell, "row.json")
    if os.path.exists(path):
      out[cell] = os.path.getmtime(path)
  return out


def test_grid_resume_and_outputs(demo_release_dir, micro_base_dir, tmp_path):
  workdir = str(tmp_path / "bench")
  config = _config(demo_release_dir, micro_base_dir)
  # "Kill" the runner after two computed cells.
  partial = runner.run_benchmark(config, workdir, stop_after_cells=2)
  assert [r["cell"] for r in partial] == ["base", "real"]
  done_before = _mtimes(workdir)
  rows = runner.run_benchmark(config, workdir)
  assert [r["cell"] for r in rows] == ["base", "real", "public_only-eps0",
                                       "private_prediction-eps10"]
  after = _mtimes(workdir)
  for cell, mtime in done_before.items():
    assert after[cell] == mtime, f"finished cell {cell} was recomputed"
  # Every row has the schema; synthetic rows carry a verified epsilon.
  with open(os.path.join(workdir, "results.jsonl")) as f:
    on_disk = [json.loads(line) for line in f]
  assert [r["cell"] for r in on_disk] == [r["cell"] for r in rows]
  for r in on_disk:
    assert ROW_FIELDS <= set(r), ROW_FIELDS - set(r)
    assert 0 <= r["public_test_exact"]["low"] <= r["public_test_exact"]["high"] <= 1
  pp = on_disk[-1]
  assert pp["epsilon_verified"] is True and pp["achieved_epsilon"] <= 10.0 + 1e-9
  assert on_disk[0]["capability_gain"] is None and on_disk[1]["capability_gain"] is not None
  # A third run recomputes nothing.
  runner.run_benchmark(config, workdir)
  assert _mtimes(workdir) == after
  # A changed config touches only its cells.
  changed = _config(demo_release_dir, micro_base_dir, num_docs=5)
  runner.run_benchmark(changed, workdir)
  final = _mtimes(workdir)
  assert final["base"] == after["base"] and final["real"] == after["real"]
  assert final["private_prediction-eps10"] != after["private_prediction-eps10"]
  # Outputs exist and are non-trivial.
  md = open(os.path.join(workdir, "results.md")).read()
  assert md.count("\n") == 2 + len(rows)
  html = open(os.path.join(workdir, "report.html")).read()
  assert "data:image/png;base64," in html and "Release datasheet" in html
  png = os.path.join(workdir, "accuracy_vs_epsilon.png")
  pixels = matplotlib.image.imread(png)
  assert pixels.shape[0] > 200 and pixels.std() > 0.01
  series = Image.open(png).info["Description"].split(": ", 1)[1].split(",")
  # Two synthetic methods plus the base and real reference lines.
  assert sorted(series) == sorted(["private_prediction", "public_only",
                                   "base model", "real model"])


def test_plot_series_count_follows_methods(tmp_path):
  acc = {"mean": 0.5, "low": 0.4, "high": 0.6, "n": 10}
  rows = [{"method": m, "epsilon": e, "public_test_exact": acc,
           "sensitive_test_exact": acc}
          for m in ("a", "b", "c") for e in (1.0, 10.0, math.inf)]
  rows += [{"method": "base", "epsilon": None, "public_test_exact": acc,
            "sensitive_test_exact": acc}]
  info = report.plot_accuracy(rows, str(tmp_path / "p.png"))
  assert info["series"] == ["a", "b", "c", "base model"]
  assert report.markdown_table(rows).count("\n") == 2 + len(rows)


def test_method_epsilons_replace_the_grid_of_one_method():
  config = runner.BenchmarkConfig(
      harness=MICRO, release_dir="unused", methods=("public_only", "private_prediction", "dp_finetune"),
      epsilons=(1.0, 10.0), method_epsilons=(("dp_finetune", (10.0, math.inf)),))
  assert config.grid("public_only") == (0.0,)
  assert config.grid("private_prediction") == (1.0, 10.0)
  assert config.grid("dp_finetune") == (10.0, math.inf)


def test_method_options_may_set_num_docs():
  config = runner.BenchmarkConfig(
      harness=MICRO, release_dir="unused", methods=("private_prediction", "dp_finetune"),
      epsilons=(10.0,), num_docs=32,
      method_options=(("dp_finetune", (("num_docs", 128), ("steps", 5))),))
  dp = runner.synthesis_config(config, "dp_finetune", 10.0)
  assert dp.num_docs == 128 and dict(dp.options) == {"steps": 5}
  assert runner.synthesis_config(config, "private_prediction", 10.0).num_docs == 32
  # public_only's grid value 0 is requested as the ε = inf run.
  assert math.isinf(runner.synthesis_config(config, "public_only", 0.0).epsilon)


def test_story_lines_read_the_rows():
  def acc(p):
    return {"mean": p, "low": p, "high": p, "n": 40}
  rows = [{"method": "base", "epsilon": None, "public_test_exact": acc(0.0),
           "sensitive_test_exact": acc(0.025)},
          {"method": "real", "epsilon": "inf", "public_test_exact": acc(0.45),
           "sensitive_test_exact": acc(0.0)},
          {"method": "public_only", "epsilon": 0.0, "public_test_exact": acc(0.0),
           "sensitive_test_exact": acc(0.0)},
          {"method": "dp_finetune", "epsilon": 10.0, "public_test_exact": acc(0.05),
           "sensitive_test_exact": acc(0.05)},
          {"method": "private_prediction", "epsilon": 10.0, "public_test_exact": acc(0.0),
           "sensitive_test_exact": acc(0.0)},
          {"method": "dp_finetune", "epsilon": "inf", "public_test_exact": acc(0.2),
           "sensitive_test_exact": acc(0.0)}]
  assert report.story_lines(rows) == [
      "base model: 0.0% public-test exact match",
      "real corpus (non-private upper bound): 45.0%",
      "dp_finetune at ε=∞ (no privacy): 20.0%",
      "DP rows (ε=10): 0.0–5.0% (best: dp_finetune at ε=10)",
      "sensitive facts under DP: at most 5.0% (dp_finetune) vs base 2.5%"]


def test_bad_input_fails_before_compute(demo_release_dir, micro_base_dir, tmp_path):
  workdir = tmp_path / "w"
  bad = tmp_path / "mine.jsonl"
  bad.write_text('{"body": "no text field"}\n')
  cases = [
      (_config(demo_release_dir, micro_base_dir, synthetic=str(bad), methods=()), "no field"),
      (_config(demo_release_dir, micro_base_dir, methods=("nope",)), "Unknown method"),
      (_config(demo_release_dir, micro_base_dir, epsilons=(1e-9,)), "epsilon"),
      (_config(demo_release_dir, micro_base_dir, epsilons=(-1.0,)), "epsilon"),
      (_config(str(tmp_path / "missing"), micro_base_dir), "not found"),
      (_config(demo_release_dir, micro_base_dir,
               method_epsilons=(("dp_finetune", (math.inf,)),)), "not in --methods"),
      (_config(demo_release_dir, micro_base_dir,
               method_epsilons=(("private_prediction", (1e-9,)),)), "epsilon"),
  ]
  for config, message in cases:
    with pytest.raises(CbenchError, match=message):
      runner.run_benchmark(config, str(workdir))
    assert not workdir.exists(), f"{message}: wrote before failing"


def test_own_synthetic_without_ledger_is_unverified(demo_release_dir, micro_base_dir, tmp_path):
  mine = tmp_path / "mine.jsonl"
  with open(demo_release_dir + "/corpus/val.jsonl") as f:
    texts = [json.loads(line)["text"] for line in f][:20]
  mine.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
  config = _config(demo_release_dir, micro_base_dir, methods=(), epsilons=(),
                   synthetic=str(mine), reference_rows=False)
  rows = runner.run_benchmark(config, str(tmp_path / "w"))
  assert rows[-1]["method"] == "own" and rows[-1]["epsilon_verified"] is False
  assert "**no**" in open(tmp_path / "w" / "results.md").read()


def test_a_news_release_runs_through_the_same_grid(
    micro_base_dir, demo_release_dir, tmp_path):
  """No track-specific branch: the runner, harness and synthesis take a
  News release (its exemplars, its corpus format) like a Geminon one. Its
  rows go to a results store (the Geminon run beside it and the one site
  for both are `test_both_tracks_share_one_store_and_site`, slow)."""
  news = str(tmp_path / "news")
  news_build.build_release(news_config.make_config(
      "2026-03", news_crawl_test.FIXTURE, embedder="hashing",
      zero_shot_model=""), news)
  workdir = str(tmp_path / "bench")
  results = str(tmp_path / "results.jsonl")
  rows = runner.run_benchmark(
      _config(news, micro_base_dir, methods=("public_only",), num_docs=2,
              results_store=results),
      workdir)
  assert [r["cell"] for r in rows] == ["base", "real", "public_only-eps0"]
  for r in rows:
    assert r["release_id"] == "2026-03" and ROW_FIELDS <= set(r)
  scores = json.load(open(os.path.join(workdir, "cells", "base",
                                       "scores.json")))
  n = len(news_release.load_release(news).qa("public_test"))
  assert scores["splits"]["public_test"]["num_questions"] == n
  synth = os.path.join(workdir, "cells", "public_only-eps0", "synth.jsonl")
  assert sum(1 for _ in open(synth)) == 2
  assert "cbench News release" in open(os.path.join(workdir,
                                                    "report.html")).read()
  assert {r["release_id"] for r in store.read(results)} == {"2026-03"}


@pytest.mark.slow
def test_both_tracks_share_one_store_and_site(
    micro_base_dir, demo_release_dir, tmp_path):
  news = str(tmp_path / "news")
  news_build.build_release(news_config.make_config(
      "2026-03", news_crawl_test.FIXTURE, embedder="hashing",
      zero_shot_model=""), news)
  results = str(tmp_path / "results.jsonl")
  runner.run_benchmark(
      _config(news, micro_base_dir, methods=("public_only",), num_docs=2,
              results_store=results), str(tmp_path / "bench"))
  # A Geminon run into the same store; one site shows both tracks.
  runner.run_benchmark(
      _config(demo_release_dir, micro_base_dir, methods=("public_only",),
              num_docs=2, results_store=results), str(tmp_path / "bench2"))
  recs = store.read(results)
  assert {(r["track"], r["release_id"]) for r in recs} == {
      ("news", "2026-03"), ("geminon", "2026q4")}
  assert len(recs) == 6
  pages = site.build_site(recs, str(tmp_path / "site"))
  assert sorted(pages) == ["geminon-2026q4.html", "index.html",
                           "news-2026-03.html"]
  news_page = open(tmp_path / "site" / "news-2026-03.html").read()
  assert "cbench News release" in news_page          # its datasheet


@pytest.mark.slow
def test_audit_adds_an_exposure_table_beside_the_rows(
    demo_release_dir, micro_base_dir, tmp_path):
  workdir = str(tmp_path / "bench")
  audit = exposure.ExposureConfig(singles=8, repeats=(4,), per_repeat=1,
                                  candidates=10)
  config = _config(demo_release_dir, micro_base_dir, methods=("public_only",),
                   reference_rows=False, audit=audit,
                   method_options=(("public_only",
                                    (("max_new_tokens", 8),)),))
  rows = runner.run_benchmark(config, workdir)
  assert [r["cell"] for r in rows] == ["public_only-eps0"]
  a = rows[0]["audit"]
  assert a["membership"]["m"] == 8 and a["by_repeat"]["4"]["canaries"] == 1
  with open(os.path.join(workdir, "results.md")) as f:
    text = f.read()
  assert "Privacy audit (canary exposure)" in text
  with open(os.path.join(workdir, "report.html")) as f:
    assert "Privacy audit" in f.read()
  # A rerun reuses the finished audit (the row and its audit are cached).
  summary = os.path.join(workdir, "cells", "public_only-eps0", "audit",
                         exposure.SUMMARY)
  mtime = os.path.getmtime(summary)
  runner.run_benchmark(config, workdir)
  assert os.path.getmtime(summary) == mtime
