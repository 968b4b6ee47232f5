r"""Release build speed: documents per second for chosen sizes.

  python -m benchmarks.release_speed [--sizes=demo,small] [--release=2026q4]

Builds each size into a temporary directory (deleted afterwards) and prints
one JSON line per size: documents, wall seconds, documents/s, dedup removed
fraction and public/sensitive support min/median. Target: `small` builds in
under 2 minutes on 2 CPU cores.
"""

import json
import os
import shutil
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

from benchmarks import bench_flags
from cbench.tracks.geminon import generator as geminon

_SIZES = bench_flags.DEFINE_list("sizes", ["demo", "small"],
                           f"Sizes to build, from {list(geminon.SIZES)}.")
_RELEASE = bench_flags.DEFINE_string("release", "2026q4", "Release id.")


def measure(size: str, release_id: str) -> dict:
  config = geminon.make_config("geminon", release_id, size)
  tmp = tempfile.mkdtemp(prefix=f"cbench-release-{size}-")
  try:
    start = time.perf_counter()
    m = geminon.build_release(config, os.path.join(tmp, "r"))
    wall = time.perf_counter() - start
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  docs = m["documents"]["total"]
  sup = m["support"]
  return {
      "size": size, "documents": docs, "wall_s": round(wall, 2),
      "docs_per_s": round(docs / wall, 1),
      "dedup_removed_fraction": m["dedup"]["removed_fraction"],
      "public_support_min_median": [
          min(sup[k]["min"] for k in ("public_val", "public_test")),
          sup["public_val"]["median"]],
      "sensitive_support_min_median_max": [
          min(sup[k]["min"] for k in ("sensitive_val", "sensitive_test")),
          sup["sensitive_val"]["median"],
          max(sup[k]["max"] for k in ("sensitive_val", "sensitive_test"))],
      "cpu_count": os.cpu_count(),
  }


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  for size in _SIZES.value:
    print(json.dumps(measure(size, _RELEASE.value)), flush=True)


if __name__ == "__main__":
  app.run(main)
