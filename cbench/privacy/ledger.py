"""Write-ahead privacy ledger: an append-only, hash-chained JSON Lines file.

Line 1 is the header; every later line is one charge:

    {"kind": "header", "header": {...}, "prev": "", "hash": H0}
    {"kind": "charge", "seq": 0, "id": "step:0", "event": {...},
     "meta": {...}, "config_hash": "...", "prev": H0, "hash": H1}

`hash` = sha256 of the canonical JSON of the record without `hash`; `prev` is
the previous record's hash, so editing, dropping or reordering any line breaks
the chain and `Ledger.open` refuses the file.

Protocol (write-ahead): call `charge(entry_id, event)` BEFORE releasing the
output it pays for (a checkpoint, a flushed synthetic record). `charge`
appends, flushes and fsyncs before it returns. Re-charging an id with the
same content is a no-op (a resumed run that replays the same step with the
same keys pays nothing); the same id with different content raises (a re-run
with fresh noise must use a new id and pays again). A torn last line (a crash
inside `charge`, before it returned) is dropped on open: its output was never
released.

The header binds the run: relation, sampler, accountant, delta, config hash,
and library versions. `Ledger.open` refuses to resume when any field but the
versions differs. `epsilon(delta)` is recomputed from the persisted events by
a fresh accountant. Entries are generic (`entry_id` may be a step or a
document id), so DP-SGD and private-prediction synthesis share this format.
A single writer per file is enforced with an exclusive `flock`.
`verify_file(path)` re-checks a finished ledger read-only (for reports).
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import importlib.metadata
import json
import math
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from dp_accounting import dp_event as dpe

from cbench._validate import CbenchError, check, one_of
from cbench.io.files import atomic_open
from cbench.privacy import accounting
from cbench.privacy import relations

FORMAT = "cbench.privacy_ledger/1"
REQUIRED_HEADER = ("relation", "sampler", "accountant", "delta",
                   "config_hash")


def _canonical(obj: Any) -> str:
  return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                    ensure_ascii=True, allow_nan=False)


def _hash(record: Mapping) -> str:
  body = {k: v for k, v in record.items() if k != "hash"}
  return hashlib.sha256(_canonical(body).encode()).hexdigest()


def _finite_json(obj: Any) -> Any:
  """obj with non-finite floats as strings ('inf', 'nan'): strict JSON."""
  if isinstance(obj, float) and not math.isfinite(obj):
    return str(obj)
  if isinstance(obj, Mapping):
    return {str(k): _finite_json(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_finite_json(v) for v in obj]
  return obj


def library_versions() -> dict:
  out = {}
  for name in ("jax", "dp-accounting", "numpy"):
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def make_header(*, relation: str, sampler: Union[str, Mapping],
                accountant: str, delta: float, config_hash: str,
                config: Optional[Mapping] = None,
                value_discretization_interval: float = accounting.DEFAULT_VDI,
                **extra) -> dict:
  """A validated header dict for `Ledger.open` (extra fields are allowed)."""
  relations.check_relation(relation)
  one_of("accountant", accountant, accounting.ACCOUNTANTS)
  check(0.0 < delta < 1.0, f"Expected 0 < delta={delta} < 1.")
  header = {"format": FORMAT, "relation": relation,
            "sampler": sampler if isinstance(sampler, str) else dict(sampler),
            "accountant": accountant, "delta": float(delta),
            "config_hash": str(config_hash),
            "value_discretization_interval":
                float(value_discretization_interval),
            "versions": library_versions()}
  if config is not None:
    header["config"] = _finite_json(dict(config))
  header.update(extra)
  _canonical(header)  # raises on non-JSON values (e.g. NaN)
  return header


class Ledger:
  """Append-only privacy ledger; use `Ledger.open`."""

  def __init__(self, path: str, header: dict, header_hash: str,
               records: list, fh):
    self.path = path
    self.header = header
    self._records = records          # charge records, in order
    self._by_id = {r["id"]: r for r in records}
    self._last_hash = records[-1]["hash"] if records else header_hash
    self._fh = fh

  # ----------------------------------------------------------------- open
  @classmethod
  def open(cls, path: str, header: Mapping) -> "Ledger":
    """Creates the ledger, or resumes it if its header matches `header`.

    Raises:
      CbenchError: the header (other than `versions`) differs, the hash chain
        does not verify, or another process holds the file.
    """
    header = dict(header)
    header.setdefault("format", FORMAT)
    header.setdefault("versions", library_versions())
    header.setdefault("value_discretization_interval",
                      accounting.DEFAULT_VDI)
    missing = [k for k in REQUIRED_HEADER if k not in header]
    if missing:
      raise CbenchError(f"Ledger header for {path} lacks {missing}.")
    if not os.path.exists(path):
      rec = {"kind": "header", "header": header, "prev": ""}
      rec["hash"] = _hash(rec)
      with atomic_open(path) as f:
        f.write(_canonical(rec) + "\n")
      _fsync_dir(path)
    fh = open(path, "r+b")
    try:
      fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
      fh.close()
      raise CbenchError(f"Ledger {path} is open in another process.") from e
    try:
      head, records = _read_and_verify(path, fh)
      _check_same_header(path, head["header"], header)
    except BaseException:
      fh.close()
      raise
    fh.seek(0, os.SEEK_END)
    return cls(path, head["header"], head["hash"], records, fh)

  def close(self) -> None:
    if self._fh is not None:
      self._fh.close()
      self._fh = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  # --------------------------------------------------------------- charge
  def charge(self, entry_id: Union[str, int],
             event: Union[dpe.DpEvent, Mapping],
             meta: Optional[Mapping] = None) -> bool:
    """Durably records one charge BEFORE its output is released.

    Args:
      entry_id: step number or record id (unique per released output).
      event: a `DpEvent` or its `accounting.event_to_dict` form.
      meta: optional JSON-able details (e.g. a noise-key fingerprint, so a
        re-run of the same id with fresh noise is refused as a conflict).

    Returns:
      True if appended, False if an identical charge was already recorded.

    Raises:
      CbenchError: same id with different content, or a closed ledger.
    """
    if self._fh is None:
      raise CbenchError(f"Ledger {self.path} is closed.")
    eid = str(entry_id)
    ev = (accounting.event_to_dict(event) if isinstance(event, dpe.DpEvent)
          else dict(event))
    accounting.event_from_dict(ev)  # validates the event
    content = {"id": eid, "event": ev, "meta": dict(meta or {}),
               "config_hash": self.header["config_hash"]}
    old = self._by_id.get(eid)
    if old is not None:
      if all(_canonical(old[k]) == _canonical(content[k]) for k in content):
        return False
      raise CbenchError(
          f"Ledger {self.path}: entry {eid!r} is already charged with "
          "different content; a re-run with fresh randomness needs a new id.")
    rec = {"kind": "charge", "seq": len(self._records), **content,
           "prev": self._last_hash}
    rec["hash"] = _hash(rec)
    self._fh.write((_canonical(rec) + "\n").encode())
    self._fh.flush()
    os.fsync(self._fh.fileno())
    self._records.append(rec)
    self._by_id[eid] = rec
    self._last_hash = rec["hash"]
    return True

  # ---------------------------------------------------------------- query
  @property
  def count(self) -> int:
    """Number of charges recorded."""
    return len(self._records)

  def has(self, entry_id: Union[str, int]) -> bool:
    return str(entry_id) in self._by_id

  @property
  def entry_ids(self) -> list[str]:
    return [r["id"] for r in self._records]

  def composed_event(self) -> dpe.DpEvent:
    """All charged events, identical ones grouped as SelfComposed."""
    return compose_events([r["event"] for r in self._records])

  def epsilon(self, delta: Optional[float] = None) -> float:
    """Epsilon recomputed by a fresh accountant from the persisted events."""
    d = self.header["delta"] if delta is None else delta
    if not self._records:
      return 0.0
    return accounting.epsilon(
        self.composed_event(), d, self.header["relation"],
        self.header["accountant"],
        self.header["value_discretization_interval"])

  def summary(self) -> dict:
    """Public report fields: epsilon, delta, relation, sampler, versions."""
    eps = self.epsilon()
    return {"epsilon": eps if math.isfinite(eps) else "inf",
            "delta": self.header["delta"], "charges": self.count,
            "relation": self.header["relation"],
            "sampler": self.header["sampler"],
            "accountant": self.header["accountant"],
            "versions": self.header["versions"],
            "config_hash": self.header["config_hash"]}


def compose_events(events: Iterable[Union[dpe.DpEvent, Mapping]]
                   ) -> dpe.DpEvent:
  """`events` composed exactly as a ledger holding them as charges composes
  them (`Ledger.composed_event`): identical events grouped as SelfComposed,
  groups in canonical-JSON order. A plan that calibrates on this event gets
  the ε its run's ledger will report (PLD's ε depends, in the last digits,
  on the order of composition).

  Args:
    events: `DpEvent`s or their `accounting.event_to_dict` forms.
  """
  groups = collections.Counter(
      _canonical(accounting.event_to_dict(e) if isinstance(e, dpe.DpEvent)
                 else e) for e in events)
  out = []
  for blob, n in sorted(groups.items()):
    ev = accounting.event_from_dict(json.loads(blob))
    out.append(ev if n == 1 else dpe.SelfComposedDpEvent(ev, n))
  if not out:
    return dpe.NoOpDpEvent()
  return out[0] if len(out) == 1 else dpe.ComposedDpEvent(out)


def _fsync_dir(path: str) -> None:
  fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _read_and_verify(path: str, fh) -> tuple[dict, list]:
  """Returns (header record, charge records); truncates a torn last line."""
  fh.seek(0)
  data = fh.read()
  head, records, good_end = _parse(path, data)
  if good_end < len(data):
    # A crash inside charge(): the line was never acknowledged. Drop it.
    fh.truncate(good_end)
    fh.flush()
    os.fsync(fh.fileno())
  return head, records


def _parse(path: str, data: bytes) -> tuple[dict, list, int]:
  """(header record, charge records, end of the last complete line)."""
  lines = data.split(b"\n")
  tail = lines.pop()  # bytes after the last newline ('' if none)
  good_end = len(data) - len(tail)
  if not lines:
    raise CbenchError(f"Ledger {path} has no header line.")
  records = []
  prev = ""
  for i, raw in enumerate(lines):
    try:
      rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise CbenchError(f"Ledger {path}:{i + 1}: corrupt record ({e}).")
    if not isinstance(rec, dict) or rec.get("prev") != prev \
        or rec.get("hash") != _hash(rec):
      raise CbenchError(
          f"Ledger {path}:{i + 1}: hash chain does not verify (tampered or "
          "reordered).")
    want = "header" if i == 0 else "charge"
    if rec.get("kind") != want or (i > 0 and rec.get("seq") != i - 1):
      raise CbenchError(f"Ledger {path}:{i + 1}: expected a {want} record.")
    prev = rec["hash"]
    records.append(rec)
  ids = [r["id"] for r in records[1:]]
  if len(set(ids)) != len(ids):
    raise CbenchError(f"Ledger {path}: duplicate entry ids.")
  return records[0], records[1:], good_end


def verify_file(path: str, delta: Optional[float] = None) -> dict:
  """Read-only check of a finished ledger; returns `Ledger.summary()` fields.

  Verifies the hash chain and recomputes epsilon with a fresh accountant
  (at `delta`, default the header's); ``header`` holds the header fields. Never modifies the file; a torn last
  line (never acknowledged) is ignored. Raises `CbenchError` if the file is
  missing or does not verify.
  """
  if not os.path.exists(path):
    raise CbenchError(f"Ledger not found: {path}")
  with open(path, "rb") as f:
    head, records, _ = _parse(path, f.read())
  led = Ledger(path, head["header"], head["hash"], records, fh=None)
  out = led.summary() if delta is None else dict(
      led.summary(), epsilon=led.epsilon(delta), delta=delta)
  out["header"] = dict(head["header"])
  return out


def _check_same_header(path: str, stored: Mapping, new: Mapping) -> None:
  keys = (set(stored) | set(new)) - {"versions"}
  diff = sorted(k for k in keys
                if _canonical(stored.get(k)) != _canonical(new.get(k)))
  if diff:
    kinds = ""
    if "sampler" in diff:
      kinds = (f"; sampler {_sampler_kind(stored.get('sampler'))!r} in the "
               f"ledger, {_sampler_kind(new.get('sampler'))!r} requested")
    raise CbenchError(
        f"Ledger {path} was written for a different run (fields {diff} "
        f"differ{kinds}); refusing to resume. Write this run elsewhere (a "
        "new --out or --workdir).")


def _sampler_kind(sampler: Any) -> Any:
  return sampler.get("kind") if isinstance(sampler, Mapping) else sampler


def key_fingerprint(key_data: bytes, step: int) -> str:
  """What step `step` of a loop keyed by `key_data` draws its noise from
  (the loop uses ``fold_in(key, step)``): sha256 of both, 16 hex digits."""
  return hashlib.sha256(key_data + b"/step/" + str(int(step)).encode()
                        ).hexdigest()[:16]


class StepChargeHook:
  """Training-loop hook: charges step `s` in `before_step(s)`, i.e. before
  the step's output (its parameters, a checkpoint) can be released.

  Each charge is bound to what it pays for: its step, the run's config hash
  (every charge carries it) and, with `key_data` (the bytes of the loop's
  base PRNG key), a fingerprint of the step's noise key
  (`key_fingerprint`). A resumed run that replays a charged step with the
  same key pays nothing (same id, same content); one that would draw
  different noise for it is refused (same id, different content).
  `meta` may carry public per-run facts. `event_per_step` is one event
  charged at every step, or a function ``step -> DpEvent`` (e.g. a cyclic
  run's whole-epoch charge at each epoch's first step). Compatible with
  `cbench.train.loop` hooks.
  """

  def __init__(self, ledger: Ledger,
               event_per_step: Union[dpe.DpEvent,
                                     Callable[[int], dpe.DpEvent]],
               meta: Optional[Mapping] = None,
               key_data: Optional[bytes] = None):
    self.ledger = ledger
    if isinstance(event_per_step, dpe.DpEvent):
      self.event = accounting.event_to_dict(event_per_step)
      self._event_of = None
    else:
      self.event, self._event_of = None, event_per_step
    self.meta = dict(meta or {})
    self.key_data = key_data

  def before_step(self, step: int) -> None:
    meta = dict(self.meta, step=int(step))
    if self.key_data is not None:
      meta["noise_key"] = key_fingerprint(self.key_data, step)
    event = (self.event if self._event_of is None
             else self._event_of(int(step)))
    self.ledger.charge(f"step:{int(step)}", event, meta)
