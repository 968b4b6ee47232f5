"""Low-rank adapters: targets, init = base, merge = W + scale A B, shardings.

Pure unit tests on randomly initialised `micro` models of each architecture
(no training); a few seconds in all.
"""

import functools

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.models import config as config_lib
from cbench.models import registry
from cbench.parallel import mesh as mesh_lib
from cbench.train import lora

PROJECTIONS = {("attn", "q"), ("attn", "k"), ("attn", "v"), ("attn", "o"),
               ("mlp", "gate"), ("mlp", "up"), ("mlp", "down")}


def _micro(arch="cbench"):
  return config_lib.get_model_config("micro", 96, arch=arch)


@functools.lru_cache(maxsize=None)
def _params(arch="cbench"):
  """Host arrays (shared by tests: never mutated)."""
  return jax.device_get(registry.init_params(_micro(arch), jax.random.key(0)))


@pytest.mark.parametrize("arch", ["cbench", "gemma3", "llama"])
def test_default_targets_are_every_projection_and_init_is_the_base(arch):
  params = _params(arch)
  paths = lora.target_paths(params, lora.DEFAULT_TARGETS)
  cfg = _micro(arch)
  assert {(p[1], p[2]) for p in paths} == PROJECTIONS
  assert len(paths) == cfg.num_layers * len(PROJECTIONS)
  assert all(p[0].startswith("blocks_") and p[-1] == "kernel" for p in paths)
  adapters = lora.init(params, lora.LoraConfig(rank=3), jax.random.key(1))
  merged = lora.merge(params, adapters, 16.0 / 3)
  flat_p, flat_m = lora.flatten(params), lora.flatten(merged)
  assert flat_p.keys() == flat_m.keys()
  for k in flat_p:   # B = 0: the adapted model starts bitwise at the base
    np.testing.assert_array_equal(flat_p[k], flat_m[k])
  flat_a = lora.flatten(adapters)
  q = flat_a[("blocks_0", "attn", "q", "a")]
  assert q.shape == (cfg.d_model, 3) and q.dtype == np.float32
  assert flat_a[("blocks_0", "attn", "o", "b")].shape == (3, cfg.d_model)
  assert flat_a[("blocks_0", "attn", "o", "a")].shape == (
      cfg.num_heads * cfg.head_dim, 3)
  assert not np.any(flat_a[("blocks_1", "mlp", "down", "b")])
  # A ~ N(0, 1/d_in): every d_in = d_model adapter (q, k, v, up) pooled.
  a_all = np.concatenate([np.ravel(v) for k, v in flat_a.items()
                          if k[-1] == "a" and k[-2] in ("q", "k", "v", "up")])
  assert abs(np.std(a_all) * np.sqrt(cfg.d_model) - 1.0) < 0.1


def test_merge_is_base_plus_scaled_low_rank_product():
  params = _params()
  cfg = lora.LoraConfig(rank=2, alpha=6.0)
  assert cfg.scale == 3.0
  adapters = lora.init(params, cfg, jax.random.key(0))
  rng = np.random.default_rng(0)
  adapters = jax.tree.map(
      lambda x: rng.standard_normal(x.shape).astype(np.float32), adapters)
  merged = jax.jit(lora.merge, static_argnums=2)(params, adapters, cfg.scale)
  flat_p, flat_m = lora.flatten(params), lora.flatten(jax.device_get(merged))
  flat_a = lora.flatten(adapters)
  targets = set(lora.target_paths(params, cfg.targets))
  for path, w in flat_p.items():
    got = np.asarray(flat_m[path], np.float64)
    if path not in targets:
      np.testing.assert_array_equal(got, w)
      continue
    a = flat_a[path[:-1] + ("a",)].astype(np.float64)
    b = flat_a[path[:-1] + ("b",)].astype(np.float64)
    if path[-2] == "o":   # [heads, head_dim, d]: two contracted axes
      want = w + 3.0 * np.einsum("hkr,rd->hkd",
                                 a.reshape(w.shape[0], w.shape[1], 2), b)
    else:                 # [d_in, ...]
      want = w + 3.0 * (a @ b).reshape(w.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.linalg.matrix_rank(
        (got - w).reshape(a.shape[0], -1), tol=1e-3) == 2


def test_combined_tree_form_matches():
  params = _params()
  key = jax.random.key(3)
  combined = lora.init_lora(params, lora.DEFAULT_TARGETS, 2, key)
  adapters = lora.init(params, lora.LoraConfig(rank=2), key)
  assert set(combined) == {"lora"}
  for x, y in zip(jax.tree.leaves(combined["lora"]), jax.tree.leaves(adapters)):
    np.testing.assert_array_equal(x, y)
  rng = np.random.default_rng(1)
  adapters = jax.tree.map(lambda x: rng.standard_normal(x.shape), adapters)
  a = lora.merge_lora({**params, "lora": adapters}, 2.0)
  b = lora.merge(params, adapters, 2.0)
  assert "lora" not in a
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kwargs, field", [
    (dict(rank=0), "lora_rank"),
    (dict(rank=-2), "lora_rank"),
    (dict(rank=2.5), "lora_rank"),
    (dict(rank=2, alpha=0.0), "lora_alpha"),
    (dict(rank=2, alpha=float("inf")), "lora_alpha"),
    (dict(rank=2, targets="(unclosed"), "lora_targets"),
])
def test_bad_config_names_the_field(kwargs, field):
  with pytest.raises(CbenchError, match=field):
    lora.LoraConfig(**kwargs)


def test_targets_matching_nothing_is_refused():
  params = _params()
  with pytest.raises(CbenchError, match="lora_targets='nothing' selects no"):
    lora.target_paths(params, "nothing")
  # A pattern that only matches 1-D leaves (norm scales) selects nothing.
  with pytest.raises(CbenchError, match="selects no kernel"):
    lora.init(params, lora.LoraConfig(rank=1, targets="norm"),
              jax.random.key(0))
  with pytest.raises(CbenchError, match="no base kernel"):
    lora.merge(params, {"nowhere": {"a": np.ones((2, 1)),
                                    "b": np.ones((1, 2))}}, 1.0)


def test_shardings_follow_the_kernel_axes_and_merge_keeps_layout():
  mesh = mesh_lib.make_mesh(data=2, fsdp=2, model=2)
  cfg = _micro()
  params = registry.init_params_sharded(None, cfg, mesh, jax.random.key(0))
  adapters = lora.init(params, lora.LoraConfig(rank=2), jax.random.key(1))
  sh = lora.flatten(lora.shardings(params, adapters, mesh))
  want = {  # kernel spec -> (A spec, B spec)
      "q": (P("fsdp", None), P(None, "model")),    # [embed, heads, hd]
      "k": (P("fsdp", None), P(None, "model")),    # [embed, kv_heads, hd]
      "o": (P("model", None), P(None, "fsdp")),    # [heads, hd, embed]
      "up": (P("fsdp", None), P(None, "model")),   # [embed, mlp]
      "down": (P("model", None), P(None, "fsdp")),  # [mlp, embed]
  }
  for name, (a_spec, b_spec) in want.items():
    node = ("blocks_1", "mlp" if name in ("up", "down") else "attn", name)
    assert sh[node + ("a",)].spec == a_spec, name
    assert sh[node + ("b",)].spec == b_spec, name
  placed = jax.device_put(adapters, lora.shardings(params, adapters, mesh))
  rng = np.random.default_rng(2)
  placed = jax.tree.map(
      lambda x: jax.device_put(
          rng.standard_normal(x.shape).astype(np.float32), x.sharding),
      placed)
  merged = jax.jit(lora.merge, static_argnums=2)(params, placed, 2.0)
  host = lora.merge(jax.device_get(params), jax.device_get(placed), 2.0)
  flat_m, flat_p = lora.flatten(merged), lora.flatten(params)
  flat_h = lora.flatten(host)
  for k, v in flat_m.items():
    assert v.sharding.is_equivalent_to(flat_p[k].sharding, v.ndim), k
    np.testing.assert_allclose(np.asarray(v), flat_h[k], rtol=1e-5,
                               atol=1e-6)


def test_shardings_replicate_when_flattening_breaks_blocks():
  mesh = mesh_lib.make_mesh(data=4, fsdp=1, model=2)
  # An 'o'-style kernel [4, 8, 6] whose second input axis is sharded: the
  # flattened d_in is not block-sharded, so A is replicated.
  w = jax.device_put(np.zeros((4, 8, 6), np.float32),
                     NamedSharding(mesh, P(None, "model", None)))
  v = jax.device_put(np.zeros((6, 8), np.float32))   # one device, no mesh
  params = {"x": {"o": {"kernel": w}, "v": {"kernel": v}}}
  adapters = lora.init(params, lora.LoraConfig(rank=2, targets="kernel"),
                       jax.random.key(0))
  sh = lora.flatten(lora.shardings(params, adapters, mesh))
  assert sh[("x", "o", "a")].is_fully_replicated
  assert sh[("x", "o", "b")].is_fully_replicated   # its output is unsharded
  assert sh[("x", "v", "a")].is_fully_replicated
  assert sh[("x", "v", "b")].is_fully_replicated
