"""Logit-DP and naive contrastive DP-SGD: exactness, adversarial sensitivity
(replace-one), the naive bound's growth with n, noise scale, accounting.
Each property is also shown to catch a broken variant."""

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from dp_accounting import dp_event as dpe
from scipy import stats

from cbench._validate import CbenchError
from cbench.privacy import accounting
from cbench.privacy import logit_dp
from cbench.testing import fixtures

DIN, DH, D = 3, 6, 3
TAU = 1.0
ALPHA = 1e-3


def embed(p, x):
  h = jnp.tanh(x @ p["w1"] + p["b1"])
  return h @ p["w2"] + p["b2"]


def _params(seed=0):
  k = jax.random.split(jax.random.key(seed), 4)
  return {"w1": jax.random.normal(k[0], (DIN, DH)),
          "b1": 0.3 * jax.random.normal(k[1], (DH,)),
          "w2": jax.random.normal(k[2], (DH, D)) / math.sqrt(DH),
          "b2": 0.1 * jax.random.normal(k[3], (D,))}


def _pairs(n, seed=1):
  k1, k2 = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(k1, (n, DIN))
  return x, x + 0.5 * jax.random.normal(k2, (n, DIN))


def _flat(tree):
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def _z(p, xs, ys):
  return logit_dp.cosine_logits(embed(p, xs), embed(p, ys), TAU)


# ---------------------------------------------------------------- exactness


N = 4


def _clipped_sum(mechanism, p, x, y, clip, chunk=2):
  """The kernel with std = 0 (shares its compilation with the noise test)."""
  kernel = logit_dp.jitted_kernel(embed, mechanism, TAU, chunk, "float32")
  g, _ = kernel(p, x, y, jax.random.key(0), jnp.float32(0), jnp.float32(clip))
  return _flat(g)


@functools.partial(jax.jit, static_argnames="rows")
def _brute_force(p, x, y, rows=False):
  """(exact grad, dL/dZ, per-pair dZ_ij grads (n, n, P) or per-row dl_k
  grads (n, P))."""
  n = x.shape[0]
  ref = _flat(logit_dp.non_private_grad_sum(embed, p, x, y, TAU))
  w = jax.grad(logit_dp.contrastive_loss)(_z(p, x, y))
  if rows:
    row = lambda p, k: jax.nn.logsumexp(_z(p, x, y)[k]) - _z(p, x, y)[k, k]
    return ref, w, jax.vmap(lambda k: _flat(jax.grad(row)(p, k)))(
        jnp.arange(n))
  zij = lambda p, i, j: _z(p, x[i][None], y[j][None])[0, 0]
  ij = jnp.stack(jnp.meshgrid(jnp.arange(n), jnp.arange(n), indexing="ij"),
                 -1).reshape(-1, 2)
  gij = jax.vmap(lambda t: _flat(jax.grad(zij)(p, t[0], t[1])))(ij)
  return ref, w, gij.reshape(n, n, -1)


def _exactness(mechanism, chunk):
  c = 0.3
  p, (x, y) = _params(), _pairs(N)
  if mechanism == "logit_dp":
    ref, w, gij = _brute_force(p, x, y)
    pair = jnp.linalg.norm(gij, axis=-1)
    assert 0.2 < float(jnp.mean(pair > c)) < 0.8   # both regimes occur
    np.testing.assert_allclose(jnp.einsum("ij,ijp->p", w, gij), ref,
                               atol=2e-6)
    want = jnp.einsum("ij,ijp->p", w * jnp.minimum(1.0, c / pair), gij)
  else:
    ref, _, hk = _brute_force(p, x, y, rows=True)
    np.testing.assert_allclose(jnp.sum(hk, 0), ref, atol=2e-6)
    f = jnp.minimum(1.0, c / jnp.linalg.norm(hk, axis=1))
    want = jnp.einsum("k,kp->p", f, hk)
  np.testing.assert_allclose(_clipped_sum(mechanism, p, x, y, jnp.inf, chunk),
                             ref, atol=2e-6)
  got = _clipped_sum(mechanism, p, x, y, c, chunk)
  np.testing.assert_allclose(got, want, atol=2e-6)
  # The comparison can fail: clipping changes the sum.
  assert float(jnp.max(jnp.abs(got - ref))) > 1e-2


def test_logit_dp_sum_equals_brute_force_clipped_pairs_and_exact_grad():
  _exactness("logit_dp", 2)


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [None, 3])
def test_naive_sum_equals_brute_force_clipped_rows_and_exact_grad(chunk):
  _exactness("naive", chunk)


class _Dense(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    k = self.param("kernel", nn.initializers.normal(0.8),
                   (x.shape[-1], self.features))
    b = self.param("bias", nn.initializers.normal(0.3), (self.features,))
    self.sow("intermediates", "inputs", x)
    return self.perturb("out", x @ k + b)


class _Mlp(nn.Module):
  tokens: bool = False

  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(_Dense(DH, name="d1")(x))
    h = _Dense(D, name="d2")(h)
    return h.mean(1) if self.tokens else h


@pytest.mark.slow
def test_ghost_pair_norms_equal_the_generic_path():
  n = 5
  x, y = _pairs(n)
  model = _Mlp()
  p = model.init(jax.random.key(3), x)["params"]
  ghost = logit_dp.GhostEmbed(model, lambda b: (b,))
  plain = lambda p, b: model.apply({"params": p}, b)

  @jax.jit
  def all_paths(p):
    out = [logit_dp.logit_dp_grad_sum(e, p, x, y, 0.2, TAU, chunk_size=k)
           for e, k in ((ghost, None), (plain, None), (plain, 3))]
    return [(_flat(g), aux["pair_norms"]) for g, aux in out]
  (g1, got), *generic = all_paths(p)
  for g2, want in generic:   # shifts by vmap, and lax.map chunks of 3
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g1, g2, atol=1e-5)
  # Token axes are not supported by the ghost path: a named error.
  tok = _Mlp(tokens=True)
  pt = tok.init(jax.random.key(3), x[:, None])["params"]
  with pytest.raises(CbenchError, match="only \\(n, din\\)"):
    logit_dp.pair_grad_norms(logit_dp.GhostEmbed(tok, lambda b: (b,)), pt,
                             x[:, None], y[:, None], TAU)


# ------------------------------------------------------------- sensitivity


def _mechanism(kind, p, c):
  """x, y -> clipped sum (flat); 'unclipped' is Logit-DP with no clipping."""
  mech = "naive" if kind == "naive" else "logit_dp"
  clip = jnp.inf if kind == "unclipped" else c
  return lambda x, y: _clipped_sum(mech, p, x, y, clip, None)


def _distance(p, x, y, xr, yr, clip, c):
  """||f(D) - f(D')|| / c for Logit-DP at `clip`, pair 0 replaced."""
  f = lambda x, y: _flat(logit_dp.logit_dp_grad_sum(embed, p, x, y, clip,
                                                    TAU)[0])
  d = f(x, y) - f(x.at[0].set(xr), y.at[0].set(yr))
  return jnp.sqrt(jnp.sum(jnp.square(d)) + 1e-30) / c


_batch_distance = jax.jit(jax.vmap(_distance, (None, 0, 0, 0, 0, None, None)))


def _random_neighbours(rng, m, n):
  """m replace-one neighbour candidates at input scales 0.1..10."""
  scale = 10.0 ** rng.uniform(-1, 1, (m, 1, 1))
  x = scale * rng.standard_normal((m, n, DIN))
  y = x + scale * rng.uniform(0, 1, (m, 1, 1)) * rng.standard_normal(
      (m, n, DIN))
  xr = scale[:, 0] * rng.standard_normal((m, DIN))
  yr = scale[:, 0] * rng.standard_normal((m, DIN))
  return [jnp.asarray(a, jnp.float32) for a in (x, y, xr, yr)]


@functools.lru_cache(maxsize=None)
def _adversary(kind, n, c, seed, rounds, ascent_steps=0, restarts=16):
  """Max ||f(D) - f(D')|| / C found for pair 0 replaced.

  256 random neighbour candidates, then `rounds` of hill climbing (the 16
  best, each perturbed 16 times at relative scales 0.3..0.01 of their
  inputs, keep the best 256), then optionally `ascent_steps` Adam steps of
  gradient ascent on all inputs from the `restarts` best.
  """
  p = _params(seed)
  clip = jnp.inf if kind == "unclipped" else c
  dist = lambda *a: _batch_distance(p, *a, clip, c)
  rng = np.random.default_rng(fixtures.stat_seed(seed))
  cands = _random_neighbours(rng, 256, n)
  vals = dist(*cands)
  for r in range(rounds):
    top = jnp.argsort(-vals)[:16]
    step = 0.3 * (0.01 / 0.3) ** (r / max(1, rounds - 1))
    kids = [jnp.repeat(a[top], 16, axis=0) for a in cands]
    kids = [a * (1 + step * jnp.asarray(rng.standard_normal(a.shape),
                                        jnp.float32)) for a in kids]
    pool = [jnp.concatenate([a[top], k]) for a, k in zip(cands, kids)]
    pv = dist(*pool)
    keep = jnp.argsort(-pv)[:256]
    cands, vals = [a[keep] for a in pool], pv[keep]
  best = float(jnp.max(vals))
  if not ascent_steps:
    return best
  z = [a[jnp.argsort(-vals)[:restarts]] for a in cands]
  opt = optax.adam(0.05)
  grad = jax.vmap(jax.value_and_grad(
      lambda *a: -_distance(p, *a, clip, c), argnums=(0, 1, 2, 3)))

  @jax.jit
  def ascend(z):
    def body(carry, _):
      z, s = carry
      v, g = grad(*z)
      u, s = opt.update(list(g), s, z)
      return (optax.apply_updates(z, u), s), jnp.max(-v)
    _, vs = jax.lax.scan(body, (z, opt.init(z)), None, length=ascent_steps)
    return jnp.max(vs)
  return max(best, float(ascend(z)))


def test_logit_dp_change_never_exceeds_bound_and_unclipped_does():
  n, c = N, 0.05   # C well below typical per-logit norms: clipping binds
  bound = logit_dp.logit_dp_sensitivity(n, 1.0, TAU)
  got = _adversary("logit_dp", n, c, 0, 20)
  assert got <= bound * (1 + 1e-4), (got, bound)
  assert got > 0.4 * bound, (got, bound)   # the search is not toothless
  # Mutant: no clipping (same bound, same search) exceeds it.
  assert _adversary("unclipped", n, c, 0, 0) > bound


@pytest.mark.slow
@pytest.mark.parametrize("n", [3, 6, 12])
@pytest.mark.parametrize("seed", [0, 1])
def test_logit_dp_bound_holds_under_long_ascent(n, seed):
  bound = logit_dp.logit_dp_sensitivity(n, 1.0, TAU)
  got = _adversary("logit_dp", n, 0.05, seed, 100, 300)
  assert 0.4 * bound < got <= bound * (1 + 1e-4), (got, bound)


def _degenerate(n, w, w2):
  """All anchors and positives equal x0 except positive 0 (w vs w2).

  Every Z_ij with j != 0 has cos = 1 and zero gradient, so each loss row's
  gradient is its y_0 term: replacing y_0 flips all n rows of the naive sum.
  """
  x0 = jnp.array([0.3, -0.2, 0.5])
  x = jnp.tile(x0, (n, 1))
  return x, x.at[0].set(w), x, x.at[0].set(w2)


def _flip_pair(p):
  """A (w, w2) whose Z(x0, .) gradients point in near-opposite directions."""
  rng = np.random.default_rng(fixtures.stat_seed(5))
  x0 = jnp.array([0.3, -0.2, 0.5])
  w = jnp.asarray(rng.standard_normal((512, DIN)), jnp.float32)
  g = jax.vmap(lambda v: _flat(jax.grad(
      lambda p: _z(p, x0[None], v[None])[0, 0])(p)))(w)
  g = g / jnp.linalg.norm(g, axis=1, keepdims=True)
  cos = g @ g.T
  i, j = np.unravel_index(int(jnp.argmin(cos)), cos.shape)
  return w[i], w[j], float(cos[i, j])


def test_naive_bound_grows_with_n_and_logit_dp_bound_does_not():
  ns = [2, 4, 16, 64, 256, 4096, 10 ** 6]
  lb = [logit_dp.logit_dp_sensitivity(n, 1.0, TAU) for n in ns]
  nb = [logit_dp.naive_sensitivity(n, 1.0) for n in ns]
  limit = 4 + 2 * math.exp(2 / TAU)
  assert all(a <= b for a, b in zip(lb, lb[1:])) and max(lb) < limit
  assert lb[-1] == pytest.approx(limit, rel=1e-4)
  assert nb == [2.0 * n for n in ns]
  assert logit_dp.logit_dp_sensitivity(7, 1.0, TAU, "add_remove") == (
      pytest.approx(logit_dp.logit_dp_sensitivity(7, 1.0, TAU) - 2.0))
  assert logit_dp.naive_sensitivity(7, 1.0, "add_remove") == 13.0


@pytest.mark.slow
def test_naive_mechanism_needs_its_bound_on_degenerate_neighbours():
  """The naive change exceeds Logit-DP's bound at n = 16 and is exactly
  (n - 2) ||g - g'|| (linear in n); Logit-DP stays within its bound."""
  p, c = _params(), 1e-4
  w, w2, cos = _flip_pair(p)
  assert cos < -0.5
  n = 16
  x, y, x2, y2 = _degenerate(n, w, w2)
  ratio = {}
  for kind in ("naive", "logit_dp"):
    f = _mechanism(kind, p, c)
    ratio[kind] = float(jnp.linalg.norm(f(x, y) - f(x2, y2))) / c
  assert ratio["naive"] <= logit_dp.naive_sensitivity(n, 1.0) + 1e-3
  assert ratio["logit_dp"] <= logit_dp.logit_dp_sensitivity(n, 1.0, TAU)
  assert ratio["naive"] > logit_dp.logit_dp_sensitivity(n, 1.0, TAU)
  assert ratio["naive"] == pytest.approx((n - 2) * math.sqrt(2 - 2 * cos),
                                         rel=1e-2)


# ------------------------------------------------------------------- noise


@pytest.mark.stat
@pytest.mark.parametrize("mechanism", [
    "logit_dp", pytest.param("naive", marks=pytest.mark.slow)])
def test_noise_is_sigma_times_sensitivity_and_rejects_0_8(mechanism):
  n, sigma, c = N, 1.3, 0.7
  p, (x, y) = _params(), _pairs(n)
  cfg = logit_dp.ContrastiveDpConfig(mechanism=mechanism, clip_norm=c,
                                     noise_multiplier=sigma, batch_size=n,
                                     temperature=TAU, chunk_size=2)
  want = sigma * (logit_dp.logit_dp_sensitivity(n, c, TAU)
                  if mechanism == "logit_dp" else 2 * n * c)
  assert cfg.noise_std == pytest.approx(want)
  keys = jax.random.split(fixtures.stat_key(11), 160)

  def residuals(config):
    """(g_k - g_k') / sqrt(2) over 80 disjoint key pairs: pure noise."""
    step = logit_dp.make_dp_step(embed, config)
    out = []
    for i in range(keys.shape[0]):   # (iterating a key array is slow)
      g, aux = step(p, x, y, keys[i])
      out.append(g)
    assert float(aux["noise_std"]) == pytest.approx(config.noise_std)
    g = np.asarray(jax.vmap(_flat)(jax.tree.map(lambda *a: jnp.stack(a),
                                                *out)), np.float64)
    return np.ravel(g[0::2] - g[1::2]) / math.sqrt(2)

  z = residuals(cfg)
  assert z.size >= 80 * 40
  assert stats.kstest(z / want, "norm").pvalue > ALPHA
  # Mutant: noise at 0.8 sigma is rejected against the stated std.
  low = residuals(dataclasses.replace(cfg, noise_multiplier=0.8 * sigma))
  assert stats.kstest(low / want, "norm").pvalue < ALPHA


# -------------------------------------------------------------- accounting


def test_dp_event_is_gaussian_in_units_of_the_full_replace_distance():
  """sigma = std / Delta (Delta = full replace-one distance) is mu-GDP with
  mu = sqrt(E) / sigma; PLD's epsilon must match the analytic GDP curve."""
  sigma, epochs, delta = 2.0, 3, 1e-5
  event = logit_dp.dp_event(sigma, epochs)
  assert event == dpe.SelfComposedDpEvent(dpe.GaussianDpEvent(2 * sigma),
                                          epochs)
  eps = accounting.epsilon(event, delta, logit_dp.RELATION)
  mu = math.sqrt(epochs) / sigma
  gdp = (stats.norm.cdf(-eps / mu + mu / 2)
         - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2))
  assert gdp == pytest.approx(delta, rel=0.05)
  # Mutant: reading sigma as std / C (half the distance) is optimistic.
  mu2 = math.sqrt(epochs) / (2 * sigma)
  gdp2 = (stats.norm.cdf(-eps / mu2 + mu2 / 2)
          - math.exp(eps) * stats.norm.cdf(-eps / mu2 - mu2 / 2))
  assert gdp2 < 0.1 * delta


def test_config_and_batch_validation():
  with pytest.raises(CbenchError, match="mechanism"):
    logit_dp.ContrastiveDpConfig(mechanism="ghost", clip_norm=1.0,
                                 noise_multiplier=1.0, batch_size=4)
  with pytest.raises(CbenchError, match="clip_norm"):
    logit_dp.ContrastiveDpConfig(mechanism="naive", clip_norm=math.inf,
                                 noise_multiplier=1.0, batch_size=4)
  with pytest.raises(CbenchError, match="temperature"):
    logit_dp.logit_dp_sensitivity(4, 1.0, 0.0)
  cfg = logit_dp.ContrastiveDpConfig(mechanism="logit_dp", clip_norm=1.0,
                                     noise_multiplier=1.0, batch_size=4)
  x, y = _pairs(5)
  with pytest.raises(CbenchError, match="batch_size is 4"):
    logit_dp.make_dp_step(embed, cfg)(_params(), x, y, jax.random.key(0))
