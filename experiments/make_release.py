r"""Builds a cbench benchmark release (or the public world); prints a summary.

  python -m experiments.make_release --track=geminon --release=2026q4 \
      --size=demo --out=DIR [--overwrite]
  python -m experiments.make_release --track=geminon --public_world --out=DIR
  python -m experiments.make_release --track=news --crawl=PATH[,PATH...] \
      --release=2026-03 --out=DIR [--override=zero_shot_model=gemma3_270m]
  python -m experiments.make_release ... --runner=DirectRunner|DataflowRunner|FlinkRunner|SparkRunner \
      [--beam_options="--project=P --region=R --temp_location=..."]

Geminon sizes: mini, demo (36 creatures, ~5.4k documents, seconds), small
(600 creatures, ~200k documents, ~1-1.5 min on 2 cores), medium (~1M),
large (~2M). News: `--crawl` is a comma-separated list of WARC/ARC files,
directories of saved HTML pages, JSONL of extracted articles, or globs;
the release id is the month (YYYY-MM). `--override=FIELD=VALUE` changes a
field of the track's release config (`cbench.tracks.news.config` for
News). With `--runner` the per-record stages run on Apache Beam (extra
`beam`), with byte-identical output. A bad flag or bad input prints one
line naming the problem and exits with status 1; nothing already written is
touched (the release is built beside `--out` and renamed into place).
"""

import json
import sys
import time

from absl import app
from absl import flags
from absl import logging

from cbench import options
from cbench._validate import CbenchError
from cbench.tracks import base
from cbench.tracks import registry
from experiments import common

_TRACK = flags.DEFINE_string("track", "geminon",
                             f"Benchmark track: one of {list(registry.NAMES)}.")
_RELEASE = flags.DEFINE_string(
    "release", None, "Release id: YYYYqQ (Geminon) or YYYY-MM (News).")
_SIZE = flags.DEFINE_string("size", None, "Geminon: mini|demo|small|medium|"
                            "large (default demo).")
_MIN_SUPPORT = flags.DEFINE_integer(
    "min_support", None, "Geminon: override the size's minimum public "
    "support.")
_PUBLIC_WORLD = flags.DEFINE_bool("public_world", False,
                                  "Geminon: build the public world instead.")
_CRAWL = flags.DEFINE_string(
    "crawl", None, "News: crawl files, directories or globs, comma-separated.")
_OVERRIDE = flags.DEFINE_multi_string(
    "override", [], "FIELD=VALUE: change a field of the track's release "
    "config (repeatable), e.g. min_outlets=2.")
_OUT = flags.DEFINE_string("out", None, "Output directory (must not exist).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace an existing --out directory.")
_RUNNER = flags.DEFINE_enum(
    "runner", None,
    ["DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner"],
    "Run the per-record stages on this Apache Beam runner (default: no Beam, "
    "one process). Needs the 'beam' extra.")
_BEAM_OPTIONS = flags.DEFINE_string(
    "beam_options", None,
    "Extra Beam pipeline options, one shell-quoted string (e.g. "
    "\"--project=P --region=R --temp_location=gs://b/tmp\").")


def make_release() -> dict:
  """Validates the flags, builds the release, returns the printed summary."""
  if _OUT.value is None:
    raise CbenchError("--out is required.")
  track = registry.get(_TRACK.value)
  inputs = {"size": _SIZE.value, "min_support": _MIN_SUPPORT.value,
            "public_world": _PUBLIC_WORLD.value, "crawl": _CRAWL.value}
  config = track.release_config(
      _RELEASE.value, **{k: v for k, v in inputs.items()
                         if v not in (None, False)})
  config = options.apply_overrides(config, _OVERRIDE.value)
  beam = base.BeamOptions.from_flags(_RUNNER.value, _BEAM_OPTIONS.value)
  start = time.perf_counter()
  timer = base.Timer()
  manifest = track.build_release(config, _OUT.value, _OVERWRITE.value,
                                 beam=beam, timer=timer)
  return {"out": _OUT.value, "track": _TRACK.value,
          **track.summary(manifest),
          "wall_s": round(time.perf_counter() - start, 2),
          "stage_seconds": timer.seconds}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # TFDS logs each split at INFO.
  common.setup_logging()
  try:
    summary = make_release()
  except CbenchError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  app.run(main)
