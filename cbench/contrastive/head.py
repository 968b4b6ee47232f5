"""A DP-tuned projection head: Logit-DP contrastive training on fixed batches.

    cfg = HeadConfig(noise_multiplier=sigma, batch_size=64, epochs=2)
    params = init(cfg, din, key)
    params = train(cfg, params, views_a, views_b, pad, rows, noise_key)
    z = embed(cfg, params, features)          # (m, dim) unit-norm float64

Model: ``Dense(din -> hidden) -> relu -> Dense(hidden -> dim)`` on FIXED
input features (e.g. a frozen public model's mean-pooled states); only the
head is trained. Every layer is an instrumented `Dense`, so
`logit_dp.GhostEmbed` computes the per-pair gradient norms by ghost norms.

Training (`train`): record i is a pair of views (views_a[i], views_b[i]); the
positives of an anchor are its own record's other view (summed InfoNCE over
the batch, cosine logits / temperature). `rows` fixes every batch before
training: int ``(epochs, num_batches, n)`` record indices, -1 = a padding row
filled with the PUBLIC pair `pad`. Each step takes one batch of exactly n
pairs (gathered inside the jitted step, so step shapes never depend on the
data; only the gathered rows of the (N, din) views enter the output),
computes the Logit-DP clipped sum (per-logit gradients clipped to C, summed
with the exact dL/dZ weights), adds N(0, (sigma Delta)^2) per coordinate
with Delta = `logit_dp.logit_dp_sensitivity(n, C, tau, 'replace_one')`
(one row of the batch replaced by any other row, n fixed), divides by the
PUBLIC n and takes an Adam step. An epoch is one `lax.scan` over its
batches; step t's noise key is ``fold_in(noise_key, t)``.

Privacy (`dp_event`). The caller's obligations: every record is in at most
one batch per epoch, padding rows are public, and a neighbouring dataset
changes at most `batches_per_epoch` batches of an epoch, each by one row
(a row replaced, n fixed). Then each epoch is that many Gaussian mechanisms
of L2 sensitivity Delta and std sigma Delta, composed over epochs with no
amplification claimed. `dp_event` states them in dp_accounting's
add/remove units, where a Gaussian event's multiplier is std / distance
(= sigma here, the distance being Delta): ``Gaussian(sigma)`` self-composed
``epochs * batches_per_epoch`` times. A Gaussian's privacy depends only on
that ratio, so with batches_per_epoch = 1 this costs what
`logit_dp.dp_event(sigma, epochs)` (multiplier 2 sigma against the doubled
replace-one distance) costs under replace-one accounting, and never less. The trained parameters are the mechanism's output; anything
computed from them (embeddings, clusters) is post-processing. The loss is
private and never returned. Float noise is not hardened
(privacy-testing.md E2).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from dp_accounting import dp_event as dpe

from cbench._validate import check
from cbench.privacy import accounting
from cbench.privacy import logit_dp

PyTree = Any
_EMBED_CHUNK = 256


@dataclasses.dataclass(frozen=True, kw_only=True)
class HeadConfig:
  """Public hyper-parameters of the head and its DP training.

  Attributes:
    hidden: width of the hidden Dense layer.
    dim: output (embedding) dimension.
    batch_size: n, pairs per step (fixed, public; padding rows are public).
    epochs: passes over the fixed batches (participations of a record).
    clip_norm: C, the per-logit gradient clip norm.
    noise_multiplier: sigma = noise std / Delta (0: no noise).
    temperature: tau of the cosine logits.
    learning_rate: Adam step size.
    chunk_size: anchor rows per `lax.map` chunk of the ghost norms (None:
      all at once); a memory knob only.
  """
  hidden: int = 128
  dim: int = 64
  batch_size: int = 64
  epochs: int = 2
  clip_norm: float = 1.0
  noise_multiplier: float = 0.0
  temperature: float = 1.0
  learning_rate: float = 1e-2
  chunk_size: Optional[int] = None

  def __post_init__(self):
    check(self.hidden >= 1 and self.dim >= 1,
          f"Expected hidden={self.hidden}, dim={self.dim} >= 1.")
    check(self.epochs >= 1, f"Expected epochs={self.epochs} >= 1.")
    check(self.learning_rate > 0,
          f"Expected learning_rate={self.learning_rate} > 0.")
    self.dp_config()   # validates clip, sigma, n, tau

  def dp_config(self) -> logit_dp.ContrastiveDpConfig:
    """The step's `ContrastiveDpConfig` (mechanism logit_dp)."""
    return logit_dp.ContrastiveDpConfig(
        mechanism="logit_dp", clip_norm=self.clip_norm,
        noise_multiplier=self.noise_multiplier, batch_size=self.batch_size,
        temperature=self.temperature, chunk_size=self.chunk_size)

  @property
  def sensitivity(self) -> float:
    """Delta: L2 distance of the clipped sum when one row is replaced."""
    return self.dp_config().sensitivity

  @property
  def noise_std(self) -> float:
    """Std of the noise on the clipped SUM: sigma * Delta."""
    return self.dp_config().noise_std


def dp_event(noise_multiplier: float, epochs: int,
             batches_per_epoch: int = 1) -> dpe.DpEvent:
  """The training's event, for a ledger composing under add/remove.

  Args:
    noise_multiplier: sigma (std / Delta); 0 gives `NonPrivateDpEvent`.
    epochs: passes over the batches.
    batches_per_epoch: batches of one epoch that a neighbouring dataset
      changes, each by one row: 1 for record add/remove with fixed-capacity
      keyed-hash batches (the record fills a padding row or pushes out its
      bucket's last record), 2 for record replace-one (the two records may
      hash to two batches).
  """
  check(epochs >= 1 and batches_per_epoch >= 1,
        f"Expected epochs={epochs}, batches_per_epoch={batches_per_epoch} "
        f">= 1.")
  if noise_multiplier == 0:
    return dpe.NonPrivateDpEvent()
  return accounting.no_amplification_event(
      noise_multiplier, epochs * batches_per_epoch, "add_remove")


class Dense(nn.Module):
  """x @ kernel + bias, instrumented for ghost norms (`logit_dp.GhostEmbed`).

  The one instrumented Dense layer of `cbench.contrastive` (the probe's
  encoder uses it too).
  """
  features: int

  @nn.compact
  def __call__(self, x):
    k = self.param("kernel", nn.initializers.lecun_normal(),
                   (x.shape[-1], self.features))
    b = self.param("bias", nn.initializers.zeros, (self.features,))
    self.sow("intermediates", "inputs", x)
    return self.perturb("out", x @ k + b)


class Head(nn.Module):
  """(m, din) -> (m, dim): Dense -> relu -> Dense, rows independent."""
  hidden: int
  dim: int

  @nn.compact
  def __call__(self, x):
    h = nn.relu(Dense(self.hidden, name="dense1")(x))
    return Dense(self.dim, name="dense2")(h)


@functools.lru_cache(maxsize=16)
def _ghost_embed(hidden: int, dim: int) -> logit_dp.GhostEmbed:
  """One `GhostEmbed` per shape, so the jitted kernels are shared."""
  return logit_dp.GhostEmbed(Head(hidden=hidden, dim=dim), lambda x: (x,))


def make_embed(config: HeadConfig) -> logit_dp.GhostEmbed:
  """embed(params, x (m, din)) -> (m, dim) (ghost pair norms)."""
  return _ghost_embed(config.hidden, config.dim)


def init(config: HeadConfig, din: int, key: jax.Array) -> PyTree:
  """Initial parameters for inputs of width `din` (a function of `key`)."""
  model = Head(hidden=config.hidden, dim=config.dim)
  return jax.jit(model.init)(key, jnp.zeros((1, din), jnp.float32))["params"]


@functools.lru_cache(maxsize=16)
def _programs(hidden: int, dim: int, temperature: float,
              chunk_size: Optional[int], learning_rate: float):
  """(noisy_mean_grad, epoch), jitted; std and clip are traced arguments."""
  kernel = logit_dp.jitted_kernel(_ghost_embed(hidden, dim), "logit_dp",
                                  temperature, chunk_size)
  opt = optax.adam(learning_rate)

  def noisy_mean_grad(params, views_a, views_b, pad, idx, key, std, clip):
    valid = (idx >= 0)[:, None]
    j = jnp.maximum(idx, 0)
    xa = jnp.where(valid, views_a[j], pad[0][None])
    xb = jnp.where(valid, views_b[j], pad[1][None])
    g, _ = kernel(params, xa, xb, key, std, clip)
    n = idx.shape[0]                       # the PUBLIC batch size
    return jax.tree.map(lambda t: t / n, g)

  @jax.jit
  def epoch(params, opt_state, views_a, views_b, pad, rows, keys, std, clip):
    def body(carry, xs):
      p, s = carry
      idx, k = xs
      g = noisy_mean_grad(p, views_a, views_b, pad, idx, k, std, clip)
      upd, s = opt.update(g, s, p)
      return (optax.apply_updates(p, upd), s), None

    (params, opt_state), _ = jax.lax.scan(body, (params, opt_state),
                                          (rows, keys))
    return params, opt_state

  return jax.jit(noisy_mean_grad), epoch


def _check_inputs(config: HeadConfig, views_a, views_b, pad, idx_shape):
  check(views_a.ndim == 2 and views_a.shape == views_b.shape,
        f"Expected views_a, views_b of one shape (N, din); got "
        f"{views_a.shape}, {views_b.shape}.")
  check(pad.shape == (2, views_a.shape[1]),
        f"Expected the public pad pair of shape (2, {views_a.shape[1]}); "
        f"got {pad.shape}.")
  check(idx_shape[-1] == config.batch_size,
        f"Batches of {idx_shape[-1]} rows; the config's public batch_size "
        f"is {config.batch_size}.")


def noisy_gradient(config: HeadConfig, params: PyTree, views_a, views_b,
                   pad, idx, key: jax.Array) -> PyTree:
  """One step's released gradient: (clipped sum + noise) / n (jitted).

  Args:
    config: the head's config (noise std = sigma * Delta).
    params: current parameters.
    views_a, views_b: (N, din) views of the N records (private).
    pad: (2, din) the public (anchor, positive) of a padding row.
    idx: (n,) int record indices of the batch, -1 = padding.
    key: this step's noise key.
  """
  views_a, views_b = jnp.asarray(views_a), jnp.asarray(views_b)
  pad, idx = jnp.asarray(pad, views_a.dtype), jnp.asarray(idx, jnp.int32)
  _check_inputs(config, views_a, views_b, pad, idx.shape)
  fn, _ = _programs(config.hidden, config.dim, float(config.temperature),
                    config.chunk_size, float(config.learning_rate))
  return fn(params, views_a, views_b, pad, idx, key,
            jnp.float32(config.noise_std), jnp.float32(config.clip_norm))


def train(config: HeadConfig, params: PyTree, views_a: np.ndarray,
          views_b: np.ndarray, pad: np.ndarray, rows: np.ndarray,
          noise_key: jax.Array) -> PyTree:
  """Adam on noisy Logit-DP gradients over the fixed batches `rows`.

  Args:
    config: public hyper-parameters (`config.epochs` must match `rows`).
    params: initial parameters (`init`).
    views_a, views_b: (N, din) float views of the N records (private).
    pad: (2, din) the public pair of every padding row.
    rows: int (epochs, num_batches, n) record indices, -1 = padding; each
      record at most once per epoch (see the module docstring).
    noise_key: step t draws its noise from ``fold_in(noise_key, t)``.

  Returns:
    The trained parameters (a deterministic function of the arguments on
    one platform).
  """
  rows = np.asarray(rows)
  check(rows.ndim == 3 and rows.shape[0] == config.epochs,
        f"Expected rows of shape ({config.epochs} epochs, batches, n); got "
        f"{rows.shape}.")
  for e in range(rows.shape[0]):
    used = rows[e][rows[e] >= 0]
    check(np.unique(used).size == used.size,
          f"Epoch {e}: a record is in more than one row.")
  va = jnp.asarray(views_a, jnp.float32)
  vb = jnp.asarray(views_b, jnp.float32)
  pad = jnp.asarray(pad, jnp.float32)
  _check_inputs(config, va, vb, pad, rows.shape)
  _, epoch = _programs(config.hidden, config.dim, float(config.temperature),
                       config.chunk_size, float(config.learning_rate))
  opt_state = optax.adam(config.learning_rate).init(params)
  std = jnp.float32(config.noise_std)
  clip = jnp.float32(config.clip_norm)
  k = rows.shape[1]
  for e in range(config.epochs):
    steps = jnp.arange(e * k, (e + 1) * k)
    keys = jax.vmap(lambda t: jax.random.fold_in(noise_key, t))(steps)
    params, opt_state = epoch(params, opt_state, va, vb, pad,
                              jnp.asarray(rows[e], jnp.int32), keys, std,
                              clip)
  return jax.device_get(params)


@functools.partial(jax.jit, static_argnames=("hidden", "dim"))
def _apply(params, x, *, hidden, dim):
  u = Head(hidden=hidden, dim=dim).apply({"params": params}, x)
  return u / jnp.sqrt(jnp.sum(jnp.square(u), -1, keepdims=True) + 1e-12)


def embed(config: HeadConfig, params: PyTree, x: np.ndarray,
          chunk: int = _EMBED_CHUNK) -> np.ndarray:
  """(m, dim) float64 unit-norm head outputs of features x (m, din).

  Fixed-size chunks (the last one padded), so one compilation per width.
  """
  x = np.asarray(x, np.float32)
  out = []
  for start in range(0, x.shape[0], chunk):
    part = x[start:start + chunk]
    buf = np.zeros((chunk, x.shape[1]), np.float32)
    buf[:len(part)] = part
    u = _apply(params, buf, hidden=config.hidden, dim=config.dim)
    out.append(np.asarray(jax.device_get(u), np.float64)[:len(part)])
  if not out:
    return np.zeros((0, config.dim))
  return np.concatenate(out)


def params_sha256(params: PyTree) -> str:
  """sha256 of the parameters' bytes (leaves in tree order)."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(jax.device_get(params)):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{a.dtype}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()

