"""DP fine-tuning synthesis: DP-SGD fine-tune the base generator, then sample.

    summary = run(release_dir, base_dir, SynthesisConfig(
        method="dp_finetune", epsilon=10.0, num_docs=300), "synth.jsonl")

The release's TRAIN documents are the private records. Each document is one
training row ``[bos] + tokens + [eos]`` truncated to ``seq_len + 1`` tokens
(`text_data.tokenize_rows`), so a row is exactly one record: the privacy
unit. The per-example loss is the mean next-token cross-entropy (nats) over
the row's real target tokens (`cross_entropy_loss`).

Training (`finetune`)
---------------------
* Sampling (option ``sampler``):
    'poisson'  (default) true Poisson sampling
               (`batch_sampling.PoissonSampler`), each record included
               independently with probability ``q = B / n`` (B = option
               ``batch_size``, the EXPECTED batch size; n = the release
               manifest's public train count). Batches are padded to public
               bucket sizes (multiples of ``pad_unit``, rounded up to a
               multiple of the data-parallel device count times the
               microbatch).
    'cyclic'   fixed disjoint batches of b = B records (an integer) of one
               seeded permutation, visited in the same order every epoch
               (`cyclic.CyclicSampler`): K = ceil(n / b) steps per epoch,
               each record in exactly one batch per epoch; E = ceil(T / K)
               epochs (a partial last epoch is paid in full). Every batch
               has one public shape, b rounded up like ``pad_unit`` above.
  Padding rows contribute exactly 0. ``batch(step)`` is a pure function of
  (seed, step), so a resumed run replays the same index stream.
* Mechanism: `dpsgd.make_dp_grad_fn`: per-example gradients clipped to
  ``clip_norm`` C ('vmap' or 'ghost' clipping, option ``clipping``), summed,
  Gaussian noise of std ``sigma * C`` (add/remove, cyclic zero_out;
  ``2 sigma C`` under replace_one), divided by the PUBLIC constant B.
  Data-parallel over all devices (``data_parallel``): per-device clipping,
  then a psum.
* Optimizer: the harness family, AdamW (b1 0.9, b2 0.995, weight decay on
  matrices, linear warmup then cosine decay; `optim.make_optimizer`) on the
  noisy gradient, without the harness's global-norm clip (per-example
  clipping replaces it). Adam's moments are functions of the noisy
  gradients only: post-processing, no extra privacy cost.
* Trainable parameters (option ``trainable``):
    'all'   full fine-tuning (default; 'vmap' or 'ghost' clipping).
    'lora'  real low-rank adapters: every attention / MLP projection kernel
            W of every block (``lora_targets``) gets ``W + (alpha / r) A B``
            with A ``[d_in, r]`` (normal, std 1/sqrt(d_in)), B ``[r, d_out]``
            (zeros), d_in / d_out the kernel's input / output axes flattened
            (attn/o contracts (heads, head_dim); all others contract the
            first axis). Only A and B are clipped, noised and updated; the
            base model is frozen (public). Needs clipping='vmap' (the
            adapters are not instrumented model layers). Sampling uses the
            merged kernels.
* Steps T (``steps``), B, C, learning rate: documented defaults in
  `Options`, overridable with ``config.options``.

Privacy
-------
* Relation ``add_remove`` (default; ``replace_one`` selectable), accountant
  PLD (dp_accounting; ``value_discretization_interval`` =
  `accounting.discretization_interval` of the target: `VDI` up to ε = 10,
  coarser above, recorded in the ledger header). sigma is
  calibrated from (epsilon, delta) by `dpsgd.calibrate` on the sampler's own
  event (bracketed bisection, never undershoots); the composed event the
  ledger will hold (T identical per-step charges) is then recomputed by a
  fresh accountant and sigma is raised if it ever exceeded the target.
  delta defaults to `api.default_delta(n)` = 1 / (10 n).
* ``sampler=cyclic``: relations ``replace_one`` (sensitivity 2C) and
  ``zero_out`` (C; accounted as add/remove, n stays public), what
  `cyclic.py` accounts; add_remove is refused at plan time. No
  amplification: sigma is calibrated (`CyclicConfig.calibrated`, PLD,
  deterministic) on the exact all-iterates event, E self-composed
  Gaussians. The ledger charges `CyclicConfig.step_event`: the epoch's
  Gaussian at its first step (before any of its batches is used), a
  `NoOpDpEvent` at its other steps, so the charges of any prefix compose to
  that prefix's cyclic event and the full run's to ``CyclicConfig.epsilon``.
* Parameter rule: sigma must be <= ``max_noise_multiplier`` (default 50); a
  target needing more is infeasible: `check_feasible` / `plan` raise
  `CbenchError` before any file is written.
* ``epsilon = inf``: sigma = 0 and C = inf (no clipping, no noise) through
  the same code path: the non-private fine-tuning baseline. Each step is
  still charged (a Poisson-sampled Gaussian with sigma 0), so the ledger's
  epsilon is inf.
* Ledger (``api.ledger_path(out)``, `cbench.privacy.ledger`): the header
  binds relation (the accountant's), sampler (``describe()``; a resume
  with another sampler is refused), accountant, sigma, C, q (None for
  cyclic, which also records ``CyclicConfig.describe()``), T, delta and a
  hash of the whole configuration (release, base model, options). A
  `ledger.StepChargeHook` charges ``step:s`` BEFORE step s runs,
  hence before any checkpoint holding its result is saved. A resumed run
  replays charged steps with the same keys and batches: identical charges
  are no-ops (never twice); every step below the restored checkpoint must
  already be charged, else the run refuses (never forgotten).
* Work directory ``out + ".work/"``: orbax checkpoints of (step, trainable
  params, optimizer state), ``metrics.jsonl`` (norms of the NOISY gradient
  and of the update: post-processing, DP) and ``run.json`` binding the
  directory to the ledger's configuration hash. The checkpoints are DP
  (post-processing of the charged steps) but are not part of the release.
* Sampling: ``num_docs`` documents at temperature ``temperature`` (option,
  default 1.0) from the fine-tuned
  model, prompt ``[bos]``, ending at EOS or ``max_new_tokens``, through the
  shared decoder in calls of a fixed shape (``decode_batch`` rows; the last
  call is padded and its extra streams dropped). Post-processing of the DP
  parameters: no privacy cost, nothing charged. ``synth.jsonl``
  (``{"id", "text"}``) is written atomically after every step is charged.

Seeds: sampler stream, noise keys, adapter init and decoding keys all derive
from ``config.seed`` (public in this benchmark; a deployment must inject
secret randomness, privacy-testing.md E4). Side channels out of scope: the
padded batch shape (Poisson: a bucket of the realised size; cyclic: one
fixed shape), timing, memory.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
import os
import re
import time
from typing import Any, Callable, Optional, Sequence

import dp_accounting
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

from cbench import _validate
from cbench._validate import CbenchError, check
from cbench.corpus import release as release_lib
from cbench.decoding import decoder
from cbench.decoding import token_samplers as decoding_samplers
from cbench.io import checkpoint as checkpoint_lib
from cbench.models import config as config_lib
from cbench.models import model_store
from cbench.models import registry
from cbench.models import transformer as tf
from cbench.parallel import mesh as mesh_lib
from cbench.privacy import accounting
from cbench.privacy import batch_sampling
from cbench.privacy import canaries
from cbench.privacy import cyclic
from cbench.privacy import dpsgd
from cbench.privacy import ghost
from cbench.privacy import ledger as ledger_lib
from cbench.synthesis import api
from cbench.synthesis import common
from cbench.text import prompts as prompt_lib
from cbench.train import lm_train
from cbench.train import loop
from cbench.train import lora as lora_lib
from cbench.train import optim
from cbench.train import text_data

log = logging.getLogger("cbench")
PyTree = Any

METHOD = "dp_finetune"
ACCOUNTANT = "pld"
VDI = accounting.DEFAULT_VDI
_NOISE_STREAM, _SAMPLE_STREAM, _LORA_STREAM = 0x4E4F, 0x5341, 0x4C4F
_TRAINABLE = ("all", "lora")
_SAMPLERS = ("poisson", "cyclic")
_DP_RELATIONS = ("add_remove", "replace_one")


# ---------------------------------------------------------------------------
# Options


@dataclasses.dataclass(frozen=True)
class Options:
  """Public knobs (``SynthesisConfig.options``); defaults in brackets.

  Attributes:
    steps: T, DP-SGD steps [200].
    batch_size: B, EXPECTED batch size (q = B / n), also the public
      normaliser of the noisy gradient sum; with sampler=cyclic the fixed
      batch size b (an integer) [64].
    clip_norm: C, per-example L2 clip norm [1.0].
    learning_rate: AdamW peak learning rate [1e-3].
    warmup_fraction: linear warmup share of the steps [0.1].
    weight_decay: AdamW decoupled weight decay on matrices [0.1].
    seq_len: training row = seq_len + 1 tokens; longer documents are
      truncated [128].
    clipping: 'vmap' | 'ghost' [vmap].
    microbatch_size: per-device chunk of the clipped sum (0: none) [0].
    pad_unit: batches are padded to multiples of this (rounded up to a
      multiple of devices x microbatch) [16].
    trainable: 'all' (full fine-tuning) | 'lora' (low-rank adapters) [all].
    lora_rank: r [8].
    lora_alpha: adapter scale alpha (the update is alpha / r * A B) [16.0].
    lora_targets: regex over '/'-joined kernel paths that get adapters
      [blocks_<i>/(attn|mlp)/<name>/kernel].
    sampler: 'poisson' | 'cyclic' (fixed disjoint batches, one shuffle,
      traversed every epoch) [poisson].
    relation: 'add_remove' | 'replace_one' (poisson); 'replace_one' |
      'zero_out' (cyclic) [add_remove].
    max_noise_multiplier: the parameter rule's cap on sigma; a target
      needing more is infeasible [50.0].
    calibration_seconds: time limit of the sigma search [300.0].
    max_new_tokens: most tokens per synthetic document [160].
    temperature: sampling temperature of the fine-tuned generator (> 0;
      post-processing of the DP model, no privacy cost) [1.0].
    decode_batch: documents per decoder call (fixed shape) [64].
    checkpoint_every: steps between checkpoints [50].
    log_every: steps between metrics lines [10].
    data_parallel: shard each batch over all devices (False: one device)
      [True].
  """
  steps: int = 200
  batch_size: float = 64.0
  clip_norm: float = 1.0
  learning_rate: float = 1e-3
  warmup_fraction: float = 0.1
  weight_decay: float = 0.1
  seq_len: int = 128
  clipping: str = "vmap"
  microbatch_size: int = 0
  pad_unit: int = 16
  trainable: str = "all"
  lora_rank: int = 8
  lora_alpha: float = 16.0
  lora_targets: str = r"^blocks_\d+/(attn|mlp)/\w+/kernel$"
  sampler: str = "poisson"
  relation: str = "add_remove"
  max_noise_multiplier: float = 50.0
  calibration_seconds: float = 300.0
  max_new_tokens: int = 160
  temperature: float = 1.0
  decode_batch: int = 64
  checkpoint_every: int = 50
  log_every: int = 10
  data_parallel: bool = True

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    if self.sampler == "poisson":
      del d["sampler"]   # Poisson runs keep the config hash they had before
    return d             # the option existed (their ledgers still resume).


def parse_options(config: api.SynthesisConfig) -> Options:
  """Validated `Options`; unknown names or bad values raise CbenchError."""
  o = Options(**common.parse_options(Options, config.options, METHOD))
  for name in ("steps", "seq_len", "pad_unit", "lora_rank", "max_new_tokens",
               "decode_batch", "checkpoint_every", "log_every"):
    check(getattr(o, name) >= 1,
          f"Expected option {name}={getattr(o, name)} >= 1.")
  for name in ("batch_size", "clip_norm", "learning_rate", "lora_alpha",
               "max_noise_multiplier", "calibration_seconds", "temperature"):
    _validate.positive(f"option {name}", getattr(o, name))
    _validate.finite(f"option {name}", getattr(o, name))
  check(0.0 <= o.warmup_fraction < 1.0,
        f"Expected 0 <= option warmup_fraction={o.warmup_fraction} < 1.")
  check(o.weight_decay >= 0,
        f"Expected option weight_decay={o.weight_decay} >= 0.")
  check(o.microbatch_size >= 0,
        f"Expected option microbatch_size={o.microbatch_size} >= 0.")
  _validate.one_of("option clipping", o.clipping, ("vmap", "ghost"))
  _validate.one_of("option trainable", o.trainable, _TRAINABLE)
  _validate.one_of("option sampler", o.sampler, _SAMPLERS)
  if o.sampler == "poisson":
    _validate.one_of("option relation", o.relation, _DP_RELATIONS)
  else:
    check(o.relation in cyclic.RELATIONS,
          f"Option relation={o.relation!r} is not supported with option "
          f"sampler='cyclic'; expected one of {list(cyclic.RELATIONS)}.")
    check(float(o.batch_size).is_integer(),
          f"Option sampler=cyclic needs an integer option batch_size (the "
          f"fixed batch size); got {o.batch_size}.")
  try:
    re.compile(o.lora_targets)
  except re.error as e:
    raise CbenchError(f"Bad option lora_targets={o.lora_targets!r}: {e}")
  check(not (o.trainable == "lora" and o.clipping == "ghost"),
        "Option trainable=lora needs clipping=vmap (the adapters are not "
        "instrumented model layers, so ghost norms do not cover them).")
  return o


# ---------------------------------------------------------------------------
# Plan (pure: no model, no IO)


@dataclasses.dataclass(frozen=True)
class Plan:
  """Everything public a run commits to before touching private data.

  Attributes:
    target_epsilon: requested epsilon (inf: non-private baseline).
    delta: delta of the reported epsilon.
    num_records: n, public train-record count (release manifest).
    num_docs: synthetic documents to write.
    steps: T.
    expected_batch_size: B (cyclic: the fixed batch size b), the public
      normaliser.
    sampling_prob: q = B / n (None for cyclic: no subsampling is claimed).
    noise_multiplier: sigma (noise std / sensitivity; 0 at epsilon = inf).
    clip_norm: C (inf at epsilon = inf).
    relation: neighbouring relation (cyclic: replace_one | zero_out).
    planned_epsilon: epsilon of the T planned charges (fresh accountant).
    options: the validated options.
  """
  target_epsilon: float
  delta: float
  num_records: int
  num_docs: int
  steps: int
  expected_batch_size: float
  sampling_prob: Optional[float]
  noise_multiplier: float
  clip_norm: float
  relation: str
  planned_epsilon: float
  options: Options

  @property
  def accounting_relation(self) -> str:
    """The relation the ledger's accountant uses (cyclic zero_out: add/remove,
    same Gaussian profile and sensitivity C)."""
    if self.options.sampler == "cyclic":
      return cyclic.accounting_relation(self.relation)
    return self.relation

  def cyclic_config(self) -> cyclic.CyclicConfig:
    """sampler=cyclic: the one config that builds its batches and events."""
    check(self.options.sampler == "cyclic",
          f"Plan has sampler={self.options.sampler!r}, not 'cyclic'.")
    return _cyclic_config(self.num_records, self.options,
                          self.noise_multiplier)

  def make_sampler(self, seed: int, pad_unit: int
                   ) -> batch_sampling.PoissonSampler | cyclic.CyclicSampler:
    if self.options.sampler == "cyclic":
      return self.cyclic_config().sampler(seed, pad_unit)
    return batch_sampling.make_sampler("poisson", self.num_records,
                                 self.expected_batch_size, seed,
                                 pad_unit=pad_unit)

  def step_event(self, step: int = 0) -> dp_accounting.DpEvent:
    """What the ledger charges BEFORE step `step` (Poisson: every step the
    same; cyclic: the epoch's Gaussian at its first step, else NoOp)."""
    if self.options.sampler == "cyclic":
      return self.cyclic_config().step_event(step)
    return accounting.poisson_event(self.sampling_prob, self.noise_multiplier,
                                    1, self.relation)

  def dp_config(self) -> dpsgd.DpSgdConfig:
    o = self.options
    return dpsgd.DpSgdConfig(
        clip_norm=self.clip_norm, noise_multiplier=self.noise_multiplier,
        expected_batch_size=self.expected_batch_size,
        relation=self.accounting_relation, sampler=o.sampler,
        clipping=o.clipping, microbatch_size=o.microbatch_size or None)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["options"] = self.options.to_dict()
    return common.jsonable(d)


def composed_epsilon(step_event: dp_accounting.DpEvent, steps: int,
                     delta: float, relation: str,
                     value_discretization_interval: float = VDI) -> float:
  """epsilon of `steps` identical charges, as the ledger will compute it."""
  if steps == 0:
    return 0.0
  return accounting.epsilon(
      dp_accounting.SelfComposedDpEvent(
          accounting.event_from_dict(accounting.event_to_dict(step_event)),
          steps), delta, relation, ACCOUNTANT, value_discretization_interval)


def _cyclic_config(n: int, o: Options,
                   noise_multiplier: float) -> cyclic.CyclicConfig:
  """E = ceil(T / K) epochs (K = ceil(n / b)) of fixed batches of b = B."""
  b = int(o.batch_size)
  epochs = cyclic.participations(-(-n // b), o.steps)
  return cyclic.CyclicConfig(
      num_examples=n, batch_size=b, epochs=epochs,
      noise_multiplier=noise_multiplier, relation=o.relation, shuffle=True)


_PLANS: dict = {}


def plan(config: api.SynthesisConfig, num_records: int) -> Plan:
  """The run's public plan; raises CbenchError if the target is infeasible.

  Calibrates sigma (PLD, may take seconds); results are cached per
  (config, num_records).
  """
  try:
    cache_key = (config, int(num_records))
    hash(cache_key)
  except TypeError:
    cache_key = None
  if cache_key is not None and cache_key in _PLANS:
    return _PLANS[cache_key]
  api.check_request(config)
  _validate.one_of("method", config.method, (METHOD,))
  check(isinstance(num_records, (int, np.integer)) and num_records >= 1,
        f"Expected num_records={num_records} >= 1.")
  o = parse_options(config)
  n = int(num_records)
  delta = (config.delta if config.delta is not None
           else api.default_delta(n))
  check(o.batch_size <= n,
        f"Option batch_size={o.batch_size} exceeds the {n} private records "
        f"(q = B / n must be <= 1).")
  vdi = accounting.discretization_interval(config.epsilon)
  calibration = dict(time_limit_s=o.calibration_seconds,
                     value_discretization_interval=vdi,
                     max_sigma=o.max_noise_multiplier)
  if o.sampler == "cyclic":
    q = None
    base = _cyclic_config(n, o, 0.0)
    calibrate = lambda: base.calibrated(config.epsilon, delta,
                                        **calibration).noise_multiplier
    # The ledger's charges (one Gaussian per epoch, NoOps) compose to this.
    eps_of = lambda s: accounting.epsilon(
        _cyclic_config(n, o, s).dp_event(), delta, base.accounting_relation,
        ACCOUNTANT, vdi)
  else:
    q = o.batch_size / n
    sampler = batch_sampling.make_sampler("poisson", n, o.batch_size,
                                          config.seed)
    calibrate = lambda: dpsgd.calibrate(sampler, o.steps, config.epsilon,
                                        delta, o.relation, **calibration)
    event = lambda s: accounting.poisson_event(q, s, 1, o.relation)
    eps_of = lambda s: composed_epsilon(event(s), o.steps, delta, o.relation,
                                        vdi)
  if math.isinf(config.epsilon):
    sigma, clip = 0.0, math.inf
  else:
    clip = o.clip_norm
    try:
      sigma = calibrate()
    except accounting.CalibrationTimeout:
      raise
    except CbenchError as e:
      raise CbenchError(
          f"Infeasible: method={METHOD} cannot reach epsilon="
          f"{config.epsilon} (delta={delta:.3g}, n={n}, steps={o.steps}, "
          f"batch_size={o.batch_size}, sampler={o.sampler}) with "
          f"noise_multiplier <= option max_noise_multiplier="
          f"{o.max_noise_multiplier}: {e}") from e
  eps = eps_of(sigma)
  for _ in range(100):   # never report above the target
    if eps <= config.epsilon:
      break
    sigma *= 1.0 + 1e-4
    eps = eps_of(sigma)
  else:
    raise CbenchError(f"Infeasible: method={METHOD} cannot fit epsilon="
                      f"{config.epsilon} (delta={delta:.3g}); raise "
                      f"epsilon.")
  check(sigma <= o.max_noise_multiplier,
        f"Infeasible: epsilon={config.epsilon} needs noise_multiplier "
        f"{sigma:.4g} > option max_noise_multiplier="
        f"{o.max_noise_multiplier}.")
  p = Plan(target_epsilon=float(config.epsilon), delta=float(delta),
           num_records=n, num_docs=config.num_docs, steps=o.steps,
           expected_batch_size=float(o.batch_size), sampling_prob=q,
           noise_multiplier=float(sigma), clip_norm=float(clip),
           relation=o.relation, planned_epsilon=float(eps), options=o)
  if cache_key is not None:
    _PLANS[cache_key] = p
  return p


def check_feasible(config: api.SynthesisConfig, num_records: int) -> None:
  """Raises CbenchError if `plan` would (no model, no IO)."""
  plan(config, num_records)


# ---------------------------------------------------------------------------
# Low-rank adapters


# Moved to `cbench.train.lora` (shared with the harness fine-tune); the
# names below are kept for this module's callers and tests.
_flatten = lora_lib.flatten
_n_in = lora_lib.input_axes
lora_targets = lora_lib.target_paths
init_lora = lora_lib.init_lora
merge_lora = lora_lib.merge_lora


# ---------------------------------------------------------------------------
# Rows, loss, step


def row_arrays(rows: text_data.TokenRows) -> dict[str, np.ndarray]:
  """One-document rows -> ``inputs``, ``targets`` [n, L] int32, ``mask``
  [n, L] float32 (1 on real target tokens)."""
  tokens = rows.tokens
  width = tokens.shape[1] - 1
  mask = (np.arange(width)[None, :] < (rows.lengths[:, None] - 1))
  return {"inputs": tokens[:, :-1].astype(np.int32),
          "targets": tokens[:, 1:].astype(np.int32),
          "mask": mask.astype(np.float32)}


def make_loss(model_config: config_lib.ModelConfig, trainable: str,
              lora_scale: float) -> Callable:
  """Per-example loss ``(params, example) -> scalar`` (mean token CE, nats).

  'all': a `ghost.GhostLoss` (works with both clipping methods). 'lora': a
  plain function of the combined (adapters + frozen base) tree.
  """
  model = registry.make_model(model_config)  # the config's arch

  def from_outputs(logits, b):
    return tf.cross_entropy_loss(logits, b["targets"], b["mask"])[0]

  if trainable == "all":
    return ghost.GhostLoss(model, lambda b: (b["inputs"],), from_outputs)

  def lora_loss(params, example):
    merged = merge_lora(params, lora_scale)
    b = jax.tree.map(lambda x: x[None], example)
    return from_outputs(model.apply({"params": merged}, b["inputs"]), b)[0]
  return lora_loss


@functools.lru_cache(maxsize=16)
def _step_fn(model_config: config_lib.ModelConfig,
             dp_config: dpsgd.DpSgdConfig, trainable: str, lora_scale: float,
             opt_config: optim.OptimizerConfig, steps: int, mesh,
             probe_scale: Optional[float] = None):
  """(jitted step, optimizer); cached so repeated runs reuse compilations.

  probe_scale: None for a normal run; for an audit run (rows carry
  ``canary_kind``/``probe_index``, see `canaries`), the white-box probe
  gradient norm: the loss is wrapped and the optimizer observes the probe.
  """
  optimizer = optim.make_optimizer(opt_config, steps)
  loss = make_loss(model_config, trainable, lora_scale)
  if probe_scale is not None:
    loss = canaries.wrap_loss(loss, probe_scale)
    optimizer = canaries.with_probe(optimizer)
  dp_grad = dpsgd.make_dp_grad_fn(loss, dp_config, mesh=mesh)

  def step(state: loop.TrainState, batch: PyTree, key: jax.Array):
    rows, idx = batch["rows"], batch["indices"]
    ex = jax.tree.map(lambda x: jnp.take(x, idx, axis=0), rows)
    g, _ = dp_grad(state.params, ex, batch["is_padding"], key,
                   batch["frozen"])
    updates, opt_state = optimizer.update(g, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"noisy_grad_norm": loop.global_norm(g),
               "update_norm": loop.global_norm(updates)}
    return loop.TrainState(state.step + 1, params, opt_state), metrics

  return jax.jit(step, donate_argnums=(0,)), optimizer


def params_sha256(params: PyTree) -> str:
  """sha256 over the (path, dtype, shape, bytes) of every leaf."""
  h = hashlib.sha256()
  flat = _flatten(jax.device_get(params))
  for path in sorted(flat):
    x = np.asarray(flat[path])
    h.update("/".join(path).encode())
    h.update(str((x.dtype.str, x.shape)).encode())
    h.update(np.ascontiguousarray(x).tobytes())
  return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """Output of `finetune`.

  Attributes:
    params: full model parameters (adapters merged) at the last step run.
    step: steps completed (T unless stopped early).
    executed: steps executed by this call (replays included).
    seconds: wall time of this call's training.
    probe: audit runs only: the white-box probes' noisy-gradient statistics.
  """
  params: PyTree
  step: int
  executed: int
  seconds: float
  probe: Optional[canaries.ProbeStats] = None


def pad_unit(options: Options, mesh) -> int:
  """Bucket multiple: pad_unit rounded up to devices x microbatch."""
  devices = mesh.shape["data"] if mesh is not None else 1
  unit = devices * max(1, options.microbatch_size)
  return -(-options.pad_unit // unit) * unit


def finetune(params: PyTree, model_config: config_lib.ModelConfig,
             rows: text_data.TokenRows, p: Plan, workdir: str,
             ledger: ledger_lib.Ledger, *, seed: int, mesh=None,
             hooks: Sequence[Any] = (), stop_after: Optional[int] = None,
             on_batch: Optional[Callable[[int, batch_sampling.Batch], None]] = None,
             audit: Optional[canaries.CanaryLayout] = None
             ) -> TrainResult:
  """DP-SGD fine-tuning of `params` on `rows`; resumes from `workdir`.

  Args:
    params: base parameters (on `mesh` if given). With trainable='all' they
      are the initial state, which the jitted step DONATES: the caller's
      arrays are consumed (copy them first to keep the base).
    model_config: their config.
    rows: one document per row, ``p.options.seq_len + 1`` wide; row i is
      record i (n = ``p.num_records`` rows).
    p: the plan (sigma, C, B, T, options).
    workdir: checkpoints and metrics.
    ledger: the open ledger; step s is charged before it runs.
    seed: sampler seed and noise/adapter key seed.
    mesh: data-parallel mesh (None: one device, plain jit).
    hooks: extra `loop` hooks (after the charge hook).
    stop_after: stop after this many steps (crash simulation in tests).
    on_batch: called with (step, Batch) as each batch is drawn (tests).
    audit: a one-run audit's canary layout (its rows are part of `rows`
      and `p.num_records`); None for a normal run.

  Raises:
    CbenchError: rows of the wrong shape or count, a checkpoint beyond
      the ledger's charges (a charge would be forgotten), or an audit of a
      cyclic run.
  """
  o = p.options
  check(rows.tokens.shape == (p.num_records, o.seq_len + 1),
        f"Expected {p.num_records} rows of seq_len + 1 = {o.seq_len + 1} "
        f"tokens; got {rows.tokens.shape}.")
  check(audit is None or o.sampler == "poisson",
        f"One-run audits support option sampler=poisson only; got "
        f"sampler={o.sampler!r}.")
  sampler = p.make_sampler(seed, pad_unit(o, mesh))
  dp_cfg = p.dp_config()
  dpsgd.check_plan(dp_cfg, sampler)
  opt_cfg = optim.OptimizerConfig(
      peak_learning_rate=o.learning_rate, warmup_fraction=o.warmup_fraction,
      weight_decay=o.weight_decay, grad_clip_norm=None)
  scale = o.lora_alpha / o.lora_rank
  step_fn, optimizer = _step_fn(model_config, dp_cfg, o.trainable, scale,
                                opt_cfg, o.steps, mesh,
                                None if audit is None else audit.scale)
  if mesh is None:
    replicated = jax.devices()[0]
    params = jax.device_put(params, replicated)
  else:
    replicated = NamedSharding(mesh, P())
  base_key = jax.random.key(seed)
  if o.trainable == "lora":
    lora = init_lora(params, o.lora_targets, o.lora_rank,
                     jax.random.fold_in(base_key, _LORA_STREAM))
    train_params, frozen = jax.device_put(lora, replicated), params
  else:
    train_params, frozen = params, None
  arrays = row_arrays(rows)
  if audit is not None:
    check(audit.kinds.shape == (p.num_records,),
          f"Canary layout has {audit.kinds.shape[0]} rows, plan "
          f"{p.num_records}.")
    arrays.update(audit.arrays())
    train_params = jax.device_put(
        canaries.add_probe(train_params, max(1, audit.num_probes)),
        replicated)
  if mesh is not None and audit is None:
    state = lm_train.init_state(train_params, optimizer, mesh)
  else:  # One device, or an audit's probe-wrapped optimizer (replicated).
    state = loop.TrainState(
        jax.device_put(jnp.zeros((), jnp.int32), replicated), train_params,
        jax.jit(optimizer.init, out_shardings=replicated)(train_params))
  data = jax.device_put(arrays, replicated)

  latest = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints")).latest_step()
  if latest is not None:
    missing = [s for s in range(latest) if not ledger.has(f"step:{s}")]
    check(not missing,
          f"{workdir} holds a checkpoint at step {latest} but the ledger "
          f"{ledger.path} never charged steps {missing[:5]}; refusing to "
          f"resume (a charge would be forgotten).")

  def batch_fn(step: int) -> PyTree:
    b = sampler.batch(step)
    if on_batch is not None:
      on_batch(step, b)
    idx, pad = jax.device_put((b.indices.astype(np.int32), b.is_padding),
                              replicated)
    return {"rows": data, "frozen": frozen, "indices": idx,
            "is_padding": pad}

  noise_key = jax.random.fold_in(base_key, _NOISE_STREAM)
  charge = ledger_lib.StepChargeHook(
      ledger, p.step_event() if o.sampler == "poisson" else p.step_event,
      meta={"noise_multiplier": p.noise_multiplier,
            "clip_norm": common.jsonable(p.clip_norm)},
      key_data=np.asarray(jax.random.key_data(noise_key)).tobytes())
  executed = [0]

  class _Count:
    def after_step(self, step, metrics):
      del step, metrics
      executed[0] += 1

  t0 = time.monotonic()
  state = loop.run(
      state, step_fn, batch_fn,
      config=loop.LoopConfig(num_steps=o.steps, log_every=o.log_every,
                             checkpoint_every=o.checkpoint_every,
                             name="dp_finetune"),
      key=noise_key, workdir=workdir,
      hooks=(charge, _Count(), *hooks), stop_after=stop_after)
  seconds = time.monotonic() - t0
  final, probe = state.params, None
  if audit is not None:
    final, probe = canaries.strip(final), canaries.probe_stats(state.opt_state)
  if o.trainable == "lora":
    final = jax.jit(merge_lora, static_argnums=1)({**frozen, **final}, scale)
  return TrainResult(final, int(jax.device_get(state.step)), executed[0],
                     seconds, probe)


# ---------------------------------------------------------------------------
# Sampling


def sample_documents(params: PyTree, model_config: config_lib.ModelConfig,
                     tokenizer, num_docs: int, max_new_tokens: int,
                     decode_batch: int, key: jax.Array, mesh=None,
                     temperature: float = 1.0) -> list[str]:
  """`num_docs` texts at `temperature` from ``[bos]``; fixed call shape."""
  check(max_new_tokens + 1 <= model_config.max_len,
        f"Option max_new_tokens={max_new_tokens} + 1 exceeds the model's "
        f"max_len={model_config.max_len}.")
  prompts = np.full((decode_batch, 1), tokenizer.bos_id, np.int32)
  texts: list[str] = []
  for c in range(-(-num_docs // decode_batch)):
    res = decoder.generate(
        params, model_config, prompts, max_new_tokens,
        decoding_samplers.Temperature(temperature), jax.random.fold_in(key, c),
        eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, mesh=mesh,
        stop_token_ids=prompt_lib.document_end_ids(tokenizer))
    texts.extend(decoder.decode_texts(tokenizer, res))
  return texts[:num_docs]


# ---------------------------------------------------------------------------
# The run


def make_ledger_header(p: Plan, sampler, binding: dict) -> dict:
  """The ledger header of a plan (relation, sampler, sigma, C, q, T, delta;
  a cyclic plan adds its `CyclicConfig.describe()`)."""
  extra = {}
  if p.options.sampler == "cyclic":
    extra["cyclic"] = common.jsonable(p.cyclic_config().describe())
  return ledger_lib.make_header(
      relation=p.accounting_relation, sampler=sampler.describe(),
      accountant=ACCOUNTANT,
      delta=p.delta, config_hash=common.config_hash(binding), config=binding,
      value_discretization_interval=accounting.discretization_interval(
          p.target_epsilon), method=METHOD,
      noise_multiplier=p.noise_multiplier, clip_norm=common.jsonable(p.clip_norm),
      sampling_prob=p.sampling_prob, steps=p.steps,
      expected_batch_size=p.expected_batch_size,
      target_epsilon=common.jsonable(p.target_epsilon),
      planned_epsilon=common.jsonable(p.planned_epsilon),
      trainable=p.options.trainable, clipping=p.options.clipping, **extra)


def run(release_dir: str, base_dir: str, config: api.SynthesisConfig,
        out_path: str, *, stop_after: Optional[int] = None) -> dict:
  """Writes ``out_path`` (synth.jsonl) and its ledger; returns the summary.

  Args:
    release_dir: the release (its train corpus is the private data).
    base_dir: the base model directory (`model_store`).
    config: the request (`api.SynthesisConfig`; options: `Options`).
    out_path: ``*.jsonl`` output; ledger ``api.ledger_path(out_path)``,
      work directory ``out_path + ".work"``.
    stop_after: test hook: stop training after this many steps (a crash)
      and return ``{"stopped_at": step}`` without writing documents.

  Returns:
    {"method", "epsilon" (ledger; "inf" if infinite), "target_epsilon",
    "delta", "num_docs", "noise_multiplier",
    "steps", "expected_batch_size", "sampling_prob", "clip_norm",
    "relation", "trainable", "clipping", "params_sha256", "seconds", ...}.

  Raises:
    CbenchError: infeasible epsilon or bad options (before any file is
      written), a ledger or work directory of another run, an output file
      without its ledger.
  """
  start = time.monotonic()
  release = release_lib.load_release(release_dir)
  n = common.train_size(release)
  p = plan(config, n)                                  # raises before any IO
  o = p.options
  run_files = common.run_files(out_path)
  mesh = (mesh_lib.make_mesh() if o.data_parallel
          else mesh_lib.make_mesh(devices=jax.devices()[:1]))
  bundle = model_store.load(base_dir, mesh=mesh)
  tok = bundle.tokenizer
  check(o.seq_len + 1 <= bundle.config.max_len,
        f"Option seq_len={o.seq_len} + 1 exceeds the base model's max_len="
        f"{bundle.config.max_len}.")
  check(o.max_new_tokens + 1 <= bundle.config.max_len,
        f"Option max_new_tokens={o.max_new_tokens} + 1 exceeds the base "
        f"model's max_len={bundle.config.max_len}.")
  texts = [r["text"] for r in common.private_records(release, release_dir)]
  rows = text_data.tokenize_rows(texts, tok, o.seq_len)
  sampler = p.make_sampler(config.seed, pad_unit(o, mesh))
  binding = common.release_binding(
      p.to_dict(), config.to_dict(), release,
      base=common.config_hash(common.jsonable(bundle.info)),
      model_config=bundle.config.to_dict(), pad_unit=sampler.pad_unit)
  header = make_ledger_header(p, sampler, binding)
  with common.open_run(run_files, header, METHOD) as ledger:
    result = finetune(bundle.params, bundle.config, rows, p,
                      run_files.workdir, ledger, seed=config.seed, mesh=mesh,
                      stop_after=stop_after)
    if result.step < p.steps:
      return {"stopped_at": result.step, "charges": ledger.count}
    common.require_charges(ledger, (f"step:{s}" for s in range(p.steps)),
                           run_files.ledger)
    eps = ledger.epsilon()
    count = ledger.count
  t1 = time.monotonic()
  docs = sample_documents(
      result.params, bundle.config, tok, config.num_docs, o.max_new_tokens,
      o.decode_batch,
      jax.random.fold_in(jax.random.key(config.seed), _SAMPLE_STREAM), mesh,
      temperature=o.temperature)
  num_docs = common.write_documents(out_path, docs)
  sample_seconds = time.monotonic() - t1
  return common.summary(
      method=METHOD, epsilon=eps, target_epsilon=p.target_epsilon,
      delta=p.delta, relation=p.relation, num_docs=num_docs, start=start,
      run=run_files, noise_multiplier=p.noise_multiplier, steps=p.steps,
      charges=count, executed_steps=result.executed,
      expected_batch_size=p.expected_batch_size,
      sampling_prob=p.sampling_prob, clip_norm=common.jsonable(p.clip_norm),
      sampler=o.sampler, trainable=o.trainable, clipping=o.clipping,
      seq_len=o.seq_len,
      truncated_docs=rows.truncated,
      params_sha256=params_sha256(result.params),
      train_seconds=result.seconds, sample_seconds=sample_seconds)
