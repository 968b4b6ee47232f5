"""Ghost-norm clipping equals the vmap reference (transformer and a small
model with biases, LayerNorm and an untied head); unsupported cases raise."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.models import config as config_lib
from cbench.models import transformer as tf
from cbench.privacy import clipping
from cbench.privacy import ghost
from cbench.privacy import params as params_lib

V, B, T = 50, 4, 10


@pytest.fixture(scope="module")
def tf_setup():
  """Transformer, batch and the vmap reference at C = 0.5 (computed once)."""
  params, loss = _tiny_transformer()
  batch, pad = _lm_batch()
  ref = _run(loss, params, batch, pad, 0.5, "vmap")
  return params, loss, batch, pad, ref


def _numpy_params(model, *args, scale=0.3):
  """Random float params of the model's shapes (no init compile)."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *args))
  rng = np.random.default_rng(0)
  return jax.tree.map(
      lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype),
      nn.unbox(shapes)["params"])


def _tiny_transformer():
  cfg = config_lib.ModelConfig(vocab_size=V, d_model=16, num_layers=1,
                               num_heads=2, num_kv_heads=1, head_dim=8,
                               mlp_dim=24, max_len=32)
  params = _numpy_params(tf.Transformer(cfg), jnp.zeros((1, 4), jnp.int32))
  loss = ghost.GhostLoss(
      tf.Transformer(cfg), lambda b: (b["tokens"],),
      lambda out, b: tf.cross_entropy_loss(out, b["targets"], b["mask"])[0])
  return params, loss


def _lm_batch(seed=0):
  rng = np.random.default_rng(seed)
  tok = rng.integers(0, V, (B, T + 1)).astype(np.int32)
  tok[:, 4] = tok[:, 7]                      # repeated ids within an example
  tok[0, :6] = tok[0, 6]                     # ... many of them
  mask = np.ones((B, T), np.float32)
  mask[1, 7:] = 0.0
  tok[3, :] = 10 ** 6                        # padding row: garbage ids
  mask[3, :] = np.nan
  return ({"tokens": jnp.asarray(tok[:, :-1]),
           "targets": jnp.asarray(tok[:, 1:]), "mask": jnp.asarray(mask)},
          jnp.array([False, False, False, True]))


def _rel_err(a, b):
  errs = jax.tree.map(
      lambda x, y: float(jnp.max(jnp.abs(x - y)) /
                         (jnp.max(jnp.abs(x)) + 1e-12)), a, b)
  return max(jax.tree.leaves(errs))


def _run(loss, params, batch, pad, clip, method, mb=None, reduce="bookkeeping",
         frozen=None):
  fn = jax.jit(lambda p, b, m, f: clipping.clipped_grad_sum(
      loss, p, b, m, clip, method=method, microbatch_size=mb, frozen=f,
      ghost_reduce=reduce))
  return fn(params, batch, pad, frozen)


def test_ghost_equals_vmap_on_transformer(tf_setup):
  params, loss, batch, pad, (s_v, n_v) = tf_setup
  clip = 0.5
  assert np.all(np.asarray(n_v[:3]) > clip)  # all real examples clipped
  s_g, n_g = _run(loss, params, batch, pad, clip, "ghost")
  s_b, n_b = _run(loss, params, batch, pad, clip, "ghost", mb=2,
                  reduce="backward")
  np.testing.assert_allclose(n_g, n_v, rtol=1e-5)
  np.testing.assert_allclose(n_b, n_v, rtol=1e-5)
  assert _rel_err(s_v, s_g) < 1e-5
  assert _rel_err(s_v, s_b) < 1e-5
  for leaf in jax.tree.leaves(s_g):
    assert np.all(np.isfinite(leaf))


def test_ghost_check_rejects_missing_tied_cross_term(tf_setup, monkeypatch):
  params, loss, batch, _, (_, n_v) = tf_setup

  class NoCross(ghost._Embedding):  # mutant: ||lookup||^2 + ||attend||^2
    def sq_norms(self):
      ids, g, attend = self._parts()
      g32 = g.astype(jnp.float32)
      same = (ids[:, :, None] == ids[:, None, :]).astype(jnp.float32)
      total = jnp.sum(same * jnp.einsum("btd,bsd->bts", g32, g32), (1, 2))
      return total + ghost._outer_sq_norms(attend[1], attend[0])
  monkeypatch.setattr(ghost, "_RULES", (("embedding", NoCross),)
                      + ghost._RULES[1:])
  sq = jax.jit(lambda p, b: ghost.ghost_sq_norms(loss, p, b)[0])(params,
                                                                 batch)
  bad = np.sqrt(np.asarray(sq))[:3]
  assert np.max(np.abs(bad - np.asarray(n_v[:3])) / np.asarray(n_v[:3])) > 1e-3


def test_ghost_with_frozen_params_equals_vmap():
  params, loss = _tiny_transformer()
  batch, pad = _lm_batch(seed=1)
  train, frozen = params_lib.partition_params(params, "embed|final_norm|mlp")
  s_v, n_v = _run(loss, train, batch, pad, 0.3, "vmap", frozen=frozen)
  s_g, n_g = _run(loss, train, batch, pad, 0.3, "ghost", frozen=frozen)
  assert set(s_g) == set(train)
  np.testing.assert_allclose(n_g, n_v, rtol=1e-5)
  assert _rel_err(s_v, s_g) < 1e-5


class _Dense(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    k = self.param("kernel", nn.initializers.normal(0.5),
                   (x.shape[-1], self.features))
    b = self.param("bias", nn.initializers.normal(0.5), (self.features,))
    self.sow("intermediates", "inputs", x)
    return self.perturb("out", x @ k + b)


class _LayerNorm(nn.Module):

  @nn.compact
  def __call__(self, x):
    s = self.param("scale", nn.initializers.ones, (x.shape[-1],))
    b = self.param("bias", nn.initializers.zeros, (x.shape[-1],))
    xh = (x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True)
                                                    + 1e-5)
    self.sow("intermediates", "inputs", xh)
    return self.perturb("out", xh * s + b)


class _Lookup(nn.Module):

  @nn.compact
  def __call__(self, ids):
    e = self.param("embedding", nn.initializers.normal(1.0), (V, 8))
    self.sow("intermediates", "inputs", ids)
    return self.perturb("out", jnp.take(e, ids, axis=0))


class _Small(nn.Module):
  twice: bool = False

  @nn.compact
  def __call__(self, ids):
    x = _Lookup()(ids)
    dense = _Dense(8)
    x = jnp.tanh(dense(x))
    if self.twice:
      x = dense(x)
    return _Dense(V)(_LayerNorm()(x))   # untied head with bias


def _small_loss(twice=False):
  return ghost.GhostLoss(
      _Small(twice), lambda b: (b["tokens"],),
      lambda out, b: tf.cross_entropy_loss(out, b["targets"])[0])


def test_ghost_equals_vmap_on_small_model_with_biases():
  loss = _small_loss()
  batch, _ = _lm_batch(seed=2)
  batch = {"tokens": batch["tokens"] % V, "targets": batch["targets"] % V}
  pad = jnp.zeros(B, bool).at[2].set(True)
  params = _numpy_params(loss.model, batch["tokens"], scale=0.5)
  s_v, n_v = _run(loss, params, batch, pad, 1.0, "vmap")
  s_g, n_g = _run(loss, params, batch, pad, 1.0, "ghost")
  np.testing.assert_allclose(n_g, n_v, rtol=1e-5)
  assert _rel_err(s_v, s_g) < 1e-5


def test_ghost_unsupported_cases_raise():
  batch, pad = _lm_batch(seed=2)
  batch = {"tokens": batch["tokens"] % V, "targets": batch["targets"] % V}
  # Errors are raised while tracing: eval_shape runs no computation.
  trace = lambda loss, p: jax.eval_shape(
      lambda p: clipping.clipped_grad_sum(loss, p, batch, pad, 1.0,
                                          method="ghost"), p)
  loss = _small_loss(twice=True)
  with pytest.raises(CbenchError, match="ran 2 times"):
    trace(loss, _numpy_params(loss.model, batch["tokens"]))
  loss = _small_loss()
  params = dict(_numpy_params(loss.model, batch["tokens"]),
                extra={"w": jnp.zeros(3)})
  with pytest.raises(CbenchError, match="does not support"):
    trace(loss, params)
  with pytest.raises(CbenchError, match="GhostLoss"):
    trace(lambda p, e: 0.0, params)
