"""A Geminon release on disk: build it, build the public world, load it.

Layout written by `build_release` / `build_public_world` under DIR:
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
choice comes from `np.random.Generator`s seeded by (seed, stream); JSON is
written with sorted keys. The same arguments give byte-identical files
(TFDS files included; see `tfds_export`).

Memory: documents are rendered, deduplicated and written one at a time; what
stays in RAM is the world, the MinHash LSH index (see `dedup`), the style
sequence (one int8 per document) and the support lists (one int32 per
train-document fact mention: about 1.5M at `small`).

Privacy unit: one document. Sensitive creatures appear only in the
`lab_dossier` style, in `dossiers_per_sensitive` documents each.
"""

from __future__ import annotations

import array
import collections
import contextlib
import dataclasses
import hashlib
import os
import shutil
import tempfile
from typing import Iterator, Mapping, Optional

import numpy as np

from cbench import _validate
from cbench._validate import CbenchError
from cbench.corpus import dedup as dedup_lib
from cbench.corpus import names as names_lib
from cbench.corpus import qa as qa_lib
from cbench.corpus import render as render_lib
from cbench.corpus import tfds_export
from cbench.corpus import world as world_lib
from cbench.io import files

GENERATOR_VERSION = "geminon-1.0"
TRACKS = ("geminon", "news")
IMPLEMENTED_TRACKS = ("geminon",)
SPLITS = ("train", "val", "test")
# Of every block of 20 kept documents: 18 train, 1 val, 1 test (90/5/5).
_SPLIT_BLOCK = (0,) * 18 + (1, 2)
_MAX_ATTEMPTS = 50  # Re-renders of one slot when dedup rejects a document.
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
    public_docs: public-style documents kept after dedup.
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
    "demo": SizeSpec(6, 1, 5400, _MIX_SMALL, 20, 4),
    "small": SizeSpec(100, 20, 200_000, _MIX_SMALL, 100, 4),
    "medium": SizeSpec(100, 20, 1_000_000, _MIX_MEDIUM, 100, 4),
    "large": SizeSpec(100, 20, 2_000_000, _MIX_LARGE, 100, 4),
}
# The public world: ~60 creatures, no sensitive lines, every question kept.
PUBLIC_WORLD = SizeSpec(10, 0, 6000, _MIX_SMALL, 0, 0)


def derive_seed(track: str, release_id: str) -> int:
  """A 63-bit seed from SHA-256 of "cbench/<track>/<release_id>"."""
  digest = hashlib.sha256(f"cbench/{track}/{release_id}".encode()).digest()
  return int.from_bytes(digest[:8], "little") >> 1


@dataclasses.dataclass(frozen=True)
class ReleaseConfig:
  """Everything that determines a release (see `make_config`)."""
  track: str
  release_id: str
  size: str
  seed: int
  min_support: int
  generator_version: str = GENERATOR_VERSION

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
  _validate.one_of("--track", track, TRACKS)
  if track not in IMPLEMENTED_TRACKS:
    raise CbenchError(f"--track={track!r} is not implemented yet; "
                      f"implemented: {list(IMPLEMENTED_TRACKS)}.")


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
                       seed=derive_seed(track, release_id),
                       min_support=int(min_support))


def public_world_config(track: str = "geminon") -> ReleaseConfig:
  check_track(track)
  return ReleaseConfig(track=track, release_id=PUBLIC_RELEASE_ID,
                       size=PUBLIC_RELEASE_ID,
                       seed=derive_seed(track, PUBLIC_RELEASE_ID),
                       min_support=PUBLIC_WORLD.min_support)


def make_world(config: ReleaseConfig) -> world_lib.World:
  spec = config.spec
  n, k = spec.lines_per_length, spec.sensitive_lines_per_length
  return world_lib.generate_world(
      np.random.default_rng([config.seed, 0]).integers(2**63),
      lines_per_length={1: n, 2: n, 3: n},
      sensitive_lines_per_length={1: k, 2: k, 3: k},
      name_slot=config.name_slot)


def _style_counts(total: int, mix) -> dict[str, int]:
  """Exact per-style counts (largest remainder)."""
  raw = {s: total * p for s, p in mix}
  counts = {s: int(v) for s, v in raw.items()}
  short = total - sum(counts.values())
  for s in sorted(raw, key=lambda s: (-(raw[s] - counts[s]), s))[:short]:
    counts[s] += 1
  return counts


def _generate_corpus(config: ReleaseConfig, world: world_lib.World,
                     corpus_dir: str) -> tuple[dict, dict]:
  """Renders, dedups, splits and writes the corpus; returns (supports, stats).

  supports: {(creature, feature): array of train-document ids (ascending)}.
  """
  spec = config.spec
  renderer = render_lib.Renderer(world, np.random.default_rng([config.seed, 1]))
  order_rng = np.random.default_rng([config.seed, 2])
  split_rng = np.random.default_rng([config.seed, 3])
  counts = _style_counts(spec.public_docs, spec.style_mix)
  styles = list(render_lib.PUBLIC_STYLES)
  codes = np.concatenate(
      [np.full(counts.get(s, 0), i, np.int16) for i, s in enumerate(styles)]
      + [np.full(spec.dossiers_per_sensitive, len(styles) + j, np.int16)
         for j in range(len(world.sensitive))])
  codes = codes[order_rng.permutation(len(codes))]
  sensitive = world.sensitive
  filt = dedup_lib.NearDuplicateFilter(seed=1)
  supports: dict = collections.defaultdict(lambda: array.array("i"))
  by_split_style = {s: collections.Counter() for s in SPLITS}
  words = array.array("i")
  block: list[int] = []
  paths = [os.path.join(corpus_dir, f"{s}.jsonl") for s in SPLITS]
  with contextlib.ExitStack() as stack:
    handles = [stack.enter_context(files.atomic_open(p)) for p in paths]
    for doc_id, code in enumerate(codes.tolist()):
      for _ in range(_MAX_ATTEMPTS):
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
        block = split_rng.permutation(np.array(_SPLIT_BLOCK)).tolist()
      split = block.pop()
      doc["id"] = doc_id
      handles[split].write(files.dumps_record(doc) + "\n")
      by_split_style[SPLITS[split]][doc["style"]] += 1
      words.append(len(doc["text"].split()))
      if split == 0:
        for name, feature in doc["facts"]:
          supports[(name, feature)].append(doc_id)
  w = np.frombuffer(words, dtype=np.int32)
  stats = {
      "by_split_style": {s: dict(sorted(c.items()))
                         for s, c in by_split_style.items()},
      "dedup": {"generated": filt.seen, "removed": filt.removed,
                "removed_fraction": round(filt.removed_fraction, 6),
                "threshold": dedup_lib.THRESHOLD,
                "num_perm": dedup_lib.NUM_PERM,
                "shingle_words": dedup_lib.SHINGLE},
      "words_per_document": {"min": int(w.min()),
                             "median": float(np.median(w)),
                             "max": int(w.max()),
                             "mean": round(float(w.mean()), 3)},
  }
  return supports, stats


def _summary(records) -> Optional[dict]:
  return qa_lib.support_summary(records)


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
      "- Near-duplicates removed with MinHash LSH (Jaccard 0.8, 5-word "
      f"shingles, 128 permutations): removed fraction "
      f"{m['dedup']['removed_fraction']}.",
      "- Split 90/5/5 into train/val/test (seeded). QA supports are train "
      "documents only.",
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


def _hash_tree(root: str, skip: tuple[str, ...] = ("manifest.json",)
               ) -> dict[str, str]:
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for fn in sorted(filenames):
      full = os.path.join(dirpath, fn)
      rel = os.path.relpath(full, root).replace(os.sep, "/")
      if rel not in skip:
        out[rel] = files.sha256_file(full)
  return dict(sorted(out.items()))


def _build(config: ReleaseConfig, out_dir: str, overwrite: bool,
           include_train: bool) -> dict:
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and not overwrite:
    raise CbenchError(f"--out={out_dir} already exists; pass --overwrite to "
                      "replace it.")
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=os.path.basename(out_dir) +
                         ".tmp-")
  try:
    manifest = _build_into(config, tmp, include_train)
    if os.path.exists(out_dir):
      if not overwrite:
        raise CbenchError(f"--out={out_dir} appeared during the build.")
      trash = tempfile.mkdtemp(dir=parent, prefix=os.path.basename(out_dir) +
                               ".old-")
      os.rename(out_dir, os.path.join(trash, "old"))
      os.rename(tmp, out_dir)
      shutil.rmtree(trash, ignore_errors=True)
    else:
      os.rename(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return manifest


def _build_into(config: ReleaseConfig, root: str, include_train: bool
                ) -> dict:
  spec = config.spec
  world = make_world(config)
  supports, gen = _generate_corpus(config, world,
                                   os.path.join(root, "corpus"))
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
  manifest["files"] = _hash_tree(root)
  files.write_json(os.path.join(root, "manifest.json"), manifest)
  return manifest


def _rounded(d: Mapping[str, float]) -> dict[str, float]:
  return {k: round(v, 6) for k, v in d.items()}


def build_release(config: ReleaseConfig, out_dir: str,
                  overwrite: bool = False) -> dict:
  """Builds a release into `out_dir`; returns its manifest.

  The release is built in a temporary sibling directory and renamed into
  place at the end, so a failure never leaves a partial release or destroys
  an existing one.

  Raises:
    CbenchError if `out_dir` exists and not `overwrite`.
  """
  if config.release_id == PUBLIC_RELEASE_ID:
    raise CbenchError("Use build_public_world for the public world.")
  return _build(config, out_dir, overwrite, include_train=False)


def build_public_world(out_dir: str, overwrite: bool = False,
                       track: str = "geminon") -> dict:
  """Builds the public world (fixed seed, name slot 0) into `out_dir`.

  Same layout as a release, plus `qa/public_train.jsonl` with every question
  about every public-world creature (none dropped). Base models may be
  pretrained on its documents and QA; few-shot exemplars come from it.
  """
  return _build(public_world_config(track), out_dir, overwrite,
                include_train=True)


@dataclasses.dataclass(frozen=True)
class Release:
  """A built release (or public world) on disk."""
  root: str
  manifest: dict

  def corpus_path(self, split: str) -> str:
    _validate.one_of("split", split, SPLITS)
    return os.path.join(self.root, "corpus", f"{split}.jsonl")

  def corpus(self, split: str) -> Iterator[dict]:
    """Streams the documents of a split."""
    return files.iter_jsonl(self.corpus_path(split),
                            required=("id", "text", "style", "facts"))

  def qa_names(self) -> list[str]:
    return sorted(self.manifest["questions"])

  def qa_path(self, name: str) -> str:
    _validate.one_of("qa set", name, self.qa_names())
    return os.path.join(self.root, "qa", f"{name}.jsonl")

  def qa(self, name: str) -> list[dict]:
    return list(files.iter_jsonl(self.qa_path(name),
                                 required=qa_lib.QA_FIELDS))

  @property
  def tfds_dir(self) -> str:
    return os.path.join(self.root, "tfds")

  def tfds_source(self, split: str):
    return tfds_export.data_source(self.tfds_dir, split)

  def verify(self) -> None:
    """Raises CbenchError if any file's sha256 differs from the manifest."""
    actual = _hash_tree(self.root)
    expected = self.manifest.get("files", {})
    bad = sorted(k for k in set(actual) | set(expected)
                 if actual.get(k) != expected.get(k))
    if bad:
      raise CbenchError(f"{self.root}: files differ from manifest.json: "
                        f"{bad[:5]}{' ...' if len(bad) > 5 else ''}")


def load_release(root: str) -> Release:
  """Opens a release directory (reads and checks its manifest)."""
  path = os.path.join(root, "manifest.json")
  manifest = files.read_json(path)
  for key in ("track", "release_id", "questions", "documents", "files"):
    if key not in manifest:
      raise CbenchError(f"{path}: missing field {key!r}.")
  return Release(root=os.path.abspath(root), manifest=manifest)
