"""DP-SGD gradient: 8-device shard_map == 1 device (and the no-pcast mutant
differs), LoRA/frozen split, bounded compilations, replayable resume."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

from cbench._validate import CbenchError
from cbench.privacy import accounting
from cbench.privacy import batch_sampling
from cbench.privacy import clipping
from cbench.privacy import dpsgd
from cbench.privacy import ghost
from cbench.privacy import ledger as ledger_lib
from cbench.privacy import params as params_lib

B = 16


class _Dense(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    k = self.param("kernel", nn.initializers.normal(0.5),
                   (x.shape[-1], self.features))
    b = self.param("bias", nn.initializers.zeros, (self.features,))
    self.sow("intermediates", "inputs", x)
    return self.perturb("out", x @ k + b)


class _Mlp(nn.Module):

  @nn.compact
  def __call__(self, x):
    return _Dense(3, name="head")(jnp.tanh(_Dense(6, name="hidden")(x)))


MODEL = _Mlp()
LOSS = ghost.GhostLoss(MODEL, lambda b: (b["x"],),
                       lambda out, b: 0.5 * jnp.sum((out - b["y"]) ** 2, -1))


def _params():
  return MODEL.init(jax.random.key(0), jnp.zeros((1, 5)))["params"]


def _batch(seed=1, b=B):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {"x": 2.0 * jax.random.normal(k1, (b, 5)),
          "y": jax.random.normal(k2, (b, 3))}


def _cfg(**kw):
  base = dict(clip_norm=0.5, noise_multiplier=0.8, expected_batch_size=12.0)
  base.update(kw)
  return dpsgd.DpSgdConfig(**base)


def _max_abs(a, b):
  return max(jax.tree.leaves(jax.tree.map(
      lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b)))


@pytest.mark.parametrize("method,mb", [("vmap", None), ("ghost", 1)])
def test_sharded_equals_single_device(method, mb):
  # ghost inside shard_map needs device-varying perturbations, and a
  # microbatch scan a device-varying carry: both are covered here.
  assert jax.device_count() == 8
  p, bt = _params(), _batch()
  pad = jnp.zeros(B, bool).at[jnp.array([3, 12])].set(True)
  key = jax.random.key(7)
  g1, aux1 = dpsgd.make_dp_grad_fn(LOSS, _cfg(clipping=method))(p, bt, pad,
                                                                  key)
  cfg = _cfg(clipping=method, microbatch_size=mb)
  meshes = [(Mesh(np.array(jax.devices()), ("data",)), "data"),
            (jax.make_mesh((4, 2), ("data", "model")), "data"),  # explicit
            (jax.make_mesh((2, 4), ("data", "fsdp")), ("data", "fsdp"))]
  for mesh, axes in meshes:
    g8, aux8 = dpsgd.make_dp_grad_fn(LOSS, cfg, mesh, axes)(p, bt, pad, key)
    assert _max_abs(g1, g8) < 1e-6
    np.testing.assert_allclose(aux1["grad_norms"], aux8["grad_norms"],
                               rtol=1e-6)
  assert np.all(np.asarray(aux1["grad_norms"])[~np.asarray(pad)] > 0.5)


def test_missing_pcast_mutant_is_detected():
  p, bt = _params(), _batch()
  pad = jnp.zeros(B, bool)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  cfg = _cfg(noise_multiplier=0.0)
  good = dpsgd.make_clipped_sum_fn(LOSS, cfg, mesh)(p, bt, pad)[0]

  def local(params, b, m):  # no pcast: grads pre-summed across devices
    return jax.lax.psum(clipping.clipped_grad_sum(LOSS, params, b, m, 0.5)[0],
                        "data")
  bad = jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                      out_specs=P())(p, bt, pad)
  assert _max_abs(good, bad) > 1e-2


def test_lora_style_split_noises_only_trainable():
  p, bt = _params(), _batch()
  train, frozen = params_lib.partition_params(p, r"^head/")
  assert set(train) == {"head"} and set(frozen) == {"hidden"}
  assert params_lib.combine_params(train, frozen) == p
  pad = jnp.zeros(B, bool)
  for method in ("vmap", "ghost"):
    dp_grad = dpsgd.make_dp_grad_fn(LOSS, _cfg(clipping=method,
                                               noise_multiplier=0.0))
    g, _ = dp_grad(train, bt, pad, jax.random.key(0), frozen)
    assert jax.tree.structure(g) == jax.tree.structure(train)
    ref, _ = clipping.clipped_grad_sum(
        lambda q, ex: LOSS(params_lib.combine_params(q, frozen), ex), train,
        bt, pad, 0.5)
    assert _max_abs(g, jax.tree.map(lambda x: x / 12.0, ref)) < 1e-6
  with pytest.raises(CbenchError):
    params_lib.partition_params(p, "nothing-matches")


def test_compilations_bounded_by_public_buckets():
  s = batch_sampling.TruncatedPoissonSampler(200, 0.1, max_batch_size=24, seed=0,
                                       pad_unit=8)
  data = _batch(seed=2, b=200)
  cfg = _cfg(sampler="truncated_poisson", expected_batch_size=20.0)
  dpsgd.check_plan(cfg, s)
  dp_grad = dpsgd.make_dp_grad_fn(LOSS, cfg)
  p = _params()
  sizes = set()
  for step in range(50):
    b = s.batch(step)
    sizes.add(b.size)
    ex = jax.tree.map(lambda x: x[b.indices], data)
    dp_grad(p, ex, jnp.asarray(b.is_padding), jax.random.key(step))
  assert dp_grad._cache_size() <= len(s.bucket_sizes)
  assert len(sizes) > len(s.bucket_sizes)  # unpadded shapes would recompile


def test_step_has_no_data_dependent_control_flow():
  jaxpr = str(jax.make_jaxpr(
      dpsgd.make_dp_grad_fn(LOSS, _cfg(microbatch_size=4)))(
          _params(), _batch(), jnp.zeros(B, bool), jax.random.key(0)))
  assert " cond[" not in jaxpr and " while[" not in jaxpr


def test_config_validation_and_plan():
  with pytest.raises(CbenchError, match="replace_one"):
    _cfg(sampler="shuffled")
  with pytest.raises(CbenchError, match="finite clip_norm"):
    _cfg(clip_norm=float("inf"))
  nonprivate = _cfg(clip_norm=float("inf"), noise_multiplier=0.0)
  assert nonprivate.noise_std == 0.0
  with pytest.raises(CbenchError):
    _cfg(relation="neighbours")
  assert _cfg().config_hash() != _cfg(noise_multiplier=0.81).config_hash()
  assert _cfg(relation="replace_one").noise_std == pytest.approx(0.8)
  with pytest.raises(CbenchError, match="expected batch size"):
    dpsgd.check_plan(_cfg(), batch_sampling.PoissonSampler(100, 0.1, seed=0))
  with pytest.raises(CbenchError, match="kind"):
    dpsgd.check_plan(_cfg(expected_batch_size=10.0),
                     batch_sampling.ShuffledEpochSampler(100, 10, seed=0))


def test_calibrate_from_the_sampler():
  s = batch_sampling.PoissonSampler(1000, 0.02, seed=0)
  sigma = dpsgd.calibrate(s, 50, 3.0, 1e-5, "add_remove", rtol=1e-2,
                          value_discretization_interval=1e-3)
  eps = accounting.epsilon(s.dp_event(sigma, 50, "add_remove"), 1e-5,
                           "add_remove", "pld", 1e-3)
  assert 2.9 < eps <= 3.0
  assert dpsgd.calibrate(s, 50, float("inf"), 1e-5, "add_remove") == 0.0


def _train(steps, start_state, ledger, sampler, dp_grad, data, key, opt):
  """Tiny DP training loop: charge, then release (the returned state)."""
  params, opt_state, step = start_state
  while step < steps:
    b = sampler.batch(step)
    ledger.charge(step, sampler.dp_event(0.8, 1))
    ex = jax.tree.map(lambda x: x[b.indices], data)
    g, _ = dp_grad(params, ex, jnp.asarray(b.is_padding),
                   jax.random.fold_in(key, step))
    updates, opt_state = opt.update(g, opt_state, params)
    params = optax.apply_updates(params, updates)
    step += 1
  return params, opt_state, step


def test_resume_replays_the_same_run_and_never_double_charges(tmp_path):
  data = _batch(seed=3, b=64)
  cfg = _cfg(expected_batch_size=8.0)
  sampler = batch_sampling.PoissonSampler(64, 0.125, seed=5, pad_unit=8)
  dpsgd.check_plan(cfg, sampler)
  dp_grad = dpsgd.make_dp_grad_fn(LOSS, cfg)
  opt = optax.sgd(0.1)
  key = jax.random.key(11)
  header = ledger_lib.make_header(
      relation=cfg.relation, sampler=sampler.describe(), accountant="pld",
      delta=1e-5, config_hash=cfg.config_hash(),
      value_discretization_interval=1e-3)
  p0 = _params()
  init = (p0, opt.init(p0), 0)

  with ledger_lib.Ledger.open(str(tmp_path / "a.json"), header) as led:
    full = _train(8, init, led, sampler, dp_grad, data, key, opt)
    eps_full = led.epsilon()

  path = str(tmp_path / "b.json")
  with ledger_lib.Ledger.open(path, header) as led:
    ckpt = _train(3, init, led, sampler, dp_grad, data, key, opt)
    _train(5, ckpt, led, sampler, dp_grad, data, key, opt)  # then "killed"
  with ledger_lib.Ledger.open(path, header) as led:  # resume from step 3
    assert led.count == 5
    resumed = _train(8, ckpt, led, sampler, dp_grad, data, key, opt)
    assert led.count == 8 and led.epsilon() == eps_full
  for x, y in zip(jax.tree.leaves(full[0]), jax.tree.leaves(resumed[0])):
    np.testing.assert_array_equal(x, y)
  with pytest.raises(CbenchError, match="different run"):
    ledger_lib.Ledger.open(path, dict(
        header, config_hash=dataclasses.replace(
            cfg, noise_multiplier=0.5).config_hash()))
