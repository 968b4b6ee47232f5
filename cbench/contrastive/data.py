"""Generated image-like data with class structure and random augmentations.

Each class c has a prototype: a sum of `blobs` random signed Gaussian bumps
on an s x s grid (unit RMS). A record is its class prototype, circularly
shifted by up to `max_shift` pixels, plus an instance pattern (one bump of
amplitude `instance_scale`) and pixel noise. A view of a record is a fresh
augmentation: a further circular shift of up to `view_shift` pixels, a gain
in [1 - gain_jitter, 1 + gain_jitter], pixel dropout and Gaussian noise.
Images are flattened to float32 vectors of length s^2. Everything is drawn
from an explicit `np.random.Generator` (no downloads).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cbench._validate import check


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageDataConfig:
  """Shape and difficulty of the generated data (all public).

  Attributes:
    num_classes: K classes.
    image_size: s (images are s x s, flattened to s^2).
    blobs: Gaussian bumps per class prototype.
    blob_width: bump std in pixels.
    max_shift: record-level circular shift (pixels, each axis).
    instance_scale: amplitude of the per-record bump.
    pixel_noise: per-record pixel noise std.
    view_shift: extra circular shift per view (pixels, each axis).
    gain_jitter: view gain drawn from [1 - g, 1 + g].
    dropout: per-pixel probability of zeroing in a view.
    view_noise: per-view pixel noise std.
  """
  num_classes: int = 10
  image_size: int = 8
  blobs: int = 3
  blob_width: float = 1.2
  max_shift: int = 2
  instance_scale: float = 0.7
  pixel_noise: float = 0.2
  view_shift: int = 1
  gain_jitter: float = 0.3
  dropout: float = 0.1
  view_noise: float = 0.3

  def __post_init__(self):
    check(self.num_classes >= 2,
          f"Expected num_classes={self.num_classes} >= 2.")
    check(self.image_size >= 2,
          f"Expected image_size={self.image_size} >= 2.")
    check(0 <= self.dropout < 1, f"Expected 0 <= dropout={self.dropout} < 1.")
    check(0 <= self.gain_jitter < 1,
          f"Expected 0 <= gain_jitter={self.gain_jitter} < 1.")

  @property
  def dim(self) -> int:
    return self.image_size * self.image_size


def _bump(s: int, center: np.ndarray, width: float) -> np.ndarray:
  yy, xx = np.mgrid[0:s, 0:s]
  # Circular distance so that shifted bumps stay bumps.
  dy = np.minimum(np.abs(yy - center[0]), s - np.abs(yy - center[0]))
  dx = np.minimum(np.abs(xx - center[1]), s - np.abs(xx - center[1]))
  return np.exp(-(dy ** 2 + dx ** 2) / (2 * width ** 2))


def prototypes(config: ImageDataConfig,
               rng: np.random.Generator) -> np.ndarray:
  """(K, s, s) class prototypes with unit RMS."""
  s = config.image_size
  out = np.zeros((config.num_classes, s, s))
  for c in range(config.num_classes):
    for _ in range(config.blobs):
      out[c] += rng.choice([-1.0, 1.0]) * _bump(
          s, rng.uniform(0, s, 2), config.blob_width)
    out[c] /= np.sqrt(np.mean(out[c] ** 2)) + 1e-12
  return out


def _roll_each(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
  """Circularly shift image i by shifts[i] = (dy, dx)."""
  n, s, _ = images.shape
  rows = (np.arange(s)[None, :] - shifts[:, :1]) % s          # (n, s)
  cols = (np.arange(s)[None, :] - shifts[:, 1:]) % s          # (n, s)
  return images[np.arange(n)[:, None, None], rows[:, :, None],
                cols[:, None, :]]


def records(config: ImageDataConfig, protos: np.ndarray, num: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(images (num, s, s) float32, labels (num,) int32)."""
  s, k = config.image_size, config.num_classes
  labels = rng.integers(0, k, num)
  m = config.max_shift
  shifts = rng.integers(-m, m + 1, (num, 2))
  x = _roll_each(protos[labels], shifts)
  centers = rng.uniform(0, s, (num, 2))
  yy, xx = np.mgrid[0:s, 0:s]
  dy = np.abs(yy[None] - centers[:, :1, None])
  dx = np.abs(xx[None] - centers[:, 1:, None])
  dy, dx = np.minimum(dy, s - dy), np.minimum(dx, s - dx)
  amp = config.instance_scale * rng.choice([-1.0, 1.0], (num, 1, 1))
  x = x + amp * np.exp(-(dy ** 2 + dx ** 2) / (2 * config.blob_width ** 2))
  x = x + config.pixel_noise * rng.standard_normal(x.shape)
  return x.astype(np.float32), labels.astype(np.int32)


def augment(config: ImageDataConfig, images: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
  """One random view per image: (n, s, s) -> flattened (n, s^2) float32."""
  n = images.shape[0]
  m = config.view_shift
  x = _roll_each(images, rng.integers(-m, m + 1, (n, 2)))
  g = config.gain_jitter
  x = x * rng.uniform(1 - g, 1 + g, (n, 1, 1))
  x = x * (rng.random(x.shape) >= config.dropout)
  x = x + config.view_noise * rng.standard_normal(x.shape)
  return x.reshape(n, -1).astype(np.float32)


def flat(images: np.ndarray) -> np.ndarray:
  """Un-augmented images as (n, s^2) float32 (probe inputs)."""
  return images.reshape(images.shape[0], -1).astype(np.float32)
