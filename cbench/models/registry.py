"""Model construction by config: the one place that builds and inits models.

`make_model(config)` returns the linen module of ``config.arch`` ('cbench':
`Transformer`, 'gemma3': `cbench.models.gemma3.Gemma3`, 'llama':
`cbench.models.llama.Llama`; all share the `Transformer` entry points, so
call them by name: ``model.apply(v, ..., method="extend")``); `init_params(config, rng)`
returns plain (unboxed) float parameters on the default device, and
`init_params_sharded` creates them born sharded over a mesh (shardings from
the logical axis names through `cbench.parallel.rules`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from cbench.models import config as config_lib
from cbench.models import gemma3
from cbench.models import llama
from cbench.models.transformer import Transformer
from cbench.parallel import rules as rules_lib

PyTree = Any


def make_model(config: config_lib.ModelConfig) -> Transformer:
  """The module for ``config.arch`` (a `Transformer` or a subclass)."""
  if config.arch == "gemma3":
    return gemma3.Gemma3(config)
  if config.arch == "llama":
    return llama.Llama(config)
  return Transformer(config)


def get_model(name: str, vocab_size: int, **overrides
              ) -> tuple[Transformer, config_lib.ModelConfig]:
  """The named model (see `cbench.models.config.MODEL_NAMES`) and config."""
  config = config_lib.get_model_config(name, vocab_size, **overrides)
  return make_model(config), config


def boxed_init(config: config_lib.ModelConfig, rng: jax.Array,
               model: nn.Module | None = None) -> PyTree:
  """``{'params': ...}`` with `nn.LogicallyPartitioned` leaves (for sharding).

  `model` defaults to ``make_model(config)``.
  """
  model = make_model(config) if model is None else model
  tokens = jnp.zeros((1, 1), jnp.int32)
  return {"params": model.init(rng, tokens)["params"]}


def init_params(config: config_lib.ModelConfig, rng: jax.Array) -> PyTree:
  """Plain parameter pytree (unsharded; jitted)."""
  init = jax.jit(lambda r: nn.unbox(boxed_init(config, r))["params"])
  return init(rng)


def logical_axes(config: config_lib.ModelConfig) -> PyTree:
  """PartitionSpecs of logical axis names, one per parameter (no compute)."""
  abstract = jax.eval_shape(lambda r: boxed_init(config, r), jax.random.key(0))
  return nn.get_partition_spec(abstract)["params"]


def param_count(params: PyTree) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))


def param_shardings(config: config_lib.ModelConfig, mesh: Mesh,
                    rules: rules_lib.Rules = rules_lib.DEFAULT_RULES,
                    model: nn.Module | None = None) -> PyTree:
  """The NamedSharding of every parameter (same tree as the params)."""
  abstract = jax.eval_shape(
      lambda r: boxed_init(config, r, model), jax.random.key(0))
  return rules_lib.logical_to_sharding(
      nn.get_partition_spec(abstract)["params"], nn.unbox(abstract)["params"],
      mesh, rules)


def init_params_sharded(model: nn.Module | None,
                        config: config_lib.ModelConfig, mesh: Mesh,
                        rng: jax.Array,
                        rules: rules_lib.Rules = rules_lib.DEFAULT_RULES
                        ) -> PyTree:
  """Initialises parameters directly into their shardings (no host copy).

  ``jax.eval_shape`` finds shapes and logical axes, the rules give mesh
  shardings, and ``jax.jit(init, out_shardings=...)`` creates each shard on
  its device. Same values as `init_params`.

  Args:
    model: the module (None: ``make_model(config)``).
    config: its config.
    mesh: from `cbench.parallel.mesh.make_mesh`.
    rng: PRNG key.
    rules: logical -> mesh axis rules.

  Returns:
    Plain (unboxed) parameters, each a `jax.Array` with a NamedSharding.
  """
  shardings = param_shardings(config, mesh, rules, model)
  init = jax.jit(
      lambda r: nn.unbox(boxed_init(config, r, model))["params"],
      out_shardings=shardings)
  return init(rng)
