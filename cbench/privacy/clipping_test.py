"""Clipping: per-example grads, microbatching, sensitivity, isolation,
padding and NaN rows. Each property is also shown to catch a broken variant."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.privacy import clipping
from cbench.privacy import per_example

B, DIN, DH, DOUT = 8, 5, 6, 3


def loss_fn(p, ex):
  h = jnp.tanh(ex["x"] @ p["w1"] + p["b1"])
  return 0.5 * jnp.mean((h @ p["w2"] - ex["y"]) ** 2)


def _params(seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {"w1": 0.5 * jax.random.normal(k1, (DIN, DH)), "b1": jnp.zeros(DH),
          "w2": 0.5 * jax.random.normal(k2, (DH, DOUT))}


def _batch(seed=1, b=B, scale=1.0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {"x": scale * jax.random.normal(k1, (b, DIN)),
          "y": 0.5 * jax.random.normal(k2, (b, DOUT))}


@functools.partial(jax.jit, static_argnames=("clip", "mb"))
def _sum(params, batch, pad, clip=1.0, mb=None):
  return clipping.clipped_grad_sum(loss_fn, params, batch, pad, clip,
                                   microbatch_size=mb)


def _flat(tree):
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def test_per_example_grads_equal_one_at_a_time_loop():
  p, bt = _params(), _batch()
  g = per_example.per_example_grads(loss_fn, p, bt)
  for i in range(B):
    gi = jax.grad(loss_fn)(p, jax.tree.map(lambda x: x[i], bt))
    np.testing.assert_allclose(_flat(jax.tree.map(lambda x: x[i], g)),
                               _flat(gi), atol=1e-6, rtol=0)
  # The comparison can fail: a batch-mean gradient is not per-example.
  gm = jax.grad(lambda p: jnp.mean(jax.vmap(loss_fn, (None, 0))(p, bt)))(p)
  gi = jax.grad(loss_fn)(p, jax.tree.map(lambda x: x[0], bt))
  assert np.max(np.abs(_flat(gm) - _flat(gi))) > 1e-3


def test_clipped_sum_matches_reference_and_microbatching():
  p, bt = _params(), _batch()
  pad = jnp.zeros(B, bool).at[-2:].set(True)
  g = per_example.per_example_grads(loss_fn, p, bt)
  norms = np.sqrt(sum(np.sum(np.reshape(x, (B, -1)) ** 2, 1)
                      for x in jax.tree.leaves(g)))
  f = np.where(np.asarray(pad), 0.0, np.minimum(1.0, 1.0 / norms))
  ref = sum(f[i] * _flat(jax.tree.map(lambda x: x[i], g)) for i in range(B))
  s_full, n_full = _sum(p, bt, pad)
  assert np.any(norms[:-2] > 1.0) and np.any(norms[:-2] < 1.0)
  np.testing.assert_allclose(_flat(s_full), ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(n_full[:-2], norms[:-2], rtol=1e-5)
  assert np.all(np.asarray(n_full[-2:]) == 0)
  for mb in (1, 4, B):
    s_mb, n_mb = _sum(p, bt, pad, mb=mb)
    np.testing.assert_allclose(_flat(s_mb), _flat(s_full), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(n_mb, n_full, rtol=1e-6)
  with pytest.raises(CbenchError):
    _sum(p, bt, pad, mb=3)


def _sensitivity_gap(sum_fn, relation, clip=1.0):
  """max ||f(D) - f(D')|| - sensitivity over adversarial neighbours."""
  p = _params()
  d = _batch(seed=3, b=B)
  pad = jnp.zeros(B, bool)
  adversaries = {
      "huge": _batch(seed=9, b=1, scale=1e3),
      "nan": jax.tree.map(lambda x: x.at[:].set(jnp.nan), _batch(seed=9, b=1)),
      "normal": _batch(seed=10, b=1)}
  worst = 0.0
  for name, adv in adversaries.items():
    if relation in ("add_remove", "zero_out"):
      # D' = D with the last row replaced by adv (zero_out / add-remove are
      # compared against the record being absent = padding).
      with_adv = jax.tree.map(lambda x, a: x.at[-1].set(a[0]), d, adv)
      a = sum_fn(p, with_adv, pad)
      b = sum_fn(p, with_adv, pad.at[-1].set(True))
    else:
      a = sum_fn(p, jax.tree.map(lambda x, y: x.at[-1].set(y[0]), d, adv),
                 pad)
      b = sum_fn(p, jax.tree.map(lambda x, y: x.at[-1].set(y[0]), d,
                                 _batch(seed=11, b=1, scale=1e3)), pad)
    worst = max(worst, float(np.linalg.norm(_flat(a) - _flat(b))))
  return worst - clipping.sensitivity(clip, relation)


def test_empirical_sensitivity_within_declared():
  fn = lambda p, bt, pad: _sum(p, bt, pad)[0]
  for rel in ("add_remove", "replace_one", "zero_out"):
    assert _sensitivity_gap(fn, rel) <= 1e-6, rel
  # The nan adversary contributes exactly 0.
  p, d = _params(), _batch(seed=3)
  nan_d = jax.tree.map(lambda x: x.at[-1].set(jnp.nan), d)
  pad = jnp.zeros(B, bool)
  np.testing.assert_array_equal(
      _flat(_sum(p, nan_d, pad)[0]), _flat(_sum(p, d, pad.at[-1].set(True))[0]))


def test_sensitivity_check_rejects_unclipped_sum():
  unclipped = lambda p, bt, pad: _sum(p, bt, pad, clip=float("inf"))[0]
  assert _sensitivity_gap(unclipped, "add_remove") > 1.0
  assert clipping.sensitivity(1.0, "replace_one") == 2.0
  with pytest.raises(CbenchError):
    clipping.sensitivity(1.0, "add_or_what")


def _isolation_broken(per_example_fn, i=2):
  """True if example i's clipped grad changes when other rows change."""
  p, bt = _params(), _batch()
  pad = jnp.zeros(B, bool)
  other = _batch(seed=5)
  perturbed = jax.tree.map(
      lambda x, y: y.at[i].set(x[i]), bt, other)  # all rows but i differ
  g1 = jax.tree.map(lambda x: np.asarray(x[i]), per_example_fn(p, bt, pad))
  g2 = jax.tree.map(lambda x: np.asarray(x[i]),
                    per_example_fn(p, perturbed, pad))
  return any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(g1), jax.tree.leaves(g2)))


def test_cross_example_isolation_bitwise():
  fn = jax.jit(lambda p, bt, pad: per_example.clipped_per_example_grads(
      loss_fn, p, bt, pad, 1.0)[0])
  assert not _isolation_broken(fn)

  # Mutant: a batch-statistics layer (BatchNorm-like) couples the examples.
  def coupled(p, bt, pad):
    mu = jnp.mean(bt["x"], axis=0)
    shifted = dict(bt, x=bt["x"] - mu)
    return per_example.clipped_per_example_grads(loss_fn, p, shifted, pad,
                                              1.0)[0]
  assert _isolation_broken(jax.jit(coupled))


def test_padding_rows_contribute_exactly_zero():
  p, bt = _params(), _batch()
  pad = jnp.zeros(B, bool).at[jnp.array([1, 5, 6])].set(True)
  garbage = jax.tree.map(lambda x: x.at[jnp.array([1, 5])].set(1e30)
                         .at[6].set(jnp.nan), bt)
  for mb in (None, 4):
    a = _sum(p, bt, pad, mb=mb)[0]
    b = _sum(p, garbage, pad, mb=mb)[0]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_array_equal(x, y)
  # Mutant: summing without the mask changes the result.
  c = _sum(p, garbage, jnp.zeros(B, bool))[0]
  assert not np.array_equal(_flat(a), _flat(c))


def test_frozen_params_get_no_gradient():
  p, bt = _params(), _batch()
  pad = jnp.zeros(B, bool)
  train = {"w2": p["w2"]}
  frozen = {"w1": p["w1"], "b1": p["b1"]}
  s, _ = clipping.clipped_grad_sum(loss_fn, train, bt, pad, 1.0,
                                   frozen=frozen)
  assert set(s) == {"w2"}
  g = per_example.per_example_grads(loss_fn, p, bt)
  g2 = {"w2": g["w2"]}
  n = np.sqrt(np.sum(np.reshape(g2["w2"], (B, -1)) ** 2, 1))
  ref = np.tensordot(np.minimum(1, 1 / n), np.asarray(g2["w2"]), 1)
  np.testing.assert_allclose(s["w2"], ref, rtol=1e-5, atol=1e-6)
