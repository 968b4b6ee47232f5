"""Tests for the Gemma 3 and Llama modules on tiny random configs (fast)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cbench._validate import CbenchError
from cbench.io import checkpoint
from cbench.models import config as config_lib
from cbench.models import gemma3
from cbench.models import gemma_checkpoint
from cbench.models import llama
from cbench.models import registry
from cbench.models import transformer as tf
from cbench.parallel import mesh as mesh_lib
from cbench.privacy import clipping
from cbench.privacy import ghost

VOCAB = 97
KNOWN_AXES = {"vocab", "embed", "heads", "kv_heads", "head_dim", "mlp", "norm"}


def _config(arch, **kw):
  fields = dict(name="t", arch=arch, vocab_size=VOCAB, d_model=32,
                num_layers=3, num_heads=4, num_kv_heads=2, head_dim=8,
                mlp_dim=48, max_len=64)
  if arch == "gemma3":
    fields.update(sliding_window=3, global_every=3, rope_base=1e6,
                  local_rope_base=1e4, query_pre_attn_scalar=10.0)
  fields.update(kw)
  return config_lib.ModelConfig(**fields)


def _params(config, seed=0):
  """Random parameters drawn on the host (no init compile), large enough
  (and with nonzero norm scales) that predictions depend on position and
  context, so masking mistakes show."""
  shapes = jax.eval_shape(
      lambda r: nn.unbox(registry.boxed_init(config, r))["params"],
      jax.random.key(0))
  rng = np.random.default_rng(seed)

  def draw(x):
    if len(x.shape) == 1:
      return (0.3 * rng.standard_normal(x.shape)).astype(np.float32)
    fan_in = np.prod(x.shape[:-1]) if len(x.shape) > 2 else x.shape[0]
    std = 1.0 if x.shape[0] == config.vocab_size else 2.0 / np.sqrt(fan_in)
    return (std * rng.standard_normal(x.shape)).astype(np.float32)
  return jax.tree.map(draw, shapes)


def test_make_model_picks_arch():
  assert type(registry.make_model(_config("cbench"))) is tf.Transformer
  assert type(registry.make_model(_config("gemma3"))) is gemma3.Gemma3
  assert type(registry.make_model(_config("llama"))) is llama.Llama
  with pytest.raises(CbenchError, match="arch"):
    _config("gpt2")


def test_cbench_config_dict_unchanged():
  # Model directories and cache keys of existing models keep their fields.
  d = config_lib.get_model_config("micro", VOCAB).to_dict()
  assert "arch" not in d and "sliding_window" not in d
  g = _config("gemma3").to_dict()
  assert g["arch"] == "gemma3" and g["sliding_window"] == 3
  assert config_lib.ModelConfig(**g) == _config("gemma3")


@pytest.mark.parametrize("arch", ["gemma3", "llama"])
def test_params_have_logical_axes_and_count(arch):
  config = _config(arch)
  axes = registry.logical_axes(config)
  shapes = jax.eval_shape(
      lambda r: nn.unbox(registry.boxed_init(config, r))["params"],
      jax.random.key(0))
  flat_axes = jax.tree_util.tree_leaves_with_path(
      axes, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  flat_shapes = jax.tree_util.tree_leaves_with_path(shapes)
  per_layer = 13 if arch == "gemma3" else 9
  assert len(flat_axes) == len(flat_shapes) == 2 + per_layer * 3
  for (pa, spec), (ps, x) in zip(flat_axes, flat_shapes):
    assert pa == ps and len(spec) == len(x.shape)
    assert all(a in KNOWN_AXES for a in spec), (pa, spec)
  assert registry.param_count(shapes) == config.num_params()
  if arch == "gemma3":
    assert shapes["blocks_0"]["attn"]["q_norm"]["scale"].shape == (8,)
    assert "post_mlp_norm" in shapes["blocks_2"]


def test_named_gemma3_configs():
  c = gemma3.gemma3_config("gemma3_270m")
  assert c.num_params() == 268_098_176  # the GGUF file's parameter count
  assert [i for i in range(c.num_layers) if c.is_global_layer(i)] == [5, 11,
                                                                       17]
  assert c.attn_scale == 256 ** -0.5
  assert gemma3.gemma3_config("gemma3_27b").attn_scale == 168 ** -0.5
  assert llama.llama_config("smollm2_135m").num_params() == 134_515_008


def _masks_ref(config, t):
  """[layers, T, T] allowed (query, key) pairs of a plain causal row."""
  idx = np.arange(t)
  out = []
  for i in range(config.num_layers):
    m = idx[:, None] >= idx[None, :]
    if not config.is_global_layer(i) and config.sliding_window:
      m &= (idx[:, None] - idx[None, :]) < config.sliding_window
    out.append(m)
  return out


def test_sliding_window_limits_context():
  # Only layer 2 is global; with every layer local, a token 6 positions
  # back could not matter, with the global layer it does.
  config = _config("gemma3")
  params = _params(config)
  model = registry.make_model(config)
  rng = np.random.default_rng(0)
  tokens = rng.integers(4, VOCAB, (1, 10)).astype(np.int32)
  changed = tokens.copy()
  changed[0, 2] = (tokens[0, 2] + 1) % VOCAB
  f = jax.jit(lambda p, t: model.apply({"params": p}, t))
  # Position 3 is within the window of 2 (3 - 2 < 3): depends on it.
  assert not np.allclose(f(params, tokens)[0, 3], f(params, changed)[0, 3])
  local = config.replace(global_every=100)  # no layer global
  g = jax.jit(lambda p, t: registry.make_model(local).apply({"params": p}, t))
  # 3 local layers of window 3 reach back 2 * 3 = 6 positions: position 9
  # cannot see position 2 any more, position 8 can.
  np.testing.assert_array_equal(g(params, tokens)[0, 9], g(params, changed)[0, 9])
  assert not np.allclose(g(params, tokens)[0, 8], g(params, changed)[0, 8])
  # Global layers make position 9 depend on it.
  assert not np.allclose(f(params, tokens)[0, 9], f(params, changed)[0, 9])


@pytest.mark.parametrize("arch", ["gemma3", "llama"])
def test_extend_matches_full_forward(arch):
  """Prefill of left-padded prompts + one-token decode == full forward."""
  config = _config(arch)
  params = _params(config)
  model = registry.make_model(config)
  rng = np.random.default_rng(1)
  lengths, width, steps = [9, 4, 6], 9, 4
  tokens = np.zeros((3, width), np.int32)
  for i, n in enumerate(lengths):
    tokens[i, width - n:] = rng.integers(4, VOCAB, n)
  valid = tokens != 0
  positions = np.maximum(np.cumsum(valid, 1) - 1, 0).astype(np.int32)
  new = rng.integers(4, VOCAB, (3, steps)).astype(np.int32)
  extend = jax.jit(lambda p, t, pos, c, v: model.apply(
      {"params": p}, t, pos, c, valid=v, last_only=True, method="extend"))
  cache = tf.init_cache(config, 3, 32)
  logits, cache = extend(params, tokens, positions, cache, valid)
  got = [logits]
  pos = valid.sum(1).astype(np.int32)
  for s in range(steps):
    logits, cache = extend(params, new[:, s:s + 1], (pos + s)[:, None], cache,
                           np.ones((3, 1), bool))
    got.append(logits)
  # Full forward of right-padded rows (causal: padding after is harmless).
  rows = np.zeros((3, width + steps), np.int32)
  for i, n in enumerate(lengths):
    rows[i, :n + steps] = np.concatenate([tokens[i, width - n:], new[i]])
  full = jax.jit(lambda p, t: model.apply({"params": p}, t, None, t != 0))(
      params, rows)
  for i, n in enumerate(lengths):
    for s in range(steps + 1):
      np.testing.assert_allclose(got[s][i], full[i, n - 1 + s], atol=2e-4,
                                 rtol=2e-4)


def test_packed_segments_match_separate_rows():
  config = _config("gemma3")
  params = _params(config)
  model = registry.make_model(config)
  rng = np.random.default_rng(2)
  a = rng.integers(4, VOCAB, 7).astype(np.int32)
  b = rng.integers(4, VOCAB, 5).astype(np.int32)
  z = lambda n: np.zeros(n, np.int32)
  tokens = np.stack([np.concatenate([a, b]), np.concatenate([a, z(5)]),
                     np.concatenate([b, z(7)])])
  seg = np.array([[1] * 7 + [2] * 5, [1] * 7 + [0] * 5, [1] * 5 + [0] * 7])
  pos = np.array([list(range(7)) + list(range(5)), list(range(12)),
                  list(range(12))], np.int32)
  out = jax.jit(lambda p, t, q, s: model.apply({"params": p}, t, q, s))(
      params, tokens, pos, seg)
  np.testing.assert_allclose(out[0, :7], out[1, :7], atol=2e-4)
  np.testing.assert_allclose(out[0, 7:], out[2, :5], atol=2e-4)


def test_rope_scale_is_linear_position_scaling():
  x = jax.random.normal(jax.random.key(0), (1, 4, 2, 8))
  pos = jnp.arange(4, dtype=jnp.int32)[None] * 8
  np.testing.assert_allclose(
      gemma3.rope(x, pos, 1e4, 8.0),
      gemma3.rope(x, pos // 8, 1e4, 1.0), atol=1e-6)
  np.testing.assert_allclose(gemma3.rope(x, pos, 1e4),
                             tf.apply_rope(x, pos, 1e4), atol=1e-6)


def test_llama_has_no_embedding_scale():
  config = _config("llama")
  params = _params(config)
  tokens = np.array([[5, 6, 7]], np.int32)
  as_cbench = config.replace(arch="cbench")
  # The cbench module with embeddings pre-divided by sqrt(d) has the same
  # residual stream (only the tied head differs).
  h_llama = jax.jit(lambda p: registry.make_model(config).apply(
      {"params": p}, tokens, np.ones((1, 3), bool), method="mean_hidden"))(
          params)
  scaled = {**params, "embed": {
      "embedding": params["embed"]["embedding"] / np.sqrt(32)}}
  h_cb = jax.jit(lambda p: registry.make_model(as_cbench).apply(
      {"params": p}, tokens, np.ones((1, 3), bool), method="mean_hidden"))(
          scaled)
  np.testing.assert_allclose(h_llama, h_cb, atol=1e-4, rtol=1e-4)


def _to_gemma_layout(params, config, fused_qkv=False):
  """cbench params -> DeepMind gemma's tree (the inverse mapping)."""
  t = {"embedder": {"input_embedding": params["embed"]["embedding"]},
       "final_norm": params["final_norm"]}
  for i in range(config.num_layers):
    b = params[f"blocks_{i}"]
    a = b["attn"]
    q, k, v = (np.asarray(a[n]["kernel"]).transpose(1, 0, 2)
               for n in ("q", "k", "v"))
    attn = {"attn_vec_einsum": {"w": a["o"]["kernel"]},
            "_query_norm": a["q_norm"], "_key_norm": a["k_norm"]}
    if fused_qkv:
      attn["qkv_einsum"] = {"w": np.stack([q, k, v])}
    else:
      attn["q_einsum"] = {"w": q}
      attn["kv_einsum"] = {"w": np.stack([k, v])}
    t[f"layer_{i}"] = {
        "attn": attn,
        "mlp": {"gating_einsum": np.stack([
            np.asarray(b["mlp"]["gate"]["kernel"]).T,
            np.asarray(b["mlp"]["up"]["kernel"]).T]),
                "linear": b["mlp"]["down"]["kernel"]},
        "pre_attention_norm": b["attn_norm"],
        "post_attention_norm": b["post_attn_norm"],
        "pre_ffw_norm": b["mlp_norm"], "post_ffw_norm": b["post_mlp_norm"]}
  t["vision_encoder"] = {"unused": np.zeros(3, np.float32)}
  return t


def test_load_orbax_checkpoints(tmp_path):
  config = _config("gemma3")
  params = _params(config)
  flat = lambda p: jax.tree_util.tree_leaves_with_path(p)

  def same(a, b):
    assert [k for k, _ in flat(a)] == [k for k, _ in flat(b)]
    for (_, x), (_, y) in zip(flat(a), flat(b)):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

  ckptr = ocp.StandardCheckpointer()
  ckptr.save(str(tmp_path / "gm"), {"transformer": _to_gemma_layout(
      params, config)})
  mha = _config("gemma3", num_kv_heads=4)  # fused qkv_einsum: heads == kv
  mha_params = _params(mha, seed=3)
  ckptr.save(str(tmp_path / "gm_fused"), _to_gemma_layout(
      mha_params, mha, fused_qkv=True))
  ckptr.wait_until_finished()
  checkpoint.save_params(str(tmp_path / "cb"), params)
  mesh = mesh_lib.make_mesh(data=2, fsdp=2, model=2)
  for name in ("gm", "cb"):
    same(gemma_checkpoint.load_checkpoint(str(tmp_path / name), config), params)
  same(gemma_checkpoint.load_checkpoint(str(tmp_path / "gm_fused"), mha), mha_params)
  sharded = gemma_checkpoint.load_checkpoint(str(tmp_path / "cb"), config, mesh=mesh)
  same(sharded, params)
  up = sharded["blocks_0"]["mlp"]["up"]["kernel"]
  assert up.addressable_shards[0].data.shape == (16, 24)
  from_gm = gemma_checkpoint.load_checkpoint(str(tmp_path / "gm"), config, mesh=mesh)
  assert from_gm["blocks_0"]["mlp"]["up"]["kernel"].sharding == up.sharding
  with pytest.raises(CbenchError, match="do not fit"):
    gemma_checkpoint.load_checkpoint(str(tmp_path / "gm"), config.replace(mlp_dim=40))
  ckptr.save(str(tmp_path / "other"), {"weights": np.zeros(2, np.float32)})
  ckptr.wait_until_finished()
  with pytest.raises(CbenchError, match="unknown checkpoint layout"):
    gemma_checkpoint.load_checkpoint(str(tmp_path / "other"), config)
  with pytest.raises(CbenchError, match="not found"):
    gemma_checkpoint.load_checkpoint(str(tmp_path / "missing"), config)


@pytest.mark.parametrize("arch", ["gemma3", "llama"])
def test_ghost_clipping_equals_vmap(arch):
  """DP fine-tuning's ghost norms see every parameterised op of the new
  blocks (qk-norms on [B, T, heads, hd], post-norms)."""
  config = _config(arch, num_layers=2, global_every=2)
  params = jax.tree.map(lambda x: 0.3 * x, _params(config))
  model = registry.make_model(config)
  loss = ghost.GhostLoss(
      model, lambda b: (b["tokens"],),
      lambda out, b: tf.cross_entropy_loss(out, b["targets"], b["mask"])[0])
  rng = np.random.default_rng(0)
  tok = rng.integers(0, VOCAB, (3, 9)).astype(np.int32)
  tok[0, 2] = tok[0, 5]
  batch = {"tokens": tok[:, :-1], "targets": tok[:, 1:],
           "mask": np.ones((3, 8), np.float32)}
  pad = np.zeros(3, bool)
  run = lambda method: jax.jit(lambda p: clipping.clipped_grad_sum(
      loss, p, batch, pad, 0.5, method=method))(params)
  (s_v, n_v), (s_g, n_g) = run("vmap"), run("ghost")
  np.testing.assert_allclose(n_g, n_v, rtol=1e-4)
  for a, b in zip(jax.tree.leaves(s_v), jax.tree.leaves(s_g)):
    np.testing.assert_allclose(b, a, atol=1e-5 * float(np.abs(a).max()) + 1e-7)
