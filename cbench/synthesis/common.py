"""What every synthesis method shares, written once: options parsing,
canonical JSON, config hashes, the run's files (output, write-ahead ledger,
work directory) and their binding to one run, the private records, the
ledger's charges and the run summary whose ε comes from the ledger.

A method module implements (see README "Where to add things"):

  METHOD (or METHODS)      its name(s) in `api.METHODS`
  Options                  a frozen dataclass of public knobs with defaults
  parse_options(config)    `parse_options` below plus its own checks
  plan(config, n)          every parameter derived from the target (ε, δ);
                           raises CbenchError before any IO if infeasible
  check_feasible(config, n)
  run(release_dir, base_dir, config, out_path) -> summary
                           writes documents and a write-ahead ledger; ε in
                           the summary comes from the ledger's events

A `run` is: `run_files(out_path)` (refuses documents without a ledger),
the plan, `private_records`, a ledger header over `release_binding(...)`,
``with open_run(files, header, method) as ledger:`` (binds the work
directory; every charge is written and fsynced before the output it pays
for), `require_charges`, `write_documents` and `summary`.

`tests/synthesis_contract_test.py` checks every registered method for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import numpy as np

from cbench import options as options_lib
from cbench._validate import check
from cbench.io import files
from cbench.privacy import ledger as ledger_lib


def jsonable(x: Any) -> Any:
  """inf/nan floats -> strings, tuples -> lists (canonical JSON)."""
  if isinstance(x, dict):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, (float, np.floating)):
    x = float(x)
    if math.isinf(x):
      return "inf" if x > 0 else "-inf"
    if math.isnan(x):
      return "nan"
  return x


def config_hash(obj: Mapping) -> str:
  """sha256 of the canonical (sorted, compact) JSON of `obj`."""
  blob = json.dumps(obj, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(blob.encode()).hexdigest()


def bind_workdir(workdir: str, binding_hash: str, method: str) -> None:
  """Binds `workdir` to one run (``run.json``); another run is refused."""
  path = os.path.join(workdir, "run.json")
  if os.path.exists(path):
    bound = files.read_json(path).get("config_hash")
    check(bound == binding_hash,
          f"{workdir} belongs to another {method} run (config hash "
          f"{bound} != {binding_hash}); remove it or use another --out.")
    return
  files.write_json(path, {"config_hash": binding_hash})


def parse_options(options_cls: type, items, method: str,
                  special: Optional[Mapping[str, Callable[[Any], Any]]] = None
                  ) -> dict[str, Any]:
  """Typed values of ``--option NAME=VALUE`` items for `options_cls`.

  Each value is coerced to the type of the field's default by the one
  options parser (`cbench.options.coerce`); `special` maps a field to its
  own coercion (e.g. a value that may also be "auto"). An unknown name is
  refused with the known ones listed. Returns the given fields only (the
  dataclass fills the rest); range checks stay with the method.
  """
  fields = {f.name: f for f in dataclasses.fields(options_cls)}
  special = special or {}
  values = {}
  for name, value in items:
    check(name in fields, f"Unknown synthesis option {name!r} for method "
          f"{method}; known: {sorted(fields)}.")
    if name in special:
      values[name] = special[name](value)
    else:
      values[name] = options_lib.coerce(name, value, fields[name].default)
  return values


def describe_options(options_cls: type) -> list[tuple[str, Any, str]]:
  """(name, default, type name) of every option, for ``--list_methods``."""
  return [(f.name, f.default, type(f.default).__name__)
          for f in dataclasses.fields(options_cls)]


@dataclasses.dataclass(frozen=True)
class RunFiles:
  """The files of one synthesis run.

  out: the documents (``*.jsonl``); ledger: its write-ahead ledger
  (``*.ledger.jsonl``); workdir: checkpoints and intermediate state
  (``out + ".work"``), bound to the run by its config hash.
  """
  out: str
  ledger: str
  workdir: str


def ledger_path(out_path: str) -> str:
  """``synth.jsonl`` -> ``synth.ledger.jsonl`` (the run's ledger)."""
  return out_path[:-len(".jsonl")] + ".ledger.jsonl"


def run_files(out_path: str) -> RunFiles:
  """The run's files; refuses an output that exists without its ledger."""
  f = RunFiles(out=out_path, ledger=ledger_path(out_path),
               workdir=out_path + ".work")
  check(not os.path.exists(f.out) or os.path.exists(f.ledger),
        f"{f.out} exists without its ledger {f.ledger}; refusing to "
        f"overwrite documents without charges.")
  return f


def train_size(release) -> int:
  """Number of private (train) records, from the release manifest."""
  return int(release.manifest["documents"]["by_split"]["train"])


def private_records(release, release_dir: str) -> list[dict]:
  """The release's private train records, checked against the manifest."""
  n = train_size(release)
  records = list(release.corpus("train"))
  check(len(records) == n, f"{release_dir}: manifest says {n} train "
        f"documents, corpus has {len(records)}.")
  return records


def release_binding(plan_dict: Mapping, config_dict: Mapping, release,
                    **extra: Any) -> dict:
  """What a run's ledger and work directory are bound to: the plan, the
  request, the private corpus's sha256 and method-specific `extra`."""
  return {"plan": plan_dict, "config": jsonable(config_dict),
          "release_train_sha256": release.manifest["files"].get(
              "corpus/train.jsonl"),
          **extra}


@contextlib.contextmanager
def open_run(run: RunFiles, header: Mapping, method: str
             ) -> Iterator[ledger_lib.Ledger]:
  """Opens (or resumes) the run's ledger and binds its work directory.

  A ledger or work directory of another run (another config hash) is
  refused; on resume the ledger's records are kept and read back, so a
  charge is never repeated or lost.
  """
  os.makedirs(run.workdir, exist_ok=True)
  with ledger_lib.Ledger.open(run.ledger, header) as ledger:
    bind_workdir(run.workdir, header["config_hash"], method)
    yield ledger


def require_charges(ledger: ledger_lib.Ledger, ids: Iterable[str],
                    ledger_file: str) -> None:
  """Refuses to release output unless the ledger holds exactly `ids`."""
  want = set(ids)
  got = set(ledger.entry_ids)
  check(got == want, f"{ledger_file}: {len(got)} charges, expected "
        f"{len(want)} ({sorted(want - got)[:3]} missing, "
        f"{sorted(got - want)[:3]} unexpected).")


def write_documents(out_path: str, texts: Iterable[str]) -> int:
  """Writes ``{"id": "d000000", "text"}`` records atomically; returns
  their number."""
  texts = list(texts)
  files.write_jsonl(out_path, ({"id": f"d{i:06d}", "text": t}
                               for i, t in enumerate(texts)))
  return len(texts)


def summary(*, method: str, epsilon: float, target_epsilon: float,
            delta: float, relation: str, num_docs: int, start: float,
            run: RunFiles, **fields: Any) -> dict:
  """The JSON summary every method returns; `epsilon` must be the
  ledger's (``ledger.epsilon()``), never the plan's."""
  return {"method": method, "epsilon": jsonable(epsilon),
          "target_epsilon": jsonable(target_epsilon), "delta": delta,
          "relation": relation, "num_docs": num_docs, **fields,
          "seconds": time.monotonic() - start,
          "out": run.out, "ledger": run.ledger, "workdir": run.workdir}
