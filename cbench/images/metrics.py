"""Image metrics of the coarse-to-fine experiment (no privacy cost).

    net = metrics.train_classifier(public.images, public_labels, m + 1,
                                   ClassifierConfig())
    f_real = metrics.features(net, real)        # [N, F] float64
    fd = metrics.frechet_distance(f_real, metrics.features(net, synthetic))
    acc = metrics.accuracy(metrics.train_classifier(synthetic, labels, k,
                                                    cfg), real, real_labels)
    energy = metrics.band_energy(images, "db2", levels=2)   # [3 L + 1]

* Features: `ConvNet` (two 3x3 conv + pool stages, a dense feature layer,
  a linear head) trained to classify PUBLIC images only (the caller passes
  the public classes and the texture-only class); its penultimate
  activations are the feature space of the Frechet distance, the
  analogue of FID's Inception features. Nothing private shapes it.
* `frechet_distance`: ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2)``
  of Gaussians fitted to two feature sets (host float64; the matrix square
  root through symmetric eigendecompositions, so it is exactly 0 for
  identical sets).
* Downstream accuracy: the same architecture trained (fresh) on labelled
  images, e.g. class-conditional synthetic samples, and tested on real
  ones (`accuracy`).
* `band_energy`: the mean squared wavelet coefficient of each band, coarse
  to fine (`band_names`): the per-band energy spectrum.

Training: AdamW (`optim`) over `text_data.EpochOrder` batches, seeded by
``config.seed``; jitted steps cached per (config, classes).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbench import _validate
from cbench._validate import check
from cbench.images import wavelets
from cbench.train import optim
from cbench.train import text_data

PyTree = Any
_EVAL_BATCH = 256


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClassifierConfig:
  """Attributes:
    channels: widths of the two conv stages.
    features: width of the feature (penultimate) layer.
    steps: training steps.
    batch_size: images per step.
    learning_rate: AdamW peak learning rate (warmup + cosine).
    weight_decay: AdamW weight decay on matrices.
    seed: init and data-order seed.
  """
  channels: tuple[int, int] = (16, 32)
  features: int = 64
  steps: int = 300
  batch_size: int = 64
  learning_rate: float = 3e-3
  weight_decay: float = 1e-4
  seed: int = 0

  def __post_init__(self):
    check(len(self.channels) == 2 and min(self.channels) >= 1,
          f"Expected two conv widths >= 1; got {self.channels}.")
    for name in ("features", "steps", "batch_size"):
      _validate.positive(name, getattr(self, name))
    _validate.positive("learning_rate", self.learning_rate)
    _validate.non_negative("weight_decay", self.weight_decay)


class ConvNet(nn.Module):
  """``[B, H, W]`` images -> (logits ``[B, classes]``, features
  ``[B, features]``)."""
  channels: tuple[int, int]
  features: int
  classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = (x[..., None] - 0.5) * 4.0
    for c in self.channels:
      h = nn.gelu(nn.Conv(c, (3, 3), padding="SAME")(h))
      h = nn.avg_pool(h, (2, 2), (2, 2))
    f = nn.gelu(nn.Dense(self.features)(h.reshape(h.shape[0], -1)))
    return nn.Dense(self.classes)(f), f


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A trained `ConvNet`: its config, class count and parameters."""
  config: ClassifierConfig
  classes: int
  params: PyTree

  @property
  def module(self) -> ConvNet:
    return ConvNet(self.config.channels, self.config.features, self.classes)


def _check_images(images: np.ndarray, name: str) -> np.ndarray:
  images = np.asarray(images, np.float32)
  check(images.ndim == 3 and images.shape[0] >= 1,
        f"Expected {name} [N, H, W]; got {images.shape}.")
  check(bool(np.all(np.isfinite(images))), f"{name} hold non-finite values.")
  return images


@functools.lru_cache(maxsize=8)
def _step_fn(config: ClassifierConfig, classes: int):
  model = ConvNet(config.channels, config.features, classes)
  optimizer = optim.make_optimizer(
      optim.OptimizerConfig(peak_learning_rate=config.learning_rate,
                            weight_decay=config.weight_decay,
                            grad_clip_norm=None), config.steps)

  def loss_fn(params, x, y):
    logits, _ = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  init = jax.jit(lambda key, x: model.init(key, x)["params"])
  return step, init, optimizer


def train_classifier(images: np.ndarray, labels: np.ndarray, classes: int,
                     config: ClassifierConfig) -> Classifier:
  """Trains a `ConvNet` on ``images [N, H, W]`` with ``labels [N]`` in
  [0, classes).

  Raises:
    CbenchError: bad shapes, non-finite images or labels out of range.
  """
  images = _check_images(images, "Classifier images")
  labels = np.asarray(labels)
  check(labels.shape == images.shape[:1],
        f"Expected labels [{images.shape[0]}]; got {labels.shape}.")
  check(classes >= 2 and bool(np.all((labels >= 0) & (labels < classes))),
        f"Labels must lie in [0, {classes}) with classes={classes} >= 2.")
  step, init, optimizer = _step_fn(config, int(classes))
  params = init(jax.random.key(config.seed), jnp.asarray(images[:1]))
  opt_state = optimizer.init(params)
  order = text_data.EpochOrder(images.shape[0], config.batch_size,
                               config.seed)
  labels = labels.astype(np.int32)
  for s in range(config.steps):
    idx = order.indices(s)
    params, opt_state, _ = step(params, opt_state, images[idx], labels[idx])
  return Classifier(config, int(classes), params)


@functools.partial(jax.jit, static_argnums=(0,))
def _apply(module: ConvNet, params: PyTree, x: jax.Array):
  return module.apply({"params": params}, x)


def _outputs(net: Classifier, images: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
  """(logits, features) in fixed-shape chunks (one compilation)."""
  images = _check_images(images, "Images")
  n = images.shape[0]
  pad = -n % _EVAL_BATCH
  x = np.concatenate([images, np.zeros((pad,) + images.shape[1:],
                                       np.float32)])
  logits, feats = [], []
  for lo in range(0, x.shape[0], _EVAL_BATCH):
    lg, f = _apply(net.module, net.params, x[lo:lo + _EVAL_BATCH])
    logits.append(np.asarray(lg))
    feats.append(np.asarray(f))
  return np.concatenate(logits)[:n], np.concatenate(feats)[:n]


def features(net: Classifier, images: np.ndarray) -> np.ndarray:
  """``[N, features]`` float64 penultimate activations."""
  return _outputs(net, images)[1].astype(np.float64)


def predict(net: Classifier, images: np.ndarray) -> np.ndarray:
  """``[N]`` int predicted classes."""
  return np.argmax(_outputs(net, images)[0], axis=-1)


def accuracy(net: Classifier, images: np.ndarray, labels: np.ndarray
             ) -> float:
  """Share of `images` whose predicted class is `labels`."""
  labels = np.asarray(labels)
  check(labels.shape == (np.shape(images)[0],),
        f"Expected labels [{np.shape(images)[0]}]; got {labels.shape}.")
  return float(np.mean(predict(net, images) == labels))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh(s)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """Frechet distance of Gaussians fitted to features ``a [N, F]`` and
  ``b [M, F]`` (the FID formula on any features).

  Raises:
    CbenchError: not two finite 2-D sets of one width, of >= 2 rows each.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  check(a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[1],
        f"Expected features [N, F] and [M, F]; got {a.shape}, {b.shape}.")
  check(min(a.shape[0], b.shape[0]) >= 2,
        f"Need at least 2 rows per set; got {a.shape[0]}, {b.shape[0]}.")
  check(bool(np.all(np.isfinite(a)) and np.all(np.isfinite(b))),
        "Features hold non-finite values.")
  mu_a, mu_b = a.mean(0), b.mean(0)
  s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  r = _psd_sqrt(s_a)
  m = r @ s_b @ r
  cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0.0,
                                 None)))
  d = float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b)
            - 2.0 * cross)
  return max(d, 0.0)


def band_names(levels: int) -> tuple[str, ...]:
  """``A<L>, H<L>, V<L>, D<L>, ..., H1, V1, D1``: coarse to fine."""
  out = [f"A{levels}"]
  for l in range(levels, 0, -1):
    out += [f"H{l}", f"V{l}", f"D{l}"]
  return tuple(out)


def band_energy(images: np.ndarray, wavelet: str, levels: int
                ) -> np.ndarray:
  """``[3 levels + 1]`` mean squared coefficient per band (`band_names`
  order), averaged over images."""
  images = _check_images(images, "Images")
  c = wavelets.wavedec2(images, wavelet, levels)
  bands = [c.approx] + [b for d in c.details for b in d]
  return np.asarray([float(jnp.mean(jnp.square(b))) for b in bands])


def band_error(energy: np.ndarray, reference: np.ndarray) -> float:
  """Mean absolute log10 ratio of two band-energy spectra."""
  energy, reference = np.asarray(energy), np.asarray(reference)
  check(energy.shape == reference.shape and bool(np.all(reference > 0)),
        f"Expected positive spectra of one shape; got {energy.shape}, "
        f"{reference.shape}.")
  return float(np.mean(np.abs(np.log10(np.maximum(energy, 1e-30)
                                       / reference))))
