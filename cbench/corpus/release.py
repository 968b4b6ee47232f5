"""The release layout every track writes and every later stage reads.

A release directory ``DIR`` (any track):
  corpus/{train,val,test}.jsonl   {"id", "text", "style", "facts", ...}: one
                                  record = one document = the privacy unit;
                                  "facts" is its provenance (what it states)
  tfds/<name>/<version>/...       the same corpus, array_record TFDS
  qa/{public,sensitive}_{val,test}.jsonl
                                  {"id", "question", "answer", "aliases",
                                   "feature", "supports", ...}
  qa/exemplars.jsonl              (optional) few-shot exemplars shipped with
                                  the release (facts outside it)
  manifest.json                   "track", "release_id", "documents",
                                  "questions", sha256 of every other file
                                  ("files"), plus the track's own fields
  README.md                       the datasheet

Shared here: the split of document ids (`assign_splits`), the seed of a
release id (`derive_seed`), the file hashes (`hash_tree`), the atomic build
(`build_atomically`: a temporary sibling directory renamed into place, so a
failure never leaves a partial release or destroys an existing one) and the
reader (`load_release`, `Release`). Tracks (`cbench.tracks`) write the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from typing import Callable, Iterator

import numpy as np

from cbench import _validate
from cbench._validate import CbenchError
from cbench.corpus import answers
from cbench.corpus import dedup as dedup_lib
from cbench.corpus import tfds_export
from cbench.io import files

SPLITS = ("train", "val", "test")
# Of every block of 20 slots: 18 train, 1 val, 1 test (90/5/5).
_SPLIT_BLOCK = (0,) * 18 + (1, 2)
EXEMPLARS = "exemplars.jsonl"


def derive_seed(track: str, release_id: str) -> int:
  """A 63-bit seed from SHA-256 of "cbench/<track>/<release_id>"."""
  digest = hashlib.sha256(f"cbench/{track}/{release_id}".encode()).digest()
  return int.from_bytes(digest[:8], "little") >> 1


def assign_splits(seed: int, ids) -> np.ndarray:
  """Split index (0 train, 1 val, 2 test) of each document id: int8 [n].

  Slots come in blocks of 20 (ids 20b .. 20b+19); within a block the slots
  are ranked by a keyed hash of (seed, id) and ranks 0-17 are train, 18 val,
  19 test: exactly 90/5/5 of the slots, seeded, a pure function of the id
  (dedup then removes a few documents from whichever split they fell in).
  """
  ids = np.asarray(ids, np.int64)
  if not ids.size:
    return np.zeros(0, np.int8)
  n = len(_SPLIT_BLOCK)
  blocks, inv = np.unique(ids // n, return_inverse=True)
  members = (blocks[:, None] * n + np.arange(n)).astype(np.uint64)
  salt = dedup_lib.mix64(np.array([seed ^ 0x5EED_0003], np.uint64))
  key = dedup_lib.mix64(members ^ salt)
  rank = np.argsort(np.argsort(key, axis=1, kind="stable"), axis=1,
                    kind="stable")
  table = np.asarray(_SPLIT_BLOCK, np.int8)
  return table[rank[inv.ravel(), ids % n]]


def hash_tree(root: str, skip: tuple[str, ...] = ("manifest.json",)
              ) -> dict[str, str]:
  """sha256 of every file under `root` (relative '/' paths, sorted)."""
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for fn in sorted(filenames):
      full = os.path.join(dirpath, fn)
      rel = os.path.relpath(full, root).replace(os.sep, "/")
      if rel not in skip:
        out[rel] = files.sha256_file(full)
  return dict(sorted(out.items()))


def check_replaceable(out_dir: str) -> None:
  """Raises CbenchError unless `out_dir` may be replaced by a release: an
  empty directory, or a cbench release (its manifest.json names a track and
  a release id). A user's files are never deleted."""
  if not os.path.isdir(out_dir):
    raise CbenchError(f"--out={out_dir} exists and is not a directory; "
                      f"refusing to replace it.")
  if not os.listdir(out_dir):
    return
  try:
    manifest = files.read_json(os.path.join(out_dir, "manifest.json"))
  except CbenchError:
    manifest = None
  if not (isinstance(manifest, dict) and "track" in manifest
          and "release_id" in manifest):
    raise CbenchError(f"--out={out_dir} exists and is not a cbench release "
                      f"(no manifest.json naming a track); refusing to "
                      f"replace it with --overwrite.")


def build_atomically(out_dir: str, overwrite: bool,
                     fill: Callable[[str], dict]) -> dict:
  """Runs ``fill(tmp_dir) -> manifest`` and renames tmp_dir to `out_dir`.

  The temporary directory is a sibling of `out_dir`; on any failure it is
  removed and an existing `out_dir` is left untouched. `overwrite` replaces
  only an empty directory or an earlier release (`check_replaceable`).

  Raises:
    CbenchError if `out_dir` exists and not `overwrite`, or is not
    replaceable.
  """
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and not overwrite:
    raise CbenchError(f"--out={out_dir} already exists; pass --overwrite to "
                      "replace it.")
  if os.path.exists(out_dir):
    check_replaceable(out_dir)
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=os.path.basename(out_dir) +
                         ".tmp-")
  try:
    manifest = fill(tmp)
    if os.path.exists(out_dir):
      if not overwrite:
        raise CbenchError(f"--out={out_dir} appeared during the build.")
      check_replaceable(out_dir)
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


@dataclasses.dataclass(frozen=True)
class Release:
  """A built release (or public world) on disk."""
  root: str
  manifest: dict

  @property
  def track(self) -> str:
    return self.manifest["track"]

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
                                 required=answers.QA_FIELDS))

  def exemplars(self) -> list[dict]:
    """Few-shot exemplars the release ships (`EXEMPLARS`), or []."""
    path = os.path.join(self.root, "qa", EXEMPLARS)
    if not os.path.exists(path):
      return []
    return list(files.iter_jsonl(path, required=("question", "answer")))

  @property
  def tfds_dir(self) -> str:
    return os.path.join(self.root, "tfds")

  def tfds_source(self, split: str):
    return tfds_export.data_source(self.tfds_dir, split,
                                   self.manifest.get("tfds", {}).get(
                                       "name", tfds_export.TFDS_NAME))

  def verify(self) -> None:
    """Raises CbenchError if any file's sha256 differs from the manifest."""
    actual = hash_tree(self.root)
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
