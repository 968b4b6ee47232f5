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

Also here, written once for every method that embeds records with the base
model: its mean-pooled states (`embed_token_rows`) and the DP-tuned encoder
of option ``embedder=dp_tuned`` (cluster_median, private_evolution): a
`cbench.contrastive.head` projection head on those states, trained on the
private records with Logit-DP and charged to the run's ledger as
``encoder`` before it returns (`train_encoder`), its σ derived from the
method's share of the target (`encoder_plan`), its two views per record
(`encoder_views`) and its fixed keyed-hash batches (`encoder_batches`).
What the head's event assumes is in `cbench.contrastive.head` and in
private_prediction's "DP-tuned encoder".
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from typing import (Any, Callable, Iterable, Iterator, Mapping, Optional,
                    Sequence)

import dp_accounting
import jax
import numpy as np

from cbench import _validate
from cbench import options as options_lib
from cbench._validate import CbenchError, check
from cbench.contrastive import head as head_lib
from cbench.io import files
from cbench.models import registry
from cbench.privacy import ledger as ledger_lib
from cbench.synthesis import batching


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


# ---------------------------------------------------------------------------
# Base-model states and the DP-tuned encoder (embedder=dp_tuned)

ENCODER_ENTRY = "encoder"          # the head's ledger entry id
MAX_ENCODER_SIGMA = 1e4
EMBED_CHUNK = 128


@functools.partial(jax.jit, static_argnames=("config",))
def _mean_hidden(params, tokens, valid, *, config):
  return registry.make_model(config).apply({"params": params}, tokens, valid,
                                          method="mean_hidden")


def embed_token_rows(params, config, rows: Sequence[Sequence[int]],
                     width: int, chunk: int = EMBED_CHUNK) -> np.ndarray:
  """``[len(rows), d_model]`` float64 mean-pooled final states of token-id
  rows (`Transformer.mean_hidden`; each row cut to `width`), in fixed-shape
  chunks of `chunk` rows, so one compilation per (width, chunk)."""
  out = []
  for start in range(0, len(rows), chunk):
    part = rows[start:start + chunk]
    toks = np.zeros((chunk, width), np.int32)
    for i, r in enumerate(part):
      r = list(r)[:width]
      toks[i, :len(r)] = r
    valid = np.zeros((chunk, width), bool)
    for i, r in enumerate(part):
      valid[i, :min(len(r), width)] = True
    h = _mean_hidden(params, toks, valid, config=config)
    out.append(np.asarray(jax.device_get(h), np.float64)[:len(part)])
  return np.concatenate(out) if out else np.zeros((0, config.d_model))


def encoder_views(bundle, ids: Sequence[Sequence[int]], width: int
                  ) -> tuple[np.ndarray, np.ndarray]:
  """The head's two views of each text, ``[len(ids), d_model]`` float64
  each: the base model's mean-pooled states of ``[bos] + first half`` and
  of ``[bos] + second half`` of its ids (no BOS; halves split at
  ``len // 2``), rows of `width` tokens."""
  tok = bundle.tokenizer
  rows = ([[tok.bos_id, *x[:len(x) // 2]] for x in ids]
          + [[tok.bos_id, *x[len(x) // 2:]] for x in ids])
  both = embed_token_rows(bundle.params, bundle.config, rows, width)
  return both[:len(ids)], both[len(ids):]


def check_encoder_options(opts) -> None:
  """Range checks of the ``encoder_*`` options (any method's `Options`
  with those fields); raises CbenchError naming the option."""
  check(0.0 < opts.encoder_epsilon_share < 1.0,
        f"Expected 0 < option encoder_epsilon_share="
        f"{opts.encoder_epsilon_share} < 1.")
  check(opts.encoder_batch_size >= 2,
        f"Expected option encoder_batch_size={opts.encoder_batch_size} "
        f">= 2.")
  for name in ("encoder_epochs", "encoder_hidden", "encoder_dim"):
    check(getattr(opts, name) >= 1,
          f"Expected option {name}={getattr(opts, name)} >= 1.")
  for name in ("encoder_clip", "encoder_learning_rate",
               "encoder_temperature"):
    _validate.positive(f"option {name}", getattr(opts, name))
  check(math.isfinite(opts.encoder_clip),
        f"Expected a finite option encoder_clip={opts.encoder_clip}.")


def encoder_sigma(budget: float, epochs: int, batches_per_epoch: int,
                  share: float,
                  epsilon_of: Callable[[dp_accounting.DpEvent], float]
                  ) -> float:
  """Smallest σ found (relative width 1e-3) with ``epsilon_of(head event)
  <= budget``; the returned σ's ε was computed <= `budget`.

  Args:
    budget: the head's ε (``share * target``).
    epochs, batches_per_epoch: of `head_lib.dp_event`.
    share: option encoder_epsilon_share (named in the error only).
    epsilon_of: the run ledger's ε of an event (its accountant, relation,
      δ and discretisation).

  Raises:
    CbenchError: (one line, naming encoder_epsilon_share) if σ would exceed
      `MAX_ENCODER_SIGMA`.
  """
  def eps(sigma: float) -> float:
    return epsilon_of(head_lib.dp_event(sigma, epochs, batches_per_epoch))

  hi = 1.0
  while eps(hi) > budget:
    hi *= 2.0
    if hi > MAX_ENCODER_SIGMA:
      raise CbenchError(
          f"Infeasible: option encoder_epsilon_share={share} leaves the "
          f"dp_tuned encoder epsilon={budget:.3g}, which needs a noise "
          f"multiplier above {MAX_ENCODER_SIGMA:g}; raise epsilon or "
          f"encoder_epsilon_share.")
  lo = hi / 2.0
  while eps(lo) <= budget:
    hi, lo = lo, lo / 2.0
  while hi / lo - 1.0 > 1e-3:
    mid = math.sqrt(lo * hi)
    if eps(mid) <= budget:
      hi = mid
    else:
      lo = mid
  return hi


def encoder_plan(opts, num_records: int, target: float,
                 epsilon_of: Callable[[dp_accounting.DpEvent], float],
                 batches_per_epoch: int = 1) -> dict:
  """The dp_tuned head's public plan (JSON-able dict), σ derived from
  ``opts.encoder_epsilon_share * target`` (0 at target = inf).

  Args:
    opts: a method's `Options` with the ``encoder_*`` fields.
    num_records: n, the public number of private records.
    target: the run's target ε.
    epsilon_of: the run ledger's ε of an event (see `encoder_sigma`).
    batches_per_epoch: head batches of an epoch one neighbour changes (1
      under add/remove, 2 under replace-one; `head_lib.dp_event`).

  Returns:
    noise_multiplier σ, epochs, batches_per_epoch, batch_size n,
    num_batches ``ceil(num_records / n)``, clip, temperature,
    learning_rate, hidden, dim, epsilon_share, sensitivity Δ and
    noise_std σΔ.
  """
  sigma = (0.0 if math.isinf(target) else
           encoder_sigma(opts.encoder_epsilon_share * target,
                         opts.encoder_epochs, batches_per_epoch,
                         opts.encoder_epsilon_share, epsilon_of))
  cfg = head_lib.HeadConfig(
      hidden=opts.encoder_hidden, dim=opts.encoder_dim,
      batch_size=opts.encoder_batch_size, epochs=opts.encoder_epochs,
      clip_norm=opts.encoder_clip, noise_multiplier=sigma,
      temperature=opts.encoder_temperature,
      learning_rate=opts.encoder_learning_rate)
  return {"noise_multiplier": sigma, "epochs": cfg.epochs,
          "batches_per_epoch": batches_per_epoch,
          "batch_size": cfg.batch_size,
          "num_batches": -(-num_records // cfg.batch_size),
          "clip": cfg.clip_norm, "temperature": cfg.temperature,
          "learning_rate": cfg.learning_rate, "hidden": cfg.hidden,
          "dim": cfg.dim, "epsilon_share": opts.encoder_epsilon_share,
          "sensitivity": cfg.sensitivity, "noise_std": cfg.noise_std}


def encoder_event(encoder: Mapping) -> dp_accounting.DpEvent:
  """The head's event of an `encoder_plan` (ledger add/remove units)."""
  return head_lib.dp_event(encoder["noise_multiplier"], encoder["epochs"],
                           encoder["batches_per_epoch"])


def head_config(encoder: Mapping) -> head_lib.HeadConfig:
  """The `HeadConfig` of an `encoder_plan`."""
  return head_lib.HeadConfig(
      hidden=encoder["hidden"], dim=encoder["dim"],
      batch_size=encoder["batch_size"], epochs=encoder["epochs"],
      clip_norm=encoder["clip"], noise_multiplier=encoder["noise_multiplier"],
      temperature=encoder["temperature"],
      learning_rate=encoder["learning_rate"])


def encoder_batches(record_ids: Sequence, encoder: Mapping, seed: int,
                    domain: str) -> np.ndarray:
  """int64 ``[epochs, num_batches, n]`` rows of the head's training, -1 =
  padding: per epoch, fixed-capacity keyed-hash batches (key: sha256 of
  ``cbench/{domain}-encoder-batching/{seed}/{epoch}``, a fresh one per
  epoch; overflow dropped), so each record is in at most one batch per
  epoch and adding or removing one changes one row of one batch."""
  return np.stack([batching.keyed_hash_batches(
      record_ids, hashlib.sha256(
          f"cbench/{domain}-encoder-batching/{seed}/{k}".encode()).digest(),
      encoder["batch_size"], encoder["num_batches"]).rows
                   for k in range(encoder["epochs"])])


@dataclasses.dataclass(frozen=True)
class TunedHead:
  """embedder=dp_tuned's trained head (charged before it is used)."""
  config: head_lib.HeadConfig
  params: Any

  def embed(self, features: np.ndarray) -> np.ndarray:
    """``[m, dim]`` float64 unit-norm outputs of base states ``[m, d]``
    (post-processing of the charged head)."""
    return head_lib.embed(self.config, self.params, features)


def train_encoder(bundle, encoder: Mapping, ids: Sequence[Sequence[int]],
                  batches: np.ndarray, key: jax.Array,
                  charge: Callable[[str, dp_accounting.DpEvent, dict], Any],
                  *, width: int, relation: str) -> TunedHead:
  """Trains the dp_tuned head on the private records and charges its event
  (`ENCODER_ENTRY`) before returning it.

  Deterministic in its arguments on one platform (init key
  ``fold_in(key, 0)``, step t's noise key ``fold_in(fold_in(key, 1), t)``),
  so a resumed run that passes the same ones recomputes the same head and
  its charge (meta: the parameters' sha256) is an idempotent no-op.

  Args:
    bundle: the base model (`model_store.load`): its states are the views.
    encoder: the plan's `encoder_plan`.
    ids: each private record's token ids (no BOS), in record order.
    batches: `encoder_batches` of the records (indices into `ids`).
    key: the run's encoder key (derived from its seed).
    charge: ``charge(entry_id, event, meta)``, the ledger's (write-ahead).
    width: token width of the view rows.
    relation: the mechanism's neighbouring relation (recorded in meta).
  """
  cfg = head_config(encoder)
  views_a, views_b = encoder_views(bundle, ids, width)
  pad_a, pad_b = encoder_views(bundle, [[]], width)   # public
  params = head_lib.init(cfg, views_a.shape[1], jax.random.fold_in(key, 0))
  params = head_lib.train(cfg, params, views_a, views_b,
                          np.concatenate([pad_a, pad_b]), batches,
                          jax.random.fold_in(key, 1))
  charge(ENCODER_ENTRY, encoder_event(encoder),
         {"params_sha256": head_lib.params_sha256(params),
          "noise_multiplier": encoder["noise_multiplier"],
          "noise_std": encoder["noise_std"], "epochs": encoder["epochs"],
          "batches_per_epoch": encoder["batches_per_epoch"],
          "batch_size": encoder["batch_size"],
          "num_batches": encoder["num_batches"], "relation": relation})
  return TunedHead(config=cfg, params=params)
