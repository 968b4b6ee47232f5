"""Accounting of private prediction (Amin et al. 2024), InvisibleInk and the
clustered median, in zero-concentrated DP (zCDP).

Neighbouring relation (how one record changes one batch)
-------------------------------------------------------
Records are split into fixed disjoint batches of s rows by a keyed hash
(`cbench.synthesis.batching`); each batch yields its documents, so batches
compose in parallel (the dataset's cost is the MAX over batches, not the
sum). Inside a batch the aggregation divides the SUM of clipped rows by the
public constant s. Let f be the number of "row units" one neighbour changes:

* ``zero_out`` (f = 1; the relation of Amin et al. 2024, Thm. 1, as coded
  in both public reproductions): the record keeps its id, hence its batch
  and row, and its content becomes the null record whose row contributes
  the zero vector (a masked row in `cbench.synthesis.aggregation`). A
  recentred-clipped row lies in [-c, c]^V, so the mean moves by <= c/s.
  For InvisibleInk's DClip the null row can also be the public prompt
  itself (it contributes clip(pub - pub) = 0).
* ``replace_one`` (f = 2): one row is replaced by another row; the mean
  moves by <= 2c/s. Under keyed-hash batching the arriving record has its
  own id, so a replacement changes one row in each of up to TWO batches;
  the methods charge each round for both (`Plan.batches_per_neighbour`). InvisibleInk (Vinod et al. 2025) remarks the same
  doubling for replace-by-null when the null row is itself a clipped
  prompt (e.g. the public prompt under recentred clipping).
* ``add_remove`` (f = 2 here): our batching has a fixed capacity of s
  rows, filled in keyed-hash order. Adding a record to a bucket with free
  rows turns a padding row into the record's row; adding it to a full
  bucket may push out the s-th record. Either is at most one row replaced
  (padding rows, which the synthesis pipeline fills with the public prompt
  because the shared decoder cannot pass a row mask, are themselves clipped
  prompts), so add/remove is charged like replace_one. Charging c/s here would be wrong unless padding rows are
  masked to null AND no bucket can overflow.

Mechanisms and their per-token cost (Delta = f c / s)
----------------------------------------------------
* Exponential mechanism on the clipped mean, sampled from softmax(mean/tau):
  the utility difference d = (mean - mean')/tau has range <= 2 Delta/tau,
  so each token is pure eps_em = 2 Delta / tau = 2 f c/(s tau) and
  bounded-range, hence rho_em = eps_em^2 / 8 = (1/2)(f c/(s tau))^2
  (Cesar & Rogers 2021). With f = 1 this is the reference's (1/2)(c/(s tau))^2.
* Sparse vector (AboveThreshold, Lyu et al. 2017 Alg. 1, as the sampler
  implements it): threshold noise Lap(sigma), query noise Lap(2 sigma),
  query d = ||p-bar - softmax(z_pub)||_1 with sensitivity Delta_q = f/s.
  One instance (run until its first "above") is
  eps_svt = Delta_q/sigma + 2 Delta_q/(2 sigma) = 2 f/(s sigma), and pure
  eps-DP implies eps^2/2-zCDP, so rho_svt = 2 f^2/(s sigma)^2 (the
  reference's 2/(s sigma)^2 at f = 1). The threshold is re-noised after every
  private token, so a document with r private tokens runs at most r
  instances: r - 1 complete ones plus a final one that either ends in the
  r-th above or is cut short by EOS/max length (a prefix of an instance
  costs no more than the instance).
* Per document: rho = r (rho_em + rho_svt), whatever the realised count
  (the count is data-dependent and never used to lower the charge).
* InvisibleInk: every one of the T generated tokens is an exponential
  mechanism on DClip with Delta = f C/B, so rho = T (1/2)(f C/(B tau))^2 =
  T f^2 C^2/(2 B^2 tau^2), its paper's C^2 T/(2 B^2 tau^2) at f = 1. The Top-k+
  set is computed from public logits only and costs nothing. T is the
  maximum length (ex ante), not the realised length.
* Median (worst case): the lower median of values in [-c, c] moves by at
  most 2c when any one row changes, whatever f, so d has range <= 4c/tau:
  eps_w = 4c/tau per token (pure) and rho_w = T (4c/tau)^2/8 = 2 T (c/tau)^2.
  The median has no 1/s benefit in the worst case.
* Median (EX POST, data-dependent; Ligett et al. 2017's ex-post privacy
  loss): given the realised prefix, a one-row change moves coordinate j of
  the median down by at most down_j = x_(k) - x_(k-1) and up by at most
  up_j = x_(k+1) - x_(k) (order statistics of the clipped rows, boundary
  -c / c). Then every token's log-probability ratio is bounded by
  eps_t = (max_j down_j + max_j up_j)/tau, and the realised privacy loss of
  the whole document is at most sum_t eps_t (pure, summed over the tokens
  the stream actually produced). This is a statement about THIS output on
  THIS dataset, not a DP guarantee; it is itself a function of the private
  data. It lives only in the median sampler's state and the run's
  curator-only file, never in `rho`, an event or a reported epsilon. It is
  <= the worst-case pure eps (gaps <= 2c) and 0 where >= 3 rows agree
  around the median.

(eps, delta) conversion
-----------------------
Tight: Canonne, Kamath & Steinke (2020), Prop. 12:
  delta(eps) = inf_{a > 1} exp((a-1)(a rho - eps)) / (a-1) * (1 - 1/a)^a,
any a giving a valid (pessimistic) delta; eps(delta) is found by bisection
ending on the safe side. The closed form eps = rho + 2 sqrt(rho ln(1/delta))
is kept for cross-checking (tight <= closed form). These conversions serve
the parameter rules and their tests; a run's reported epsilon is always the
ledger's composition of the `zcdp_event`s it charged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Optional

import dp_accounting
import numpy as np

from cbench._validate import CbenchError, check, one_of, positive
from cbench.privacy import gumbel

RELATION_FACTOR = {"zero_out": 1, "replace_one": 2, "add_remove": 2}
METHODS = ("private_prediction", "invisible_ink", "cluster_median",
           "public_only")


def relation_factor(relation: str) -> int:
  """f: row units one neighbour changes (see module docstring)."""
  one_of("relation", relation, tuple(RELATION_FACTOR))
  return RELATION_FACTOR[relation]


# ---------------------------------------------------------------------------
# zCDP -> (eps, delta)


def _log_delta_at(rho: float, eps: float, alpha: float) -> float:
  return ((alpha - 1.0) * (alpha * rho - eps) - math.log(alpha - 1.0)
          + alpha * math.log1p(-1.0 / alpha))


def zcdp_delta(rho: float, eps: float) -> float:
  """Smallest delta (CKS 2020) such that rho-zCDP gives (eps, delta)-DP."""
  check(rho >= 0 and eps >= 0, f"Expected rho={rho} >= 0 and eps={eps} >= 0.")
  if rho == 0:
    return 0.0
  if math.isinf(rho):
    return 1.0
  # d/da log delta = (2a - 1) rho - eps + log(1 - 1/a): increasing in a.
  lo, hi = 1.0 + 1e-12, max(2.0, (eps + 1.0) / (2.0 * rho) + 2.0)
  for _ in range(200):
    mid = 0.5 * (lo + hi)
    if (2 * mid - 1) * rho - eps + math.log1p(-1.0 / mid) < 0:
      lo = mid
    else:
      hi = mid
  best = min(_log_delta_at(rho, eps, a) for a in (lo, hi))
  return min(1.0, math.exp(best)) if best < 700 else 1.0


def zcdp_epsilon_closed_form(rho: float, delta: float) -> float:
  """``rho + 2 sqrt(rho ln(1/delta))`` (Bun & Steinke 2016, Prop. 1.3)."""
  _check_delta(delta)
  if rho == 0:
    return 0.0
  return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


def zcdp_epsilon(rho: float, delta: float) -> float:
  """Tight eps for rho-zCDP at delta (CKS bisection; rounded up)."""
  _check_delta(delta)
  check(rho >= 0, f"Expected rho={rho} >= 0.")
  if rho == 0:
    return 0.0
  if math.isinf(rho):
    return math.inf
  lo, hi = 0.0, zcdp_epsilon_closed_form(rho, delta)
  if zcdp_delta(rho, hi) > delta:  # numerically never; stay safe anyway.
    return hi
  for _ in range(100):
    mid = 0.5 * (lo + hi)
    if zcdp_delta(rho, mid) <= delta:
      hi = mid
    else:
      lo = mid
  return hi


def rho_for_epsilon(epsilon: float, delta: float) -> float:
  """Largest rho whose tight (eps, delta) conversion is <= `epsilon`."""
  _check_delta(delta)
  positive("epsilon", epsilon)
  if math.isinf(epsilon):
    return math.inf
  lo, hi = 0.0, epsilon + 1.0
  while zcdp_delta(hi, epsilon) <= delta:
    hi *= 2.0
  for _ in range(100):
    mid = 0.5 * (lo + hi)
    if zcdp_delta(mid, epsilon) <= delta:
      lo = mid
    else:
      hi = mid
  return lo


def _check_delta(delta: float) -> None:
  check(delta is not None and 0 < delta < 1,
        f"Expected 0 < delta={delta} < 1.")


def zcdp_event(rho: float) -> dp_accounting.DpEvent:
  """``ZCDpEvent(rho)``, or ``NoOpDpEvent`` at rho = 0."""
  check(rho >= 0, f"Expected rho={rho} >= 0.")
  if rho == 0:
    return dp_accounting.NoOpDpEvent()
  return dp_accounting.ZCDpEvent(float(rho))


def parallel_event(batch_rhos: Iterable[float]) -> dp_accounting.DpEvent:
  """Disjoint batches compose in parallel: the MAX of their rho."""
  rhos = [float(r) for r in batch_rhos]
  return zcdp_event(max(rhos) if rhos else 0.0)


# ---------------------------------------------------------------------------
# Per-token costs


def _check_common(batch_size: int, clip: float, temperature: float) -> None:
  check(isinstance(batch_size, (int, np.integer)) and batch_size >= 1,
        f"Expected an integer batch_size={batch_size} >= 1.")
  positive("clip", clip)
  positive("temperature", temperature)


def em_pure_epsilon(clip: float, temperature: float, batch_size: int,
                    relation: str) -> float:
  """Pure eps of one exponential-mechanism token: 2 f c/(s tau)."""
  _check_common(batch_size, clip, temperature)
  return 2.0 * relation_factor(relation) * clip / (batch_size * temperature)


def em_rho(clip: float, temperature: float, batch_size: int,
           relation: str) -> float:
  """zCDP of one EM token (bounded range): (1/2)(f c/(s tau))^2."""
  return em_pure_epsilon(clip, temperature, batch_size, relation) ** 2 / 8.0


def svt_pure_epsilon(svt_noise: float, batch_size: int,
                     relation: str) -> float:
  """Pure eps of one AboveThreshold instance: 2 f/(s sigma)."""
  positive("svt_noise", svt_noise)
  return 2.0 * relation_factor(relation) / (batch_size * svt_noise)


def svt_rho(svt_noise: float, batch_size: int, relation: str) -> float:
  """zCDP of one SVT instance: eps^2/2 = 2 f^2/(s sigma)^2."""
  return svt_pure_epsilon(svt_noise, batch_size, relation) ** 2 / 2.0


# ---------------------------------------------------------------------------
# Parameters


@dataclasses.dataclass(frozen=True)
class PrivatePredictionParams:
  """Parameters of Amin et al.'s private prediction (one document).

  Attributes:
    batch_size: s, private prompts per document (public divisor).
    clip: c, recentred-clip bound in nats (inf: non-private).
    temperature: tau of the private exponential mechanism.
    svt_noise: sigma, Laplace scale of the threshold (queries get 2 sigma);
      None disables the SVT (every token private).
    threshold: theta, in L1 distance units (0..2).
    max_private_tokens: r, private tokens per document (stream stops there).
    public_temperature: tau_pub of the free public tokens.
    relation: 'add_remove' | 'replace_one' | 'zero_out'.
  """

  batch_size: int
  clip: float
  temperature: float
  svt_noise: Optional[float]
  threshold: float
  max_private_tokens: int
  public_temperature: float = 1.0
  relation: str = "add_remove"

  def __post_init__(self):
    check(self.batch_size >= 1, f"Expected batch_size={self.batch_size} >= 1.")
    positive("clip", self.clip)
    positive("temperature", self.temperature)
    positive("public_temperature", self.public_temperature)
    check(self.svt_noise is None or self.svt_noise > 0,
          f"Expected svt_noise={self.svt_noise} > 0 (None disables the SVT).")
    check(self.max_private_tokens >= 1,
          f"Expected max_private_tokens={self.max_private_tokens} >= 1.")
    relation_factor(self.relation)

  @property
  def private(self) -> bool:
    return math.isfinite(self.clip)

  def rho_per_token(self) -> float:
    if not self.private:
      return math.inf
    rho = em_rho(self.clip, self.temperature, self.batch_size, self.relation)
    if self.svt_noise is not None:
      rho += svt_rho(self.svt_noise, self.batch_size, self.relation)
    return rho

  def rho_per_document(self) -> float:
    return self.max_private_tokens * self.rho_per_token()

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _check_docs(docs_per_batch: int) -> None:
  check(isinstance(docs_per_batch, (int, np.integer)) and docs_per_batch >= 1,
        f"Expected an integer docs_per_batch={docs_per_batch} >= 1.")


# Release costs. These return rho only: a method turns rho into the
# `zcdp_event` its ledger charges, and every reported epsilon is the ledger's
# composition of those events (there is no second route to epsilon here).


def private_prediction_rho(params: PrivatePredictionParams,
                           docs_per_batch: int = 1) -> float:
  """Worst-case zCDP rho of private prediction over disjoint batches.

  Each batch yields `docs_per_batch` documents (sequential composition inside
  a batch); batches compose in parallel (max), so the release costs
  ``docs_per_batch * r * (rho_em + rho_svt)``; inf when not private.
  """
  _check_docs(docs_per_batch)
  return docs_per_batch * params.rho_per_document()


def invisible_ink_rho(clip: float, temperature: float, batch_size: int,
                      max_tokens: int, relation: str,
                      docs_per_batch: int = 1) -> float:
  """InvisibleInk: rho = docs * T * (1/2)(f C/(B tau))^2 (T = max length)."""
  _check_docs(docs_per_batch)
  check(max_tokens >= 1, f"Expected max_tokens={max_tokens} >= 1.")
  if math.isinf(clip):
    return math.inf
  return docs_per_batch * max_tokens * em_rho(clip, temperature, batch_size,
                                              relation)


def median_worst_case_pure_epsilon(clip: float, temperature: float) -> float:
  """Worst-case pure eps of one median token: 4c/tau (any relation)."""
  positive("clip", clip)
  positive("temperature", temperature)
  return 4.0 * clip / temperature


def median_token_expost_epsilon(down_max: np.ndarray, up_max: np.ndarray,
                                temperature: float) -> np.ndarray:
  """Ex-post per-token bound (max_j down_j + max_j up_j)/tau (docstring).

  A function of the private data: curator-only, never released un-noised.
  """
  return (np.asarray(down_max) + np.asarray(up_max)) / temperature


def median_rho(clip: float, temperature: float, max_tokens: int,
               docs_per_batch: int = 1) -> float:
  """Clustered median, worst case: rho = docs * T * (4c/tau)^2 / 8.

  The bound holds for every relation (the median moves by <= 2c whatever one
  row does) and does not improve with the batch size.
  """
  _check_docs(docs_per_batch)
  check(max_tokens >= 1, f"Expected max_tokens={max_tokens} >= 1.")
  if math.isinf(clip):
    return math.inf
  eps_tok = median_worst_case_pure_epsilon(clip, temperature)
  return docs_per_batch * max_tokens * eps_tok ** 2 / 8.0


# ---------------------------------------------------------------------------
# Parameter rules


def derive_parameters(target_epsilon: float, delta: float, batch_size: int,
                      max_private_tokens: int, *,
                      relation: str = "add_remove", clip: float = 10.0,
                      svt_share: Optional[float] = 0.5,
                      threshold: float = 0.5,
                      public_temperature: float = 1.0,
                      min_temperature: float = 0.5,
                      max_temperature: float = 2.0,
                      vocab_size: Optional[int] = None
                      ) -> PrivatePredictionParams:
  """Private-prediction parameters whose eps never exceeds the target.

  The rule (c, theta, tau_pub and the SVT share are public choices):

  1. rho* = the largest rho whose tight conversion at `delta` is <= target,
     shrunk by 1e-9 (relative) against rounding.
  2. r = `max_private_tokens`; per token rho_tok = rho*/r, split into
     rho_svt = share * rho_tok and rho_em = (1 - share) * rho_tok
     (share = 0, i.e. `svt_share=None`, disables the SVT).
  3. sigma = f sqrt(2/rho_svt)/s and tau = f c/(s sqrt(2 rho_em)), inverting
     `svt_rho` and `em_rho`.
  4. If tau > `max_temperature` (text would be near uniform), lower r to the
     largest value for which tau <= max_temperature (tau then recomputed);
     if even r = 1 does not fit, raise `CbenchError` (infeasible).
  5. tau = max(tau, min_temperature, exactness bound 2c/R_max(V) when
     `vocab_size` is given); raising tau only lowers the cost.
  6. The resulting rho's tight conversion is checked <= target.

  ``target_epsilon = inf`` returns the non-private setting (c = inf, no
  SVT, tau = max(1, min_temperature)): mean of recentred logits.
  """
  _check_delta(delta)
  positive("target_epsilon", target_epsilon)
  check(isinstance(batch_size, (int, np.integer)) and batch_size >= 1,
        f"Expected an integer batch_size={batch_size} >= 1.")
  check(max_private_tokens >= 1,
        f"Expected max_private_tokens={max_private_tokens} >= 1.")
  check(0 < min_temperature <= max_temperature,
        f"Expected 0 < min_temperature={min_temperature} <= "
        f"max_temperature={max_temperature}.")
  f = relation_factor(relation)
  if math.isinf(target_epsilon):
    return PrivatePredictionParams(
        batch_size=batch_size, clip=math.inf,
        temperature=max(1.0, min_temperature), svt_noise=None,
        threshold=threshold, max_private_tokens=max_private_tokens,
        public_temperature=public_temperature, relation=relation)
  positive("clip", clip)
  share = 0.0 if svt_share is None else float(svt_share)
  check(0.0 <= share < 1.0, f"Expected 0 <= svt_share={svt_share} < 1.")
  rho_star = rho_for_epsilon(target_epsilon, delta) * (1.0 - 1e-9)
  s = batch_size

  def tau_for(r: int) -> float:
    return f * clip / (s * math.sqrt(2.0 * (1.0 - share) * rho_star / r))

  r = max_private_tokens
  if tau_for(r) > max_temperature:
    # tau_for(r) <= tmax  <=>  r <= 2 (1 - share) rho* (s tmax/(f c))^2.
    r = int(math.floor(2.0 * (1.0 - share) * rho_star
                       * (s * max_temperature / (f * clip)) ** 2))
    while r >= 1 and tau_for(r) > max_temperature:
      r -= 1
    if r < 1:
      raise CbenchError(
          f"Infeasible: epsilon={target_epsilon} (delta={delta}) cannot pay "
          f"one private token with batch_size={s}, clip={clip}, "
          f"max_temperature={max_temperature}, relation={relation}; raise "
          f"epsilon or batch_size, or lower clip.")
  tau = max(tau_for(r), min_temperature)
  if vocab_size is not None:
    tau = max(tau, 2.0 * clip / gumbel.max_exact_range(vocab_size))
  sigma = None
  if share > 0:
    sigma = f * math.sqrt(2.0 / (share * rho_star / r)) / s
  params = PrivatePredictionParams(
      batch_size=s, clip=float(clip), temperature=float(tau),
      svt_noise=sigma, threshold=threshold, max_private_tokens=int(r),
      public_temperature=public_temperature, relation=relation)
  eps = zcdp_epsilon(private_prediction_rho(params), delta)
  if eps > target_epsilon:
    raise AssertionError(
        f"derive_parameters: eps={eps} > target {target_epsilon}; {params}")
  return params


def derive_invisible_ink_clip(target_epsilon: float, delta: float,
                              batch_size: int, max_tokens: int,
                              temperature: float,
                              relation: str = "add_remove") -> float:
  """InvisibleInk's C = B tau sqrt(2 rho*/T)/f (rho* as in the rule above)."""
  positive("temperature", temperature)
  if math.isinf(target_epsilon):
    return math.inf
  rho_star = rho_for_epsilon(target_epsilon, delta) * (1.0 - 1e-9)
  f = relation_factor(relation)
  return batch_size * temperature * math.sqrt(2.0 * rho_star
                                              / max_tokens) / f


def derive_median_clip(target_epsilon: float, delta: float, max_tokens: int,
                       temperature: float) -> float:
  """Median clip c whose WORST-CASE eps <= target: c = tau sqrt(rho*/(2T))."""
  positive("temperature", temperature)
  if math.isinf(target_epsilon):
    return math.inf
  rho_star = rho_for_epsilon(target_epsilon, delta) * (1.0 - 1e-9)
  return temperature * math.sqrt(rho_star / (2.0 * max_tokens))


def rdp_epsilon(event: dp_accounting.DpEvent, delta: float) -> float:
  """eps of any composed event (e.g. DP cluster counts + synthesis) by RDP.

  dp_accounting's RDP conversion evaluates the same CKS-style bound on a
  grid of orders, so for a lone ZCDpEvent it is >= `zcdp_epsilon`.
  """
  _check_delta(delta)
  orders = np.concatenate([np.linspace(1.01, 10, 200),
                           np.geomspace(10.5, 1e4, 200)])
  acc = dp_accounting.rdp.RdpAccountant(orders=list(orders))
  acc.compose(event)
  return float(acc.get_epsilon(delta))
