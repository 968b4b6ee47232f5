"""Audit canaries inside a real DP-SGD run: white-box gradient probes.

A one-run audit (`one_run`) trains ONCE on the private records plus m
canaries, each included with probability 1/2. To keep every public
parameter of the run (record count N, Poisson rate q = B / N, the
normaliser B) independent of the coins, all m canaries are rows of the
dataset and an EXCLUDED canary is a row whose loss is the constant 0: its
gradient is exactly 0, which is what an absent record contributes under
add/remove Poisson sampling (the row is "sampled" but adds nothing).

Row kinds (the ``canary_kind`` field of every example, int32):
  KIND_REAL  a real record (also a black-box input canary that is IN: its
             text is trained on like any record);
  KIND_OUT   an excluded canary (loss 0, gradient 0);
  KIND_PROBE an included white-box gradient canary: its loss is
             ``scale * probe[probe_index]``, so its gradient is
             ``scale * e_j`` on a dedicated parameter vector ``probe``
             ([m_probe] float32, a top-level entry ``PROBE`` of the
             trainable tree) and 0 on the model. Clipping brings it to
             norm C (if scale > C) like any example.

Real rows have zero gradient on ``probe``, so their clipped gradients, and
the model's training, are those of the audited run. Noise is added to
``probe`` like to every parameter; the auditor's view of it is the whole
sequence of noisy gradients (what DP-SGD's guarantee covers, since the
iterates are a post-processing of it). `with_probe` wraps the run's
optimizer so that ``probe`` never moves and its state accumulates, on
device and checkpointed with the run, the per-coordinate sum and maximum
of the noisy gradient over steps: the white-box scores.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbench._validate import check

PyTree = Any

PROBE = "audit_probe"
KIND_REAL, KIND_OUT, KIND_PROBE = 0, 1, 2


def strip(params: PyTree) -> PyTree:
  """The tree without the probe (what the model and its optimizer see)."""
  return {k: v for k, v in params.items() if k != PROBE}


def add_probe(params: PyTree, num_probes: int) -> PyTree:
  """``params`` plus a zero probe vector [num_probes] float32."""
  return {**params, PROBE: jnp.zeros((num_probes,), jnp.float32)}


def wrap_loss(loss_fn: Callable, scale: float) -> Callable:
  """Per-example loss with canary rows (kinds above).

  Args:
    loss_fn: the run's ``(params, example) -> scalar`` (probe-free params).
    scale: the probe gradient's norm before clipping (> C so that a run
      whose clipping is broken shows it).

  The example needs ``canary_kind`` and ``probe_index`` (int32 scalars).
  """
  def loss(params, example):
    kind = example["canary_kind"]
    base = loss_fn(strip(params), example)
    value = jnp.where(kind == KIND_REAL, base, 0.0)
    if PROBE in params:
      probe = params[PROBE][example["probe_index"]]
      value = value + jnp.where(kind == KIND_PROBE, scale * probe, 0.0)
    return value
  return loss


class ProbeStats(NamedTuple):
  """Per-probe statistics of the noisy gradient over steps (float32 [m])."""
  sum: jax.Array
  max: jax.Array
  steps: jax.Array


def with_probe(inner: optax.GradientTransformation
               ) -> optax.GradientTransformation:
  """``inner`` on the model part; the probe is frozen and observed."""
  def init(params):
    m = params[PROBE].shape
    return (inner.init(strip(params)),
            ProbeStats(jnp.zeros(m, jnp.float32),
                       jnp.full(m, -jnp.inf, jnp.float32),
                       jnp.zeros((), jnp.int32)))

  def update(grads, state, params=None):
    inner_state, stats = state
    updates, inner_state = inner.update(
        strip(grads), inner_state, None if params is None else strip(params))
    g = grads[PROBE].astype(jnp.float32)
    stats = ProbeStats(stats.sum + g, jnp.maximum(stats.max, g),
                       stats.steps + 1)
    return {**updates, PROBE: jnp.zeros_like(grads[PROBE])}, (inner_state,
                                                               stats)
  return optax.GradientTransformation(init, update)


def probe_stats(opt_state: Any) -> ProbeStats:
  """The `ProbeStats` of an optimizer state made by `with_probe`."""
  return jax.device_get(opt_state[1])


@dataclasses.dataclass(frozen=True, eq=False)
class CanaryLayout:
  """Which rows of an audit run are canaries, and how.

  Attributes:
    kinds: [N] int32, one of KIND_* per row (real records first).
    probe_index: [N] int32, the probe coordinate of a KIND_PROBE row (and of
      an excluded white-box canary: its coordinate stays in the audit).
    num_probes: white-box canaries m_probe (length of the probe vector).
    scale: the probe gradient's norm before clipping.
  """
  kinds: np.ndarray
  probe_index: np.ndarray
  num_probes: int
  scale: float

  def __post_init__(self):
    check(self.kinds.shape == self.probe_index.shape
          and self.kinds.ndim == 1, "Canary kinds and probe indices must be "
          "[N] arrays of one length.")
    check(self.scale > 0 and np.isfinite(self.scale),
          f"Expected a finite probe scale > 0; got {self.scale}.")
    check(bool(np.all(self.probe_index[self.kinds == KIND_PROBE]
                      < max(1, self.num_probes))),
          "A probe row points past the probe vector.")

  def arrays(self) -> dict[str, np.ndarray]:
    return {"canary_kind": self.kinds.astype(np.int32),
            "probe_index": self.probe_index.astype(np.int32)}
