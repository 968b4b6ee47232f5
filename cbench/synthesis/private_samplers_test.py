"""Privacy and correctness tests of the private-prediction samplers.

Exact tests compute, in float64, the log-probabilities the sampler draws
private tokens from (its `scaled_logits`, the same function `next_tokens`
samples) for neighbouring batches, exhaustively over the corners of the clip
box, and compare the largest log-ratio with the charged per-token epsilon.
Each test also runs a deliberately broken variant that must violate it.
"""

import itertools
import math

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from cbench.decoding import decoder
from cbench.models import config as config_lib
from cbench.models import registry
from cbench.privacy import pp_accounting as pa
from cbench.synthesis import aggregation as agg
from cbench.synthesis import private_samplers as S
from cbench.testing import fixtures

V, C, TAU = 6, 1.0, 0.7


def _corners(v=V, c=C):
  """All recentred-clip outputs at corners of [-c, c]^v (max entry = c)."""
  out = [x for x in itertools.product([-c, c], repeat=v) if max(x) == c]
  return np.array(out, np.float64)


def _log_softmax(x):
  return x - special.logsumexp(x, axis=-1, keepdims=True)


def _max_loss(x, y):
  """max_j |log p_j - log p'_j| per group (rows of x, y: scaled logits)."""
  lx, ly = _log_softmax(x), _log_softmax(y)
  fin = np.isfinite(lx) & np.isfinite(ly)
  assert np.array_equal(np.isfinite(lx), np.isfinite(ly)), "support differs"
  diff = np.abs(np.where(fin, lx, 0.0) - np.where(fin, ly, 0.0))
  return np.max(diff, axis=-1)


def _renyi(x, y, alpha):
  lx, ly = _log_softmax(x), _log_softmax(y)
  return special.logsumexp(alpha * lx + (1 - alpha) * ly, axis=-1) / (
      alpha - 1)


def _scaled(sampler, logits, mask=None):
  """The sampler's private scaled logits in float64 (x64 enabled)."""
  with jax.enable_x64(True):
    lg = jnp.asarray(logits, jnp.float64)
    state = sampler.init_state(lg.shape[0], fixtures.stat_key(0), mask)
    return np.asarray(sampler.scaled_logits(lg, state), np.float64)


def _neighbour_batches(s, relation, others, corners):
  """Logit tensors [G, s+1, V] for D and D' and the masks of D'.

  The last private row is the changed one: a corner in D, and under
  zero_out the null row (masked) in D', under replace_one another corner.
  """
  g_d, g_n, masks = [], [], []
  pub = np.zeros(V)
  for o in others:
    for a in corners:
      partners = [a] if relation == "zero_out" else corners
      for b in partners:
        base = list(o) + [a, pub]
        g_d.append(np.stack(base))
        g_n.append(np.stack(list(o) + [b, pub]))
        m = np.ones(s, bool)
        if relation == "zero_out":
          m[-1] = False
        masks.append(m)
  return np.stack(g_d), np.stack(g_n), np.stack(masks)


def _other_rows(s, rng):
  """Fixed rows of the batch: random clipped rows and all-equal corners."""
  corners = _corners()
  sets = [np.asarray(agg.recentred_clip(jnp.asarray(
      rng.normal(size=(s - 1, V)) * 3), C)) for _ in range(3)]
  sets += [np.stack([corners[i]] * (s - 1)) for i in range(0, len(corners), 4)]
  return sets


def _em_sampler(s, relation, dtype="float64"):
  return S.ExpMechSampler(s, C, TAU, max_private_tokens=1,
                          relation=relation, dtype=dtype)


def _svt_sampler_with(s, relation, dtype="float64", **kw):
  params = pa.PrivatePredictionParams(
      batch_size=s, clip=C, temperature=TAU,
      svt_noise=kw.get("svt_noise", 0.3), threshold=kw.get("threshold", 0.5),
      max_private_tokens=kw.get("r", 1), relation=relation)
  return S.SvtPrivatePredictionSampler(params, dtype=dtype)


# Every sampler that releases tokens drawn from the clipped mean: the
# exponential-mechanism reference and the sampler `private_prediction` runs.
EM_SAMPLERS = {"exp_mech": _em_sampler, "svt": _svt_sampler_with}


@pytest.mark.parametrize("name", sorted(EM_SAMPLERS))
@pytest.mark.parametrize("relation", ["zero_out", "replace_one"])
def test_em_exact_privacy_loss_within_charge(relation, name):
  s = 3
  rng = np.random.default_rng(0)
  sampler = EM_SAMPLERS[name](s, relation)
  eps_tok = pa.em_pure_epsilon(C, TAU, s, relation)
  rho_tok = pa.em_rho(C, TAU, s, relation)
  corners = _corners()
  d, n, masks = _neighbour_batches(s, relation, _other_rows(s, rng), corners)
  ones = np.ones_like(masks)
  x = _scaled(sampler, d, ones)
  y = _scaled(sampler, n, masks)
  loss = _max_loss(x, y)   # also asserts equal supports
  assert np.isfinite(x).all() and np.isfinite(y).all()  # Full vocabulary.
  assert loss.max() <= eps_tok * (1 + 1e-9)
  assert loss.max() > 0.5 * eps_tok            # the bound is not vacuous
  # zCDP charge: the exact Renyi divergences stay within alpha * rho.
  for alpha in (1.5, 2.0, 5.0, 20.0):
    assert _renyi(x, y, alpha).max() <= alpha * rho_tok * (1 + 1e-9)
    assert _renyi(y, x, alpha).max() <= alpha * rho_tok * (1 + 1e-9)
  # The charge the accountant books per private token is this one.
  params = pa.PrivatePredictionParams(s, C, TAU, None, 0.0, 1,
                                      relation=relation)
  assert params.rho_per_token() == pytest.approx(rho_tok)


def test_em_broken_variants_violate_the_charge():
  s = 3
  rng = np.random.default_rng(1)
  eps_tok = pa.em_pure_epsilon(C, TAU, s, "zero_out")
  corners = _corners()
  others = _other_rows(s, rng)
  # (a) No clipping: a raw row far outside the box.
  noclip = S.ExpMechSampler(s, math.inf, TAU, 1, relation="zero_out",
                            dtype="float64")
  d, n, masks = _neighbour_batches(s, "zero_out", others, 3.0 * corners)
  loss = _max_loss(_scaled(noclip, d, np.ones_like(masks)),
                   _scaled(noclip, n, masks))
  assert loss.max() > eps_tok * 1.5
  # (b) Dividing by the realised number of records instead of s.
  d, n, masks = _neighbour_batches(s, "zero_out", others, corners)

  def realised_mean(logits, mask):
    x = np.maximum(-C, logits - logits.max(-1, keepdims=True) + C)
    x = np.where(mask[..., None], x, 0.0)
    return x.sum(1) / mask.sum(1, keepdims=True) / TAU

  loss = _max_loss(realised_mean(d[:, :s], np.ones_like(masks)),
                   realised_mean(n[:, :s], masks))
  assert loss.max() > eps_tok * 1.2
  # ... while the library's public-divisor mean on the same inputs is fine.
  ok = S.ExpMechSampler(s, C, TAU, 1, relation="zero_out", dtype="float64")
  assert _max_loss(_scaled(ok, d, np.ones_like(masks)),
                   _scaled(ok, n, masks)).max() <= eps_tok * (1 + 1e-9)


@pytest.mark.parametrize("relation", ["zero_out", "replace_one"])
def test_invisible_ink_exact_privacy_loss_and_support(relation):
  b, big_c, tau, k = 2, 0.8, 0.9, 3
  rng = np.random.default_rng(2)
  sampler = S.InvisibleInkSampler(b, big_c, tau, max_tokens=1, top_k=k,
                                  relation=relation, dtype="float64")
  eps_tok = pa.em_pure_epsilon(big_c, tau, b, relation)
  signs = np.array(list(itertools.product([-1.0, 1.0], repeat=V)))
  worst = 0.0
  for t in range(4):
    pub = rng.normal(size=V) * 2
    other = pub + rng.normal(size=V)
    d_rows, n_rows, masks = [], [], []
    for a in signs:
      partners = [a] if relation == "zero_out" else signs
      for bb in partners:
        # Differences of +-2C saturate the clip: the corners of its box.
        d_rows.append(np.stack([other, pub + 2 * big_c * a, pub]))
        n_rows.append(np.stack([other, pub + 2 * big_c * bb, pub]))
        masks.append([True, relation != "zero_out"])
    d_rows, n_rows = np.stack(d_rows), np.stack(n_rows)
    masks = np.array(masks)
    x = _scaled(sampler, d_rows, np.ones_like(masks))
    y = _scaled(sampler, n_rows, masks)
    worst = max(worst, _max_loss(x, y).max())   # also asserts equal support
    # Top-k+ keeps at least k tokens, decided by public logits only.
    assert np.all(np.isfinite(x).sum(-1) >= k)
  assert 0.3 * eps_tok < worst <= eps_tok * (1 + 1e-9)
  # The charged cost of one token is the per-token bound measured above.
  rho = pa.invisible_ink_rho(big_c, tau, b, 1, relation)
  assert rho == pytest.approx(0.5 * (pa.relation_factor(relation)
                                     * big_c / (b * tau)) ** 2)
  assert rho == pytest.approx(eps_tok ** 2 / 8)


def test_supports_equal_and_private_topk_breaks_them():
  s = 3
  corners = _corners()
  others = _other_rows(s, np.random.default_rng(5))[:2]
  d, n, masks = _neighbour_batches(s, "zero_out", others, corners)
  em = S.ExpMechSampler(s, C, TAU, 1, relation="zero_out", dtype="float64")
  x, y = _scaled(em, d, np.ones_like(masks)), _scaled(em, n, masks)
  assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))   # full support

  def private_topk(z, kk=2):      # the forbidden variant: exactly kk tokens
    top = np.argsort(-z, axis=-1, kind="stable")[:, :kk]
    keep = np.zeros(z.shape, bool)
    np.put_along_axis(keep, top, True, axis=-1)
    return np.where(keep, z, -np.inf)

  differs = np.any(np.isfinite(private_topk(x)) != np.isfinite(private_topk(y)),
                   axis=-1)
  assert differs.any()
  # InvisibleInk's set comes from public logits: a private top-k variant of
  # it (on DClip) changes the support for some corner; the real one never.
  ink = S.InvisibleInkSampler(2, 0.8, 0.9, 1, top_k=2, relation="zero_out",
                              dtype="float64")
  rng = np.random.default_rng(3)
  pub = rng.normal(size=V)
  signs = np.array(list(itertools.product([-1.0, 1.0], repeat=V)))
  d = np.stack([np.stack([pub + 0.1, pub + 1.6 * a, pub]) for a in signs])
  m = np.array([[True, False]] * len(signs))
  x, y = _scaled(ink, d, np.ones_like(m)), _scaled(ink, d, m)
  assert np.array_equal(np.isfinite(x), np.isfinite(y))
  assert np.any(np.isfinite(private_topk(x)) != np.isfinite(private_topk(y)))


def _chi2_samplers(s, clip, tau):
  """Samplers whose RELEASED tokens are private tokens drawn from
  softmax(clipped mean / tau): (sampler, the same in float64)."""
  def svt(dtype, **kw):
    params = pa.PrivatePredictionParams(
        batch_size=s, clip=clip, temperature=tau, max_private_tokens=10,
        **kw)
    return S.SvtPrivatePredictionSampler(params, dtype=dtype)
  return {
      "exp_mech": (S.ExpMechSampler(s, clip, tau, max_private_tokens=10),
                   S.ExpMechSampler(s, clip, tau, 10, dtype="float64")),
      # What private_prediction runs at svt_share = 0: every token private.
      "svt_all_private": (svt("float32", svt_noise=None, threshold=0.0),
                          svt("float64", svt_noise=None, threshold=0.0)),
      # With the SVT on and a threshold every query passes: the released
      # token is the private draw.
      "svt_above": (svt("float32", svt_noise=0.1, threshold=-1e6),
                    svt("float64", svt_noise=0.1, threshold=-1e6)),
      # InvisibleInk: DClip / tau on the public Top-k+ set (-inf elsewhere).
      "invisible_ink": (S.InvisibleInkSampler(s, clip, tau, 10, top_k=6),
                        S.InvisibleInkSampler(s, clip, tau, 10, top_k=6,
                                              dtype="float64")),
      "median": (S.MedianSampler(s, clip, tau, 10),
                 S.MedianSampler(s, clip, tau, 10, dtype="float64")),
  }


@pytest.mark.stat
@pytest.mark.parametrize("name", ["exp_mech", "svt_all_private",
                                  "svt_above", "invisible_ink", "median"])
def test_released_tokens_chi2_match_softmax_and_wrong_tau_rejected(name):
  """alpha = 1e-3 both ways, fixed seeds: the tokens `next_tokens` releases
  follow softmax(mean / tau); the law at tau 0.9 instead of 0.8 is
  rejected, as is the law without clipping."""
  s, v, g = 3, 16, 250_000
  logits = jax.random.normal(fixtures.stat_key(7), (1, s + 1, v)) * 3.0
  sampler, exact = _chi2_samplers(s, 2.0, 0.8)[name]
  state = sampler.init_state(g, fixtures.stat_key(0))
  big = jnp.broadcast_to(logits, (g, s + 1, v))
  step = jax.jit(sampler.next_tokens)
  counts = np.zeros(v)
  for i in range(4):
    tok, _, new_state = step(big, fixtures.stat_key(100 + i), state)
    counts += np.bincount(np.asarray(tok), minlength=v)
    assert np.asarray(new_state.private_count).min() == 1  # All private.
  x = _scaled(exact, np.asarray(logits))[0]
  support = np.isfinite(x)
  assert counts[~support].sum() == 0    # Nothing outside the support.
  x, counts = x[support], counts[support]
  p = special.softmax(x)
  assert stats.chisquare(counts, counts.sum() * p).pvalue > 1e-3
  p_wrong = special.softmax(x * 0.8 / 0.9)           # tau 0.9 instead of 0.8
  assert stats.chisquare(counts, counts.sum() * p_wrong).pvalue < 1e-3
  raw = np.asarray(logits, np.float64)[0, :s].mean(0)[support] / 0.8
  assert stats.chisquare(counts, counts.sum() * special.softmax(raw)
                         ).pvalue < 1e-3                # No clipping.


# ---------------------------------------------------------------------------
# Sparse vector test


def _run_svt(dists, n_trials, key, *, sigma, theta, r, query_noise=True):
  """n_trials runs of the sampler's SVT primitive over query values `dists`.

  Returns the [n_trials, T] above/below transcript. `query_noise=False` is
  the broken variant (Lyu et al. Alg. 5): the same code with no query noise.
  """
  dists = jnp.asarray(dists, jnp.float32)

  def one(k):
    k0, k1 = jax.random.split(k)
    thr0 = theta + sigma * jax.random.laplace(k0, (1,))

    def body(carry, inp):
      thr, count = carry
      d, kk = inp
      if query_noise:
        above, thr, count = S.svt_step(
            d[None], thr, count, jnp.ones((1,), bool), kk, threshold=theta,
            svt_noise=sigma, max_private_tokens=r)
      else:
        k_t = jax.random.split(kk)[1]
        above = (d[None] >= thr) & (count < r)
        fresh = theta + sigma * jax.random.laplace(k_t, (1,))
        thr = jnp.where(above, fresh, thr)
        count = count + above.astype(jnp.int32)
      return (thr, count), above[0]

    keys = jax.random.split(k1, dists.shape[0])
    _, ans = jax.lax.scan(body, (thr0, jnp.zeros((1,), jnp.int32)),
                          (dists, keys))
    return ans

  return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(key, n_trials)))


def _pure_dp_lower_bound(codes_a, codes_b, events, alpha=1e-3):
  """Largest Clopper-Pearson lower bound on eps over the given events.

  events: list of boolean functions of the outcome code arrays. Bonferroni
  over 2 * len(events) one-sided comparisons at total level alpha.
  """
  m = 2 * len(events)
  a = alpha / m
  best = 0.0
  for ev in events:
    ka, kb = int(np.sum(ev(codes_a))), int(np.sum(ev(codes_b)))
    na, nb = codes_a.shape[0], codes_b.shape[0]
    for (k1, n1), (k2, n2) in (((ka, na), (kb, nb)), ((kb, nb), (ka, na))):
      if k1 == 0:
        continue
      lo = stats.beta.ppf(a, k1, n1 - k1 + 1)
      hi = stats.beta.ppf(1 - a, k2 + 1, n2 - k2) if k2 < n2 else 1.0
      best = max(best, math.log(lo / hi))
  return best


@pytest.mark.stat
def test_svt_audit_no_query_noise_flagged():
  # Query sensitivity Delta = 1 (s = 1, f = 1); sigma = 2 -> claimed
  # eps = 2 Delta/sigma = 1 for r = 1. Mixed-direction neighbours.
  sigma, theta, r, n = 2.0, 0.5, 1, 200_000
  claimed = pa.svt_pure_epsilon(sigma, 1, "zero_out") * r
  assert claimed == pytest.approx(1.0)
  q_d, q_n = [0.0, 1.0], [1.0, 0.0]
  events = [lambda c, v=v: c == v for v in range(4)]

  def codes(t):
    return t.astype(np.int64) @ (1 << np.arange(t.shape[1]))

  ok = _pure_dp_lower_bound(
      codes(_run_svt(q_d, n, fixtures.stat_key(1), sigma=sigma, theta=theta,
                     r=r)),
      codes(_run_svt(q_n, n, fixtures.stat_key(2), sigma=sigma, theta=theta,
                     r=r)), events)
  broken = _pure_dp_lower_bound(
      codes(_run_svt(q_d, n, fixtures.stat_key(3), sigma=sigma, theta=theta, r=r,
                     query_noise=False)),
      codes(_run_svt(q_n, n, fixtures.stat_key(4), sigma=sigma, theta=theta, r=r,
                     query_noise=False)), events)
  # Measured (seeds fixed): ok ~0.8, broken ~9 (p' = 0 for one outcome).
  assert ok <= claimed
  assert broken > claimed


@pytest.mark.stat
def test_svt_audit_no_cutoff_flagged():
  # T queries, half pushed up in D and down in D'. With the cutoff r = 1 the
  # claim is eps = 1; running on past it (r = T, "no cutoff") is not 1-DP.
  sigma, theta, t_len, n = 1.0, 1.0, 40, 100_000
  claimed = pa.svt_pure_epsilon(sigma, 1, "zero_out")      # = 2
  half = t_len // 2
  q_d = [1.0] * half + [0.0] * half
  q_n = [0.0] * half + [1.0] * half
  sign = np.array([1] * half + [-1] * half)
  res = {}
  for name, r in (("ok", 1), ("broken", t_len)):
    a = _run_svt(q_d, n, fixtures.stat_key(5), sigma=sigma, theta=theta, r=r)
    b = _run_svt(q_n, n, fixtures.stat_key(6), sigma=sigma, theta=theta, r=r)
    sa, sb = a.astype(np.int64) @ sign, b.astype(np.int64) @ sign
    lo, hi = int(min(sa.min(), sb.min())), int(max(sa.max(), sb.max()))
    events = ([lambda c, v=v: c >= v for v in range(lo, hi + 1)]
              + [lambda c, v=v: c <= v for v in range(lo, hi + 1)])
    res[name] = _pure_dp_lower_bound(sa, sb, events)
    if name == "ok":
      assert a.sum(1).max() <= 1     # the cutoff holds
  # Measured (seeds fixed): ok ~1.1, broken ~3.8.
  assert res["ok"] <= claimed
  assert res["broken"] > claimed


def _svt_sampler(r=5, theta=2.0, sigma=0.3, end_token_ids=()):
  params = pa.PrivatePredictionParams(
      batch_size=2, clip=8.0, temperature=0.5, svt_noise=sigma,
      threshold=theta, max_private_tokens=r, public_temperature=0.1,
      relation="add_remove")
  return S.SvtPrivatePredictionSampler(params, end_token_ids=end_token_ids)


def _marked_logits(g, v=4):
  """Public row -> token 0 (almost surely), private rows -> token 1."""
  pub = jnp.full((v,), -10.0).at[0].set(10.0)
  priv = jnp.full((v,), -10.0).at[1].set(10.0)
  one = jnp.stack([priv, priv, pub])
  return jnp.broadcast_to(one, (g, 3, v))


def test_svt_count_equals_private_tokens_sampled_and_cutoff_stops():
  g, steps, r = 64, 30, 5
  sampler = _svt_sampler(r=r)
  logits = _marked_logits(g)
  state = sampler.init_state(g, fixtures.stat_key(0))
  step = jax.jit(sampler.next_tokens)
  n_private = np.zeros(g, int)
  stopped_at = np.full(g, -1)
  for i in range(steps):
    live = ~np.asarray(state.done)
    tok, stop, state = step(logits, fixtures.stat_key(10 + i), state)
    tok, stop = np.asarray(tok), np.asarray(stop)
    np.testing.assert_array_equal(np.asarray(state.last_private)[live],
                                  tok[live] == 1)
    n_private += live & (tok == 1)
    newly = live & stop
    stopped_at[newly & (stopped_at < 0)] = i
  count = np.asarray(state.private_count)
  np.testing.assert_array_equal(count, n_private)
  assert count.max() <= r
  # Streams that reached r stopped on that very token, and only they did.
  np.testing.assert_array_equal(stopped_at >= 0, count == r)
  assert 0 < np.mean(count == r) < 1 or count.min() == r
  assert np.asarray(state.steps).max() <= steps
  # Mixed private/public decisions actually happened.
  assert 0 < n_private.sum() < g * steps


def test_done_streams_are_frozen_after_an_end_token():
  g = 32
  sampler = _svt_sampler(r=50, theta=-10.0, end_token_ids=(1,))
  state = sampler.init_state(g, fixtures.stat_key(1))
  logits = _marked_logits(g)
  step = jax.jit(sampler.next_tokens)
  for i in range(5):
    _, _, state = step(logits, fixtures.stat_key(i), state)
  # theta = -10: every token private -> token 1 -> ends at the first step.
  np.testing.assert_array_equal(np.asarray(state.private_count), 1)
  np.testing.assert_array_equal(np.asarray(state.steps), 1)
  assert np.all(np.asarray(state.done))


def test_svt_threshold_renoised_only_after_private_tokens():
  g = 256
  sampler = _svt_sampler(r=100, theta=2.0, sigma=0.3)
  logits = _marked_logits(g)
  state = sampler.init_state(g, fixtures.stat_key(2))
  thr0 = np.asarray(state.threshold)
  assert abs(np.median(thr0) - 2.0) < 0.1 and np.std(thr0) > 0.2
  _, _, new = jax.jit(sampler.next_tokens)(logits, fixtures.stat_key(3), state)
  changed = np.asarray(new.threshold) != thr0
  np.testing.assert_array_equal(changed, np.asarray(new.last_private))


def test_samplers_have_no_data_dependent_control_flow():
  params = pa.PrivatePredictionParams(2, 1.0, 1.0, 0.5, 0.5, 3)
  samplers = [S.SvtPrivatePredictionSampler(params),
              S.ExpMechSampler(2, 1.0, 1.0, 3),
              S.InvisibleInkSampler(2, 1.0, 1.0, 3, top_k=2),
              S.MedianSampler(2, 1.0, 1.0, 3), S.PublicOnlySampler()]
  logits = jnp.zeros((2, 3, 8))
  for sm in samplers:
    state = sm.init_state(2, fixtures.stat_key(0))
    text = str(jax.make_jaxpr(sm.next_tokens)(logits, fixtures.stat_key(1),
                                               state))
    assert " cond[" not in text and "while[" not in text, type(sm).__name__


def test_exactness_check_rejects_a_too_wide_range():
  sm = S.ExpMechSampler(2, 30.0, 0.5, 3)        # 2c/tau = 120
  state = sm.init_state(1, fixtures.stat_key(0))
  with pytest.raises(Exception, match="clip/temperature"):
    sm.next_tokens(jnp.zeros((1, 3, 8)), fixtures.stat_key(1), state)


def test_row_mask_null_rows_ignore_garbage_padding():
  sm = S.ExpMechSampler(3, 1.0, 1.0, 3)
  logits = jax.random.normal(fixtures.stat_key(4), (2, 4, 8))
  bad = logits.at[:, 2].set(jnp.nan)
  mask = jnp.array([[True, True, False]] * 2)
  state = S.with_row_mask(sm.init_state(2, fixtures.stat_key(0)), mask)
  tok, _, _ = jax.jit(sm.next_tokens)(bad, fixtures.stat_key(1), state)
  assert np.all((np.asarray(tok) >= 0) & (np.asarray(tok) < 8))
  scaled = jax.jit(sm.scaled_logits)
  np.testing.assert_allclose(scaled(bad, state), scaled(logits, state))


# ---------------------------------------------------------------------------
# Median


def test_median_reports_worst_case_and_expost_separately():
  s, c, tau, t = 5, 1.0, 1.0, 6
  sm = S.MedianSampler(s, c, tau, max_tokens=t)
  step = jax.jit(sm.next_tokens)
  rng = np.random.default_rng(0)
  # Consensus batch (all rows equal) vs a maximally split batch.
  row = rng.normal(size=8) * 3
  consensus = jnp.asarray(np.stack([row] * (s + 1))[None], jnp.float32)
  split = np.full((1, s + 1, 8), -10.0)
  split[0, :3, 0] = 10.0          # rows 0-2 favour token 0
  split[0, 3:, 1] = 10.0          # rows 3-5 favour token 1 (row 5 public)
  split = jnp.asarray(split, jnp.float32)
  out = {}
  for name, lg in (("consensus", consensus), ("split", split)):
    state = sm.init_state(1, fixtures.stat_key(0))
    for i in range(t):
      _, _, state = step(lg, fixtures.stat_key(i), state)
    out[name] = float(state.expost_epsilon[0])
  worst_pure = t * pa.median_worst_case_pure_epsilon(c, tau)
  assert out["consensus"] == 0.0
  assert 0 < out["split"] <= worst_pure * (1 + 1e-6)
  # The charged worst case does not depend on the realised agreement.
  assert pa.median_rho(c, tau, t) == pytest.approx(t * (4 * c / tau) ** 2 / 8)


def test_median_expost_bounds_the_exact_loss():
  # For random batches, the per-token ex-post bound dominates the exact
  # float64 log-ratio against every one-row replacement by a box corner.
  s, c, tau = 3, 1.0, 0.8
  sm = S.MedianSampler(s, c, tau, max_tokens=1, dtype="float64")
  rng = np.random.default_rng(4)
  corners = _corners()
  for _ in range(5):
    base = rng.normal(size=(s + 1, V)) * 2
    with jax.enable_x64(True):
      med, down, up = (np.asarray(a, np.float64) for a in sm.median_and_gaps(
          jnp.asarray(base[None]), sm.init_state(1, fixtures.stat_key(0))))
    bound = float((np.max(down) + np.max(up)) / tau)
    nb = []
    for row in range(s):
      for a in corners:
        b = base.copy()
        b[row] = a
        nb.append(b)
    nb = np.stack(nb)
    x = np.broadcast_to(np.asarray(med)[0] / tau, (len(nb), V))
    y = _scaled(sm, nb)
    assert _max_loss(x, y).max() <= bound * (1 + 1e-9)


# ---------------------------------------------------------------------------
# Public-only and the shared decoder


def test_public_only_reads_the_last_row():
  logits = jnp.full((3, 4, 5), -20.0).at[:, 3, 2].set(20.0)
  sm = S.PublicOnlySampler(temperature=0.5)
  tok, stop, _ = sm.next_tokens(logits, fixtures.stat_key(0),
                                sm.init_state(3, fixtures.stat_key(0)))
  np.testing.assert_array_equal(tok, 2)
  assert not np.any(stop)


def test_svt_sampler_runs_inside_the_shared_decoder():

  cfg = config_lib.get_model_config("micro", 64, max_len=64)
  params = registry.init_params(cfg, fixtures.stat_key(0))
  s, groups, r = 2, 3, 4
  pp = pa.PrivatePredictionParams(s, 2.0, 1.0, 0.3, 0.1, r)
  sampler = S.SvtPrivatePredictionSampler(pp, end_token_ids=(3,))
  prompts = np.asarray(jax.random.randint(fixtures.stat_key(1),
                                          (groups * (s + 1), 6), 4, 64))
  res = decoder.generate(params, cfg, prompts, 12, sampler, fixtures.stat_key(2),
                         group_size=s + 1, eos_id=3)
  st = res.sampler_state
  count = np.asarray(st.private_count)
  assert count.max() <= r
  lengths, steps = np.asarray(res.lengths), np.asarray(st.steps)
  # The sampler saw exactly the tokens the decoder kept (+ an ending EOS).
  ended_on_eos = np.asarray(res.tokens)[np.arange(groups),
                                        np.minimum(lengths, 11)] == 3
  np.testing.assert_array_equal(steps, lengths + (ended_on_eos
                                                  & (lengths < 12)))


# ---------------------------------------------------------------------------
# Median by selection: the same bits as the sort it replaces

# pylint: disable=protected-access
_sel_median = S._clipped_median
_order_keys, _select_ranks, _key_values = (S._order_keys, S._select_ranks,
                                           S._key_values)
# pylint: enable=protected-access


def _bits(x):
  x = np.asarray(x)
  return x.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[x.itemsize])


def _median_inputs(rng, g, s, v):
  """Logits full of ties (small integers), some inf/-inf, NaN rows; masks."""
  priv = rng.integers(-3, 4, size=(g, s, v)).astype(np.float32)
  priv[rng.random(priv.shape) < 0.3] = rng.normal(size=1)[0]
  priv[rng.random(priv.shape) < 0.05] = -np.inf
  priv[rng.random(priv.shape) < 0.02] = np.inf
  # Groups of non-positive logits, zeros of both signs: at clip = inf the
  # recentred -0 - max(+0) is -0, ties of -0 and +0 around the median.
  flat = rng.random(g) < 0.5
  priv[flat] = -np.abs(priv[flat])
  zeros = flat[:, None, None] & (rng.random(priv.shape) < 0.6)
  priv[zeros] = np.where(rng.random(priv.shape) < 0.5, 0.0, -0.0)[zeros]
  priv[rng.random((g, s)) < 0.05] = np.nan            # NaN rows
  mask = rng.random((g, s)) < 0.8
  return priv, mask


@pytest.mark.parametrize("s", [1, 2, 3, 6, 8, 33, 64])
def test_median_selection_equals_the_sorted_median_bit_for_bit(s):
  rng = np.random.default_rng(s)

  @jax.jit
  def both(priv, mask):
    out = []
    for clip, m in ((2.0, mask), (math.inf, None)):   # inf: -0 can occur
      out.append((_sel_median(priv, clip, m),
                  agg.clipped_median(priv, clip, m)))
    return out

  negative_zeros = 0
  for _ in range(3):
    priv, mask = _median_inputs(rng, 40, s, 24)
    for clip, (got, want) in zip((2.0, math.inf), both(priv, mask)):
      for name, a, b in zip(("median", "down", "up"), got, want):
        np.testing.assert_array_equal(_bits(a), _bits(b),
                                      err_msg=f"{name} s={s} clip={clip}")
      negative_zeros += np.sum(_bits(want[0]) == 0x80000000)
  assert negative_zeros > 0         # the +-0 ties were exercised


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16",
                                   "float64"])
def test_median_selection_picks_the_sorts_zero_and_nan_among_ties(dtype):
  """Raw columns of -0/+0, NaNs of both signs and payloads, +-inf and
  denormals: every rank's selected value has the bits of the stable sort
  over rows (which takes -0 == +0 and all NaNs as equal ties in row
  order), not merely an equal value."""
  rng = np.random.default_rng(1)
  with jax.enable_x64(dtype == "float64"):
    dt = jnp.dtype(dtype)
    width = {2: np.uint16, 4: np.uint32, 8: np.uint64}[dt.itemsize]
    inf_bits = np.array(np.inf, dt).view(width)
    sign = np.array(-0.0, dt).view(width)
    tiny = np.array(0, width) + 1                     # smallest denormal
    pool = np.array([0, sign, inf_bits, inf_bits | sign, inf_bits + 1,
                     inf_bits + 3, sign | (inf_bits + 2), tiny, sign | tiny,
                     np.array(1.0, dt).view(width),
                     np.array(-1.0, dt).view(width)], width)
    @jax.jit
    def every_rank(x):
      s = x.shape[-2]
      keys, inf_b, narrow = _order_keys(x)
      n = 1 << (s - 1).bit_length()
      keys = jnp.concatenate([keys, jnp.full(
          keys.shape[:-2] + (n - s, keys.shape[-1]),
          jnp.iinfo(keys.dtype).max, keys.dtype)], axis=-2)
      picked = _select_ranks(keys, tuple(range(s)))
      return [_key_values(x, picked[r], inf_b, narrow) for r in range(s)]

    for s in (1, 5, 8, 13):
      raw = pool[rng.integers(0, len(pool), size=(30, s, 8))].view(dt)
      x = jnp.asarray(raw)
      want = _bits(jnp.sort(x, axis=-2))
      for r, got in enumerate(every_rank(x)):
        got = _bits(got)
        if dtype == "bfloat16":
          # XLA:CPU's bfloat16 sort itself quietens NaN payloads (0x7fc0),
          # so there only NaN-ness is compared for NaNs.
          nan = np.isnan(np.asarray(jnp.sort(x, axis=-2))[:, r])
          assert np.array_equal(np.isnan(got.view(dt)), nan), (s, r)
          got, want_r = np.where(nan, 0, got), np.where(nan, 0, want[:, r])
        else:
          want_r = want[:, r]
        np.testing.assert_array_equal(got, want_r,
                                      err_msg=f"{dtype} s={s} rank {r}")
      # The test exercises what it claims: zeros of both signs and NaNs.
      assert np.any(want == 0) and np.any(want == sign), (dtype, s)
  # A sort that orders -0 before +0 (a total order) is caught.
  x = jnp.asarray([[[0.0], [-0.0]]], jnp.float32)
  total = jax.lax.sort(jax.lax.bitcast_convert_type(x, jnp.int32), dimension=1)
  assert _bits(_sel_median(x, math.inf)[0])[0, 0] == 0
  assert np.asarray(total)[0, 0, 0] != 0


def test_median_sampler_selects_and_draws_as_the_sorted_median_did():
  """Same tokens and state for the same key as the sort-based sampler, and
  no sort over the s axis left in the compiled step."""
  s, g, v = 33, 3, 40

  class SortedMedian(S.MedianSampler):

    def median_and_gaps(self, logits, state):
      priv = logits[:, :self.batch_size].astype(self.dtype)
      return agg.clipped_median(priv, self.clip,
                                state.row_mask)

  new, old = S.MedianSampler(s, 5.0, 0.8, 5), SortedMedian(s, 5.0, 0.8, 5)
  rng = np.random.default_rng(3)
  logits = jnp.asarray(np.round(rng.normal(size=(g, s + 1, v)), 1),
                       jnp.float32)
  st_new = new.init_state(g, fixtures.stat_key(0))
  st_old = old.init_state(g, fixtures.stat_key(0))
  step_new, step_old = jax.jit(new.next_tokens), jax.jit(old.next_tokens)
  for i in range(4):
    key = fixtures.stat_key(10 + i)
    t_new, _, st_new = step_new(logits, key, st_new)
    t_old, _, st_old = step_old(logits, key, st_old)
    np.testing.assert_array_equal(t_new, t_old)
  for a, b in zip(st_new, st_old):
    np.testing.assert_array_equal(_bits(a) if a.dtype.kind == "f" else a,
                                  _bits(b) if b.dtype.kind == "f" else b)
  assert float(st_new.expost_epsilon.max()) > 0
  def primitives(sampler, state):
    names, todo = set(), [jax.make_jaxpr(sampler.next_tokens)(
        logits, key, state).jaxpr]
    while todo:
      jaxpr = todo.pop()
      for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        todo.extend(jax.extend.core.jaxprs_in_params(eqn.params))
    return names
  assert "sort" not in primitives(new, st_new)
  assert "sort" in primitives(old, st_old)


def test_samplers_have_no_epsilon_of_their_own():
  # A run's epsilon is the ledger's composition of the charged events; a
  # sampler that reported its own would be a second, unledgered route.
  for cls in (S.ExpMechSampler, S.SvtPrivatePredictionSampler,
              S.InvisibleInkSampler, S.MedianSampler, S.PublicOnlySampler):
    assert not any(hasattr(cls, n) for n in ("account", "epsilon", "report"))
