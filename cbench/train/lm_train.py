"""Next-token training of a cbench transformer on documents (non-private).

`train_lm` is what both base-model pretraining and the standardized harness
fine-tune call: a data-parallel jitted step on a ('data', 'fsdp', 'model')
mesh, run by the one loop in `cbench.train.loop`. One document per row; the
loss is the mean cross-entropy over all real (non-pad) target tokens of the
batch.

Per-document weights (``recipe.provenance_weights``, off by default): rows
that carry weights (`text_data.with_weights`, each in [0, 1] after division
by the public constant of `text_data.document_weights`) give the weighted
mean ``sum(w * ce) / (number of counted targets)``: the denominator is the
unweighted count, so a weight only scales its document's share and a
uniform table reproduces the unweighted run bit for bit. Replay rows weigh
1.

With ``recipe.lora_rank > 0`` the base parameters are frozen and only
low-rank adapters (`cbench.train.lora`) are trained: the loop's state holds
the adapters and their optimizer state (so checkpoints hold only those), the
frozen base is a separate, never-donated argument of the jitted step, and
`train_lm` returns the merged parameters ``W + alpha / r * A @ B`` (a tree
like the base, saved as an ordinary model). Adapters get the same AdamW
recipe as full fine-tuning (weight decay pulls them towards the base).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbench._validate import CbenchError
from cbench.models import config as config_lib
from cbench.models import registry
from cbench.models.transformer import Transformer
from cbench.parallel import mesh as mesh_lib
from cbench.parallel import rules
from cbench.train import loop
from cbench.train import lora
from cbench.train import optim
from cbench.train import text_data

PyTree = Any
log = logging.getLogger("cbench")
_LORA_FIELDS = ("lora_rank", "lora_alpha", "lora_targets")
# Left out of `TrainRecipe.to_dict` when empty (the unweighted default).
_WEIGHT_FIELDS = ("provenance_weights",)
_LORA_STREAM = 0x4C4F  # fold_in(key(recipe.seed), .) draws the adapters' A.


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainRecipe:
  """Steps, batch and optimizer of one training run.

  Token budget = num_steps * batch_size * seq_len (pad positions included).

  LoRA: ``lora_rank`` 0 trains every parameter; r >= 1 trains only rank-r
  adapters on the kernels ``lora_targets`` selects (a regex over
  '/'-joined parameter paths; the default adapts every attention and MLP
  projection of the cbench, gemma3 and llama models), scaled by
  ``lora_alpha / lora_rank``. `to_dict` leaves the LoRA fields out when
  ``lora_rank`` is 0, so full fine-tuning runs keep their bindings.

  ``provenance_weights``: ``((tag, weight), ...)``, the weight of every
  document by its provenance tag (the harness reads it from each corpus
  record, `cbench.harness.finetune.PROVENANCE_FIELD`); weights are finite,
  >= 0, one > 0, and are divided by their maximum (see the module doc).
  Empty (the default): unweighted, and `to_dict` leaves the field out.
  """
  num_steps: int
  batch_size: int = 32
  seq_len: int = 256
  optimizer: optim.OptimizerConfig = optim.OptimizerConfig()
  seed: int = 0
  pack: bool = True  # Pack several documents per row (non-private only).
  # Fraction of every batch's rows drawn from the base model's public-world
  # pretraining data (replay), so fine-tuning on documents alone does not
  # erase the Q/A answer format. Replay data holds no release facts.
  replay_fraction: float = 0.0
  log_every: int = 25
  checkpoint_every: int = 250
  lora_rank: int = 0
  lora_alpha: float = 16.0
  lora_targets: str = lora.DEFAULT_TARGETS
  provenance_weights: tuple[tuple[str, float], ...] = ()

  def __post_init__(self):
    lora.validate(self.lora_rank, self.lora_alpha, self.lora_targets,
                  allow_zero=True)
    if self.provenance_weights:
      tags = [t for t, _ in self.provenance_weights]
      if len(set(tags)) != len(tags) or not all(
          isinstance(t, str) for t in tags):
        raise CbenchError(f"provenance_weights needs distinct string tags, "
                          f"got {tags}.")
      text_data.check_weight_table(dict(self.provenance_weights))

  @property
  def weight_table(self) -> dict[str, float] | None:
    """``{tag: weight}``, or None when training is unweighted."""
    return dict(self.provenance_weights) if self.provenance_weights else None

  @property
  def lora_config(self) -> lora.LoraConfig | None:
    """The adapters' config, or None for full fine-tuning."""
    if not self.lora_rank:
      return None
    return lora.LoraConfig(rank=self.lora_rank, alpha=self.lora_alpha,
                           targets=self.lora_targets)

  def to_dict(self) -> dict:
    out = dataclasses.asdict(self)
    if not self.lora_rank:
      for name in _LORA_FIELDS:
        del out[name]
    if not self.provenance_weights:
      for name in _WEIGHT_FIELDS:
        del out[name]
    return out


def row_arrays(rows: text_data.TokenRows) -> dict[str, np.ndarray]:
  """tokens/segments/positions ``[N, L+1]`` for packed or one-doc rows,
  and weights when the rows carry them."""
  extra = {} if rows.weights is None else {"weights": rows.weights}
  if rows.segments is not None:
    return {"tokens": rows.tokens, "segments": rows.segments,
            "positions": rows.positions, **extra}
  width = rows.tokens.shape[1]
  real = np.arange(width)[None, :] < rows.lengths[:, None]
  return {"tokens": rows.tokens, "segments": real.astype(np.int32),
          "positions": np.broadcast_to(np.arange(width, dtype=np.int32),
                                       rows.tokens.shape), **extra}


def token_losses(model: Transformer, params: PyTree, batch: PyTree
                 ) -> tuple[jax.Array, jax.Array]:
  """Per-token next-token cross-entropy ``[B, L]`` and its 0/1 mask.

  A target counts when it is a real token of the same document as its input.
  """
  tokens, seg, pos = batch["tokens"], batch["segments"], batch["positions"]
  inputs, targets = tokens[:, :-1], tokens[:, 1:]
  logits = model.apply({"params": params}, inputs, pos[:, :-1], seg[:, :-1])
  mask = ((seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] != 0)).astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return ce, mask


def lm_loss(model: Transformer, params: PyTree, batch: PyTree) -> jax.Array:
  """Mean next-token cross-entropy over all counted targets of the batch.

  With ``batch["weights"]`` (per token, the weight of its document) each
  target's loss is scaled by its weight; the denominator stays the count
  of targets (see the module doc).
  """
  ce, mask = token_losses(model, params, batch)
  count = jnp.maximum(jnp.sum(mask), 1.0)
  if "weights" in batch:
    return jnp.sum(ce * (mask * batch["weights"][:, 1:])) / count
  return jnp.sum(ce * mask) / count


def make_train_step(config: config_lib.ModelConfig,
                    optimizer: optax.GradientTransformation, *,
                    frozen: PyTree | None = None,
                    lora_scale: float | None = None):
  """A jitted ``(state, batch, key) -> (state, metrics)`` that donates state.

  Without `frozen`, ``state.params`` are the model's parameters. With
  `frozen` (the base parameters) ``state.params`` are LoRA adapters
  (`cbench.train.lora`) and the loss is that of ``lora.merge(frozen,
  adapters, lora_scale)``; `frozen` is passed to every call as a separate
  argument, never donated, never updated.
  """
  model = registry.make_model(config)  # The architecture of config.arch.
  if (frozen is None) != (lora_scale is None):
    raise ValueError("Give both frozen and lora_scale, or neither.")

  def step(state: loop.TrainState, batch: PyTree, key: jax.Array,
           frozen: PyTree = None):
    del key  # Non-private training is deterministic given the batch.
    if frozen is None:
      model_params = lambda p: p
    else:
      model_params = lambda a: lora.merge(frozen, a, lora_scale)
    loss, grads = jax.value_and_grad(
        lambda p: lm_loss(model, model_params(p), batch))(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": loop.global_norm(grads)}
    return loop.TrainState(state.step + 1, params, opt_state), metrics

  jitted = jax.jit(step, donate_argnums=(0,))
  if frozen is None:
    return jitted
  return lambda state, batch, key: jitted(state, batch, key, frozen)


def init_state(params: PyTree, optimizer: optax.GradientTransformation,
               mesh) -> loop.TrainState:
  """Step 0 state; scalars are replicated over `mesh` (restores keep that)."""
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  abstract = jax.eval_shape(optimizer.init, params)
  shardings = optax.tree_map_params(
      optimizer, lambda _, p: p.sharding, abstract,
      params,
      transform_non_params=lambda _: replicated)
  opt_state = jax.jit(optimizer.init, out_shardings=shardings)(params)
  step = jax.device_put(jnp.zeros((), jnp.int32), replicated)
  return loop.TrainState(step, params, opt_state)


def train_lm(params: PyTree, config: config_lib.ModelConfig,
             rows: text_data.TokenRows, recipe: TrainRecipe, workdir: str,
             *, name: str = "train", mesh=None, hooks=(),
             stop_after: int | None = None,
             replay: text_data.TokenRows | None = None) -> tuple[PyTree, dict]:
  """Trains `params` on `rows` with `recipe`; resumes from `workdir`.

  Args:
    params: initial parameters (sharded or not).
    config: the model config.
    rows: tokenized documents, ``seq_len + 1`` wide.
    recipe: steps, batch, optimizer.
    workdir: checkpoints and metrics.
    name: progress label.
    mesh: device mesh (default: all devices on 'data').
    hooks: extra loop hooks.
    stop_after: stop early after this many steps (crash simulation).
    replay: public-world rows mixed into every batch
      (``recipe.replay_fraction`` of its rows).

  Returns:
    ``(params, info)`` with wall time and tokens/s (weighted rows: also the
    mean weight of the corpus tokens). With LoRA
    (``recipe.lora_rank > 0``) `params` are the merged base + adapters, a
    tree like the input; the input `params` are left intact (not donated),
    and checkpoints in `workdir` hold only the adapters and their optimizer
    state. Without LoRA the input arrays are donated to the first step.

  Raises:
    CbenchError: ``recipe.lora_targets`` selects no kernel of `params`.
  """
  mesh = mesh_lib.make_mesh() if mesh is None else mesh
  if rows.tokens.shape[1] != recipe.seq_len + 1:
    raise ValueError(f"rows are {rows.tokens.shape[1]} wide; expected "
                     f"seq_len + 1 = {recipe.seq_len + 1}.")
  optimizer = optim.make_optimizer(recipe.optimizer, recipe.num_steps)
  lora_cfg = recipe.lora_config
  if lora_cfg is None:
    # Unsharded (or differently placed) parameters go to their shardings
    # on `mesh`; already placed leaves are kept (donated, not copied).
    state = init_state(place_params(params, config, mesh), optimizer, mesh)
    step_fn = make_train_step(config, optimizer)
  else:
    frozen = place_params(params, config, mesh)
    adapters = init_adapters(frozen, lora_cfg, recipe.seed, mesh)
    state = init_state(adapters, optimizer, mesh)
    step_fn = make_train_step(config, optimizer, frozen=frozen,
                              lora_scale=lora_cfg.scale)
  trainable = registry.param_count(state.params)
  num_replay = int(round(recipe.replay_fraction * recipe.batch_size))
  if num_replay and replay is None:
    raise ValueError("recipe.replay_fraction > 0 needs replay rows.")
  if rows.weights is not None and num_replay:
    # Replay rows hold no release data; they weigh 1, like an unweighted run.
    replay = text_data.with_weights(replay, np.ones(replay.num_rows))
  if recipe.pack:
    rows = text_data.pack_rows(rows)
    replay = text_data.pack_rows(replay) if num_replay else None
  arrays = row_arrays(rows)
  order = text_data.EpochOrder(rows.num_rows, recipe.batch_size - num_replay,
                               recipe.seed)
  if num_replay:
    replay_arrays = row_arrays(replay)
    replay_order = text_data.EpochOrder(replay.num_rows, num_replay,
                                        recipe.seed + 1)
  sharding = rules.batch_sharding(mesh)

  def batch_fn(step: int) -> PyTree:
    idx = order.indices(step)
    batch = {k: v[idx] for k, v in arrays.items()}
    if num_replay:
      ridx = replay_order.indices(step)
      batch = {k: np.concatenate([batch[k], replay_arrays[k][ridx]])
               for k in batch}
    return jax.device_put(batch, sharding)

  t0 = time.monotonic()
  start_step = None

  class _Start:
    def before_step(self, step):
      nonlocal start_step
      if start_step is None:
        start_step = step

  state = loop.run(
      state, step_fn, batch_fn,
      config=loop.LoopConfig(num_steps=recipe.num_steps,
                             log_every=recipe.log_every,
                             checkpoint_every=recipe.checkpoint_every,
                             name=name),
      key=jax.random.key(recipe.seed), workdir=workdir,
      hooks=(_Start(), *hooks), stop_after=stop_after)
  wall = time.monotonic() - t0
  steps_run = int(jax.device_get(state.step)) - (start_step or 0)
  info = {
      "steps": int(jax.device_get(state.step)),
      "wall_seconds": wall,
      "tokens_per_second": steps_run * recipe.batch_size * recipe.seq_len / max(wall, 1e-9),
      "epochs": int(jax.device_get(state.step)) * recipe.batch_size / max(rows.num_rows, 1),
      "rows": rows.num_rows,
      "fill": float(rows.lengths.sum() / rows.tokens.size),
      "trainable_params": trainable,
  }
  if rows.weights is not None:
    counted = rows.segments != 0 if rows.segments is not None else (
        np.arange(rows.tokens.shape[1])[None, :] < rows.lengths[:, None])
    info["mean_token_weight"] = float(rows.weights[counted].mean())
  if lora_cfg is None:
    return state.params, info
  info["lora_rank"] = lora_cfg.rank
  return merge_adapters(frozen, state.params, lora_cfg.scale), info


def place_params(params: PyTree, config: config_lib.ModelConfig, mesh
                 ) -> PyTree:
  """`params` on `mesh` in `rules.param_shardings` (leaves already placed
  equivalently are kept, not copied)."""
  shardings = registry.param_shardings(config, mesh)

  def put(x, s):
    current = getattr(x, "sharding", None)
    if current is not None and current.is_equivalent_to(s, x.ndim):
      return x
    return jax.device_put(x, s)
  return jax.tree.map(put, params, shardings)


def init_adapters(params: PyTree, config: lora.LoraConfig, seed: int, mesh
                  ) -> PyTree:
  """LoRA adapters of `params` (``fold_in(key(seed), 0x4C4F)``), placed by
  `lora.shardings` (A like the kernel's input axis, B like its output)."""
  key = jax.random.fold_in(jax.random.key(seed), _LORA_STREAM)
  adapters = lora.init(params, config, key)
  return jax.device_put(adapters, lora.shardings(params, adapters, mesh))


def merge_adapters(frozen: PyTree, adapters: PyTree, scale: float) -> PyTree:
  """``lora.merge`` on device; each merged leaf keeps its base sharding."""
  out_shardings = jax.tree.map(lambda x: x.sharding, frozen)
  merge = jax.jit(lora.merge, static_argnums=2, out_shardings=out_shardings)
  return merge(frozen, adapters, scale)
