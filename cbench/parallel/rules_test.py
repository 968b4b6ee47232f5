"""Tests for sharded init and for data-parallel loss equality on 8 devices."""

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from cbench.models import config as config_lib
from cbench.models import registry
from cbench.models import transformer as tf
from cbench.parallel import mesh as mesh_lib
from cbench.parallel import rules

VOCAB = 256


@pytest.fixture(scope="module")
def config():
  return config_lib.get_model_config("micro", VOCAB)


def test_sharded_init_equals_unsharded(config):
  mesh = mesh_lib.make_mesh(data=2, fsdp=2, model=2)
  sharded = registry.init_params_sharded(None, config, mesh, jax.random.key(7))
  plain = registry.init_params(config, jax.random.key(7))
  jax.tree.map(np.testing.assert_array_equal, sharded, plain)
  assert registry.param_count(sharded) == config.num_params()
  specs = jax.tree.map(lambda x: x.sharding.spec, sharded)
  assert specs["embed"]["embedding"] == P("model", "fsdp")
  assert specs["blocks_0"]["attn"]["q"]["kernel"] == P("fsdp", "model", None)
  assert specs["blocks_0"]["mlp"]["down"]["kernel"] == P("model", "fsdp")
  assert specs["final_norm"]["scale"] == P(None)
  # Every shard lives on its own device: the embedding is split 4 ways.
  emb = sharded["embed"]["embedding"]
  assert {s.data.shape for s in emb.addressable_shards} == {(VOCAB // 2, 32)}
  # A different key gives different parameters (the check can fail).
  other = registry.init_params(config, jax.random.key(8))
  assert not np.array_equal(other["embed"]["embedding"], plain["embed"][
      "embedding"])


def test_indivisible_dimension_is_replicated(config):
  odd = config.replace(vocab_size=255)
  mesh = mesh_lib.make_mesh(data=2, fsdp=2, model=2)
  shardings = registry.param_shardings(odd, mesh)
  assert shardings["embed"]["embedding"].spec == P(None, "fsdp")


def _loss_fn(config):
  model = tf.Transformer(config)

  def loss(params, tokens, mask):
    logits = model.apply({"params": params}, tokens[:, :-1])
    per_example, count = tf.cross_entropy_loss(logits, tokens[:, 1:],
                                               mask[:, 1:])
    return jnp.sum(per_example * count) / jnp.sum(count)
  return jax.jit(jax.value_and_grad(loss))


@pytest.mark.parametrize("axes", [dict(data=8), dict(data=2, fsdp=2, model=2)])
def test_sharded_loss_equals_single_device_loss(config, axes):
  """Loss within 1e-6 (relative) and grads within 1e-5 of 1 device."""
  rng = np.random.default_rng(0)
  tokens = rng.integers(4, VOCAB, (16, 33)).astype(np.int32)
  mask = (rng.random((16, 33)) < 0.9).astype(np.float32)
  params = registry.init_params(config, jax.random.key(0))
  one = jax.devices()[0]
  loss1, grad1 = _loss_fn(config)(*jax.device_put((params, tokens, mask), one))

  mesh = mesh_lib.make_mesh(**axes)
  sharded_params = registry.init_params_sharded(None, config, mesh,
                                             jax.random.key(0))
  batch = rules.batch_sharding(mesh)
  assert batch.spec == P(("data", "fsdp"), None)
  tok8, mask8 = jax.device_put((tokens, mask), batch)
  loss8, grad8 = _loss_fn(config)(sharded_params, tok8, mask8)
  assert len(tok8.addressable_shards) == 8
  assert len(loss8.sharding.device_set) == 8
  np.testing.assert_allclose(float(loss8), float(loss1), rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               grad8, grad1)
  # Sanity: a different batch gives a clearly different loss.
  other, _ = _loss_fn(config)(sharded_params, jnp.roll(tok8, 1, axis=1),
                              mask8)
  assert abs(float(other) - float(loss1)) > 1e-3
