"""Privacy accounting through dp_accounting: events, epsilon, calibration.

Every sampler builds its own `DpEvent` (see `sampling.py`); this module turns
events into epsilon under an explicit neighbouring relation.

* PLD (`dp_accounting.pld.PLDAccountant`) is the default; its
  `value_discretization_interval` (vdi) trades time for tightness and is
  pessimistic (an upper bound) at any value.
* RDP is the cross-check. Under ``add_remove`` it is dp_accounting's
  `RdpAccountant`. Under ``replace_one`` dp_accounting's RDP accountant is
  wrong or unavailable (google/differential-privacy#378: it ignores
  REPLACE_ONE's doubled sensitivity for Gaussian events, and it rejects
  Poisson-sampled events), so `rdp_epsilon` uses its own bound:
    - Gaussian, std/C = s, distance 2C: RDP(a) = a * 4 / (2 s^2), exact.
    - Poisson(q)-sampled Gaussian: the weak triangle inequality of Renyi
      divergence (Mironov 2017, Prop. 11, p = 2) through N(0, s^2):
        RDP(a) <= (a - 1/2)/(a - 1) * R(2a) + R(2a - 1),
      with R the add/remove sampled-Gaussian RDP, at integer orders. Loose
      but a valid upper bound.
  Truncated-Poisson events have no RDP cross-check (returns None).

Noise multipliers here are cbench's sigma (std / sensitivity); see
`relations.py` for the conversion to dp_accounting's std / C.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional

import dp_accounting
import numpy as np
from dp_accounting import dp_event as dpe
from dp_accounting import pld
from dp_accounting import rdp
from dp_accounting.rdp import rdp_privacy_accountant as _rdp_impl

from cbench._validate import CbenchError, check, one_of
from cbench.privacy import relations

ACCOUNTANTS = ("pld", "rdp")
DEFAULT_VDI = 1e-4
# Integer orders for the replace-one RDP bound (inner orders 2a and 2a - 1).
_REPLACE_ORDERS = np.array(list(range(2, 65)) + [80, 96, 128, 192, 256],
                           dtype=np.float64)


def _check_prob(q: float) -> None:
  check(q is not None and 0.0 <= q <= 1.0,
        f"Expected 0 <= sampling_prob={q} <= 1.")


def _check_steps(steps: int) -> None:
  check(isinstance(steps, (int, np.integer)) and steps >= 0,
        f"Expected an integer steps={steps} >= 0.")


def _self_compose(event: dpe.DpEvent, steps: int) -> dpe.DpEvent:
  if steps == 0:
    return dpe.NoOpDpEvent()
  return dpe.SelfComposedDpEvent(event, int(steps))


def poisson_event(sampling_prob: float, noise_multiplier: float, steps: int,
                  relation: str) -> dpe.DpEvent:
  """T steps of a Poisson(q)-subsampled Gaussian mechanism."""
  _check_prob(sampling_prob)
  _check_steps(steps)
  nm = relations.event_noise_multiplier(noise_multiplier, relation)
  return _self_compose(
      dpe.PoissonSampledDpEvent(float(sampling_prob), dpe.GaussianDpEvent(nm)),
      steps)


def truncated_poisson_event(num_examples: int, sampling_prob: float,
                            max_batch_size: int, noise_multiplier: float,
                            steps: int, relation: str) -> dpe.DpEvent:
  """T steps of Poisson(q) sampling truncated to `max_batch_size` records.

  `num_examples` must be the public dataset size from the config (never the
  length of a loader).
  """
  _check_prob(sampling_prob)
  _check_steps(steps)
  check(num_examples >= 1, f"Expected num_examples={num_examples} >= 1.")
  check(max_batch_size >= 1, f"Expected max_batch_size={max_batch_size} >= 1.")
  nm = relations.event_noise_multiplier(noise_multiplier, relation)
  return _self_compose(
      dpe.TruncatedSubsampledGaussianDpEvent(
          int(num_examples), float(sampling_prob), int(max_batch_size), nm),
      steps)


def no_amplification_event(noise_multiplier: float, participations: int,
                           relation: str) -> dpe.DpEvent:
  """A record that takes part in `participations` Gaussian steps, no sampling.

  This is the honest event for shuffled or cyclic fixed-size batches: no
  privacy amplification is claimed, and each record is charged once per step
  it can appear in.
  """
  _check_steps(participations)
  nm = relations.event_noise_multiplier(noise_multiplier, relation)
  return _self_compose(dpe.GaussianDpEvent(nm), participations)


def discretization_interval(target_epsilon: float) -> float:
  """PLD value-discretization interval for a run that targets `target_epsilon`.

  `DEFAULT_VDI` up to epsilon = 10, then epsilon * 1e-5, capped at 1e-2.
  PLD's pessimistic discretisation is an upper bound at any interval; its
  slack grows with the interval (about 1e-3 at epsilon = 250 with 1e-2),
  while the PLD's size grows as 1/interval and as 1/sigma^2, so a fixed
  1e-4 makes large-epsilon (small-sigma) calibration need gigabytes. A run
  records the interval in its ledger header and reports with the same one.
  """
  if not math.isfinite(target_epsilon) or target_epsilon <= 10.0:
    return DEFAULT_VDI
  return min(max(DEFAULT_VDI, target_epsilon * 1e-5), 1e-2)


def _pld_accountant(relation: str, vdi: float) -> pld.PLDAccountant:
  return pld.PLDAccountant(relations.to_dp_accounting(relation),
                           value_discretization_interval=vdi)


def epsilon(event: dpe.DpEvent, delta: float, relation: str,
            accountant: str = "pld",
            value_discretization_interval: float = DEFAULT_VDI) -> float:
  """Epsilon at `delta` of `event` under `relation` ('pld' or 'rdp').

  Returns inf for non-private events (sigma = 0).
  """
  one_of("accountant", accountant, ACCOUNTANTS)
  check(0.0 <= delta < 1.0, f"Expected 0 <= delta={delta} < 1.")
  if accountant == "rdp":
    eps = rdp_epsilon(event, delta, relation)
    if eps is None:
      raise CbenchError(
          f"accountant='rdp' does not support {type(event).__name__} under "
          f"relation={relation!r}; use accountant='pld'.")
    return eps
  acc = _pld_accountant(relation, value_discretization_interval)
  try:
    acc.compose(event)
  except dp_accounting.UnsupportedEventError as e:
    raise CbenchError(f"PLD cannot account {event} under {relation!r}: {e}")
  return float(acc.get_epsilon(delta))


def delta(event: dpe.DpEvent, epsilon_value: float, relation: str,
          value_discretization_interval: float = DEFAULT_VDI) -> float:
  """PLD delta at `epsilon_value` (for golden tests and reports)."""
  acc = _pld_accountant(relation, value_discretization_interval)
  acc.compose(event)
  return float(acc.get_delta(epsilon_value))


def _replace_rdp(event: dpe.DpEvent,
                 orders: np.ndarray) -> Optional[np.ndarray]:
  """RDP vector under replace-one, or None where unsupported."""
  if isinstance(event, dpe.NoOpDpEvent):
    return np.zeros_like(orders)
  if isinstance(event, dpe.NonPrivateDpEvent):
    return np.full_like(orders, np.inf)
  if isinstance(event, dpe.SelfComposedDpEvent):
    inner = _replace_rdp(event.event, orders)
    return None if inner is None else event.count * inner
  if isinstance(event, dpe.ComposedDpEvent):
    total = np.zeros_like(orders)
    for e in event.events:
      inner = _replace_rdp(e, orders)
      if inner is None:
        return None
      total = total + inner
    return total
  if isinstance(event, dpe.GaussianDpEvent):
    s = event.noise_multiplier
    if s == 0:
      return np.full_like(orders, np.inf)
    return orders * 4.0 / (2.0 * s * s)
  if (isinstance(event, dpe.PoissonSampledDpEvent)
      and isinstance(event.event, dpe.GaussianDpEvent)):
    q, s = event.sampling_probability, event.event.noise_multiplier
    if q == 0:
      return np.zeros_like(orders)
    if s == 0:
      return np.full_like(orders, np.inf)
    sgm = _rdp_impl._compute_rdp_poisson_subsampled_gaussian  # pylint: disable=protected-access
    r2a, r2a1 = sgm(q, s, 2 * orders), sgm(q, s, 2 * orders - 1)
    return (orders - 0.5) / (orders - 1.0) * np.asarray(r2a) + np.asarray(r2a1)
  return None


def rdp_epsilon(event: dpe.DpEvent, delta: float,
                relation: str) -> Optional[float]:
  """RDP epsilon under `relation`, or None where RDP does not apply."""
  relations.check_relation(relation)
  if relation == "add_remove":
    acc = rdp.RdpAccountant(
        neighboring_relation=relations.to_dp_accounting(relation))
    if not acc.supports(event):
      return None
    acc.compose(event)
    return float(acc.get_epsilon(delta))
  vec = _replace_rdp(event, _REPLACE_ORDERS)
  if vec is None:
    return None
  if np.all(vec == 0):
    return 0.0
  eps, _ = _rdp_impl.compute_epsilon(_REPLACE_ORDERS, vec, delta)
  return float(eps)


class CalibrationTimeout(CbenchError):
  """Noise calibration ran past its time limit (not an infeasible target)."""


def calibrate_noise_multiplier(
    make_event: Callable[[float], dpe.DpEvent], target_epsilon: float,
    delta: float, relation: str, *, time_limit_s: float = 120.0,
    rtol: float = 1e-3,
    value_discretization_interval: float = DEFAULT_VDI,
    max_sigma: float = 1e4) -> float:
  """Smallest sigma found with PLD epsilon(make_event(sigma)) <= target.

  Bracketed bisection in log(sigma) to relative width `rtol`. The returned
  sigma is always one whose epsilon was *computed* to be <= target (never
  undershoots), and it is a deterministic function of the arguments: the
  time limit never shortens the search (a plan must not depend on how busy
  the machine is); exceeding it raises `CbenchError`, as does a target that
  no sigma <= max_sigma meets. `target_epsilon = inf` returns 0.0
  (non-private, same code path).

  Args:
    make_event: sigma (cbench's noise multiplier) -> DpEvent.
    target_epsilon: target epsilon > 0 (or inf).
    delta: target delta.
    relation: neighbouring relation.
    time_limit_s: wall-clock budget in seconds (exceeding it is an error).
    rtol: stop when hi / lo - 1 <= rtol.
    value_discretization_interval: PLD discretisation (use the same value
      when reporting epsilon).
    max_sigma: give up above this sigma.
  """
  check(target_epsilon is not None and target_epsilon > 0,
        f"Expected target_epsilon={target_epsilon} > 0.")
  if math.isinf(target_epsilon):
    return 0.0
  deadline = time.monotonic() + time_limit_s

  def eps_of(sigma: float) -> float:
    return epsilon(make_event(sigma), delta, relation, "pld",
                   value_discretization_interval)

  def check_time() -> None:
    if time.monotonic() > deadline:
      raise CalibrationTimeout(
          f"Noise calibration for epsilon={target_epsilon} at delta="
          f"{delta:.3g} did not finish within {time_limit_s}s; raise the "
          f"time limit (option calibration_seconds).")

  hi = 1.0
  while eps_of(hi) > target_epsilon:
    hi *= 2.0
    check(hi <= max_sigma,
          f"Cannot reach epsilon={target_epsilon} at delta={delta} with "
          f"noise_multiplier <= {max_sigma}.")
    check_time()

  lo = hi / 2.0
  while eps_of(lo) <= target_epsilon:
    hi, lo = lo, lo / 2.0
    if lo < 1e-6:
      return hi
    check_time()
  # Invariant: eps(lo) > target >= eps(hi).
  while hi / lo - 1.0 > rtol:
    check_time()
    mid = math.sqrt(lo * hi)
    if eps_of(mid) <= target_epsilon:
      hi = mid
    else:
      lo = mid
  return hi


def event_to_dict(event: dpe.DpEvent) -> dict:
  """JSON-able dict of a dp_accounting event (inverse: `event_from_dict`)."""
  return _nt_to_json(event.to_named_tuple())


def _nt_to_json(value):
  if hasattr(value, "_fields") and "class_name" in value._fields:
    out = {"class_name": value.class_name}
    for k in value._fields:
      if k not in ("module_name", "class_name"):
        out[k] = _nt_to_json(getattr(value, k))
    return out
  if isinstance(value, (list, tuple)):
    return [_nt_to_json(v) for v in value]
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating,)):
    return float(value)
  return value


def event_from_dict(d: dict) -> dpe.DpEvent:
  """Rebuilds a `DpEvent` from `event_to_dict` output (dp_event only)."""
  if not isinstance(d, dict) or "class_name" not in d:
    raise CbenchError(f"Not a serialised DpEvent: {d!r}")
  name = d["class_name"]
  cls = getattr(dpe, name, None)
  if not (isinstance(cls, type) and issubclass(cls, dpe.DpEvent)):
    raise CbenchError(f"Unknown DpEvent class {name!r}.")
  kwargs = {}
  for k, v in d.items():
    if k == "class_name":
      continue
    if isinstance(v, dict) and "class_name" in v:
      v = event_from_dict(v)
    elif isinstance(v, list):
      v = [event_from_dict(x) if isinstance(x, dict) else x for x in v]
    kwargs[k] = v
  try:
    return cls(**kwargs)
  except TypeError as e:
    raise CbenchError(f"Bad fields for {name}: {e}") from e
