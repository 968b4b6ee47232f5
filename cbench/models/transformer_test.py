"""Tests for the transformer: axes, masking, KV cache, instrumentation, loss."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.models import config as config_lib
from cbench.models import registry
from cbench.models import transformer as tf

VOCAB = 300
KNOWN_AXES = {"vocab", "embed", "heads", "kv_heads", "head_dim", "mlp", "norm"}


@pytest.fixture(scope="module")
def setup():
  config = config_lib.get_model_config("micro", VOCAB)
  params = registry.init_params(config, jax.random.key(0))
  # Larger weights make the random model's predictions position-dependent.
  params = jax.tree.map(lambda x: 3.0 * x, params)
  return config, params, tf.Transformer(config)


def _left_padded(rng, lengths, width):
  tokens = np.zeros((len(lengths), width), np.int32)
  for i, n in enumerate(lengths):
    tokens[i, width - n:] = rng.integers(4, VOCAB, n)
  valid = tokens != 0
  positions = np.maximum(np.cumsum(valid, axis=1) - 1, 0).astype(np.int32)
  return tokens, valid, positions


def test_every_param_has_logical_axes(setup):
  config, params, _ = setup
  axes = registry.logical_axes(config)
  shapes = jax.tree.map(lambda x: x.shape, params)
  flat_axes = jax.tree_util.tree_leaves_with_path(
      axes, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  flat_shapes = jax.tree_util.tree_leaves_with_path(
      shapes, is_leaf=lambda x: isinstance(x, tuple))
  assert len(flat_axes) == len(flat_shapes) == 2 + 9 * config.num_layers
  for (path_a, spec), (path_s, shape) in zip(flat_axes, flat_shapes):
    assert path_a == path_s
    assert len(spec) == len(shape), (path_a, spec, shape)
    assert all(name in KNOWN_AXES for name in spec), (path_a, spec)
  assert axes["embed"]["embedding"] == jax.sharding.PartitionSpec(
      "vocab", "embed")


@pytest.mark.parametrize("name", config_lib.MODEL_NAMES)
def test_named_config_param_counts(name):
  config = config_lib.get_model_config(name, 8000)
  shapes = jax.eval_shape(
      lambda r: nn.unbox(registry.boxed_init(config, r))["params"],
      jax.random.key(0))
  assert registry.param_count(shapes) == config.num_params()
  expected_millions = {"micro": 0.586, "tiny": 6.245, "small": 24.55,
                       "base": 91.10, "large": 347.98}[name]
  assert config.num_params() / 1e6 == pytest.approx(expected_millions,
                                                     abs=0.01)


def test_config_errors():
  with pytest.raises(CbenchError, match="model"):
    config_lib.get_model_config("huge", 100)
  with pytest.raises(CbenchError, match="num_kv_heads"):
    config_lib.get_model_config("micro", 100, num_kv_heads=3)
  with pytest.raises(CbenchError, match="dtype"):
    config_lib.get_model_config("micro", 100, dtype="float64x")
  with pytest.raises(CbenchError, match="Unknown ModelConfig"):
    config_lib.get_model_config("micro", 100, d_modle=3)


def test_forward_shape_dtype_and_causality(setup):
  config, params, model = setup
  tokens = jnp.asarray(np.random.default_rng(0).integers(4, VOCAB, (2, 12)),
                       jnp.int32)
  logits = model.apply({"params": params}, tokens)
  assert logits.shape == (2, 12, VOCAB) and logits.dtype == jnp.float32
  changed = model.apply({"params": params}, tokens.at[:, 7].set(5))
  np.testing.assert_array_equal(logits[:, :7], changed[:, :7])
  assert np.abs(np.asarray(logits[:, 7:] - changed[:, 7:])).max() > 1e-3
  # bfloat16 compute still returns float32 logits, close to float32 ones.
  bf16 = tf.Transformer(config.replace(dtype="bfloat16")).apply(
      {"params": params}, tokens)
  assert bf16.dtype == jnp.float32
  assert np.abs(np.asarray(bf16 - logits)).max() < 0.1 * np.abs(
      np.asarray(logits)).max()


def test_packed_segments_equal_separate_sequences(setup):
  _, params, model = setup
  rng = np.random.default_rng(1)
  a, b = rng.integers(4, VOCAB, 5), rng.integers(4, VOCAB, 7)
  packed = jnp.asarray(np.concatenate([a, b, [0, 0]])[None], jnp.int32)
  segments = jnp.asarray([[1] * 5 + [2] * 7 + [0, 0]])
  positions = jnp.asarray([list(range(5)) + list(range(7)) + [0, 0]])
  out = model.apply({"params": params}, packed, positions, segments)
  la = model.apply({"params": params}, jnp.asarray(a[None], jnp.int32))
  lb = model.apply({"params": params}, jnp.asarray(b[None], jnp.int32))
  np.testing.assert_allclose(out[0, :5], la[0], atol=1e-4)
  np.testing.assert_allclose(out[0, 5:12], lb[0], atol=1e-4)
  assert np.all(np.isfinite(np.asarray(out)))  # padding rows stay finite


def test_kv_cache_prefill_and_decode_match_full_forward(setup):
  """Max |delta logit| between cached steps and the full forward < 1e-4."""
  config, params, model = setup
  rng = np.random.default_rng(2)
  width, extra = 8, 4
  tokens, valid, positions = _left_padded(rng, [8, 3, 6], width)
  more = rng.integers(4, VOCAB, (3, extra)).astype(np.int32)
  full_tokens = np.concatenate([tokens, more], axis=1)
  full_valid = np.concatenate([valid, np.ones((3, extra), bool)], axis=1)
  full_pos = np.maximum(np.cumsum(full_valid, axis=1) - 1, 0)
  full = model.apply({"params": params}, jnp.asarray(full_tokens),
                     jnp.asarray(full_pos, jnp.int32), jnp.asarray(full_valid))
  cache = tf.init_cache(config, 3, width + extra + 4)
  prefill, cache = model.apply(
      {"params": params}, jnp.asarray(tokens), jnp.asarray(positions), cache,
      valid=jnp.asarray(valid), method=tf.Transformer.extend)
  deltas = [np.abs(np.asarray(prefill - full[:, :width]))[valid].max()]
  pos = valid.sum(1)
  for j in range(extra):
    step, cache = model.apply(
        {"params": params}, jnp.asarray(more[:, j:j + 1]),
        jnp.asarray(pos[:, None] + j, jnp.int32), cache, last_only=True,
        method=tf.Transformer.extend)
    deltas.append(np.abs(np.asarray(step - full[:, width + j])).max())
  assert max(deltas) < 1e-4, deltas
  assert np.abs(np.asarray(full)).max() > 1.0  # the comparison is not vacuous
  np.testing.assert_array_equal(np.asarray(cache.written).sum(1),
                                pos + extra)


def test_sow_and_perturb_give_per_example_weight_grads(setup):
  """The ghost-clipping contract: dW = sum_t a_t (x) g_t for a projection."""
  config, params, model = setup
  tokens = jnp.asarray(np.random.default_rng(3).integers(4, VOCAB, (2, 6)),
                       jnp.int32)
  variables = model.init(jax.random.key(1), tokens)
  perturbations = variables["perturbations"]
  assert "out" in perturbations["blocks_0"]["mlp"]["down"]
  assert "attend_out" in perturbations["embed"]

  def loss(p, perts):
    logits, state = model.apply({"params": p, "perturbations": perts},
                                tokens, mutable=["intermediates"])
    return jnp.sum(jax.nn.log_softmax(logits)[..., 7]), state

  (_, state), (gp, gperts) = jax.value_and_grad(
      loss, argnums=(0, 1), has_aux=True)(params, perturbations)
  inter = state["intermediates"]
  for layer, name in (("mlp", "down"), ("attn", "q"), ("attn", "o")):
    a = inter["blocks_1"][layer][name]["inputs"][0]
    g = gperts["blocks_1"][layer][name]["out"]
    n_in = a.ndim - 2
    dw = jnp.tensordot(a.reshape(-1, *a.shape[2:]),
                       g.reshape(-1, *g.shape[2:]), axes=((0,), (0,)))
    np.testing.assert_allclose(dw, gp["blocks_1"][layer][name]["kernel"],
                               rtol=1e-4, atol=1e-5)
    assert n_in >= 1
  # RMSNorm: d scale = sum_t normed_t * g_t.
  normed = inter["blocks_0"]["mlp_norm"]["inputs"][0]
  g = gperts["blocks_0"]["mlp_norm"]["out"]
  np.testing.assert_allclose(jnp.sum(normed * g, axis=(0, 1)),
                             gp["blocks_0"]["mlp_norm"]["scale"],
                             rtol=1e-4, atol=1e-5)
  # Tied embedding: lookup grad (scatter of g) + attend grad (g^T h).
  ids = inter["embed"]["inputs"][0]
  g_lookup = gperts["embed"]["out"]
  h = inter["embed"]["attend_inputs"][0]
  g_attend = gperts["embed"]["attend_out"]
  de = jnp.zeros((VOCAB, config.d_model)).at[ids.reshape(-1)].add(
      g_lookup.reshape(-1, config.d_model))
  de = de + jnp.einsum("btv,btd->vd", g_attend, h)
  np.testing.assert_allclose(de, gp["embed"]["embedding"], rtol=1e-4,
                             atol=1e-5)
  # A plain apply (no perturbations, no mutable) gives the same logits.
  plain = model.apply({"params": params}, tokens)
  pert = model.apply({"params": params, "perturbations": perturbations},
                     tokens)
  np.testing.assert_array_equal(plain, pert)


def test_cross_entropy_loss():
  rng = np.random.default_rng(4)
  logits = jnp.asarray(rng.normal(size=(2, 5, 7)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, 7, (2, 5)), jnp.int32)
  mask = jnp.asarray([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], jnp.float32)
  loss, count = tf.cross_entropy_loss(logits, targets, mask)
  logp = jax.nn.log_softmax(logits)
  manual = -np.mean([logp[0, t, targets[0, t]] for t in range(3)])
  np.testing.assert_allclose(loss, [manual, 0.0], rtol=1e-6)
  np.testing.assert_array_equal(count, [3.0, 0.0])
  full, n = tf.cross_entropy_loss(logits, targets)
  np.testing.assert_array_equal(n, [5.0, 5.0])
  np.testing.assert_allclose(
      full[1], -np.mean([logp[1, t, targets[1, t]] for t in range(5)]),
      rtol=1e-6)


def test_remat_gives_same_loss_grads_and_intermediates(setup):
  config, params, model = setup
  tokens = jnp.asarray(np.random.default_rng(5).integers(4, VOCAB, (2, 6)),
                       jnp.int32)
  remat = tf.Transformer(config.replace(remat=True))

  def loss(m, p):
    logits, state = m.apply({"params": p}, tokens, mutable=["intermediates"])
    return jnp.mean(tf.cross_entropy_loss(logits, tokens)[0]), state

  grad = lambda m: jax.jit(jax.value_and_grad(lambda p: loss(m, p),
                                              has_aux=True))
  (l0, s0), g0 = grad(model)(params)
  (l1, s1), g1 = grad(remat)(params)
  np.testing.assert_allclose(l0, l1, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               g0, g1)
  assert (jax.tree.structure(s0) == jax.tree.structure(s1))
  assert "inputs" in s1["intermediates"]["blocks_0"]["mlp"]["up"]


def test_mean_hidden_is_the_masked_mean_of_final_norm_states(setup):
  config, params, model = setup
  rng = np.random.default_rng(3)
  width, lengths = 10, (10, 4, 1)
  tokens = np.zeros((len(lengths), width), np.int32)
  for i, n in enumerate(lengths):
    tokens[i, :n] = rng.integers(4, VOCAB, n)
  valid = tokens != 0
  got = model.apply({"params": params}, tokens, valid,
                    method=tf.Transformer.mean_hidden)
  assert got.shape == (3, config.d_model) and got.dtype == jnp.float32

  def final_states(row):  # the reference: capture final_norm's output
    _, inter = model.apply({"params": params}, row[None], mutable=[
        "intermediates"])
    normed = inter["intermediates"]["embed"]["attend_inputs"][0]
    return np.asarray(normed[0], np.float64)

  for i, n in enumerate(lengths):
    ref = final_states(tokens[i, :n]).mean(axis=0)
    np.testing.assert_allclose(np.asarray(got[i]), ref, rtol=2e-5,
                               atol=2e-5)
  # Padding content and trailing pad length do not matter.
  junk = np.where(valid, tokens, 7)
  again = model.apply({"params": params}, junk, valid,
                      method=tf.Transformer.mean_hidden)
  np.testing.assert_allclose(np.asarray(again), np.asarray(got), atol=1e-5)
  # A broken variant (mean over ALL columns) differs for padded rows.
  broken = model.apply({"params": params}, tokens, np.ones_like(valid),
                       method=tf.Transformer.mean_hidden)
  assert not np.allclose(np.asarray(broken[1]), np.asarray(got[1]),
                         atol=1e-3)
