r"""News release throughput: articles/s per stage, in-process vs Beam.

  python -m benchmarks.news_release_speed [--events=120] [--outlets=6] \
      [--rounds=3] [--embedder=hashing] [--beam_workers=1]

Writes a generated crawl (`cbench.testing.news_crawl`: made-up news, two
months, `--events` events per month each told by `--outlets` outlets, plus
the damaged and off-topic records a crawl holds) and builds the first
month's release `--rounds` times in this process and `--rounds` times with
the per-record stages (read, extract, language) on Beam's DirectRunner,
alternating. Prints one JSON line per build (stage seconds, articles/s of
each stage) and a summary: per-stage articles/s (min/median/max over the
rounds) and the ratio Beam / in-process of the per-record stages' time,
measured side by side, and whether the two releases are byte-identical.
On a shared 2-core machine Beam's worker start-up dominates a small crawl:
the ratio checks the parallel path, it is not a speed claim.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import statistics
import tempfile
import time

from absl import app

from benchmarks import bench_flags
from cbench.tracks import base
from cbench.tracks.news import build
from cbench.tracks.news import config as config_lib
from cbench.testing import news_crawl

_EVENTS = bench_flags.DEFINE_integer("events", 120, "Events per month.")
_OUTLETS = bench_flags.DEFINE_integer("outlets", 6, "Outlets per event.")
_ROUNDS = bench_flags.DEFINE_integer("rounds", 3, "Builds per path.")
_EMBEDDER = bench_flags.DEFINE_enum("embedder", "hashing",
                                    list(config_lib.EMBEDDERS),
                                    "Event embedder.")
_BEAM_WORKERS = bench_flags.DEFINE_integer(
    "beam_workers", 1, "DirectRunner worker processes (0: no Beam rounds).")


def _spread(values):
  return {"min": round(min(values), 3), "median": round(
      statistics.median(values), 3), "max": round(max(values), 3)}


def one_build(config, out: str, beam) -> dict:
  timer = base.Timer()
  t0 = time.perf_counter()
  manifest = build.build_release(config, out, overwrite=True, beam=beam,
                                 timer=timer)
  st = manifest["stages"]
  counts = {"read_extract_language": st["read"]["records"],
            "dedup": st["dedup"]["in"], "events": st["events"]["articles"],
            "facts": st["events"]["articles_in_events"],
            "write": manifest["documents"]["total"]}
  rates = {k: round(counts[k] / max(v, 1e-9), 1)
           for k, v in timer.seconds.items() if k in counts}
  return {"path": "beam" if beam else "in_process",
          "wall_s": round(time.perf_counter() - t0, 3),
          "stage_seconds": timer.seconds, "items_per_s": rates,
          "records": st["read"]["records"],
          "articles": st["dedup"]["kept"], "events": st["events"]["events"],
          "questions": sum(manifest["questions"].values())}


def main(argv):
  del argv
  tmp = tempfile.mkdtemp(prefix="cbench-news-speed-")
  try:
    crawl = os.path.join(tmp, "crawl.warc.gz")
    info = news_crawl.write_crawl(crawl, ("2026-03", "2026-04"),
                                  events_per_month=_EVENTS.value,
                                  outlets_per_event=_OUTLETS.value)
    print(json.dumps({"crawl_pages": info["pages"],
                      "crawl_records": info["records"],
                      "crawl_bytes": os.path.getsize(crawl)}), flush=True)
    config = config_lib.make_config("2026-03", crawl,
                                    embedder=_EMBEDDER.value,
                                    zero_shot_model="")
    beam = None
    if _BEAM_WORKERS.value:
      beam = base.BeamOptions("DirectRunner", (
          f"--direct_num_workers={_BEAM_WORKERS.value}",
          "--direct_running_mode=multi_processing"))
    rows = []
    for r in range(_ROUNDS.value):
      for path in ((None, beam) if beam else (None,)):
        out = os.path.join(tmp, f"{'beam' if path else 'local'}-{r}")
        row = one_build(config, out, path)
        rows.append(row)
        print(json.dumps(row), flush=True)
    local = [r for r in rows if r["path"] == "in_process"]
    summary = {"per_stage_items_per_s": {
        k: _spread([r["items_per_s"][k] for r in local])
        for k in local[0]["items_per_s"]}}
    if beam:
      on_beam = [r for r in rows if r["path"] == "beam"]
      ratios = [b["stage_seconds"]["read_extract_language"]
                / a["stage_seconds"]["read_extract_language"]
                for a, b in zip(local, on_beam)]
      same = filecmp.dircmp(os.path.join(tmp, "local-0"),
                            os.path.join(tmp, "beam-0"))
      summary["beam_over_in_process_record_stages"] = _spread(ratios)
      summary["beam_release_identical"] = not (
          same.diff_files or same.left_only or same.right_only) and all(
              filecmp.cmp(os.path.join(tmp, "local-0", p),
                          os.path.join(tmp, "beam-0", p), shallow=False)
              for p in ("manifest.json", "corpus/train.jsonl",
                        "qa/public_val.jsonl", "qa/public_test.jsonl"))
    print(json.dumps({"summary": summary}), flush=True)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
