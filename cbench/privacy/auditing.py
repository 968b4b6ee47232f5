"""Empirical lower bounds on epsilon from canary scores (privacy audits).

Given scores of an attack statistic in the world WITH a canary ("in") and
WITHOUT it ("out"), any (eps, delta)-DP mechanism satisfies, for every
rejection set R and both orders of the worlds,
    P_in(R) <= e^eps P_out(R) + delta,
so eps >= ln((P_a(R) - delta) / P_b(R)). `epsilon_lower_bound` chooses the
threshold set R on one half of the trials and bounds the probabilities on the
other half with Clopper-Pearson intervals (alpha/2 each side), so the result
is a valid lower bound with confidence 1 - alpha (no selection bias).
Host NumPy/SciPy only.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

from cbench._validate import check


def clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
  """One-sided (1 - alpha) lower and upper bounds on a binomial proportion."""
  lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha, k, n - k + 1))
  hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha, k + 1, n - k))
  return lo, hi


@dataclasses.dataclass(frozen=True)
class AuditResult:
  epsilon_lb: float       # >= 0
  threshold: float
  region: str             # 'above' | 'below' the threshold
  order: str              # 'in/out' or 'out/in'
  p_a_lb: float
  p_b_ub: float


def _eps(pa: np.ndarray, pb: np.ndarray, delta: float) -> np.ndarray:
  with np.errstate(divide="ignore", invalid="ignore"):
    e = np.log(np.maximum(pa - delta, 0.0) / pb)
  return np.where(np.isfinite(e), e, -np.inf)


def epsilon_lower_bound(in_scores: np.ndarray, out_scores: np.ndarray,
                        delta: float, alpha: float = 0.05,
                        seed: int = 0, num_thresholds: int = 512
                        ) -> AuditResult:
  """Clopper-Pearson lower bound on epsilon at `delta` (confidence 1-alpha).

  Args:
    in_scores: 1-D scores of trials with the canary.
    out_scores: 1-D scores of trials without it.
    delta: the delta of the claim being audited.
    alpha: total failure probability of the bound.
    seed: for the random split into selection / estimation halves.
    num_thresholds: candidate thresholds (quantiles of selection scores).
  """
  a = np.asarray(in_scores, np.float64).ravel()
  b = np.asarray(out_scores, np.float64).ravel()
  check(len(a) >= 4 and len(b) >= 4, "Need at least 4 trials per world.")
  rng = np.random.default_rng(seed)
  a, b = rng.permutation(a), rng.permutation(b)
  a_sel, a_est = a[:len(a) // 2], a[len(a) // 2:]
  b_sel, b_est = b[:len(b) // 2], b[len(b) // 2:]
  ts = np.unique(np.quantile(np.concatenate([a_sel, b_sel]),
                             np.linspace(0, 1, num_thresholds)))
  a_sorted, b_sorted = np.sort(a_sel), np.sort(b_sel)
  # Fraction strictly above each threshold.
  fa = 1.0 - np.searchsorted(a_sorted, ts, side="right") / len(a_sel)
  fb = 1.0 - np.searchsorted(b_sorted, ts, side="right") / len(b_sel)
  # Selection by the point estimate with a continuity correction, so empty
  # tails are not chosen.
  ca = lambda f, n: (f * n + 0.5) / (n + 1)
  best = (-np.inf, None)
  for region, pa_, pb_ in (("above", fa, fb), ("below", 1 - fa, 1 - fb)):
    for order, x, y, nx, ny in (("in/out", pa_, pb_, len(a_sel), len(b_sel)),
                                ("out/in", pb_, pa_, len(b_sel), len(a_sel))):
      e = _eps(ca(x, nx) - 0.5 / (nx + 1), ca(y, ny), delta)
      i = int(np.argmax(e))
      if e[i] > best[0]:
        best = (e[i], (float(ts[i]), region, order))
  t, region, order = best[1]
  above = lambda s: int(np.sum(s > t))
  k_in = above(a_est) if region == "above" else len(a_est) - above(a_est)
  k_out = above(b_est) if region == "above" else len(b_est) - above(b_est)
  if order == "in/out":
    (ka, na), (kb, nb) = (k_in, len(a_est)), (k_out, len(b_est))
  else:
    (ka, na), (kb, nb) = (k_out, len(b_est)), (k_in, len(a_est))
  pa_lb, _ = clopper_pearson(ka, na, alpha / 2)
  _, pb_ub = clopper_pearson(kb, nb, alpha / 2)
  eps = math.log((pa_lb - delta) / pb_ub) if pa_lb > delta else 0.0
  return AuditResult(max(0.0, eps), t, region, order, pa_lb, pb_ub)
