"""Releases built with Apache Beam, byte-identical to `release.build_release`.

    manifest = beam_pipeline.build_release(config, out_dir,
                                           runner="DirectRunner")

Same layout, files and manifest as the single-process path (`release`),
for the same `ReleaseConfig`: only the corpus stage (`_generate_corpus`:
render, near-duplicate removal, splits, support counting) runs as a Beam
pipeline; QA, the TFDS export, README and manifest are then written by the
unchanged single-process code.

The pipeline:

  Create([config])
  -> Generate        ONE worker: the generator-1.0 document stream (render
                     slot i, MinHash-LSH check, re-render on a near
                     duplicate, split of slot i); emits (doc_id, split, doc)
                     and the dedup counts (a tagged output)
  -> GroupByKey      by (split, doc_id // shard_docs): doc-index ranges
  -> WriteFragment   per shard, in parallel: serialize the documents in id
                     order to a fragment file; count styles, words and the
                     train documents supporting each (creature, feature)
  -> ToList -> Finalize
                     ONE worker: concatenate each split's fragments in shard
                     order (= id order), merge counts and supports, write
                     them for the driver

Why Generate is one worker: generator 1.0 draws every document from ONE
random stream (`render.Renderer`), and a near-duplicate re-render shifts
that stream for every later document, so document i cannot be produced
without producing documents 0..i-1 (byte identity with the released format
forbids reseeding per shard). Everything after it runs in parallel; on 2 CPU
cores that is a small share (see `benchmarks/scaling.py`). A future
generator version with per-shard streams would let Generate shard too.

Runners: any Beam runner (`RUNNERS`; DirectRunner means the in-process
FnApiRunner, never the Prism binary download); extra pipeline options (project,
region, temp_location, flink_master, ...) go in `pipeline_args`. The output
directory must be on a filesystem that the driver and every worker see at
the same path (local disk for DirectRunner or a local Flink/Spark; NFS,
Filestore or gcsfuse otherwise): cbench's IO is POSIX. Workers need cbench
installed (e.g. ``--setup_file=./setup.py`` or a custom container).

Privacy: none here; the corpus is synthetic (see `release`).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import pickle
import shlex
import shutil
import threading
from typing import Any, Iterator, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from cbench import _validate
from cbench.corpus import dedup as dedup_lib
from cbench.corpus import release
from cbench.corpus import render as render_lib
from cbench.io import files

RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")
SHARD_DOCS = 10_000  # Documents per (split, shard) fragment, before the split.
_SCRATCH = ".beam-scratch"
_RESULT = "result.pkl"


def _documents(config: release.ReleaseConfig
               ) -> Iterator[tuple[int, int, dict]]:
  """(doc_id, split index, doc) in id order, then the dedup counts.

  The exact stream of `release._generate_corpus` (same generators, same
  draws, same retry rule). The last item is ``(-1, -1, dedup_stats)``.
  """
  spec = config.spec
  world = release.make_world(config)
  renderer = render_lib.Renderer(world,
                                 np.random.default_rng([config.seed, 1]))
  order_rng = np.random.default_rng([config.seed, 2])
  split_rng = np.random.default_rng([config.seed, 3])
  counts = release._style_counts(spec.public_docs, spec.style_mix)  # pylint: disable=protected-access
  styles = list(render_lib.PUBLIC_STYLES)
  codes = np.concatenate(
      [np.full(counts.get(s, 0), i, np.int16) for i, s in enumerate(styles)]
      + [np.full(spec.dossiers_per_sensitive, len(styles) + j, np.int16)
         for j in range(len(world.sensitive))])
  codes = codes[order_rng.permutation(len(codes))]
  sensitive = world.sensitive
  filt = dedup_lib.NearDuplicateFilter(seed=1)
  block: list[int] = []
  for doc_id, code in enumerate(codes.tolist()):
    for _ in range(release._MAX_ATTEMPTS):  # pylint: disable=protected-access
      if code < len(styles):
        doc = renderer.render(styles[code])
      else:
        doc = renderer.render_sensitive(sensitive[code - len(styles)])
      if filt.add(doc_id, doc["text"]):
        break
    else:
      raise RuntimeError(f"Could not render a non-duplicate document for "
                         f"slot {doc_id} ({doc['style']}).")
    if not block:
      block = split_rng.permutation(
          np.array(release._SPLIT_BLOCK)).tolist()  # pylint: disable=protected-access
    doc["id"] = doc_id
    yield doc_id, block.pop(), doc
  yield -1, -1, {"generated": filt.seen, "removed": filt.removed,
                 "removed_fraction": round(filt.removed_fraction, 6),
                 "threshold": dedup_lib.THRESHOLD,
                 "num_perm": dedup_lib.NUM_PERM,
                 "shingle_words": dedup_lib.SHINGLE}


class _Generate(beam.DoFn):
  """The serial document stream (see the module docstring)."""

  DEDUP = "dedup"

  def __init__(self, config: release.ReleaseConfig, shard_docs: int):
    super().__init__()
    self._config = config
    self._shard_docs = shard_docs

  def process(self, unused_element):
    for doc_id, split, doc in _documents(self._config):
      if doc_id < 0:
        yield beam.pvalue.TaggedOutput(self.DEDUP, doc)
      else:
        yield (split, doc_id // self._shard_docs), doc


def _write_fragment(item, scratch: str) -> dict:
  """Writes one (split, shard) fragment in id order; returns its counts."""
  (split, shard), docs = item
  docs = sorted(docs, key=lambda d: d["id"])
  path = os.path.join(scratch, f"{release.SPLITS[split]}-{shard:07d}.jsonl")
  styles = collections.Counter()
  ids = np.empty(len(docs), np.int64)
  words = np.empty(len(docs), np.int32)
  supports = collections.defaultdict(list)
  with files.atomic_open(path) as f:  # Atomic: a retried bundle rewrites it.
    for i, doc in enumerate(docs):
      f.write(files.dumps_record(doc) + "\n")
      styles[doc["style"]] += 1
      ids[i] = doc["id"]
      words[i] = len(doc["text"].split())
      if split == 0:
        for name, feature in doc["facts"]:
          supports[(name, feature)].append(doc["id"])
  return {"split": split, "shard": shard, "path": path, "styles": styles,
          "ids": ids, "words": words,
          "supports": {k: np.asarray(v, np.int64) for k, v in
                       supports.items()}}


def _finalize(fragments: list[dict], dedup: dict, corpus_dir: str,
              scratch: str) -> None:
  """Concatenates fragments per split (id order); writes merged counts."""
  fragments = sorted(fragments, key=lambda f: (f["split"], f["shard"]))
  for s, name in enumerate(release.SPLITS):
    with files.atomic_open(os.path.join(corpus_dir, f"{name}.jsonl")) as out:
      for frag in fragments:
        if frag["split"] == s:
          with open(frag["path"], encoding="utf-8") as f:
            shutil.copyfileobj(f, out, 1 << 20)
  by_split_style = {s: collections.Counter() for s in release.SPLITS}
  parts = collections.defaultdict(list)
  for frag in fragments:
    by_split_style[release.SPLITS[frag["split"]]].update(frag["styles"])
    for key, ids in frag["supports"].items():
      parts[key].append(ids)
  ids = np.concatenate([f["ids"] for f in fragments])
  w = np.concatenate([f["words"] for f in fragments])[np.argsort(ids)]
  stats = {
      "by_split_style": {s: dict(sorted(c.items()))
                         for s, c in by_split_style.items()},
      "dedup": dedup,
      "words_per_document": {"min": int(w.min()),
                             "median": float(np.median(w)),
                             "max": int(w.max()),
                             "mean": round(float(w.mean()), 3)},
  }
  supports = {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
  with files.atomic_open(os.path.join(scratch, _RESULT), "wb") as f:
    pickle.dump({"supports": supports, "stats": stats}, f,
                protocol=pickle.HIGHEST_PROTOCOL)


def corpus_pipeline(pipeline: beam.Pipeline, config: release.ReleaseConfig,
                    corpus_dir: str, scratch: str,
                    shard_docs: int = SHARD_DOCS) -> None:
  """Adds the corpus transforms to `pipeline` (writes under the two dirs)."""
  gen = (pipeline
         | "Config" >> beam.Create([None])
         | "Generate" >> beam.ParDo(_Generate(config, shard_docs))
         .with_output_types(Tuple[Tuple[int, int], Any])
         .with_outputs(_Generate.DEDUP, main="docs"))
  fragments = (gen.docs
               | "ByShard" >> beam.GroupByKey()
               | "WriteFragment" >> beam.Map(_write_fragment, scratch)
               | "AllFragments" >> beam.combiners.ToList())
  _ = (fragments
       | "Finalize" >> beam.Map(
           _finalize, beam.pvalue.AsSingleton(gen[_Generate.DEDUP]),
           corpus_dir, scratch))


def check_runner(runner: str) -> None:
  _validate.one_of("--runner", runner, RUNNERS)


def _runner(name: str):
  """The runner object; None lets Beam resolve `name` from the options.

  DirectRunner: Beam's in-process FnApiRunner, which is what DirectRunner
  runs a batch pipeline on after first trying the Prism runner (Beam >=
  2.6x), a Go binary it downloads at run time; we skip that attempt.
  ``--direct_num_workers`` / ``--direct_running_mode`` still apply.
  """
  if name == "DirectRunner":
    from apache_beam.runners.portability.fn_api_runner import fn_runner  # pylint: disable=g-import-not-at-top
    return fn_runner.FnApiRunner()
  return None


def generate_corpus(config: release.ReleaseConfig, world, corpus_dir: str, *,
                    runner: str = "DirectRunner",
                    pipeline_args: Sequence[str] = (),
                    shard_docs: int = SHARD_DOCS) -> tuple[dict, dict]:
  """Drop-in for `release._generate_corpus`: (supports, stats), via Beam.

  `world` is rebuilt on the worker from `config` (it is a pure function of
  it); the argument is only checked against that.
  """
  check_runner(runner)
  _validate.positive("shard_docs", shard_docs)
  if world is not None:
    _validate.check(
        len(world.creatures) == len(release.make_world(config).creatures),
        "world does not belong to config.")
  scratch = os.path.join(os.path.dirname(os.path.abspath(corpus_dir)),
                         _SCRATCH)
  os.makedirs(scratch, exist_ok=True)
  os.makedirs(corpus_dir, exist_ok=True)
  try:
    options = PipelineOptions(list(pipeline_args), runner=runner)
    with beam.Pipeline(runner=_runner(runner), options=options) as p:
      corpus_pipeline(p, config, os.path.abspath(corpus_dir), scratch,
                      shard_docs)
    with open(os.path.join(scratch, _RESULT), "rb") as f:
      result = pickle.load(f)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return result["supports"], result["stats"]


_SWAP = threading.Lock()


@contextlib.contextmanager
def _corpus_stage(fn):
  """Routes `release`'s corpus stage to `fn` for the duration (one build at
  a time in this process; `release` has no injection point)."""
  with _SWAP:
    original = release._generate_corpus  # pylint: disable=protected-access
    release._generate_corpus = fn  # pylint: disable=protected-access
    try:
      yield
    finally:
      release._generate_corpus = original  # pylint: disable=protected-access


def parse_pipeline_args(text: Optional[str]) -> list[str]:
  """``--beam_options`` string -> argument list (shell quoting rules)."""
  try:
    return shlex.split(text or "")
  except ValueError as e:
    raise _validate.CbenchError(f"--beam_options: {e}") from e


def build_release(config: release.ReleaseConfig, out_dir: str,
                  overwrite: bool = False, *, runner: str = "DirectRunner",
                  pipeline_args: Sequence[str] = (),
                  shard_docs: int = SHARD_DOCS) -> dict:
  """`release.build_release` with the corpus stage on Beam; its manifest.

  Raises:
    CbenchError: an unknown runner, or what `release.build_release` raises.
  """
  check_runner(runner)
  fn = functools.partial(generate_corpus, runner=runner,
                         pipeline_args=tuple(pipeline_args),
                         shard_docs=shard_docs)
  with _corpus_stage(fn):
    return release.build_release(config, out_dir, overwrite)


def build_public_world(out_dir: str, overwrite: bool = False,
                       track: str = "geminon", *,
                       runner: str = "DirectRunner",
                       pipeline_args: Sequence[str] = (),
                       shard_docs: int = SHARD_DOCS) -> dict:
  """`release.build_public_world` with the corpus stage on Beam."""
  check_runner(runner)
  fn = functools.partial(generate_corpus, runner=runner,
                         pipeline_args=tuple(pipeline_args),
                         shard_docs=shard_docs)
  with _corpus_stage(fn):
    return release.build_public_world(out_dir, overwrite, track=track)
