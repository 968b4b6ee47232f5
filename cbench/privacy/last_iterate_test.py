"""Last-iterate accountant: assumptions are checked, the shift allocation is
the optimum of Theorem 22's program (independent QP), the Gaussian and
single-pass closed forms, last <= all iterates, and a canary audit of
cyclic DP-SGD on L2-regularised logistic regression that stays below the
claimed epsilon and exceeds it when the noise is cut 8x."""

import json
import math
import os

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant as rdp_impl
from scipy import optimize

from cbench._validate import CbenchError
from cbench.privacy import auditing
from cbench.privacy import clipping
from cbench.privacy import cyclic
from cbench.privacy import cyclic_report
from cbench.privacy import last_iterate
from cbench.privacy import noise
from cbench.privacy import relations
from cbench.testing import fixtures

DELTA = 1e-5


def _assumptions(**kwargs):
  base = dict(convex=True, smoothness=0.26, step_size=1.0, lipschitz=1.0,
              clip_norm=1.0, only_last_iterate_released=True)
  return last_iterate.LastIterateAssumptions(**{**base, **kwargs})


def _config(n, b, epochs, sigma, relation="replace_one"):
  return cyclic.CyclicConfig(num_examples=n, batch_size=b, epochs=epochs,
                             noise_multiplier=sigma, relation=relation)


# ---------------------------------------------------------------- assumptions

@pytest.mark.parametrize("kwargs,match", [
    (dict(step_size=7.7 + 0.1), "step_size"),         # eta > 2 / beta
    (dict(lipschitz=1.5), "lipschitz"),                # clipping may act
    (dict(convex=False), "convex"),
    (dict(only_last_iterate_released=False), "only_last_iterate_released"),
    (dict(update="adam"), "update"),
    (dict(smoothness=-1.0), "smoothness"),
    (dict(smoothness=math.nan), "smoothness"),
    (dict(clip_norm=math.inf), "clip_norm"),
    (dict(step_size=0.0), "step_size"),
])
def test_violated_assumptions_are_refused_by_name(kwargs, match):
  with pytest.raises(CbenchError, match=match):
    _assumptions(**kwargs)


def test_boundary_step_size_is_accepted_and_the_result_is_labelled():
  a = _assumptions(smoothness=0.5, step_size=4.0)      # eta = 2 / beta
  bound = last_iterate.last_iterate_bound(_config(40, 10, 2, 1.0), a, DELTA)
  assert bound.conditional_on is a
  d = bound.to_dict()
  assert d["conditional_on"]["step_size"] == 4.0
  assert "Theorem 22" in d["theorem"] and "Kong" in d["theorem"]
  json.dumps(d)
  with pytest.raises(CbenchError, match="LastIterateAssumptions"):
    last_iterate.last_iterate_bound(_config(40, 10, 2, 1.0), a.describe(),
                                    DELTA)


# ----------------------------------------------------- the shift allocation

def _qp_cost(k, steps, position):
  """min sum a^2 s.t. prefix sums of a <= prefix sums of the unit shifts,
  equal at the end, a >= 0 (Theorem 22's program), by SLSQP."""
  s = np.zeros(steps)
  s[position::k] = 1.0
  if s.sum() == 0:
    return 0.0
  # Prefix constraints for t < steps - 1 (the last one is the equality;
  # repeating it as an inequality stalls SLSQP).
  tri = np.tril(np.ones((steps, steps)))[:-1]
  res = optimize.minimize(
      lambda a: a @ a, s.copy(), jac=lambda a: 2 * a, method="SLSQP",
      bounds=[(0, None)] * steps,
      constraints=[{"type": "ineq", "fun": lambda a: tri @ s - tri @ a,
                    "jac": lambda a: -tri},
                   {"type": "eq", "fun": lambda a: a.sum() - s.sum(),
                    "jac": lambda a: np.ones((1, steps))}],
      options={"ftol": 1e-14, "maxiter": 1000})
  assert res.success, res.message
  return float(res.fun)


def _feasible(a, k, steps, position):
  s = np.zeros(steps)
  s[position::k] = 1.0
  gap = np.cumsum(s) - np.cumsum(a)
  return bool(np.all(gap >= -1e-12) and abs(gap[-1]) < 1e-12
              and np.all(a >= 0))


@pytest.mark.parametrize("k,steps", [(1, 4), (3, 7), (4, 12), (5, 13),
                                     (6, 4)])
def test_costs_are_the_optimum_of_the_shift_program(k, steps):
  costs = last_iterate.position_costs(k, steps)
  for j in range(k):
    a = last_iterate.shift_allocation(k, steps, j)
    assert _feasible(a, k, steps, j)
    assert a @ a == pytest.approx(costs[j], rel=1e-12)
    assert costs[j] == pytest.approx(_qp_cost(k, steps, j), abs=1e-7)


def test_the_feasibility_check_rejects_an_even_spread():
  """Spreading the shifts evenly from the first use to the end looks
  cheaper but breaks the prefix constraint (it is not a valid bound)."""
  k, steps, j = 4, 12, 2
  p = len(range(j, steps, k))
  even = np.zeros(steps)
  even[j:] = p / (steps - j)
  assert even @ even < last_iterate.position_costs(k, steps)[j]
  assert not _feasible(even, k, steps, j)


def test_single_step_is_the_gaussian_rdp_closed_form():
  sigma = 1.7
  bound = last_iterate.last_iterate_bound(_config(8, 8, 1, sigma),
                                          _assumptions(), DELTA)
  orders = np.asarray(bound.orders)
  np.testing.assert_allclose(bound.rdp, orders / (2 * sigma ** 2),
                             rtol=1e-12)


def test_single_pass_is_feldman_et_al_theorem_23():
  """One pass, batch size 1, replace-one: record t of n (1-based) gets
  2 alpha L^2 / (s^2 (n - t + 1)), s = std of the noise on the gradient."""
  n, lip, sigma = 6, 1.0, 1.3
  s = sigma * relations.sensitivity(lip, "replace_one")
  costs = last_iterate.position_costs(n, n)
  for t in range(1, n + 1):
    theirs = 2 * lip ** 2 / (s ** 2 * (n - t + 1))    # per unit order
    assert costs[t - 1] / (2 * sigma ** 2) == pytest.approx(theirs, rel=1e-12)
  cfg = cyclic.CyclicConfig(num_examples=n, batch_size=1, epochs=1,
                            noise_multiplier=sigma, shuffle=False)
  bound = last_iterate.last_iterate_bound(cfg, _assumptions(), DELTA)
  assert bound.worst_position == n - 1 and bound.cost == 1.0


# ----------------------------------------------------- last <= all iterates

@pytest.mark.parametrize("epochs", [1, 2, 5, 30])
@pytest.mark.parametrize("n,b", [(10, 10), (20, 10), (100, 10), (95, 5)])
def test_last_iterate_rdp_never_exceeds_all_iterates(epochs, n, b):
  sigma = 1.1
  cfg = _config(n, b, epochs, sigma)
  bound = last_iterate.last_iterate_bound(cfg, _assumptions(), DELTA)
  orders = np.asarray(bound.orders)
  p = cfg.dp_event().count
  all_rdp = p * orders / (2 * sigma ** 2)
  assert np.all(np.asarray(bound.rdp) <= all_rdp * (1 + 1e-12))
  eps_all, _ = rdp_impl.compute_epsilon(orders, all_rdp, DELTA)
  assert bound.epsilon <= eps_all * (1 + 1e-12)
  if epochs == 1 or cfg.steps_per_epoch == 1:     # no amplification at all
    assert bound.epsilon == pytest.approx(eps_all, rel=1e-12)
  else:
    assert bound.epsilon < eps_all


def test_last_iterate_beats_the_pld_all_iterates_bound_over_epochs():
  cfg = _config(400, 10, 5, 1.0)                   # K = 40
  bound = last_iterate.last_iterate_bound(cfg, _assumptions(), DELTA)
  assert bound.cost == pytest.approx(1 + 4 / 40)
  assert bound.epsilon < 0.6 * cfg.epsilon(DELTA)


def test_zero_noise_and_zero_steps():
  a = _assumptions()
  assert math.isinf(last_iterate.last_iterate_bound(
      _config(10, 5, 2, 0.0), a, DELTA).epsilon)
  assert last_iterate.last_iterate_bound(
      _config(10, 5, 2, 1.0), a, DELTA, steps=0).epsilon == 0.0


# ------------------------------------------------------------- canary audit

_N, _B, _EPOCHS, _D = 30, 8, 3, 5      # K = 4 batches, 12 steps
_LAM, _ETA, _CLIP = 0.01, 1.0, 1.0
_SIGMA, _CUT = 4.0, 8.0
_RUNS = 20000                          # per world
_INIT = -5.0                           # public start of the canary weight


def _logistic_problem():
  """Records with ||x|| <= 1 in the first D-1 coordinates; the canary (in
  the last slot, hence the last batch) is e_{D-1} with label +1."""
  rng = np.random.default_rng(fixtures.stat_seed(7))
  x = rng.normal(size=(_N, _D))
  x[:, -1] = 0.0
  x /= np.maximum(1.0, np.linalg.norm(x, axis=1))[:, None]
  y = rng.choice([-1.0, 1.0], size=_N)
  x[-1] = np.eye(_D)[-1]
  y[-1] = 1.0
  return x.astype(np.float32), y.astype(np.float32)


def _make_audit_runs(cfg):
  """(key, noise_std) -> canary coordinate of the last iterate of cyclic
  DP-SGD for _RUNS runs with the canary and _RUNS with its slot masked
  (zero-out), jitted once."""
  x, y = _logistic_problem()
  sampler = cfg.sampler()
  batches = [sampler.batch(t) for t in range(cfg.num_steps)]
  idx = np.stack([b.indices for b in batches])
  pad = np.stack([b.is_padding for b in batches])
  is_canary = jnp.asarray((idx == _N - 1) & ~pad)
  pad = jnp.asarray(pad)
  xb, yb = jnp.asarray(x[idx]), jnp.asarray(y[idx])
  w0 = jnp.zeros(_D).at[-1].set(_INIT)

  def loss(w, ex):
    xi, yi = ex
    return jax.nn.softplus(-yi * jnp.dot(w, xi))

  def run(k, with_canary, std):
    def step(w, t):
      mask = pad[t] | (is_canary[t] & ~with_canary)
      g, _ = clipping.clipped_grad_sum(loss, w, (xb[t], yb[t]), mask, _CLIP)
      g = noise.add_gaussian_noise(g, std, jax.random.fold_in(k, t))
      return w - _ETA * (_LAM * w + g / cfg.batch_size), None
    w, _ = jax.lax.scan(step, w0, jnp.arange(cfg.num_steps))
    return w[-1]

  runs = jax.jit(jax.vmap(run, in_axes=(0, 0, None)))
  world = jnp.arange(2 * _RUNS) < _RUNS

  def scores(key, noise_std):
    out = np.asarray(runs(jax.random.split(key, 2 * _RUNS), world,
                          noise_std))
    return out[:_RUNS], out[_RUNS:]
  return scores


@pytest.mark.stat
def test_canary_audit_of_the_last_iterate_and_a_noise_cut_mutant():
  """alpha = 1e-3 per bound. The correct mechanism's lower bound stays
  below the claimed last-iterate epsilon; with the noise cut 8x (claim
  unchanged) the audit certifies more than the claim."""
  x, _ = _logistic_problem()
  cfg = cyclic.CyclicConfig(num_examples=_N, batch_size=_B, epochs=_EPOCHS,
                            noise_multiplier=_SIGMA, relation="zero_out",
                            shuffle=False)
  beta = _LAM + float(np.max(np.sum(x ** 2, 1))) / 4   # logistic smoothness
  assumptions = last_iterate.LastIterateAssumptions(
      convex=True, smoothness=beta, step_size=_ETA,
      lipschitz=float(np.max(np.linalg.norm(x, axis=1))), clip_norm=_CLIP,
      only_last_iterate_released=True)
  claim = last_iterate.last_iterate_bound(cfg, assumptions, DELTA)
  assert claim.worst_position == cfg.steps_per_epoch - 1
  std = relations.noise_std(_SIGMA, _CLIP, "zero_out")
  key = fixtures.stat_key(3)
  scores = _make_audit_runs(cfg)
  results = {}
  for name, s in (("correct", std), ("cut", std / _CUT)):
    ins, outs = scores(jax.random.fold_in(key, len(results)), s)
    results[name] = auditing.epsilon_lower_bound(
        ins, outs, DELTA, alpha=1e-3, seed=fixtures.stat_seed(5)).epsilon_lb
  assert results["correct"] < claim.epsilon < cfg.epsilon(DELTA), results
  assert results["cut"] > claim.epsilon, (results, claim.epsilon)


# ------------------------------------------------------------------ report

def test_report_writes_the_table_json_and_plot(tmp_path):
  a = _assumptions()
  out = str(tmp_path / "r")
  summary = cyclic_report.write_report(
      out, num_examples=40, batch_size=10, epochs=[1, 3],
      noise_multipliers=[2.0], delta=DELTA, relation="replace_one",
      assumptions=a)
  with open(os.path.join(out, "cyclic_accounting.json"), encoding="utf-8") as f:
    saved = json.load(f)
  assert saved["conditional_on"] == a.describe()
  assert len(saved["rows"]) == 2
  for row in saved["rows"]:
    cfg = _config(40, 10, row["epochs"], row["noise_multiplier"])
    assert row["epsilon_last_iterate"] == last_iterate.last_iterate_bound(
        cfg, a, DELTA).epsilon
    assert row["epsilon_best"] <= row["epsilon_all_iterates"]
  with open(os.path.join(out, "cyclic_accounting.md"), encoding="utf-8") as f:
    md = f.read()
  assert "ONLY under" in md and "Theorem 22" in md and md.count("\n| ") == 3
  pixels = matplotlib.image.imread(os.path.join(out, "cyclic_accounting.png"))
  assert pixels.shape[0] > 100 and pixels[..., :3].std() > 0.01
  assert summary["wall_seconds"] > 0
