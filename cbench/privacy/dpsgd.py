"""DP-SGD gradient: clipped sum, Gaussian noise, public normaliser, mesh.

    cfg = DpSgdConfig(clip_norm=1.0, noise_multiplier=1.1,
                      expected_batch_size=64.0)
    dp_grad = make_dp_grad_fn(loss_fn, cfg, mesh=mesh)
    g, aux = dp_grad(params, batch, is_padding, jax.random.fold_in(key, step))
    updates, opt_state = opt.update(g, opt_state, params)

`g` = (sum of clipped per-example grads + N(0, noise_std^2)) / B_expected,
noise_std = noise_multiplier * sensitivity(clip_norm, relation). The
normaliser is the PUBLIC `expected_batch_size`, never the realised size. The
caller must pass a distinct key per step and account every executed step
(the sampler's `dp_event`, a `Ledger` charge).

With a mesh, each device clips its shard of the batch inside `jax.shard_map`
and the sums are `psum`-ed over the data axis; replicated params are first
cast to device-varying (`jax.lax.pcast(..., to='varying')`), otherwise
`grad` would pre-sum per-example gradients across devices before clipping.
Noise is added once, after the psum, from the (replicated) key.

`aux['grad_norms']` holds UNCLIPPED per-example norms: private, never log or
release them. `aux['noise_std']` is public.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cbench._validate import CbenchError, check, one_of
from cbench.privacy import accounting
from cbench.privacy import batch_sampling
from cbench.privacy import clipping
from cbench.privacy import cyclic
from cbench.privacy import noise
from cbench.privacy import relations

PyTree = Any
# Sampler kinds a config may name (`check_plan` matches the sampler's kind).
SAMPLERS = batch_sampling.SAMPLERS + (cyclic.CyclicSampler.kind,)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DpSgdConfig:
  """Public DP-SGD hyper-parameters (all of them enter the config hash).

  Attributes:
    clip_norm: per-example L2 clip norm C (> 0; inf only with sigma = 0).
    noise_multiplier: sigma >= 0, noise std relative to the sensitivity
      (sigma = 0: non-private baseline through the same code path).
    expected_batch_size: the PUBLIC normaliser (q * N for Poisson, b for
      fixed batches).
    relation: 'add_remove' | 'replace_one' (sensitivity C or 2C; a cyclic
      run's zero_out has add_remove's sensitivity C, see `cyclic.py`).
    sampler: 'poisson' | 'truncated_poisson' | 'shuffled' | 'cyclic'.
    clipping: 'vmap' | 'ghost'.
    microbatch_size: None or a divisor of the (per-device) batch.
    ghost_reduce: 'bookkeeping' | 'backward' (ghost clipping only).
    noise_dtype: dtype in which noise is drawn and added.
  """
  clip_norm: float
  noise_multiplier: float
  expected_batch_size: float
  relation: str = "add_remove"
  sampler: str = "poisson"
  clipping: str = "vmap"
  microbatch_size: Optional[int] = None
  ghost_reduce: str = "bookkeeping"
  noise_dtype: str = "float32"

  def __post_init__(self):
    relations.check_relation(self.relation)
    one_of("sampler", self.sampler, SAMPLERS)
    one_of("clipping", self.clipping, clipping.METHODS)
    one_of("ghost_reduce", self.ghost_reduce, ("bookkeeping", "backward"))
    check(self.clip_norm is not None and self.clip_norm > 0,
          f"Expected clip_norm={self.clip_norm} > 0.")
    check(self.expected_batch_size is not None
          and math.isfinite(self.expected_batch_size)
          and self.expected_batch_size > 0,
          f"Expected expected_batch_size={self.expected_batch_size} > 0.")
    check(self.microbatch_size is None or self.microbatch_size >= 1,
          f"Expected microbatch_size={self.microbatch_size} >= 1.")
    if self.sampler == "shuffled" and self.relation != "replace_one":
      raise CbenchError("sampler='shuffled' has no amplification and is "
                        "only accounted under relation='replace_one'.")
    relations.noise_std(self.noise_multiplier, self.clip_norm, self.relation)

  @property
  def sensitivity(self) -> float:
    return relations.sensitivity(self.clip_norm, self.relation)

  @property
  def noise_std(self) -> float:
    """Std of the noise on the clipped SUM: sigma * sensitivity."""
    return relations.noise_std(self.noise_multiplier, self.clip_norm,
                               self.relation)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def config_hash(self) -> str:
    blob = json.dumps(self.to_dict(), sort_keys=True, allow_nan=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def check_plan(config: DpSgdConfig, sampler) -> None:
  """Raises unless `sampler` is the one `config` is accounted for."""
  check(sampler.kind == config.sampler,
        f"Sampler kind {sampler.kind!r} != config sampler {config.sampler!r}.")
  check(math.isclose(sampler.expected_batch_size, config.expected_batch_size,
                     rel_tol=1e-9),
        f"Sampler expected batch size {sampler.expected_batch_size} != "
        f"config expected_batch_size {config.expected_batch_size}.")


def calibrate(sampler, steps: int, target_epsilon: float, delta: float,
              relation: str, **kwargs) -> float:
  """Noise multiplier for `steps` steps of `sampler` at (epsilon, delta).

  The event comes from the sampler itself (so sampling and accounting
  cannot drift apart); PLD, bracketed, never undershoots; epsilon = inf
  gives 0. kwargs go to `accounting.calibrate_noise_multiplier`.
  """
  return accounting.calibrate_noise_multiplier(
      lambda sigma: sampler.dp_event(sigma, steps, relation), target_epsilon,
      delta, relation, **kwargs)


def _local_sum(loss_fn, config, params, batch, is_padding, frozen):
  return clipping.clipped_grad_sum(
      loss_fn, params, batch, is_padding, config.clip_norm,
      method=config.clipping, microbatch_size=config.microbatch_size,
      frozen=frozen, ghost_reduce=config.ghost_reduce)


def make_clipped_sum_fn(loss_fn: Callable, config: DpSgdConfig,
                        mesh: Optional[Mesh] = None,
                        axis_name: Union[str, Sequence[str]] = "data"
                        ) -> Callable:
  """(params, batch, is_padding, frozen=None) -> (clipped sum, norms).

  Not jitted (compose it inside your own jit). With `mesh`, a shard_map
  whose batch axis is split over `axis_name` (one axis, e.g. 'data', or
  several, e.g. ('data', 'fsdp')), with a psum of the per-device sums. The
  parameters enter replicated.
  """
  if mesh is None:
    def fn(params, batch, is_padding, frozen=None):
      return _local_sum(loss_fn, config, params, batch, is_padding, frozen)
    return fn
  axes = (axis_name,) if isinstance(axis_name, str) else tuple(axis_name)
  missing = [a for a in axes if a not in mesh.axis_names]
  if missing:
    raise CbenchError(f"Mesh axes {mesh.axis_names} have no {missing}.")
  n = math.prod(mesh.shape[a] for a in axes)
  spec = P(axes if len(axes) > 1 else axes[0])

  def local(params, batch, is_padding, frozen):
    params = jax.lax.pcast(params, axes, to="varying")
    s, norms = _local_sum(loss_fn, config, params, batch, is_padding, frozen)
    return jax.lax.psum(s, axes), norms

  sharded = jax.shard_map(local, mesh=mesh,
                          in_specs=(P(), spec, spec, P()),
                          out_specs=(P(), spec))

  def fn(params, batch, is_padding, frozen=None):
    b = is_padding.shape[0]
    if b % n:
      raise CbenchError(f"Batch size {b} is not a multiple of the {n} "
                        f"devices on mesh axes {axes}; use a sampler "
                        f"pad_unit that is a multiple of {n}.")
    if _has_explicit_axes(mesh):
      rep = NamedSharding(mesh, P())
      row = NamedSharding(mesh, spec)
      params, frozen = jax.reshard((params, frozen), rep)
      batch, is_padding = jax.reshard((batch, is_padding), row)
    return sharded(params, batch, is_padding, frozen)
  return fn


def _has_explicit_axes(mesh: Mesh) -> bool:
  types = getattr(mesh, "axis_types", ())
  return any(t == AxisType.Explicit for t in types)


def make_dp_grad_fn(loss_fn: Callable, config: DpSgdConfig,
                    mesh: Optional[Mesh] = None,
                    axis_name: Union[str, Sequence[str]] = "data"
                    ) -> Callable:
  """Jitted dp_grad(params, batch, is_padding, key, frozen=None).

  Args:
    loss_fn: (params, example) -> scalar (a `ghost.GhostLoss` for ghost).
    config: `DpSgdConfig`.
    mesh: optional mesh; data-parallel over `axis_name` with shard_map.
      Without a mesh the step is a plain jit (GSPMD partitions sharded
      inputs itself).
    axis_name: the mesh axis (or axes) the batch is split over.

  Returns:
    dp_grad(params, batch, is_padding, key, frozen=None) ->
      (noisy_mean_grad like params, aux). `params` is what gets noise and a
      gradient (e.g. the LoRA part); `frozen` is seen by the loss only.
  """
  clipped_sum = make_clipped_sum_fn(loss_fn, config, mesh, axis_name)
  std = config.noise_std
  normalizer = float(config.expected_batch_size)
  noise_dtype = jnp.dtype(config.noise_dtype)

  @jax.jit
  def dp_grad(params, batch, is_padding, key, frozen=None):
    s, norms = clipped_sum(params, batch, is_padding, frozen)
    g = noise.noisy_mean(s, key, std, normalizer, noise_dtype)
    return g, {"grad_norms": norms, "noise_std": jnp.float32(std)}
  return dp_grad
