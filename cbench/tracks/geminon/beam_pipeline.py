"""Releases built with Apache Beam, byte-identical to `geminon.build_release`.

    manifest = beam_pipeline.build_release(config, out_dir,
                                           runner="DirectRunner")

Same layout, files and manifest as the single-process path (`release`),
for the same `ReleaseConfig`: only the corpus stage (generation,
near-duplicate removal, splits, support counting) runs as a Beam pipeline,
passed to `geminon.build_release` as its `corpus_stage`; QA, the TFDS
export, README and manifest are then written by the unchanged
single-process code.

The pipeline (generator `geminon-1.1`: a shard of document slots is a pure
function of (seed, shard), see `geminon.generate_shard`):

  Create(shard ids) -> Reshuffle
  -> Generate        per shard, in parallel: render the shard's documents
                     (scratch docs-K.pkl), MinHash signatures (scratch
                     sig-K.npy), and emit its (band key, slot) entries in
                     `PARTITIONS` batches keyed by key % PARTITIONS
  -> GroupByKey      all entries of one key range together
  -> FindRemoved     per key range, in parallel: `dedup.removed_in_group`
                     (slot i is removed iff an earlier slot shares a band
                     key with it and has estimated Jaccard >= 0.8; the
                     signatures are read back from the sig-K.npy files)
  -> ToList -> Union the removed slots (one small sorted array)
  -> WriteShard      per shard, in parallel, with the removed slots as a
                     side input: drop them, split each slot
                     (`release.assign_splits`), write one fragment per
                     split, tally styles, words and train supports
  -> ToList -> Finalize
                     ONE worker: concatenate each split's fragments in shard
                     order (= id order), merge the tallies in shard order,
                     write the result for the driver

The removal rule and the splits do not depend on processing order, and
everything is reassembled in shard order, so the output equals
`geminon.generate_corpus` byte for byte (tested on `demo`, 3 shards).

Runners: any Beam runner (`RUNNERS`; DirectRunner means the in-process
FnApiRunner, never the Prism binary download); extra pipeline options
(project, region, temp_location, flink_master, direct_num_workers, ...) go
in `pipeline_args`. The output directory must be on a filesystem that the
driver and every worker see at the same path (local disk for DirectRunner
or a local Flink/Spark; NFS, Filestore or gcsfuse otherwise): cbench's IO
is POSIX. Workers need cbench installed (e.g. ``--setup_file=./setup.py``
or a custom container).

Privacy: none here; the corpus is synthetic (see `release`).
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
from typing import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
import numpy as np

from cbench import _validate
from cbench.corpus import beam as beam_lib
from cbench.corpus import dedup as dedup_lib
from cbench.corpus import release
from cbench.io import files
from cbench.tracks.geminon import generator as geminon

PARTITIONS = 16  # Key ranges the band-key grouping is batched into.
_SCRATCH = ".beam-scratch"
_RESULT = "result.pkl"


def _docs_path(scratch: str, shard: int) -> str:
  return os.path.join(scratch, f"docs-{shard:07d}.pkl")


def _sig_path(scratch: str, shard: int) -> str:
  return os.path.join(scratch, f"sig-{shard:07d}.npy")


class _GenerateShard(beam.DoFn):
  """Renders one shard; emits its band-key entries and a 'done' marker."""

  DONE = "done"

  def __init__(self, config: geminon.ReleaseConfig, scratch: str,
               partitions: int):
    super().__init__()
    self._config = config
    self._scratch = scratch
    self._partitions = partitions
    self._world = None

  def setup(self):
    self._world = geminon.make_world(self._config)  # Pure in the config.

  def process(self, shard: int):
    docs = geminon.generate_shard(self._config, self._world, shard)
    # Atomic writes: a retried bundle rewrites the same bytes.
    with files.atomic_open(_docs_path(self._scratch, shard), "wb") as f:
      pickle.dump(docs, f, protocol=pickle.HIGHEST_PROTOCOL)
    sigs = dedup_lib.signatures([d["text"] for d in docs])
    with files.atomic_open(_sig_path(self._scratch, shard), "wb") as f:
      np.save(f, sigs)
    keys = dedup_lib.band_keys(sigs).ravel()
    idx = np.repeat(np.arange(shard * geminon.SHARD_DOCS,
                              shard * geminon.SHARD_DOCS + len(docs),
                              dtype=np.int64), dedup_lib.BANDS)
    part = (keys % np.uint64(self._partitions)).astype(np.int64)
    for p in np.unique(part).tolist():
      sel = part == p
      yield p, (keys[sel], idx[sel])
    yield beam.pvalue.TaggedOutput(self.DONE, shard)


def _find_removed(item, scratch: str) -> np.ndarray:
  """Removed slots among one key range's entries (sorted int64)."""
  _, entries = item
  entries = list(entries)
  keys = np.concatenate([k for k, _ in entries])
  idx = np.concatenate([i for _, i in entries])
  cache: dict[int, np.ndarray] = {}

  def sig_of(ids: np.ndarray) -> np.ndarray:
    shard = ids // geminon.SHARD_DOCS
    out = np.empty((ids.size, dedup_lib.NUM_PERM), np.uint32)
    for k in np.unique(shard).tolist():
      if k not in cache:
        cache[k] = np.load(_sig_path(scratch, k), mmap_mode="r")
      sel = shard == k
      out[sel] = cache[k][ids[sel] - k * geminon.SHARD_DOCS]
    return out

  return dedup_lib.removed_in_group(keys, idx, sig_of)


def _union(parts: list[np.ndarray]) -> np.ndarray:
  if not parts:
    return np.empty(0, np.int64)
  return np.unique(np.concatenate(parts)).astype(np.int64)


def _write_shard(shard: int, removed: np.ndarray, seed: int,
                 scratch: str) -> dict:
  """Writes one shard's kept documents, one fragment per split."""
  with open(_docs_path(scratch, shard), "rb") as f:
    docs = pickle.load(f)
  gone = np.isin(np.array([d["id"] for d in docs], np.int64), removed)
  paths = [os.path.join(scratch, f"{s}-{shard:07d}.jsonl")
           for s in release.SPLITS]
  tally = geminon.CorpusTally()
  with files.atomic_open(paths[0]) as a, files.atomic_open(paths[1]) as b, \
      files.atomic_open(paths[2]) as c:
    geminon.write_documents(docs, gone, seed, (a, b, c), tally)
  return {"shard": shard, "paths": paths, "tally": tally}


def _finalize(fragments: list[dict], removed: np.ndarray, n_slots: int,
              corpus_dir: str, scratch: str) -> None:
  """Concatenates the fragments per split and merges the tallies, both in
  shard order; writes (supports, stats) for the driver."""
  fragments = sorted(fragments, key=lambda f: f["shard"])
  for s, name in enumerate(release.SPLITS):
    with files.atomic_open(os.path.join(corpus_dir, f"{name}.jsonl")) as out:
      for frag in fragments:
        with open(frag["paths"][s], encoding="utf-8") as f:
          shutil.copyfileobj(f, out, 1 << 20)
  tally = geminon.CorpusTally()
  for frag in fragments:
    tally.merge(frag["tally"])
  supports, stats = tally.result(n_slots, int(removed.size))
  with files.atomic_open(os.path.join(scratch, _RESULT), "wb") as f:
    pickle.dump({"supports": supports, "stats": stats}, f,
                protocol=pickle.HIGHEST_PROTOCOL)


def corpus_pipeline(pipeline: beam.Pipeline, config: geminon.ReleaseConfig,
                    n_shards: int, n_slots: int, corpus_dir: str,
                    scratch: str, partitions: int = PARTITIONS) -> None:
  """Adds the corpus transforms to `pipeline` (writes under the two dirs)."""
  gen = (pipeline
         | "Shards" >> beam.Create(list(range(n_shards)))
         | "Spread" >> beam.Reshuffle()
         | "Generate" >> beam.ParDo(_GenerateShard(config, scratch,
                                                   partitions))
         .with_outputs(_GenerateShard.DONE, main="entries"))
  removed = (gen.entries
             | "ByKeyRange" >> beam.GroupByKey()
             | "FindRemoved" >> beam.Map(_find_removed, scratch)
             | "AllRemoved" >> beam.combiners.ToList()
             | "Union" >> beam.Map(_union))
  removed_side = beam.pvalue.AsSingleton(removed)
  fragments = (gen[_GenerateShard.DONE]
               | "SpreadWrites" >> beam.Reshuffle()
               | "WriteShard" >> beam.Map(_write_shard, removed_side,
                                          config.seed, scratch)
               | "AllFragments" >> beam.combiners.ToList())
  _ = (fragments
       | "Finalize" >> beam.Map(_finalize, removed_side, n_slots,
                                corpus_dir, scratch))


def generate_corpus(config: geminon.ReleaseConfig, world, corpus_dir: str,
                    *, runner: str = "DirectRunner",
                    pipeline_args: Sequence[str] = (),
                    partitions: int = PARTITIONS) -> tuple[dict, dict]:
  """`geminon.generate_corpus` on Beam: a `geminon.CorpusStage`.

  `world` must be `geminon.make_world(config)` (workers rebuild it from
  `config`); it sizes the shard list.
  """
  beam_lib.check_runner(runner)
  _validate.positive("partitions", partitions)
  scratch = os.path.join(os.path.dirname(os.path.abspath(corpus_dir)),
                         _SCRATCH)
  os.makedirs(scratch, exist_ok=True)
  os.makedirs(corpus_dir, exist_ok=True)
  try:
    options = PipelineOptions(list(pipeline_args), runner=runner)
    with beam.Pipeline(runner=beam_lib.runner(runner), options=options) as p:
      corpus_pipeline(p, config, geminon.num_shards(config, world),
                      geminon.num_slots(config, world),
                      os.path.abspath(corpus_dir), scratch, partitions)
    with open(os.path.join(scratch, _RESULT), "rb") as f:
      result = pickle.load(f)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return result["supports"], result["stats"]


def _stage(runner: str, pipeline_args: Sequence[str], partitions: int):
  beam_lib.check_runner(runner)
  return functools.partial(generate_corpus, runner=runner,
                           pipeline_args=tuple(pipeline_args),
                           partitions=partitions)


def build_release(config: geminon.ReleaseConfig, out_dir: str,
                  overwrite: bool = False, *, runner: str = "DirectRunner",
                  pipeline_args: Sequence[str] = (),
                  partitions: int = PARTITIONS) -> dict:
  """`geminon.build_release` with the corpus stage on Beam; its manifest.

  Raises:
    CbenchError: an unknown runner, or what `geminon.build_release` raises.
  """
  return geminon.build_release(
      config, out_dir, overwrite,
      corpus_stage=_stage(runner, pipeline_args, partitions))


def build_public_world(out_dir: str, overwrite: bool = False,
                       track: str = "geminon", *,
                       runner: str = "DirectRunner",
                       pipeline_args: Sequence[str] = (),
                       partitions: int = PARTITIONS) -> dict:
  """`geminon.build_public_world` with the corpus stage on Beam."""
  return geminon.build_public_world(
      out_dir, overwrite, track=track,
      corpus_stage=_stage(runner, pipeline_args, partitions))
