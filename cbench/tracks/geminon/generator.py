"""The Geminon generator: a release (or the public world) of fictional creatures.

Layout written by `build_release` / `build_public_world` under DIR (the
shared release layout of `cbench.corpus.release`, which also reads it):
  corpus/{train,val,test}.jsonl   {"id", "text", "style", "facts"}
  tfds/cbench_geminon/1.0.0/...   the same corpus, array_record TFDS
  qa/{public,sensitive}_{val,test}.jsonl
                                  {"id", "question", "answer", "aliases",
                                   "creature", "feature", "supports"}
  qa/public_train.jsonl           (public world only) every question
  manifest.json                   sizes, seeds, support and chance stats,
                                  sha256 of every other file
  README.md                       the datasheet

Determinism: the seed is derived from the release id by SHA-256; every random
choice comes from `np.random.Generator`s seeded by (seed, stream) or from
keyed hashes of (seed, document id); JSON is written with sorted keys. The
same arguments give byte-identical files (TFDS files included; see
`tfds_export`).

Generation (generator `geminon-1.1`) is sharded: document slot i belongs to
shard i // SHARD_DOCS, and a shard is a pure function of (seed, shard)
(`generate_shard`: its own generator and balanced decks). Near-duplicate
removal (`dedup`: slot i is dropped iff an earlier slot is an LSH candidate
with estimated Jaccard >= 0.8; nothing is re-rendered), the split of a slot
(`assign_splits`: keyed hash of (seed, id)) and the support lists (from
provenance, in id order) do not depend on the order in which shards are
processed. So the corpus can be built by streaming the shards here
(`generate_corpus`) or in parallel on Apache Beam
(`cbench.tracks.geminon.beam_pipeline`), with byte-identical output. Document ids
are slot numbers: ascending, with gaps where dedup removed a document.

Memory: one shard of documents at a time; what stays in RAM is the world, the
style of every slot (int16), the near-duplicate index (signatures and band
keys, ~660 B per slot, see `dedup`; no texts) and the support lists (one
int32 per train-document fact mention: about 1.5M at `small`).

Privacy unit: one document. Sensitive creatures appear only in the
`lab_dossier` style, in `dossiers_per_sensitive` documents each.
"""

from __future__ import annotations

import array
import collections
import contextlib
import dataclasses
import functools
import os
from typing import Callable, Mapping, Optional

import numpy as np

from cbench import _validate
from cbench._validate import CbenchError
from cbench.corpus import answers
from cbench.corpus import dedup as dedup_lib
from cbench.corpus import release as release_lib
from cbench.corpus import tfds_export
from cbench.io import files
from cbench.tracks.geminon import names as names_lib
from cbench.tracks.geminon import qa as qa_lib
from cbench.tracks.geminon import render as render_lib
from cbench.tracks.geminon import world as world_lib

# 1.1: sharded generation (per-shard streams and decks), order-independent
# dedup without re-rendering, splits by keyed hash of the slot id.
GENERATOR_VERSION = "geminon-1.1"
TRACK = "geminon"
SPLITS = release_lib.SPLITS
# Document slots per generation shard. Part of the generator: changing it
# changes every release (bump GENERATOR_VERSION).
SHARD_DOCS = 2000
PUBLIC_RELEASE_ID = "public"

_MIX_SMALL = (("comparison", 0.40), ("trainer_notes", 0.10),
              ("chronicle", 0.20), ("journal", 0.20), ("wiki", 0.10))
_MIX_MEDIUM = (("comparison", 0.25), ("trainer_notes", 0.05),
               ("chronicle", 0.10), ("journal", 0.30), ("wiki", 0.30))
_MIX_LARGE = (("comparison", 0.30), ("trainer_notes", 0.10),
              ("chronicle", 0.10), ("journal", 0.25), ("wiki", 0.25))


@dataclasses.dataclass(frozen=True)
class SizeSpec:
  """How big a world and corpus are.

  Attributes:
    lines_per_length: evolution lines of each length (1, 2 and 3 stages).
    sensitive_lines_per_length: of those, sensitive lines per length.
    public_docs: public-style document slots (before dedup, which removes
      well under 1%).
    style_mix: (style, fraction) of the public documents.
    min_support: public questions with fewer train supports are dropped.
    dossiers_per_sensitive: lab dossiers per sensitive creature.
  """
  lines_per_length: int
  sensitive_lines_per_length: int
  public_docs: int
  style_mix: tuple[tuple[str, float], ...]
  min_support: int
  dossiers_per_sensitive: int


SIZES: Mapping[str, SizeSpec] = {
    # `make demo`'s grid on 2 CPU cores: 6 public + 6 sensitive creatures.
    "mini": SizeSpec(2, 1, 1100, _MIX_SMALL, 20, 4),
    "demo": SizeSpec(6, 1, 5400, _MIX_SMALL, 20, 4),
    "small": SizeSpec(100, 20, 200_000, _MIX_SMALL, 100, 4),
    "medium": SizeSpec(100, 20, 1_000_000, _MIX_MEDIUM, 100, 4),
    "large": SizeSpec(100, 20, 2_000_000, _MIX_LARGE, 100, 4),
}
# The public world: ~60 creatures, no sensitive lines, every question kept.
PUBLIC_WORLD = SizeSpec(10, 0, 6000, _MIX_SMALL, 0, 0)


@dataclasses.dataclass(frozen=True)
class ReleaseConfig:
  """Everything that determines a release (see `make_config`)."""
  track: str
  release_id: str
  size: str
  seed: int
  min_support: int
  generator_version: str = GENERATOR_VERSION

  def __post_init__(self):
    if self.release_id != PUBLIC_RELEASE_ID:
      _validate.one_of("--size", self.size, list(SIZES))
    _validate.non_negative("--min_support", self.min_support)

  @property
  def spec(self) -> SizeSpec:
    if self.release_id == PUBLIC_RELEASE_ID:
      return PUBLIC_WORLD
    return SIZES[self.size]

  @property
  def name_slot(self) -> int:
    if self.release_id == PUBLIC_RELEASE_ID:
      return names_lib.PUBLIC_SLOT
    return names_lib.release_slot(self.release_id)


def check_track(track: str) -> None:
  """This generator builds the Geminon track only (`cbench.tracks` has all)."""
  _validate.one_of("--track", track, (TRACK,))


def make_config(track: str, release_id: str, size: str,
                min_support: Optional[int] = None) -> ReleaseConfig:
  """Validates user input and derives the seed.

  Raises:
    CbenchError naming --track, --release, --size or --min_support.
  """
  check_track(track)
  names_lib.release_slot(release_id, flag="release")
  _validate.one_of("--size", size, list(SIZES))
  if min_support is None:
    min_support = SIZES[size].min_support
  _validate.non_negative("--min_support", min_support)
  return ReleaseConfig(track=track, release_id=release_id, size=size,
                       seed=release_lib.derive_seed(track, release_id),
                       min_support=int(min_support))


def public_world_config(track: str = "geminon") -> ReleaseConfig:
  check_track(track)
  return ReleaseConfig(track=track, release_id=PUBLIC_RELEASE_ID,
                       size=PUBLIC_RELEASE_ID,
                       seed=release_lib.derive_seed(track, PUBLIC_RELEASE_ID),
                       min_support=PUBLIC_WORLD.min_support)


def make_world(config: ReleaseConfig,
               name_slot: Optional[int] = None) -> world_lib.World:
  """The world of `config`; `name_slot` overrides the config's name slot."""
  spec = config.spec
  n, k = spec.lines_per_length, spec.sensitive_lines_per_length
  return world_lib.generate_world(
      np.random.default_rng([config.seed, 0]).integers(2**63),
      lines_per_length={1: n, 2: n, 3: n},
      sensitive_lines_per_length={1: k, 2: k, 3: k},
      name_slot=config.name_slot if name_slot is None else name_slot)


def _style_counts(total: int, mix) -> dict[str, int]:
  """Exact per-style counts (largest remainder)."""
  raw = {s: total * p for s, p in mix}
  counts = {s: int(v) for s, v in raw.items()}
  short = total - sum(counts.values())
  for s in sorted(raw, key=lambda s: (-(raw[s] - counts[s]), s))[:short]:
    counts[s] += 1
  return counts


def num_slots(config: ReleaseConfig, world: world_lib.World) -> int:
  """Document slots before dedup: public documents + lab dossiers."""
  spec = config.spec
  return spec.public_docs + spec.dossiers_per_sensitive * len(world.sensitive)


def num_shards(config: ReleaseConfig, world: world_lib.World) -> int:
  """Generation shards: slots [k*SHARD_DOCS, (k+1)*SHARD_DOCS) each."""
  return -(-num_slots(config, world) // SHARD_DOCS)


@functools.lru_cache(maxsize=8)
def _style_codes(config: ReleaseConfig, n_sensitive: int) -> np.ndarray:
  """The style of every slot (read-only int16 [num_slots]).

  Code c < len(PUBLIC_STYLES) is that public style; code len + j is a lab
  dossier about sensitive creature j. Exact style counts (largest
  remainder), then one permutation from the stream (seed, 2): a pure
  function of the config, O(slots) (~0.1-0.4 s at 2M slots), computed once
  per process that needs it (cached).
  """
  spec = config.spec
  counts = _style_counts(spec.public_docs, spec.style_mix)
  styles = render_lib.PUBLIC_STYLES
  codes = np.concatenate(
      [np.full(counts.get(s, 0), i, np.int16) for i, s in enumerate(styles)]
      + [np.full(spec.dossiers_per_sensitive, len(styles) + j, np.int16)
         for j in range(n_sensitive)])
  codes = codes[np.random.default_rng([config.seed, 2]).permutation(
      len(codes))]
  codes.flags.writeable = False
  return codes


def generate_shard(config: ReleaseConfig, world: world_lib.World,
                   shard: int) -> list[dict]:
  """The documents of slots [shard*SHARD_DOCS, ...), before dedup.

  A pure function of (config, shard): its own `render.Renderer` (own decks)
  on the generator seeded by (seed, 1, shard), so shards can be generated
  by different workers in any order. Each document is {"id" (= slot),
  "text", "style", "facts"}.

  Raises:
    ValueError if `shard` is out of range.
  """
  n = num_shards(config, world)
  if not 0 <= shard < n:
    raise ValueError(f"shard {shard} not in [0, {n}).")
  codes = _style_codes(config, len(world.sensitive))
  lo = shard * SHARD_DOCS
  hi = min(lo + SHARD_DOCS, len(codes))
  renderer = render_lib.Renderer(
      world, np.random.default_rng([config.seed, 1, shard]))
  styles = render_lib.PUBLIC_STYLES
  sensitive = world.sensitive
  out = []
  for doc_id, code in enumerate(codes[lo:hi].tolist(), lo):
    if code < len(styles):
      doc = renderer.render(styles[code])
    else:
      doc = renderer.render_sensitive(sensitive[code - len(styles)])
    doc["id"] = doc_id
    out.append(doc)
  return out


class CorpusTally:
  """Counts of written documents: styles per split, words, train supports.

  Documents must be added (and tallies merged) in ascending id order, so
  support lists stay sorted. Picklable (Beam moves it between workers).
  """

  def __init__(self):
    self.by_split_style = {s: collections.Counter() for s in SPLITS}
    self.words = array.array("i")
    self.supports: dict = {}

  def add(self, doc: dict, split: int) -> None:
    self.by_split_style[SPLITS[split]][doc["style"]] += 1
    self.words.append(len(doc["text"].split()))
    if split == 0:
      for name, feature in doc["facts"]:
        key = (name, feature)
        ids = self.supports.get(key)
        if ids is None:
          ids = self.supports[key] = array.array("i")
        ids.append(doc["id"])

  def merge(self, other: "CorpusTally") -> None:
    """Appends `other`, whose documents all come after this one's."""
    for s in SPLITS:
      self.by_split_style[s].update(other.by_split_style[s])
    self.words.extend(other.words)
    for key, ids in other.supports.items():
      mine = self.supports.get(key)
      if mine is None:
        self.supports[key] = array.array("i", ids)
      else:
        mine.extend(ids)

  def result(self, generated: int, removed: int) -> tuple[dict, dict]:
    """(supports, stats) as `_build_into` takes them."""
    w = np.frombuffer(self.words, dtype=np.int32)
    stats = {
        "by_split_style": {s: dict(sorted(c.items()))
                           for s, c in self.by_split_style.items()},
        "dedup": {"generated": int(generated), "removed": int(removed),
                  "removed_fraction": round(removed / generated, 6)
                                      if generated else 0.0,
                  "threshold": dedup_lib.THRESHOLD,
                  "num_perm": dedup_lib.NUM_PERM,
                  "shingle_words": dedup_lib.SHINGLE,
                  "bands": dedup_lib.BANDS, "rows": dedup_lib.ROWS,
                  "rule": "removed iff an earlier document is an LSH "
                          "candidate with estimated Jaccard >= threshold"},
        "words_per_document": {"min": int(w.min()),
                               "median": float(np.median(w)),
                               "max": int(w.max()),
                               "mean": round(float(w.mean()), 3)},
    }
    return self.supports, stats


def write_documents(docs: list[dict], removed: np.ndarray, seed: int,
                    handles, tally: CorpusTally) -> None:
  """Writes the kept `docs` (ascending ids) to handles[split]; tallies."""
  splits = release_lib.assign_splits(seed, [d["id"] for d in docs]).tolist()
  for doc, split, gone in zip(docs, splits, np.asarray(removed).tolist()):
    if not gone:
      handles[split].write(files.dumps_record(doc) + "\n")
      tally.add(doc, split)


# (config, world, corpus_dir) -> (supports, stats); see `generate_corpus`.
CorpusStage = Callable[[ReleaseConfig, world_lib.World, str],
                       tuple[dict, dict]]


def generate_corpus(config: ReleaseConfig, world: world_lib.World,
                    corpus_dir: str) -> tuple[dict, dict]:
  """The single-process corpus stage: writes corpus/{split}.jsonl.

  Streams the shards in order: generate, MinHash signatures, near-duplicate
  check against every earlier slot (`dedup.NearDuplicateIndex`), split,
  write. Returns (supports, stats); supports = {(creature, feature): train
  document ids, ascending}. `beam_pipeline.generate_corpus` is the same
  stage on Beam, byte for byte.
  """
  index = dedup_lib.NearDuplicateIndex()
  tally = CorpusTally()
  paths = [os.path.join(corpus_dir, f"{s}.jsonl") for s in SPLITS]
  with contextlib.ExitStack() as stack:
    handles = [stack.enter_context(files.atomic_open(p)) for p in paths]
    for k in range(num_shards(config, world)):
      docs = generate_shard(config, world, k)
      removed = index.add(k * SHARD_DOCS, dedup_lib.signatures(
          [d["text"] for d in docs]))
      write_documents(docs, removed, config.seed, handles, tally)
  return tally.result(index.seen, index.removed)


def _summary(records) -> Optional[dict]:
  return answers.support_summary(records)


def _write_readme(path: str, config: ReleaseConfig, m: dict) -> None:
  docs = m["documents"]
  lines = [
      f"# cbench Geminon release `{config.release_id}` ({config.size})",
      "",
      "## What",
      "A synthetic text corpus about procedurally generated fictional "
      "creatures (\"Geminons\") and a question-answering set about their "
      "facts. No model has seen these facts: they exist only in this "
      "release, so QA accuracy measures knowledge carried by training "
      "text (e.g. differentially private synthetic text) into a model.",
      "",
      "## How it was generated",
      f"- Generator `{config.generator_version}` of cbench "
      # Frozen wording: the datasheet is part of a release's bytes, and
      # releases of generator geminon-1.1 stay byte-identical (the code now
      # lives in cbench/tracks/geminon).
      "(`cbench/corpus`), track "
      f"`{config.track}`, seed {config.seed} (SHA-256 of the release id).",
      f"- World: {m['world']['creatures']} creatures in evolution lines of "
      f"1-3 stages ({m['world']['public']} public, "
      f"{m['world']['sensitive']} sensitive); names are disjoint from every "
      "other release and from the public world by construction (keyed "
      "name hash slot).",
      "- Documents rendered from grammars in the styles "
      f"{', '.join(sorted(docs['by_style']))}; each document lists the "
      "(creature, feature) facts it states, each verifiably present in its "
      "text.",
      "- Generated in shards of {m['documents']['shard_docs']} document "
      "slots, each from its own random stream, so shards build in "
      "parallel (the Beam path gives the same bytes).",
      "- Near-duplicates removed with MinHash LSH (Jaccard 0.8, 5-word "
      "shingles, 128 permutations, 9 bands of 13): a document is dropped "
      "if an earlier one is an LSH candidate with estimated Jaccard >= "
      f"0.8; removed fraction {m['dedup']['removed_fraction']}.",
      "- Split 90/5/5 into train/val/test (seeded hash of the document "
      "id). QA supports are train documents only.",
      "",
      "## Sizes",
      "| split | documents |", "|---|---|",
  ] + [f"| {s} | {docs['by_split'][s]} |" for s in SPLITS] + [
      "", "| QA set | questions | support min | median | max |",
      "|---|---|---|---|---|",
  ] + [f"| {k} | {n} | " + (" | ".join(str(m['support'][k][x]) for x in
                                      ("min", "median", "max"))
                            if m["support"].get(k) else "- | - | -") + " |"
       for k, n in sorted(m["questions"].items())] + [
      "",
      f"Public questions with fewer than {config.min_support} train "
      f"supports were dropped: {m['dropped_public_questions']}.",
      "",
      "## Intended use",
      "Train a model (or a DP synthesiser and then a model) on "
      "`corpus/train.jsonl` and score `qa/public_*`. Public facts are each "
      "stated in many independent documents, so a DP method can learn them. "
      "Sensitive creatures appear only in a few `lab_dossier` documents: "
      "a method that is differentially private at the document level "
      "must NOT learn their facts (`qa/sensitive_*` measures leakage). "
      "Few-shot exemplars must come from the public world, never from a "
      "release. Do not train on val/test documents or QA sets.",
      "",
      "## Licence",
      "CC BY 4.0. Entirely synthetic; contains no personal data.",
      "",
      "## How to cite",
      "Cite cbench and the benchmark design it follows: P. Liu et al., "
      "\"ContinuousBench\" (2026), Geminon track. Name the release id "
      f"(`{config.release_id}`), size (`{config.size}`) and generator "
      f"version (`{config.generator_version}`).",
      "",
  ]
  files.write_text(path, "\n".join(lines))


def _build(config: ReleaseConfig, out_dir: str, overwrite: bool,
           include_train: bool, corpus_stage: Optional[CorpusStage]) -> dict:
  return release_lib.build_atomically(
      out_dir, overwrite, lambda root: _build_into(
          config, root, include_train, corpus_stage or generate_corpus))


def _build_into(config: ReleaseConfig, root: str, include_train: bool,
                corpus_stage: CorpusStage) -> dict:
  spec = config.spec
  world = make_world(config)
  supports, gen = corpus_stage(config, world, os.path.join(root, "corpus"))
  qa_sets, qa_stats = qa_lib.build_qa(
      world, supports, config.min_support,
      np.random.default_rng([config.seed, 4]), include_train=include_train)
  for name, records in qa_sets.items():
    files.write_jsonl(os.path.join(root, "qa", f"{name}.jsonl"), records)
  tfds_info = tfds_export.export_tfds(os.path.join(root, "corpus"),
                                      os.path.join(root, "tfds"))
  by_split = {s: sum(gen["by_split_style"][s].values()) for s in SPLITS}
  by_style = collections.Counter()
  for c in gen["by_split_style"].values():
    by_style.update(c)
  manifest = {
      "track": config.track,
      "release_id": config.release_id,
      "size": config.size,
      "seed": config.seed,
      "generator_version": config.generator_version,
      "min_support": config.min_support,
      "world": {
          "creatures": len(world.creatures),
          "public": len(world.public),
          "sensitive": len(world.sensitive),
          "lines_per_length": spec.lines_per_length,
          "sensitive_lines_per_length": spec.sensitive_lines_per_length,
          "name_slot": config.name_slot,
      },
      "documents": {
          "total": sum(by_split.values()),
          "by_split": by_split,
          "by_style": dict(sorted(by_style.items())),
          "by_split_style": gen["by_split_style"],
          "words_per_document": gen["words_per_document"],
          "style_mix": dict(sorted(spec.style_mix)),
          "dossiers_per_sensitive_creature": spec.dossiers_per_sensitive,
          "shard_docs": SHARD_DOCS,
          "shards": num_shards(config, world),
      },
      "dedup": gen["dedup"],
      "questions": qa_stats["questions"],
      "dropped_public_questions": qa_stats["dropped_public"],
      "support": {k: _summary(v) for k, v in sorted(qa_sets.items())},
      "chance_accuracy": {
          "public": _rounded(world_lib.chance_accuracy(world, world.public)),
          "sensitive": _rounded(world_lib.chance_accuracy(world,
                                                          world.sensitive)),
      },
      "tfds": {"name": tfds_info["name"], "version": tfds_info["version"],
               "data_dir": "tfds", "num_examples": tfds_info["num_examples"]},
  }
  if tfds_info["num_examples"] != by_split:
    raise RuntimeError(f"TFDS export wrote {tfds_info['num_examples']} "
                       f"records, the corpus has {by_split}.")
  _write_readme(os.path.join(root, "README.md"), config, manifest)
  manifest["files"] = release_lib.hash_tree(root)
  files.write_json(os.path.join(root, "manifest.json"), manifest)
  return manifest


def _rounded(d: Mapping[str, float]) -> dict[str, float]:
  return {k: round(v, 6) for k, v in d.items()}


def build_release(config: ReleaseConfig, out_dir: str,
                  overwrite: bool = False, *,
                  corpus_stage: Optional[CorpusStage] = None) -> dict:
  """Builds a release into `out_dir`; returns its manifest.

  The release is built in a temporary sibling directory and renamed into
  place at the end, so a failure never leaves a partial release or destroys
  an existing one.

  Args:
    config: from `make_config`.
    out_dir: the release directory.
    overwrite: replace an existing `out_dir`.
    corpus_stage: writes corpus/{split}.jsonl and returns (supports, stats)
      (default `generate_corpus`, in this process; `beam_pipeline` passes
      its Beam stage). Must give the same bytes as the default.

  Raises:
    CbenchError if `out_dir` exists and not `overwrite`.
  """
  if config.release_id == PUBLIC_RELEASE_ID:
    raise CbenchError("Use build_public_world for the public world.")
  return _build(config, out_dir, overwrite, include_train=False,
                corpus_stage=corpus_stage)


def build_public_world(out_dir: str, overwrite: bool = False,
                       track: str = "geminon", *,
                       corpus_stage: Optional[CorpusStage] = None) -> dict:
  """Builds the public world (fixed seed, name slot 0) into `out_dir`.

  Same layout as a release, plus `qa/public_train.jsonl` with every question
  about every public-world creature (none dropped). Base models may be
  pretrained on its documents and QA; few-shot exemplars come from it.
  `corpus_stage` as in `build_release`.
  """
  return _build(public_world_config(track), out_dir, overwrite,
                include_train=True, corpus_stage=corpus_stage)
