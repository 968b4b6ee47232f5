r"""PAC learning of thresholds when labels come partly from the last model.

The model (arXiv 2601.15468's PAC setting): round k draws n examples
x ~ D; each is labelled by the previous round's classifier f_{k-1} with
probability α and by the true concept f* otherwise; round 0 is labelled by
f* only. The learner is told neither which label is which.

Instance: D uniform on the m atoms {0, ..., m - 1}; hypotheses are the
thresholds h_j(x) = 1[x >= j], j = 0..m (VC dimension 1); f* = h_{j*} with
1 <= j* <= m - 1. Error of h_j: |j - j*| / m. Every learner runs weighted
ERM on all examples of rounds 0..k, ties going to the smallest threshold:

* "erm": every example has weight 1 (provenance-oblivious ERM).
* "reweighted" (ours, in the spirit of the paper's non-ERM learners: it
  knows each example's round, its own past models and α, never which
  examples are synthetic). A label that disagrees with the model that could
  have produced it, y != f_{k-1}(x), must come from f*. Since
  P[y != f_{k-1}(x)] = (1 - α) 1[f*(x) != f_{k-1}(x)], the risk estimate
  with D_hat = 1[y != f_{k-1}(x)] / (1 - α) in place of 1[f* != f_{k-1}] is
  unbiased for the true error of any h; minimising it is weighted ERM with
  weight (1 + α) / (1 - α) on such disagreeing labels and 1 elsewhere.
  At an atom where f_{k-1} is wrong the right label then outweighs the
  wrong one per example, (1 + α) against α, for every α < 1.
* "natural_only": an oracle told each example's provenance that keeps the
  natural ones (reference).

Lower bound for "erm" (our derivation, α > 1/2): if the atom b = j* - 1 is
missed in round 0 (probability (1 - 1/m)^n) then h_0 misclassifies it, and
ERM can only correct it once b's pooled labels have a strict correct
majority. Until then each label at b is correct with probability 1 - α, so
that is a random walk reaching +1, probability (1 - α) / α. Hence, for
every round k, E[error_k] >= (1/m) (1 - 1/m)^n (2α - 1) / α > 0:
repeated ERM does not converge to f*.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cbench._validate import check
from cbench._validate import positive

LEARNERS = ("erm", "reweighted", "natural_only")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PacConfig:
  """Threshold-learning simulation (defaults run in about two seconds).

  Attributes:
    domain_size: m atoms, uniform.
    target: j*, the true threshold (1 <= j* <= m - 1).
    samples_per_generation: n examples per round.
    generations: rounds simulated (round 0 is natural only).
    trials: independent Monte-Carlo runs.
    alphas: contamination levels, each in [0, 1).
  """
  domain_size: int = 50
  target: int = 25
  samples_per_generation: int = 25
  generations: int = 100
  trials: int = 500
  alphas: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9)

  def validate(self) -> None:
    for name in ("samples_per_generation", "generations"):
      positive(f"pac.{name}", getattr(self, name))
    check(self.trials >= 2, f"Expected pac.trials={self.trials} >= 2.")
    check(self.domain_size >= 2,
          f"Expected pac.domain_size={self.domain_size} >= 2.")
    check(1 <= self.target <= self.domain_size - 1,
          f"Expected 1 <= pac.target={self.target} <= "
          f"{self.domain_size - 1}.")
    check(len(self.alphas) >= 1, "Expected at least one pac.alphas value.")
    for a in self.alphas:
      check(0.0 <= a < 1.0, f"Expected 0 <= pac alpha={a} < 1.")


def erm_threshold(w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
  """[trials] smallest j minimising Σ_{x<j} w1[x] + Σ_{x>=j} w0[x].

  Args:
    w0, w1: [trials, m] total weight of label-0 / label-1 examples per atom.
  """
  zero = np.zeros((w0.shape[0], 1))
  c1 = np.concatenate([zero, np.cumsum(w1, axis=1)], axis=1)
  c0 = np.concatenate([zero, np.cumsum(w0, axis=1)], axis=1)
  risk = c1 + (c0[:, -1:] - c0)                         # [trials, m + 1]
  best = risk.min(axis=1, keepdims=True)
  return np.argmax(risk <= best + 1e-9 * (1.0 + np.abs(best)), axis=1)


def reweighted_weights(y: np.ndarray, previous: np.ndarray,
                       alpha: float) -> np.ndarray:
  """Per-example weights of "reweighted": (1 + α) / (1 - α) where y differs
  from the generating model's prediction f_{k-1}(x), else 1.

  For any h, E[w 1[h(x) != y] | x] = α 1[f_{k-1}(x) != f*(x)]
  + 1[h(x) != f*(x)]: the weighted risk is the true risk plus a constant.
  """
  check(0.0 <= alpha < 1.0, f"Expected 0 <= alpha={alpha} < 1.")
  return np.where(np.asarray(y) != np.asarray(previous),
                  (1.0 + alpha) / (1.0 - alpha), 1.0)


def erm_lower_bound(config: PacConfig, alpha: float) -> float:
  """The module docstring's bound on ERM's expected error (0 if α <= 1/2)."""
  m, n = config.domain_size, config.samples_per_generation
  if alpha <= 0.5:
    return 0.0
  return (1.0 / m) * (1.0 - 1.0 / m) ** n * (2 * alpha - 1) / alpha


def simulate(config: PacConfig, alpha: float,
             rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Thresholds [trials, generations] of each learner in `LEARNERS`.

  All learners see the same draws (x, and which labels are synthetic);
  each gets the labels its own previous model would give.
  """
  config.validate()
  check(0.0 <= alpha < 1.0, f"Expected 0 <= alpha={alpha} < 1.")
  m, n, r = config.domain_size, config.samples_per_generation, config.trials
  offset = (np.arange(r) * m)[:, None]
  w0 = {name: np.zeros((r, m)) for name in LEARNERS}
  w1 = {name: np.zeros((r, m)) for name in LEARNERS}
  current = {name: np.zeros(r, np.int64) for name in LEARNERS}
  out = {name: np.empty((r, config.generations), np.int64)
         for name in LEARNERS}
  for k in range(config.generations):
    x = rng.integers(0, m, size=(r, n))
    synthetic = (rng.random((r, n)) < alpha) & (k > 0)
    truth = x >= config.target
    flat = (offset + x).ravel()
    for name in LEARNERS:
      previous = x >= current[name][:, None]       # f_{k-1}(x)
      y = np.where(synthetic, previous, truth)
      if name == "reweighted" and k > 0:   # round 0 is all natural
        weight = reweighted_weights(y, previous, alpha)
      elif name == "natural_only":
        weight = (~synthetic).astype(np.float64)
      else:
        weight = np.ones((r, n))
      w1[name] += np.bincount(flat, (weight * y).ravel(),
                              minlength=r * m).reshape(r, m)
      w0[name] += np.bincount(flat, (weight * ~y).ravel(),
                              minlength=r * m).reshape(r, m)
      current[name] = erm_threshold(w0[name], w1[name])
      out[name][:, k] = current[name]
  return out


def errors(config: PacConfig, thresholds: np.ndarray) -> np.ndarray:
  """Error |j - j*| / m of each threshold (uniform D)."""
  return np.abs(thresholds - config.target) / config.domain_size


def run(config: PacConfig, rng: np.random.Generator) -> dict:
  """Mean error curves (and standard errors) of every learner for every α.

  Returns a JSON-ready dict: ``curves[α][learner]`` = {"mean", "sem"} per
  generation, ``lower_bound[α]`` for ERM.
  """
  config.validate()
  curves, bounds = {}, {}
  for alpha in config.alphas:
    sims = simulate(config, alpha, rng)
    row = {}
    for name in LEARNERS:
      e = errors(config, sims[name])
      row[name] = {"mean": e.mean(0).tolist(),
                   "sem": (e.std(0, ddof=1) / np.sqrt(e.shape[0])).tolist()}
    curves[f"{alpha:g}"] = row
    bounds[f"{alpha:g}"] = erm_lower_bound(config, alpha)
  return {"generations": list(range(config.generations)),
          "samples_seen": [config.samples_per_generation * (k + 1)
                           for k in range(config.generations)],
          "curves": curves, "lower_bound": bounds}
