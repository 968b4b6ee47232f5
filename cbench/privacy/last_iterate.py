"""Last-iterate RDP of cyclic DP-SGD, conditional on stated assumptions.

What is implemented. Kong & Ribero (arXiv 2407.05237) bound the Renyi DP of
the LAST iterate of cyclic, clipped DP-SGD on weakly convex losses; their
exact theorem and constants were not found in any reachable copy
(reference/algorithms.md section 4: NF). This module implements the convex
case their bound is stated to recover (weak convexity -> 0, no active
clipping): privacy amplification by iteration, Feldman, Mironov, Talwar,
Thakurta 2018 (arXiv 1808.06651), Theorem 22 for contractive noisy
iterations (CNI) with Gaussian noise, applied to cyclic multi-epoch DP-SGD
with the optimal choice of the theorem's shifts a_t. Its single-pass
special case is their Theorem 23 (2 alpha L^2 / (sigma^2 (n - t + 1))).

Update (one step t, batch B_t of the cyclic sampler, public normaliser b):
    w <- Pi(w - eta * (grad R(w) + (sum_{i in B_t} clip_C(grad l_i(w))
                                     + N(0, (sigma Delta)^2 I)) / b)),
Delta = sensitivity(C, relation), R a data-independent regulariser, Pi the
identity ('sgd') or the projection onto a fixed convex set
('projected_sgd'), w_0 data-independent, eta constant.

Assumptions (`LastIterateAssumptions`, checked, never implied): every
per-step objective F_t = R + (1/b) sum_{i in B_t} l_i, for the dataset and
for any neighbour, is convex and beta-smooth; eta <= 2 / beta (then
w -> w - eta grad F_t is 1-Lipschitz); every per-example gradient norm is
<= L <= C (clipping never acts, so the step is a gradient step); only the
last iterate is released.

Derivation. In units of eta * Delta / b the noise std is sigma and the two
neighbouring runs' maps differ by at most 1 at the steps that use the
differing record (s_t = 1) and by 0 elsewhere. Theorem 22: for any a_t >= 0
with sum_{i<=t} (s_i - a_i) >= 0 for all t and equality at the end,
    D_alpha(w_T || w'_T) <= sum_t alpha a_t^2 / (2 sigma^2).
For a record in batch j, participating at steps s_1 < ... < s_P (period K)
of S steps, the least sum a_t^2 is the taut string under the staircase:
a_t = 1/K from s_1 through the step before s_P, then 1/(S - s_P) on the
last S - s_P steps, so
    cost_j = (P - 1) / K + 1 / (S - s_P),
    RDP(alpha) = alpha cost_j / (2 sigma^2).
The guarantee is the worst position (the permutation is public): for
S = E K it is the last batch, cost = 1 + (E - 1) / K, against E for all
iterates (`cyclic.py`). A single epoch therefore gains nothing.
(epsilon, delta) comes from the RDP curve by dp_accounting's conversion
(Canonne, Kamath, Steinke 2020, Prop. 12).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np
from dp_accounting.rdp import rdp_privacy_accountant as _rdp_impl

from cbench._validate import CbenchError, check, one_of
from cbench.privacy import cyclic

THEOREM = ("Feldman, Mironov, Talwar, Thakurta 2018 (arXiv 1808.06651), "
           "Theorem 22 (contractive noisy iteration, Gaussian noise), with "
           "the optimal shift allocation for cyclic participation; the "
           "convex, no-active-clipping case of Kong & Ribero (arXiv "
           "2407.05237), whose own constants are not implemented.")
UPDATES = ("sgd", "projected_sgd")
DEFAULT_ORDERS = np.unique(np.concatenate([
    np.linspace(1.02, 2.0, 50), np.geomspace(2.0, 1e6, 400)]))


def _positive_finite(name: str, value) -> None:
  check(isinstance(value, (int, float, np.floating, np.integer))
        and not isinstance(value, bool) and math.isfinite(value)
        and value > 0, f"Expected a finite {name}={value!r} > 0.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LastIterateAssumptions:
  """What the last-iterate bound is conditional on (all stated, checked).

  Attributes:
    convex: every per-step objective F_t (regulariser + batch loss / b, for
      the data and any neighbour) is convex. False is refused: the
      nonconvex bound is not implemented.
    smoothness: beta, a gradient-Lipschitz constant of every F_t (1/param
      units; for logistic loss with ||x|| <= R and L2 weight lam:
      lam + R^2 / 4).
    step_size: eta, the constant step size; must satisfy eta <= 2 / beta.
    lipschitz: L, a bound on every per-example gradient norm.
    clip_norm: C, the clip norm used; must satisfy L <= C.
    update: 'sgd' or 'projected_sgd' (projection onto a fixed convex set
      after each step); no momentum, no adaptive optimiser.
    only_last_iterate_released: must be True (no checkpoint, intermediate
      model or per-step statistic is released).
  """
  convex: bool
  smoothness: float
  step_size: float
  lipschitz: float
  clip_norm: float
  only_last_iterate_released: bool
  update: str = "sgd"

  def __post_init__(self):
    if self.convex is not True:
      raise CbenchError(
          f"convex={self.convex!r}: only the convex last-iterate bound is "
          "implemented (Kong & Ribero's weakly convex bound is not); use "
          "the all-iterates event.")
    if self.only_last_iterate_released is not True:
      raise CbenchError(
          f"only_last_iterate_released={self.only_last_iterate_released!r}:"
          " intermediate iterates are released, so only the all-iterates "
          "event applies.")
    one_of("update", self.update, UPDATES)
    for name in ("smoothness", "step_size", "lipschitz", "clip_norm"):
      _positive_finite(name, getattr(self, name))
    check(self.step_size <= 2.0 / self.smoothness,
          f"step_size={self.step_size} > 2 / smoothness = "
          f"{2.0 / self.smoothness}: the gradient step is not contractive.")
    check(self.lipschitz <= self.clip_norm,
          f"lipschitz={self.lipschitz} > clip_norm={self.clip_norm}: "
          "clipping may act, and a clipped step need not be contractive.")

  def describe(self) -> dict:
    return dataclasses.asdict(self)


def position_costs(steps_per_epoch: int, steps: int) -> np.ndarray:
  """Least sum a_t^2 (Theorem 22, unit shifts) per batch position, (K,).

  Position j participates at steps j, j + K, ... < steps; a position that
  never participates costs 0.
  """
  k = int(steps_per_epoch)
  check(k >= 1, f"Expected steps_per_epoch={steps_per_epoch} >= 1.")
  check(steps >= 0, f"Expected steps={steps} >= 0.")
  j = np.arange(k)
  active = j < steps
  p = np.where(active, (steps - 1 - j) // k + 1, 0)       # participations
  last = j + (p - 1) * k                                   # last step used
  tail = np.where(active, steps - last, 1)                 # steps from it
  return np.where(active, (p - 1) / k + 1.0 / tail, 0.0)


def shift_allocation(steps_per_epoch: int, steps: int,
                     position: int) -> np.ndarray:
  """The a_t (units of one shift) behind `position_costs`, shape (steps,)."""
  k = int(steps_per_epoch)
  check(0 <= position < k,
        f"Expected 0 <= position={position} < steps_per_epoch={k}.")
  a = np.zeros(int(steps))
  if position >= steps:
    return a
  p = (steps - 1 - position) // k + 1
  last = position + (p - 1) * k
  a[position:last] = 1.0 / k
  a[last:] = 1.0 / (steps - last)
  return a


@dataclasses.dataclass(frozen=True)
class LastIterateBound:
  """RDP and (epsilon, delta) of the last iterate, CONDITIONAL on
  `conditional_on` (not a guarantee when any assumption fails).

  Attributes:
    epsilon, delta: the (epsilon, delta) conversion of the RDP curve.
    order: the Renyi order that gives epsilon.
    orders, rdp: the RDP curve, rdp[i] = orders[i] * rho.
    rho: RDP per unit order, cost / (2 sigma^2).
    cost: least sum a_t^2 (Theorem 22) for the worst position.
    worst_position: that batch index (0-based).
    steps: steps accounted.
    plan: the cyclic config (`CyclicConfig.describe()`).
    conditional_on: the assumptions.
    theorem: what was implemented.
  """
  epsilon: float
  delta: float
  order: float
  orders: tuple
  rdp: tuple
  rho: float
  cost: float
  worst_position: int
  steps: int
  plan: dict
  conditional_on: LastIterateAssumptions
  theorem: str = THEOREM

  def rdp_by_order(self) -> dict:
    return dict(zip(self.orders, self.rdp))

  def to_dict(self) -> dict:
    out = dataclasses.asdict(self)
    out["conditional_on"] = self.conditional_on.describe()
    out.pop("orders")
    out.pop("rdp")
    return out


def last_iterate_bound(config: cyclic.CyclicConfig,
                       assumptions: LastIterateAssumptions, delta: float, *,
                       steps: Optional[int] = None,
                       orders: Optional[Sequence[float]] = None
                       ) -> LastIterateBound:
  """Last-iterate RDP and epsilon of `config`'s run under `assumptions`.

  Args:
    config: the cyclic plan (batches per epoch K, sigma, relation, epochs).
    assumptions: checked at construction; recorded in the result.
    delta: target delta in [0, 1).
    steps: steps run (default `config.num_steps`).
    orders: Renyi orders > 1 (default `DEFAULT_ORDERS`).
  """
  check(isinstance(config, cyclic.CyclicConfig),
        f"Expected a CyclicConfig, got {type(config).__name__}.")
  check(isinstance(assumptions, LastIterateAssumptions),
        f"Expected LastIterateAssumptions, got {type(assumptions).__name__}.")
  check(0.0 <= delta < 1.0, f"Expected 0 <= delta={delta} < 1.")
  steps = config.num_steps if steps is None else steps
  check(isinstance(steps, (int, np.integer)) and steps >= 0,
        f"Expected an integer steps={steps} >= 0.")
  orders = np.asarray(DEFAULT_ORDERS if orders is None else orders,
                      np.float64)
  check(orders.ndim == 1 and orders.size > 0 and np.all(orders > 1),
        "Expected a non-empty 1-D array of Renyi orders > 1.")
  costs = position_costs(config.steps_per_epoch, int(steps))
  worst = int(np.argmax(costs))
  cost = float(costs[worst])
  sigma = config.noise_multiplier
  if cost == 0.0:
    rho = 0.0
  elif sigma == 0.0:
    rho = math.inf
  else:
    rho = cost / (2.0 * sigma * sigma)
  rdp = orders * rho if math.isfinite(rho) else np.full_like(orders, np.inf)
  if rho == 0.0:
    eps, order = 0.0, float(orders[0])
  elif math.isinf(rho):
    eps, order = math.inf, float(orders[0])
  else:
    eps, order = _rdp_impl.compute_epsilon(orders, rdp, delta)
  return LastIterateBound(
      epsilon=float(eps), delta=float(delta), order=float(order),
      orders=tuple(float(a) for a in orders),
      rdp=tuple(float(r) for r in rdp), rho=float(rho), cost=cost,
      worst_position=worst, steps=int(steps), plan=config.describe(),
      conditional_on=assumptions)
