"""Base-model record embeddings and the DP-tuned encoder, written once.

Every method that embeds records with the base model uses its mean-pooled
final states (`embed_token_rows`). Option ``embedder=dp_tuned``
(cluster_median, private_evolution) puts a `cbench.contrastive.head`
projection head on those states, trained on the private records with
Logit-DP and charged to the run's ledger as ``encoder`` before it returns
(`train_encoder`); its σ comes from the method's share of the target
(`encoder_plan`), its two views per record from `encoder_views` and its
fixed keyed-hash batches from `encoder_batches`. What the head's event
assumes is in `cbench.contrastive.head` and in private_prediction's
"DP-tuned encoder".
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from typing import Any, Callable, Mapping, Sequence

import dp_accounting
import jax
import numpy as np

from cbench import _validate
from cbench._validate import CbenchError, check
from cbench.contrastive import head as head_lib
from cbench.models import registry
from cbench.synthesis import batching


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
