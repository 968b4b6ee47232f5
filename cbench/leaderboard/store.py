"""The results store: one JSON Lines file every run and submission appends to.

Each line is one result (schema `SCHEMA_VERSION`):

  {"schema": 1, "key": sha256 of the identity below,
   "track", "release_id", "release_sha256", "release_root",
   "method", "epsilon" (float, "inf" or null), "seed", "code_version",
   "source": "benchmark" | "submission",
   "epsilon_status": "verified" | "as declared" | "unverified" | "none",
   "submission": metadata or null, "row": the harness row}

The identity is (track, release, method, epsilon, seed, code version, and a
submission's name), so re-running the same thing replaces its line instead
of adding one (idempotent). Writes are atomic: a failed or refused append
leaves the file as it was. A line that does not parse or has another schema
version is refused by name, never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Iterable, Mapping, Optional

import cbench
from cbench._validate import CbenchError, check
from cbench.io import files

SCHEMA_VERSION = 1
FIELDS = ("schema", "key", "track", "release_id", "release_sha256", "method",
          "epsilon", "seed", "code_version", "source", "epsilon_status", "row")
STATUSES = ("verified", "as declared", "unverified", "none")


def _eps(value: Any) -> Any:
  if value is None or isinstance(value, str):
    return value
  return "inf" if math.isinf(value) else float(value)


def _finite(obj: Any) -> Any:
  """JSON-ready: infinite floats become "inf"/"-inf", NaN becomes null."""
  if isinstance(obj, float) and not math.isfinite(obj):
    return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
  if isinstance(obj, Mapping):
    return {str(k): _finite(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_finite(v) for v in obj]
  return obj


def record_key(rec: Mapping) -> str:
  ident = [rec["track"], rec["release_id"], rec["method"], _eps(rec["epsilon"]),
           rec["seed"], rec["code_version"],
           (rec.get("submission") or {}).get("name")]
  return hashlib.sha256(json.dumps(ident).encode()).hexdigest()


def make_record(row: Mapping, *, track: str, release_id: str,
                release_sha256: str, release_root: str, seed: int,
                source: str, epsilon_status: str,
                submission: Optional[Mapping] = None,
                method: Optional[str] = None) -> dict:
  """A store record for one harness `row` (`runner` row schema)."""
  check(source in ("benchmark", "submission"), f"Unknown source {source!r}.")
  check(epsilon_status in STATUSES,
        f"Unknown epsilon status {epsilon_status!r}; known: {STATUSES}.")
  rec = {"schema": SCHEMA_VERSION, "track": track, "release_id": release_id,
         "release_sha256": release_sha256, "release_root": release_root,
         "method": method or row["method"], "epsilon": _eps(row.get("epsilon")),
         "seed": int(seed), "code_version": cbench.__version__,
         "source": source, "epsilon_status": epsilon_status,
         "submission": _finite(dict(submission)) if submission else None,
         "row": _finite(dict(row))}
  rec["key"] = record_key(rec)
  return rec


def read(path: str) -> list[dict]:
  """All records ([] if the file does not exist yet)."""
  if not os.path.exists(path):
    return []
  out = []
  with open(path, encoding="utf-8") as f:
    for i, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        rec = json.loads(line)
      except json.JSONDecodeError as e:
        raise CbenchError(f"{path}:{i}: not a JSON line ({e.msg}); the "
                          f"results store is damaged.") from e
      if not isinstance(rec, dict) or rec.get("schema") != SCHEMA_VERSION:
        raise CbenchError(f"{path}:{i}: schema "
                          f"{rec.get('schema') if isinstance(rec, dict) else '?'}"
                          f" is not {SCHEMA_VERSION}; refusing to mix "
                          f"versions.")
      missing = [k for k in FIELDS if k not in rec]
      if missing:
        raise CbenchError(f"{path}:{i}: record misses {missing}.")
      out.append(rec)
  return out


def append(path: str, records: Iterable[Mapping]) -> int:
  """Adds `records` (replacing any with the same key); returns the count.

  The whole file is read and checked first and rewritten atomically, so a
  damaged store is refused untouched and a crash never leaves half a file.
  """
  existing = read(path)
  new = [dict(r) for r in records]
  for r in new:
    check(r.get("schema") == SCHEMA_VERSION and r.get("key") == record_key(r),
          "A record to append is not from `make_record` (schema or key).")
  keys = {r["key"] for r in new}
  kept = [r for r in existing if r["key"] not in keys]
  files.write_jsonl(path, kept + new)
  return len(kept) + len(new)
