"""Cyclic DP-SGD: fixed disjoint batches, and its exact all-iterates event.

One frozen `CyclicConfig` builds both the sampler and the `DpEvent`, so the
two cannot drift apart:

    cfg = CyclicConfig(num_examples=1000, batch_size=64, epochs=5,
                       noise_multiplier=1.0)
    sampler = cfg.sampler(seed)            # batch(step) -> Batch
    eps = cfg.epsilon(delta=1e-5)          # all iterates, PLD

Traversal. The N public record slots are permuted ONCE (a seeded
`np.random.Generator`; `shuffle=False` keeps slot order) and cut into
K = ceil(N / b) disjoint batches; epoch e visits batches 0..K-1 in the same
order, so step t uses batch t mod K. Every slot is in exactly one batch per
epoch. Shapes are public: every batch has ceil(b / pad_unit) * pad_unit rows
(pad_unit 1: b rows); the last batch (when b does not divide N) and any
rows past b are padding rows (`is_padding=True`, index 0), which a DP-SGD
step must mask. The normaliser of the noisy sum is the public b.

All-iterates accounting (every intermediate model may be released). A record
touches exactly one step per epoch and no other step, so over any prefix of
`steps` steps it enters at most P = ceil(steps / K) steps, each a Gaussian
mechanism on the clipped sum with std sigma * sensitivity. Adaptive
composition of P such mechanisms is exact: the event is
`GaussianDpEvent` self-composed P times (no amplification is claimed; the
permutation is public, so none applies). A write-ahead ledger charges
`CyclicConfig.step_event(t)` before step t: the whole epoch's Gaussian at
its first step, nothing at its other steps, so the charges of any prefix
compose to exactly that prefix's event (a run stopped mid-epoch has paid
the epoch in full).

Relations (N stays public and fixed):
  replace_one  a record is replaced in its slot; sensitivity 2C.
  zero_out     a record's slot becomes a masked row (contributes 0);
               sensitivity C; same privacy profile as add/remove of a
               Gaussian, so it is evaluated with dp_accounting's
               ADD_OR_REMOVE_ONE. True add/remove is not supported (it would
               change the public N and with it the whole partition).
Noise multipliers are cbench's sigma (std / sensitivity, see `relations.py`).
Seeds are never part of `describe()`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from dp_accounting import dp_event as dpe
import numpy as np

from cbench._validate import check, one_of
from cbench.privacy import accounting
from cbench.privacy.batch_sampling import Batch

RELATIONS = ("replace_one", "zero_out")
# dp_accounting relation used for each cyclic relation (see docstring).
_ACCOUNTING_RELATION = {"replace_one": "replace_one",
                        "zero_out": "add_remove"}
_TAG = 0x4359_434C  # "CYCL": keeps the permutation stream apart.


def _check_int(name: str, value, lo: int) -> None:
  check(isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        and value >= lo, f"Expected an integer {name}={value!r} >= {lo}.")


def check_relation(relation: str) -> str:
  one_of("relation", relation, RELATIONS)
  return relation


def accounting_relation(relation: str) -> str:
  """The `accounting` relation whose Gaussian profile equals `relation`'s."""
  return _ACCOUNTING_RELATION[check_relation(relation)]


def participations(steps_per_epoch: int, steps: int) -> int:
  """Most steps of [0, steps) one slot enters: ceil(steps / K)."""
  _check_int("steps_per_epoch", steps_per_epoch, 1)
  _check_int("steps", steps, 0)
  return -(-int(steps) // int(steps_per_epoch))


def cyclic_event(steps_per_epoch: int, noise_multiplier: float, steps: int,
                 relation: str) -> dpe.DpEvent:
  """All-iterates event of `steps` cyclic steps: a Gaussian, P-fold."""
  rel = accounting_relation(relation)
  return accounting.no_amplification_event(
      noise_multiplier, participations(steps_per_epoch, steps), rel)


class CyclicSampler:
  """Fixed disjoint batches of one (seeded or identity) permutation.

  Built by `CyclicConfig.sampler`; `batch(step)` is a pure function of
  (seed, step), so a resumed run replays the same batches.
  """

  kind = "cyclic"
  amplification = False

  def __init__(self, num_examples: int, batch_size: int,
               seed: Optional[int], shuffle: bool = True, pad_unit: int = 1):
    _check_int("num_examples", num_examples, 1)
    _check_int("batch_size", batch_size, 1)
    _check_int("pad_unit", pad_unit, 1)
    check(batch_size <= num_examples,
          f"Expected batch_size={batch_size} <= num_examples={num_examples}.")
    check(not shuffle or seed is not None,
          "A shuffled cyclic sampler needs an explicit seed.")
    self.num_examples = int(num_examples)
    self.batch_size = int(batch_size)
    self.shuffle = bool(shuffle)
    self.pad_unit = int(pad_unit)
    if shuffle:
      rng = np.random.default_rng([int(seed), _TAG])
      order = rng.permutation(self.num_examples)
    else:
      order = np.arange(self.num_examples)
    k = self.steps_per_epoch
    idx = np.zeros(k * self.batch_size, np.int64)
    idx[:self.num_examples] = order
    pad = np.ones(k * self.batch_size, bool)
    pad[:self.num_examples] = False
    cols = ((0, 0), (0, self.bucket - self.batch_size))  # padding columns
    self._indices = np.pad(idx.reshape(k, self.batch_size), cols)
    self._padding = np.pad(pad.reshape(k, self.batch_size), cols,
                           constant_values=True)
    self._indices.setflags(write=False)
    self._padding.setflags(write=False)

  @property
  def steps_per_epoch(self) -> int:
    """K = ceil(N / b) batches per epoch (the last one may be padded)."""
    return -(-self.num_examples // self.batch_size)

  @property
  def expected_batch_size(self) -> float:
    """b: the PUBLIC normaliser of the noisy gradient sum."""
    return float(self.batch_size)

  @property
  def max_batch_size(self) -> int:
    """Most real rows in a batch: b."""
    return self.batch_size

  @property
  def bucket(self) -> int:
    """Rows of every batch: b rounded up to a multiple of pad_unit."""
    return -(-self.batch_size // self.pad_unit) * self.pad_unit

  @property
  def bucket_sizes(self) -> tuple[int, ...]:
    return (self.bucket,)

  def batch(self, step: int) -> Batch:
    _check_int("step", step, 0)
    j = int(step) % self.steps_per_epoch
    return Batch(self._indices[j].copy(), self._padding[j].copy())

  def participations(self, steps: int) -> int:
    return participations(self.steps_per_epoch, steps)

  def dp_event(self, noise_multiplier: float, steps: int,
               relation: str = "replace_one") -> dpe.DpEvent:
    return cyclic_event(self.steps_per_epoch, noise_multiplier, steps,
                        relation)

  def describe(self) -> dict:
    return {"kind": self.kind, "num_examples": self.num_examples,
            "batch_size": self.batch_size, "shuffle": self.shuffle,
            "pad_unit": self.pad_unit, "amplification": False}

  def __repr__(self) -> str:
    return (f"CyclicSampler(num_examples={self.num_examples}, "
            f"batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"pad_unit={self.pad_unit})")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CyclicConfig:
  """Public plan of a cyclic DP-SGD run: sampler, noise and event in one.

  Attributes:
    num_examples: N, the public number of record slots.
    batch_size: b, rows per batch (padded) and the public normaliser.
    epochs: E >= 1 full passes; num_steps = E * K.
    noise_multiplier: sigma >= 0, std of the noise on the clipped SUM
      divided by its sensitivity (`relations.noise_std`).
    relation: 'replace_one' (sensitivity 2C) or 'zero_out' (C).
    shuffle: permute the slots once (seeded) before the first epoch.
  """
  num_examples: int
  batch_size: int
  epochs: int
  noise_multiplier: float
  relation: str = "replace_one"
  shuffle: bool = True

  def __post_init__(self):
    _check_int("num_examples", self.num_examples, 1)
    _check_int("batch_size", self.batch_size, 1)
    _check_int("epochs", self.epochs, 1)
    check(self.batch_size <= self.num_examples,
          f"Expected batch_size={self.batch_size} <= num_examples="
          f"{self.num_examples}.")
    check(self.noise_multiplier is not None and self.noise_multiplier >= 0
          and math.isfinite(self.noise_multiplier),
          f"Expected a finite noise_multiplier={self.noise_multiplier} >= 0.")
    check_relation(self.relation)

  @property
  def steps_per_epoch(self) -> int:
    return -(-self.num_examples // self.batch_size)

  @property
  def num_steps(self) -> int:
    return self.epochs * self.steps_per_epoch

  @property
  def accounting_relation(self) -> str:
    return accounting_relation(self.relation)

  def sampler(self, seed: Optional[int] = None,
              pad_unit: int = 1) -> CyclicSampler:
    """The batches this config is accounted for (`seed` needed to shuffle;
    `pad_unit` only rounds the public row count up)."""
    return CyclicSampler(self.num_examples, self.batch_size, seed,
                         self.shuffle, pad_unit)

  def dp_event(self, steps: Optional[int] = None) -> dpe.DpEvent:
    """All-iterates event of the first `steps` steps (default: the run)."""
    steps = self.num_steps if steps is None else steps
    return cyclic_event(self.steps_per_epoch, self.noise_multiplier, steps,
                        self.relation)

  def step_event(self, step: int) -> dpe.DpEvent:
    """What a write-ahead ledger charges BEFORE step `step` runs.

    The whole epoch's event (one Gaussian: each slot is in exactly one of
    its batches) at the epoch's first step, `NoOpDpEvent` at its other
    steps. The charges of steps [0, t) compose to `dp_event(t)` for every
    t, so a run stopped mid-epoch has already paid that epoch in full.
    """
    _check_int("step", step, 0)
    k = self.steps_per_epoch
    if participations(k, step + 1) == participations(k, step):
      return dpe.NoOpDpEvent()
    return cyclic_event(k, self.noise_multiplier, k, self.relation)

  def epsilon(self, delta: float, steps: Optional[int] = None,
              accountant: str = "pld") -> float:
    """All-iterates epsilon at `delta` (PLD by default; inf at sigma 0)."""
    return accounting.epsilon(self.dp_event(steps), delta,
                              self.accounting_relation, accountant)

  def calibrated(self, target_epsilon: float, delta: float,
                 **kwargs) -> "CyclicConfig":
    """This config with the smallest sigma meeting (epsilon, delta), PLD.

    kwargs go to `accounting.calibrate_noise_multiplier`.
    """
    sigma = accounting.calibrate_noise_multiplier(
        lambda s: cyclic_event(self.steps_per_epoch, s, self.num_steps,
                               self.relation),
        target_epsilon, delta, self.accounting_relation, **kwargs)
    return dataclasses.replace(self, noise_multiplier=sigma)

  def describe(self) -> dict:
    """Public description for reports and config hashes (no seed)."""
    return dict(dataclasses.asdict(self), kind="cyclic",
                steps_per_epoch=self.steps_per_epoch,
                num_steps=self.num_steps)
