"""Submissions from outside cbench: format and validation.

A submission is a directory:

  synth.jsonl     the synthetic corpus, one {"text": ...} per line
  ledger.jsonl    its privacy ledger (cbench's hash-chained format,
                  `privacy.ledger`)
  metadata.json   {"name", "method", "link", "base_model", "epsilon",
                   "delta", "relation", "tuned_on_private", "release_id",
                   "release_sha256"}

`validate` checks all of it before anything runs: the metadata schema, that
the release is the one named (id and sha256 of its manifest.json), every
corpus line, and the ledger's hash chain. ε is recomputed from the ledger's
events by a fresh accountant when the method is one cbench implements and
the ledger says it is that method ("verified"; a declared ε below it is
refused); otherwise the declared ε stands and is marked "as declared".
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from cbench._validate import CbenchError, check
from cbench.corpus import release as release_lib
from cbench.io import files
from cbench.privacy import ledger as ledger_lib
from cbench.privacy import relations
from cbench.synthesis import api

CORPUS, LEDGER, METADATA = "synth.jsonl", "ledger.jsonl", "metadata.json"
METADATA_FIELDS = {"name": str, "method": str, "link": str,
                   "base_model": str, "epsilon": (int, float, str),
                   "delta": (int, float), "relation": str,
                   "tuned_on_private": bool, "release_id": str,
                   "release_sha256": str}
MAX_RECORD_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class Submission:
  """A validated submission.

  Attributes:
    root: its directory.
    metadata: the metadata as given.
    epsilon: the ε to report (recomputed when verified; float, inf allowed).
    delta: its δ.
    status: "verified" | "as declared".
    num_docs: documents in the corpus.
  """
  root: str
  metadata: dict
  epsilon: float
  delta: float
  status: str
  num_docs: int

  @property
  def corpus_path(self) -> str:
    return os.path.join(self.root, CORPUS)

  @property
  def ledger_path(self) -> str:
    return os.path.join(self.root, LEDGER)


def _declared_epsilon(value: Any) -> float:
  if isinstance(value, str):
    check(value == "inf", f"metadata epsilon={value!r} is not a number or "
          f"'inf'.")
    return math.inf
  check(not isinstance(value, bool) and value > 0 and not math.isnan(value),
        f"metadata epsilon={value} must be > 0.")
  return float(value)


def _check_metadata(meta: Any, path: str) -> dict:
  check(isinstance(meta, dict), f"{path} is not a JSON object.")
  missing = sorted(set(METADATA_FIELDS) - set(meta))
  check(not missing, f"{path} misses {missing}.")
  for name, kind in METADATA_FIELDS.items():
    ok = isinstance(meta[name], kind) and not (
        kind is not bool and isinstance(meta[name], bool))
    check(ok, f"{path}: {name}={meta[name]!r} has the wrong type.")
  check(meta["name"].strip() != "", f"{path}: name is empty.")
  check(0 <= meta["delta"] < 1, f"{path}: delta={meta['delta']} must be in "
        f"[0, 1).")
  relations.check_relation(meta["relation"])
  return meta


def _count_documents(path: str) -> int:
  check(os.path.exists(path), f"Submission corpus not found: {path}")
  n = 0
  with open(path, "rb") as f:
    for i, raw in enumerate(f, 1):
      check(len(raw) <= MAX_RECORD_BYTES, f"{path}:{i}: record of "
            f"{len(raw)} bytes exceeds {MAX_RECORD_BYTES}.")
      if not raw.strip():
        continue
      try:
        rec = json.loads(raw)
      except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CbenchError(f"{path}:{i}: not a JSON line.") from e
      check(isinstance(rec, dict) and isinstance(rec.get("text"), str)
            and rec["text"].strip(), f"{path}:{i}: needs a non-empty "
            f"\"text\" string.")
      n += 1
  check(n > 0, f"{path} holds no document.")
  return n


def validate(root: str, release: release_lib.Release) -> Submission:
  """The checked submission; CbenchError (one line) on the first problem."""
  check(os.path.isdir(root), f"Submission directory not found: {root}")
  meta = _check_metadata(files.read_json(os.path.join(root, METADATA)),
                         os.path.join(root, METADATA))
  check(meta["release_id"] == release.manifest["release_id"],
        f"Submission is for release {meta['release_id']!r}, not "
        f"{release.manifest['release_id']!r}.")
  sha = files.sha256_file(os.path.join(release.root, "manifest.json"))
  check(meta["release_sha256"] == sha,
        f"Submission names release manifest sha256 "
        f"{meta['release_sha256'][:12]}..., this release is {sha[:12]}...")
  num_docs = _count_documents(os.path.join(root, CORPUS))
  declared = _declared_epsilon(meta["epsilon"])
  ledger = ledger_lib.verify_file(os.path.join(root, LEDGER),
                                  delta=float(meta["delta"]))
  header = ledger["header"]
  check(header.get("relation") == meta["relation"],
        f"Ledger relation {header.get('relation')!r} differs from the "
        f"metadata's {meta['relation']!r}.")
  if meta["method"] in api.METHODS and header.get("method") == meta["method"]:
    eps = ledger["epsilon"]
    eps = math.inf if eps == "inf" else float(eps)
    check(declared >= eps * (1 - 1e-9),
          f"Submission declares epsilon={declared} but its ledger's events "
          f"compose to {eps:.6g}.")
    return Submission(os.path.abspath(root), meta, eps, float(meta["delta"]),
                      "verified", num_docs)
  return Submission(os.path.abspath(root), meta, declared,
                    float(meta["delta"]), "as declared", num_docs)
