r"""Mean estimation when each generation's data is part synthetic.

The model (Amin, Bie, Kong, Syed, Vassilvitskii 2026, arXiv 2601.15468; its
round-t average is X_t = α Y_{t-1} + (1 - α) μ + U_t):

* generation k = 0, 1, ..., T - 1 brings n fresh examples in R^d;
* generation 0 is natural: n draws from N(μ, I);
* generation k >= 1: n - s natural draws from N(μ, I) and s = α n synthetic
  draws from the previous generation's model N(Y_{k-1}, I), where Y_{k-1} is
  the learner's own estimate after generation k - 1 (α n must be an integer:
  the synthetic fraction is exact, not Binomial);
* the learner knows which generation an example came from, never whether it
  is synthetic. Generation k's mean is X_k = (1-α) μ + α Y_{k-1} + U_k with
  independent U_k ~ N(0, I / n).

Estimators are fixed linear combinations Y_k = Σ_{j<=k} W[k, j] X_j whose
rows sum to one (unbiased: every E X_j = μ):

* ERM (`erm_weights`): the pooled mean of all n (k + 1) examples seen,
  W[k, j] = 1 / (k + 1): squared-loss ERM, oblivious to provenance.
* Generation-weighted (`weighted_weights`): our derivation of the best
  linear unbiased estimator (the paper's own weights were not available to
  us). Z_0 = X_0 and Z_k = (X_k - α Y_{k-1}) / (1 - α) = μ + U_k / (1 - α)
  are independent, so Y_k is their inverse-variance mean,
  Y_k = (Z_0 + (1-α)² Σ_{1<=j<=k} Z_j) / (1 + k (1-α)²), with
  MSE_k = d / (n (1 + k (1-α)²)). The X_j and Z_j determine each other
  (triangular map), so no linear unbiased estimator does better at any
  generation. It needs α and its own past estimates; the weights it puts on
  the X_j are non-uniform (and can be negative).

MSE is E ||Y_k - μ||², summed over the d coordinates. ERM's error obeys
e_t = ((t - 1 + α) / t) e_{t-1} + U_t / t (t = k + 1), so (`erm_mse`) its
MSE ~ d / (n t (1 - 2α)) for α < 1/2, ~ d log t / (n t) at α = 1/2 and
~ C t^{-2(1-α)} above: the decay exponent min(1, 2 (1 - α)) changes regime
at α = 1/2 (the paper's variance phase transition), while the weighted
estimator keeps the 1/t rate for every α < 1.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import special

from cbench._validate import check
from cbench._validate import positive


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeanConfig:
  """Mean-estimation simulation (defaults run in about a second).

  Attributes:
    dim: d, the dimension.
    samples_per_generation: n, examples per generation.
    generations: T, generations simulated (0 is natural only).
    trials: independent Monte-Carlo runs.
    alphas: contamination levels simulated (α n must be an integer).
    regime_alphas: α grid for the exact ERM decay exponent.
    regime_generations: horizons T; at each, the exponent is fitted over t
      in [T/10, T] and α* located (it creeps up to 1/2 as T grows).
  """
  dim: int = 4
  samples_per_generation: int = 20
  generations: int = 200
  trials: int = 1000
  alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9)
  regime_alphas: tuple[float, ...] = tuple(round(0.05 * i, 2)
                                           for i in range(20))
  regime_generations: tuple[int, ...] = (1_000, 10_000, 100_000,
                                          1_000_000)

  def validate(self) -> None:
    for name in ("dim", "samples_per_generation", "generations"):
      positive(f"mean.{name}", getattr(self, name))
    check(self.trials >= 2, f"Expected mean.trials={self.trials} >= 2.")
    check(len(self.regime_generations) >= 1
          and min(self.regime_generations) >= 100,
          f"Expected mean.regime_generations={self.regime_generations} "
          "all >= 100.")
    check(len(self.alphas) >= 1 and len(self.regime_alphas) >= 3,
          "Expected >= 1 mean.alphas and >= 3 mean.regime_alphas.")
    for a in self.alphas:
      synthetic_count(a, self.samples_per_generation)
    for a in self.regime_alphas:
      _check_alpha(a)


def _check_alpha(alpha: float) -> None:
  check(0.0 <= alpha < 1.0, f"Expected 0 <= alpha={alpha} < 1.")


def synthetic_count(alpha: float, n: int) -> int:
  """s = α n synthetic examples per generation (CbenchError unless integer)."""
  _check_alpha(alpha)
  positive("samples_per_generation", n)
  s = round(alpha * n)
  check(abs(alpha * n - s) < 1e-9,
        f"alpha={alpha} times samples_per_generation={n} must be an integer.")
  return s


def erm_weights(generations: int) -> np.ndarray:
  """[T, T] lower-triangular W of the pooled mean: W[k, j] = 1 / (k + 1)."""
  positive("generations", generations)
  t = np.arange(1, generations + 1, dtype=np.float64)
  return np.tril(np.ones((generations, generations))) / t[:, None]


def weighted_weights(alpha: float, generations: int) -> np.ndarray:
  """[T, T] weights on the X_j of the generation-weighted BLUE (see above).

  Row k: (R_0 + (1-α)² Σ_{1<=j<=k} R_j) / (1 + k (1-α)²), where R_j writes
  Z_j in the X's: R_0 = e_0, R_j = (e_j - α W[j-1]) / (1 - α).
  """
  _check_alpha(alpha)
  positive("generations", generations)
  c = (1.0 - alpha) ** 2
  w = np.zeros((generations, generations))
  w[0, 0] = 1.0
  total = np.zeros(generations)   # Σ_{1<=j<=k} R_j
  for k in range(1, generations):
    r = -alpha * w[k - 1] / (1.0 - alpha)
    r[k] += 1.0 / (1.0 - alpha)
    total += r
    w[k] = (w[0] + c * total) / (1.0 + k * c)
  return w


def _check_weights(weights: np.ndarray) -> np.ndarray:
  w = np.asarray(weights, np.float64)
  check(w.ndim == 2 and w.shape[0] == w.shape[1] and w.shape[0] >= 1,
        f"Expected square [T, T] weights; got shape {w.shape}.")
  check(np.allclose(w, np.tril(w)),
        "Weights must be lower-triangular (no look-ahead).")
  check(np.allclose(w.sum(1), 1.0), "Each row of weights must sum to 1.")
  return w


def error_operator(weights: np.ndarray, alpha: float) -> np.ndarray:
  """[T, T] M with Y_k - μ = Σ_j M[k, j] U_j in each coordinate.

  e = W ε and ε_k = X_k - μ = α e_{k-1} + U_k (e_{-1} = 0), so
  e = (I - α W S)^{-1} W U with S the one-generation delay.
  """
  w = _check_weights(weights)
  _check_alpha(alpha)
  t = w.shape[0]
  return np.linalg.solve(np.eye(t) - alpha * w @ np.eye(t, k=-1), w)


def analytic_mse(weights: np.ndarray, alpha: float, n: int,
                 dim: int) -> np.ndarray:
  """[T] exact MSE of any fixed weighting: (d / n) ||M[k]||²."""
  positive("n", n)
  positive("dim", dim)
  return dim / n * np.sum(error_operator(weights, alpha) ** 2, axis=1)


def erm_mse(alpha: float, n: int, dim: int,
            generations: np.ndarray) -> np.ndarray:
  """ERM's exact MSE at generation indices k (closed form, any size).

  e_t = Σ_{s<=t} (U_s / s) Γ(t+α) Γ(s+1) / (Γ(s+α) Γ(t+1)), t = k + 1.
  """
  _check_alpha(alpha)
  k = np.atleast_1d(np.asarray(generations, np.int64))
  check(k.size > 0 and k.min() >= 0, "Expected generation indices >= 0.")
  t = (k + 1).astype(np.float64)[:, None]
  s = np.arange(1, int(t.max()) + 1, dtype=np.float64)[None, :]
  log_c = (special.gammaln(t + alpha) - special.gammaln(t + 1)
           + special.gammaln(s + 1) - special.gammaln(s + alpha) - np.log(s))
  log_c = np.where(s <= t, log_c, -np.inf)   # c <= 1/s where defined
  return dim / n * np.exp(2 * log_c).sum(1)


def weighted_mse(alpha: float, n: int, dim: int,
                 generations: np.ndarray) -> np.ndarray:
  """The generation-weighted BLUE's MSE, d / (n (1 + k (1-α)²))."""
  _check_alpha(alpha)
  k = np.asarray(generations, np.float64)
  return dim / (n * (1.0 + k * (1.0 - alpha) ** 2))


def rate_exponent(alpha: float, generations: int) -> float:
  """p in ERM's MSE ~ t^-p, fitted exactly over t in [T/10, T].

  Theory: min(1, 2 (1 - α)); 1 - 1/log t at α = 1/2 for finite t.
  """
  check(generations >= 100, f"Expected generations={generations} >= 100.")
  lo, hi = generations // 10, generations
  v = erm_mse(alpha, 1, 1, np.array([lo - 1, hi - 1]))
  return float(-np.log(v[1] / v[0]) / np.log(hi / lo))


def fit_exponent(generations: np.ndarray, mse: np.ndarray) -> float:
  """Least-squares p in mse ~ (k + 1)^-p (log-log slope)."""
  t = np.log(np.asarray(generations, np.float64) + 1.0)
  y = np.log(np.asarray(mse, np.float64))
  check(t.size >= 2 and np.all(np.isfinite(y)),
        "Need >= 2 positive MSE values to fit an exponent.")
  return float(-np.polyfit(t, y, 1)[0])


def regime_change(alphas: np.ndarray, exponents: np.ndarray
                  ) -> tuple[float, float]:
  """(α*, b) of the least-squares hinge p = 1 - b max(0, α - α*).

  α* is where ERM's decay exponent leaves the 1/t regime (theory: 1/2,
  b = 2).
  """
  a = np.asarray(alphas, np.float64)
  y = 1.0 - np.asarray(exponents, np.float64)
  check(a.size >= 3 and a.size == y.size and np.all(np.diff(a) > 0),
        "Expected >= 3 increasing alphas, one exponent each.")
  grid = np.linspace(a[0], a[-2], 2001)
  hinge = np.maximum(0.0, a[None, :] - grid[:, None])       # [G, A]
  b = (hinge @ y) / np.sum(hinge ** 2, axis=1)
  resid = np.sum((y[None, :] - b[:, None] * hinge) ** 2, axis=1)
  i = int(np.argmin(resid))
  return float(grid[i]), float(b[i])


def simulate(*, mu: np.ndarray, alpha: float, n: int, generations: int,
             trials: int, rng: np.random.Generator,
             weights: np.ndarray | None = None) -> np.ndarray:
  """Estimates Y [trials, T, d] of independent runs of the model above.

  Args:
    mu: [d] the natural mean.
    weights: None for ERM computed as the literal pooled mean of every
      example drawn so far; else [T, T] W with Y_k = Σ_j W[k, j] X_j. Both
      consume `rng` identically, so the same seed gives the same data.
  """
  mu = np.asarray(mu, np.float64)
  check(mu.ndim == 1 and mu.size >= 1, f"Expected mu of shape [d]; got "
        f"{mu.shape}.")
  positive("generations", generations)
  positive("trials", trials)
  s = synthetic_count(alpha, n)
  if weights is not None:
    weights = _check_weights(weights)
    check(weights.shape[0] >= generations,
          f"Weights cover {weights.shape[0]} < {generations} generations.")
  d = mu.size
  synthetic = (np.arange(n) < s)[None, :, None]
  est = np.empty((trials, generations, d))
  means = np.empty((trials, generations, d))
  pooled = np.zeros((trials, d))
  prev = np.broadcast_to(mu, (trials, d))
  for k in range(generations):
    centre = np.where(synthetic & (k > 0), prev[:, None, :], mu)
    x = centre + rng.standard_normal((trials, n, d))
    if weights is None:
      pooled = pooled + x.sum(1)
      prev = pooled / (n * (k + 1))
    else:
      means[:, k] = x.mean(1)
      prev = np.einsum("j,tjd->td", weights[k, :k + 1], means[:, :k + 1])
    est[:, k] = prev
  return est


def squared_errors(est: np.ndarray, mu: np.ndarray) -> np.ndarray:
  """[trials, T] ||Y_k - μ||² per run."""
  return np.sum((est - np.asarray(mu)[None, None, :]) ** 2, axis=-1)


def run(config: MeanConfig, rng: np.random.Generator) -> dict:
  """Monte-Carlo and exact MSE curves for every α, and the regime fit.

  Returns a JSON-ready dict: ``curves[α]`` with per-generation MC MSE (and
  its standard error) and exact MSE for "erm" and "weighted", decay
  exponents (fitted to the MC tail; exact at the largest regime horizon,
  where the weighted one is 1), and ``regime``: per horizon T, ERM's exact
  exponents on `regime_alphas` with the hinge's α* and b.
  """
  config.validate()
  n, d, t = config.samples_per_generation, config.dim, config.generations
  mu = np.ones(d)
  k = np.arange(t)
  tail = k >= t // 4
  curves = {}
  for alpha in config.alphas:
    row = {}
    for name, w in (("erm", None),
                    ("weighted", weighted_weights(alpha, t))):
      err = squared_errors(simulate(mu=mu, alpha=alpha, n=n, generations=t,
                                    trials=config.trials, rng=rng,
                                    weights=w), mu)
      mse = err.mean(0)
      exact = (erm_mse(alpha, n, d, k) if w is None
               else weighted_mse(alpha, n, d, k))
      row[name] = {
          "mc_mse": mse.tolist(),
          "mc_sem": (err.std(0, ddof=1) / np.sqrt(config.trials)).tolist(),
          "exact_mse": exact.tolist(),
          "mc_exponent": fit_exponent(k[tail], mse[tail]),
          "exact_exponent": (
              rate_exponent(alpha, max(config.regime_generations))
              if w is None else 1.0),
      }
    curves[f"{alpha:g}"] = row
  alphas = np.array(config.regime_alphas)
  regime = []
  for horizon in config.regime_generations:
    exps = [rate_exponent(a, horizon) for a in alphas]
    a_star, slope = regime_change(alphas, np.array(exps))
    regime.append({"generations": horizon, "exponents": exps,
                   "alpha_star": a_star, "slope": slope})
  return {
      "generations": k.tolist(),
      "curves": curves,
      "regime": {"alphas": alphas.tolist(),
                 "theory": [min(1.0, 2 * (1 - a)) for a in alphas],
                 "fits": regime},
  }
