"""Host-side batch samplers that carry their own privacy event.

Each sampler is a deterministic function of (seed, step): `batch(step)` seeds
a fresh `np.random.Generator` from (seed, step, tag), so a resumed run replays
the same index stream without saved sampler state, and the sampler stream is
independent of any JAX noise key. Seeds are never part of `describe()` (they
must not be logged).

Batches have PUBLIC shapes: real rows are followed by padding rows (index 0,
`is_padding=True`) up to a bucket size that is a multiple of `pad_unit`, so
the number of compiled shapes is bounded by the number of buckets. The
rounded batch size is visible through the shape; like timing, this side
channel is outside our threat model (the truncated sampler with a single
bucket, pad_unit = max_batch_size, removes it).

Samplers:
  PoissonSampler           independent inclusion with prob. q (exact: a
                           Binomial(N, q) count, then a uniform subset of that
                           size, Lemma 1 of arXiv 2406.17298).
  TruncatedPoissonSampler  Poisson, then a uniform subset of at most
                           `max_batch_size` rows.
  ShuffledEpochSampler     fixed-size batches of a per-epoch permutation; its
                           event claims NO amplification and is valid only
                           under replace-one (the permutation is over record
                           slots, so a replaced record keeps its steps).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from dp_accounting import dp_event as dpe
import numpy as np

from cbench._validate import CbenchError, check, one_of
from cbench.privacy import accounting

_TAG = 0x5341_4D50  # "SAMP": keeps sampler streams apart from other uses.


@dataclasses.dataclass(frozen=True)
class Batch:
  """One batch of record indices with a public shape.

  Attributes:
    indices: int64 (bucket,), real rows first, then padding rows (index 0).
    is_padding: bool (bucket,), True for padding rows.
  """
  indices: np.ndarray
  is_padding: np.ndarray

  @property
  def size(self) -> int:
    """Number of real (non-padding) rows: private, do not release."""
    return int(np.sum(~self.is_padding))


def _padded(indices: np.ndarray, bucket: int) -> Batch:
  out = np.zeros(bucket, np.int64)
  out[:len(indices)] = indices
  pad = np.ones(bucket, bool)
  pad[:len(indices)] = False
  return Batch(out, pad)


def _rng(seed: int, step: int, extra: int = 0) -> np.random.Generator:
  check(isinstance(step, (int, np.integer)) and step >= 0,
        f"Expected an integer step={step} >= 0.")
  return np.random.default_rng([int(seed), int(step), _TAG, int(extra)])


class PoissonSampler:
  """True Poisson sampling: each record included independently w.p. q."""

  kind = "poisson"
  amplification = True

  def __init__(self, num_examples: int, sampling_prob: float, seed: int,
               pad_unit: int = 1):
    check(num_examples >= 1, f"Expected num_examples={num_examples} >= 1.")
    check(0.0 < sampling_prob <= 1.0,
          f"Expected 0 < sampling_prob={sampling_prob} <= 1.")
    check(pad_unit >= 1, f"Expected pad_unit={pad_unit} >= 1.")
    check(seed is not None, "A sampler needs an explicit seed.")
    self.num_examples = int(num_examples)
    self.sampling_prob = float(sampling_prob)
    self.pad_unit = int(pad_unit)
    self._seed = int(seed)

  @property
  def expected_batch_size(self) -> float:
    """q * N: the PUBLIC normaliser of the noisy gradient sum."""
    return self.sampling_prob * self.num_examples

  @property
  def max_batch_size(self) -> Optional[int]:
    return None

  def bucket(self, size: int) -> int:
    """Public padded shape for a realised size (at least one row)."""
    return max(1, math.ceil(size / self.pad_unit)) * self.pad_unit

  @property
  def bucket_sizes(self) -> tuple[int, ...]:
    top = self.bucket(self.num_examples)
    return tuple(range(self.pad_unit, top + 1, self.pad_unit))

  def _draw(self, rng: np.random.Generator) -> np.ndarray:
    n = rng.binomial(self.num_examples, self.sampling_prob)
    idx = rng.choice(self.num_examples, size=n, replace=False)
    return np.sort(idx)

  def batch(self, step: int) -> Batch:
    idx = self._draw(_rng(self._seed, step))
    return _padded(idx, self.bucket(len(idx)))

  def dp_event(self, noise_multiplier: float, steps: int,
               relation: str = "add_remove") -> dpe.DpEvent:
    return accounting.poisson_event(self.sampling_prob, noise_multiplier,
                                    steps, relation)

  def describe(self) -> dict:
    """Public description (no seed) for reports and config hashes."""
    return {"kind": self.kind, "num_examples": self.num_examples,
            "sampling_prob": self.sampling_prob, "pad_unit": self.pad_unit,
            "max_batch_size": self.max_batch_size}

  def __repr__(self) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items()
                     if k != "kind")
    return f"{type(self).__name__}({args})"


class TruncatedPoissonSampler(PoissonSampler):
  """Poisson sampling truncated to a uniform subset of <= max_batch_size."""

  kind = "truncated_poisson"

  def __init__(self, num_examples: int, sampling_prob: float,
               max_batch_size: int, seed: int, pad_unit: int = 1):
    super().__init__(num_examples, sampling_prob, seed, pad_unit)
    check(max_batch_size >= 1 and max_batch_size % self.pad_unit == 0,
          f"Expected max_batch_size={max_batch_size} to be a positive "
          f"multiple of pad_unit={pad_unit}.")
    self._max = int(max_batch_size)

  @property
  def max_batch_size(self) -> int:
    return self._max

  @property
  def bucket_sizes(self) -> tuple[int, ...]:
    return tuple(range(self.pad_unit, self._max + 1, self.pad_unit))

  def _draw(self, rng: np.random.Generator) -> np.ndarray:
    idx = super()._draw(rng)
    if len(idx) > self._max:
      idx = np.sort(rng.choice(idx, size=self._max, replace=False))
    return idx

  def dp_event(self, noise_multiplier: float, steps: int,
               relation: str = "add_remove") -> dpe.DpEvent:
    return accounting.truncated_poisson_event(
        self.num_examples, self.sampling_prob, self._max, noise_multiplier,
        steps, relation)


class ShuffledEpochSampler:
  """Fixed-size batches from a fresh permutation each epoch (no amplification).

  Epoch e uses permutation(seed, e); the last N mod batch_size records of
  each permutation are dropped. Its event is a plain Gaussian composed once
  per epoch touched, under replace-one only.
  """

  kind = "shuffled"
  amplification = False

  def __init__(self, num_examples: int, batch_size: int, seed: int):
    check(1 <= batch_size <= num_examples,
          f"Expected 1 <= batch_size={batch_size} <= num_examples="
          f"{num_examples}.")
    check(seed is not None, "A sampler needs an explicit seed.")
    self.num_examples = int(num_examples)
    self.batch_size = int(batch_size)
    self._seed = int(seed)

  @property
  def steps_per_epoch(self) -> int:
    return self.num_examples // self.batch_size

  @property
  def expected_batch_size(self) -> float:
    return float(self.batch_size)

  @property
  def max_batch_size(self) -> int:
    return self.batch_size

  @property
  def bucket_sizes(self) -> tuple[int, ...]:
    return (self.batch_size,)

  def batch(self, step: int) -> Batch:
    epoch, j = divmod(int(step), self.steps_per_epoch)
    perm = _rng(self._seed, epoch, extra=1).permutation(self.num_examples)
    idx = perm[j * self.batch_size:(j + 1) * self.batch_size]
    return Batch(idx.astype(np.int64), np.zeros(self.batch_size, bool))

  def participations(self, steps: int) -> int:
    """Upper bound on how many of steps [0, steps) one record can be in."""
    return math.ceil(steps / self.steps_per_epoch)

  def dp_event(self, noise_multiplier: float, steps: int,
               relation: str = "replace_one") -> dpe.DpEvent:
    if relation != "replace_one":
      raise CbenchError(
          f"sampler='shuffled' is only accounted under relation="
          f"'replace_one' (no amplification); got relation={relation!r}.")
    return accounting.no_amplification_event(
        noise_multiplier, self.participations(steps), relation)

  def describe(self) -> dict:
    return {"kind": self.kind, "num_examples": self.num_examples,
            "batch_size": self.batch_size, "amplification": False}

  def __repr__(self) -> str:
    return (f"ShuffledEpochSampler(num_examples={self.num_examples}, "
            f"batch_size={self.batch_size})")


SAMPLERS = ("poisson", "truncated_poisson", "shuffled")


def make_sampler(kind: str, num_examples: int, expected_batch_size: float,
                 seed: int, *, max_batch_size: Optional[int] = None,
                 pad_unit: int = 1):
  """Builds a sampler from public config values.

  q = expected_batch_size / num_examples for the Poisson kinds; the shuffled
  sampler uses batch_size = expected_batch_size (an integer).
  """
  one_of("sampler", kind, SAMPLERS)
  check(expected_batch_size > 0,
        f"Expected expected_batch_size={expected_batch_size} > 0.")
  if kind == "shuffled":
    check(float(expected_batch_size).is_integer(),
          f"sampler='shuffled' needs an integer batch size, got "
          f"{expected_batch_size}.")
    return ShuffledEpochSampler(num_examples, int(expected_batch_size), seed)
  q = expected_batch_size / num_examples
  if kind == "poisson":
    return PoissonSampler(num_examples, q, seed, pad_unit)
  check(max_batch_size is not None,
        "sampler='truncated_poisson' needs max_batch_size.")
  return TruncatedPoissonSampler(num_examples, q, max_batch_size, seed,
                                 pad_unit)
