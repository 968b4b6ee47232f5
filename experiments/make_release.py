r"""Builds a cbench benchmark release (or the public world); prints a summary.

  python -m experiments.make_release --track=geminon --release=2026q4 \
      --size=demo --out=DIR [--overwrite]
  python -m experiments.make_release --track=geminon --public_world --out=DIR
  python -m experiments.make_release --release=2026q4 --size=large \
      --out=DIR --runner=DirectRunner|DataflowRunner|FlinkRunner|SparkRunner \
      [--beam_options="--project=P --region=R --temp_location=..."]

Sizes: demo (36 creatures, ~5.4k documents, seconds), small (600 creatures,
~200k documents, ~1-1.5 min on 2 cores), medium (~1M), large (~2M).
Without --runner the corpus is built in this process; with it, on Apache
Beam (`cbench.corpus.beam_pipeline`, extra `beam`), byte-identical output.
A bad flag prints one line naming it and exits with status 1.
"""

import functools
import json
import sys
import time

from absl import app
from absl import flags
from absl import logging

from cbench._validate import CbenchError
from cbench.corpus import release

_TRACK = flags.DEFINE_string("track", "geminon", "Benchmark track.")
_RELEASE = flags.DEFINE_string("release", None, "Release id, YYYYqQ.")
_SIZE = flags.DEFINE_string("size", "demo",
                            f"One of {list(release.SIZES)}.")
_OUT = flags.DEFINE_string("out", None, "Output directory (must not exist).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace an existing --out directory.")
_PUBLIC_WORLD = flags.DEFINE_bool("public_world", False,
                                  "Build the public world instead.")
_MIN_SUPPORT = flags.DEFINE_integer(
    "min_support", None, "Override the size's minimum public support.")
# Same list as cbench.corpus.beam_pipeline.RUNNERS (imported only when used).
_RUNNER = flags.DEFINE_enum(
    "runner", None,
    ["DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner"],
    "Build the corpus with this Apache Beam runner (default: no Beam, one "
    "process). Needs the 'beam' extra.")
_BEAM_OPTIONS = flags.DEFINE_string(
    "beam_options", None,
    "Extra Beam pipeline options, one shell-quoted string (e.g. "
    "\"--project=P --region=R --temp_location=gs://b/tmp\").")


def _builders():
  """(build_release, build_public_world) of the chosen path."""
  if _RUNNER.value is None:
    if _BEAM_OPTIONS.value:
      raise CbenchError("--beam_options needs --runner.")
    return release.build_release, release.build_public_world
  try:
    from cbench.corpus import beam_pipeline  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise CbenchError(f"--runner={_RUNNER.value} needs Apache Beam: pip "
                      f"install -e '.[beam]' ({e}).") from e
  kw = dict(runner=_RUNNER.value,
            pipeline_args=beam_pipeline.parse_pipeline_args(
                _BEAM_OPTIONS.value))
  return (functools.partial(beam_pipeline.build_release, **kw),
          functools.partial(beam_pipeline.build_public_world, **kw))


def summary(manifest: dict, wall_s: float, out: str) -> dict:
  """The printed summary: counts, support, chance accuracy, wall time."""
  return {
      "out": out,
      "release": manifest["release_id"], "size": manifest["size"],
      "seed": manifest["seed"],
      "creatures": {k: manifest["world"][k]
                    for k in ("creatures", "public", "sensitive")},
      "documents": manifest["documents"]["by_split"],
      "documents_by_style": manifest["documents"]["by_style"],
      "dedup_removed_fraction": manifest["dedup"]["removed_fraction"],
      "questions": manifest["questions"],
      "dropped_public_questions": manifest["dropped_public_questions"],
      "support_min_median": {
          k: None if v is None else [v["min"], v["median"]]
          for k, v in manifest["support"].items()},
      "chance_accuracy_public": manifest["chance_accuracy"]["public"],
      "wall_s": round(wall_s, 2),
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # TFDS logs each split at INFO.
  start = time.perf_counter()
  try:
    if _OUT.value is None:
      raise CbenchError("--out is required.")
    build_release, build_public_world = _builders()
    if _PUBLIC_WORLD.value:
      if _RELEASE.value is not None:
        raise CbenchError("--release must not be set with --public_world.")
      release.check_track(_TRACK.value)
      manifest = build_public_world(_OUT.value, _OVERWRITE.value,
                                    track=_TRACK.value)
    else:
      if _RELEASE.value is None:
        raise CbenchError("--release is required (e.g. --release=2026q4), "
                          "or pass --public_world.")
      config = release.make_config(_TRACK.value, _RELEASE.value, _SIZE.value,
                                   _MIN_SUPPORT.value)
      manifest = build_release(config, _OUT.value, _OVERWRITE.value)
  except CbenchError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(json.dumps(summary(manifest, time.perf_counter() - start,
                           _OUT.value), indent=2))


if __name__ == "__main__":
  app.run(main)
