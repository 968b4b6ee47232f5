"""Privacy auditing with one training run (Steinke, Nasr, Jagielski 2023).

m canaries, each included in the training data independently with
probability 1/2 (S_i in {-1, +1}); after ONE run the auditor scores every
canary and guesses: +1 ("in") for the k_pos highest scores, -1 ("out") for
the k_neg lowest, and abstains on the rest. If the run is (eps, delta)-DP,
the number W of correct guesses among the r = k_pos + k_neg made satisfies
(arXiv 2305.08846, Theorem 3.1 / Proposition 5.2)

    P[W >= v] <= P[Binomial(r, p) >= v] + 2 m delta * a(v),
    p = e^eps / (1 + e^eps),
    a(v) = max_{1 <= i <= v} P[v - i <= Binomial(r, p) < v] / i.

`epsilon_lower_bound` returns the largest eps that this rejects at
confidence 1 - alpha, i.e. a valid lower bound on the true eps with
probability >= 1 - alpha over the canaries' coins and the run's noise. With
several (k_pos, k_neg) choices the bound is taken at alpha / (number of
choices) for each (Bonferroni), so choosing the best one after seeing the
scores keeps the guarantee.

Ceiling: even perfect guessing certifies only about ln(r / ln(1/alpha));
`ceiling` gives the exact value, to print beside every result (an audit
that reaches it is limited by m, not by the mechanism).

Host NumPy/SciPy; no private data passes through here (only canary scores,
which the auditor owns).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats

from cbench._validate import check

# Default guess sizes: top-k "in" guesses only, and k "in" + k "out".
DEFAULT_GUESSES = tuple((k, 0) for k in (8, 16, 32, 64, 128, 256)) + tuple(
    (k, k) for k in (8, 16, 32, 64, 128, 256))


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
  """P[W >= v] bound for an (epsilon, delta)-DP run (module docstring)."""
  check(0 <= v <= r <= m, f"Expected 0 <= v={v} <= r={r} <= m={m}.")
  check(epsilon >= 0 and 0 <= delta <= 1,
        f"Expected epsilon={epsilon} >= 0 and 0 <= delta={delta} <= 1.")
  p = 1.0 / (1.0 + math.exp(-epsilon))
  beta = float(stats.binom.sf(v - 1, r, p))        # P[Bin >= v]
  if delta == 0 or v == 0:
    return min(1.0, beta)
  pmf = stats.binom.pmf(v - np.arange(1, v + 1), r, p)  # P[Bin = v - i]
  a = float(np.max(np.cumsum(pmf) / np.arange(1, v + 1)))
  return min(1.0, beta + 2.0 * m * delta * a)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float,
                        alpha: float = 0.05, hi: float = 50.0) -> float:
  """Largest eps with p_value(m, r, v, eps, delta) <= alpha (0 if none).

  p_value increases with eps, so bisection finds the boundary (to 1e-6).
  """
  check(0 < alpha < 1, f"Expected 0 < alpha={alpha} < 1.")
  if r == 0 or p_value(m, r, v, 0.0, delta) > alpha:
    return 0.0
  lo = 0.0
  if p_value(m, r, v, hi, delta) <= alpha:
    return hi
  while hi - lo > 1e-6:
    mid = 0.5 * (lo + hi)
    if p_value(m, r, v, mid, delta) <= alpha:
      lo = mid
    else:
      hi = mid
  return lo


def ceiling(m: int, r: int, delta: float, alpha: float = 0.05) -> float:
  """The bound when all r guesses are correct: the most m canaries show."""
  return epsilon_lower_bound(m, r, r, delta, alpha)


@dataclasses.dataclass(frozen=True)
class OneRunResult:
  """One audit's outcome (JSON-ready via `to_dict`).

  Attributes:
    epsilon_lb: the lower bound at confidence 1 - alpha (Bonferroni over
      the guess choices).
    k_pos, k_neg: the guess sizes that gave it.
    guesses: r = k_pos + k_neg; correct: v.
    ceiling: the best bound any of the guess choices could have given
      (all its guesses correct): what m canaries can show at most.
    m: canaries; included: how many were in (the coins).
    delta, alpha: of the bound.
  """
  epsilon_lb: float
  k_pos: int
  k_neg: int
  guesses: int
  correct: int
  ceiling: float
  m: int
  included: int
  delta: float
  alpha: float

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def count_correct(scores: np.ndarray, included: np.ndarray, k_pos: int,
                  k_neg: int) -> tuple[int, int]:
  """(r, v): guesses and correct guesses for top-k_pos in / bottom-k_neg out.

  Ties are broken by canary index (a fixed, score-independent order).
  """
  order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
  pos, neg = order[:k_pos], order[len(order) - k_neg:] if k_neg else order[:0]
  inc = np.asarray(included, bool)
  return k_pos + k_neg, int(inc[pos].sum() + (~inc[neg]).sum())


def audit(scores: Sequence[float], included: Sequence[bool], delta: float,
          alpha: float = 0.05,
          guesses: Sequence[tuple[int, int]] = DEFAULT_GUESSES
          ) -> OneRunResult:
  """Best (Bonferroni-corrected) one-run bound over `guesses`.

  Args:
    scores: [m] attack scores, higher = "more likely included".
    included: [m] the coins (True: the canary was in the training data).
    delta: the delta of the claim being audited.
    alpha: total failure probability.
    guesses: (k_pos, k_neg) choices, fixed BEFORE looking at the scores;
      those with k_pos + k_neg > m are skipped.
  """
  s = np.asarray(scores, np.float64).ravel()
  inc = np.asarray(included, bool).ravel()
  m = len(s)
  check(m == len(inc) and m >= 2,
        f"Expected as many coins as scores (>= 2); got {m} and {len(inc)}.")
  check(np.all(np.isfinite(s)), "Canary scores must be finite.")
  choices = [(kp, kn) for kp, kn in guesses if 0 < kp + kn <= m]
  check(bool(choices), f"No guess size fits m={m} canaries.")
  a = alpha / len(choices)
  best = None
  for kp, kn in choices:
    r, v = count_correct(s, inc, kp, kn)
    eps = epsilon_lower_bound(m, r, v, delta, a)
    if best is None or eps > best[0]:
      best = (eps, kp, kn, r, v)
  eps, kp, kn, r, v = best
  top = max(ceiling(m, kp_ + kn_, delta, a) for kp_, kn_ in choices)
  return OneRunResult(epsilon_lb=eps, k_pos=kp, k_neg=kn, guesses=r,
                      correct=v, ceiling=top, m=m,
                      included=int(inc.sum()), delta=delta, alpha=alpha)
