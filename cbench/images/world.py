"""A generated grayscale image world with a public/private split by design.

    world = make_world(WorldConfig(), num_private=2000, num_public=4000,
                       seed=0)
    world.private.images   # [2000, 32, 32] float32 in [0, 1]

Every image is a textured background plus (for class images) a few
anti-aliased shapes. A CLASS is a fixed global layout: which shapes
(disc, square, triangle, ring, cross, horizontal / vertical bar) sit at
which anchor of a 3 x 3 grid, at what size and brightness; each instance
jitters the positions (``position_jitter`` pixels), sizes and brightness.

The split mirrors the spectral hypothesis of Bayrooti et al. (coarse =
private, fine = generic):
  * private: classes ``0 .. num_private_classes - 1``; what is private is
    the class layouts, i.e. global structure, which lives in the coarse
    wavelet band;
  * public: texture-only images (label -1) and the SAME renderer's other
    classes (``num_private_classes ..``), never a private class. The
    textures (high-frequency gratings plus pixel noise, one distribution for
    both splits) live mostly in the fine bands, so a stage-2 model trained
    on public images sees the same detail statistics as private images.

Class layouts are a function of ``layout_seed`` (part of the benchmark
definition, public); images of a split are a function of (seed, split), so
the public set does not depend on the private size. Host NumPy with explicit
`np.random.Generator`s, rendering vectorised over images and shapes. No
downloads.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cbench import _validate
from cbench._validate import check

SHAPES = ("disc", "square", "triangle", "ring", "cross", "hbar", "vbar")
TEXTURE_LABEL = -1
_PRIVATE_STREAM, _PUBLIC_STREAM = 0x5052, 0x5055
_ANCHORS = (0.25, 0.5, 0.75)
_CHUNK = 256  # Images rendered per vectorised block (bounds memory).


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorldConfig:
  """Public parameters of the image world.

  Attributes:
    size: image side in pixels (a multiple of 2**levels for the DWT).
    num_private_classes: K, private classes 0 .. K-1.
    num_public_classes: M, public classes K .. K+M-1.
    max_shapes: at most this many shapes per class layout (1 .. 9).
    layout_seed: seed of the class layouts (public).
    position_jitter: std of the per-instance shape offset, pixels.
    size_jitter: relative std of the per-instance shape size.
    texture_amplitude: peak-to-peak scale of the background texture.
    texture_only_fraction: share of public images without shapes.
  """
  size: int = 32
  num_private_classes: int = 4
  num_public_classes: int = 4
  max_shapes: int = 3
  layout_seed: int = 0
  position_jitter: float = 1.0
  size_jitter: float = 0.1
  texture_amplitude: float = 0.15
  texture_only_fraction: float = 0.5

  def __post_init__(self):
    check(self.size >= 8, f"Expected size={self.size} >= 8.")
    _validate.positive("num_private_classes", self.num_private_classes)
    _validate.non_negative("num_public_classes", self.num_public_classes)
    _validate.in_range("max_shapes", self.max_shapes, 1, len(_ANCHORS) ** 2)
    _validate.non_negative("position_jitter", self.position_jitter)
    _validate.non_negative("size_jitter", self.size_jitter)
    _validate.in_range("texture_amplitude", self.texture_amplitude, 0.0, 0.5)
    _validate.in_range("texture_only_fraction", self.texture_only_fraction,
                       0.0, 1.0)
    check(self.num_public_classes > 0 or self.texture_only_fraction == 1.0,
          "Expected texture_only_fraction=1 when num_public_classes=0.")

  @property
  def num_classes(self) -> int:
    return self.num_private_classes + self.num_public_classes


@dataclasses.dataclass(frozen=True)
class ClassLayout:
  """One class: ``S`` shapes (arrays of length S).

  Attributes:
    kinds: index into `SHAPES`.
    centers: ``[S, 2]`` (row, col) in pixels.
    radii: half-extent in pixels.
    intensities: brightness in [0, 1].
  """
  kinds: np.ndarray
  centers: np.ndarray
  radii: np.ndarray
  intensities: np.ndarray


@dataclasses.dataclass(frozen=True)
class ImageSet:
  """Images and their class labels.

  Attributes:
    images: ``[N, size, size]`` float32 in [0, 1].
    labels: ``[N]`` int32 class id, `TEXTURE_LABEL` (-1) for texture-only.
  """
  images: np.ndarray
  labels: np.ndarray

  def __len__(self) -> int:
    return int(self.images.shape[0])


@dataclasses.dataclass(frozen=True)
class World:
  """A config and its two splits (private records, public data)."""
  config: WorldConfig
  private: ImageSet
  public: ImageSet


def class_layouts(config: WorldConfig) -> list[ClassLayout]:
  """The ``K + M`` class layouts (private first); pairwise distinct as sets
  of (shape, anchor)."""
  rng = np.random.default_rng((config.layout_seed, 0x4C41))
  n_anchor = len(_ANCHORS) ** 2
  seen, out = set(), []
  while len(out) < config.num_classes:
    s = int(rng.integers(1, config.max_shapes + 1))
    anchors = np.sort(rng.choice(n_anchor, size=s, replace=False))
    kinds = rng.integers(0, len(SHAPES), size=s)
    signature = tuple(sorted(zip(anchors.tolist(), kinds.tolist())))
    if signature in seen:
      continue
    seen.add(signature)
    grid = np.asarray(_ANCHORS) * config.size
    centers = np.stack([grid[anchors // 3], grid[anchors % 3]], axis=1)
    radii = config.size * rng.uniform(0.09, 0.14, size=s)
    out.append(ClassLayout(kinds.astype(np.int32), centers, radii,
                           rng.uniform(0.7, 1.0, size=s)))
  return out


def _signed_distance(kind, dy, dx, r):
  """Approximate signed distance (pixels, < 0 inside) of every shape kind;
  `kind`, `r` broadcast against ``dy``, ``dx`` [..., H, W]."""
  ady, adx = np.abs(dy), np.abs(dx)
  rho = np.sqrt(dy * dy + dx * dx)
  table = (
      rho - r,                                                  # disc
      np.maximum(ady, adx) - 0.85 * r,                          # square
      np.maximum(dy - 0.5 * r, 0.866 * adx - 0.5 * dy - 0.5 * r),  # triangle
      np.abs(rho - 0.75 * r) - 0.25 * r,                        # ring
      np.minimum(np.maximum(adx - 0.3 * r, ady - r),
                 np.maximum(ady - 0.3 * r, adx - r)),           # cross
      np.maximum(adx - 1.4 * r, ady - 0.35 * r),                # hbar
      np.maximum(ady - 1.4 * r, adx - 0.35 * r),                # vbar
  )
  d = np.full(np.broadcast(dy, kind).shape, np.inf)
  for k, dk in enumerate(table):
    d = np.where(kind == k, dk, d)
  return d


def textures(config: WorldConfig, n: int, rng: np.random.Generator
             ) -> np.ndarray:
  """``[n, size, size]`` float32 backgrounds: a base level plus two
  high-frequency gratings (period 2-5 px, any orientation) and pixel noise,
  scaled to ``texture_amplitude``."""
  size = config.size
  yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  base = rng.uniform(0.15, 0.35, size=(n, 1, 1))
  tex = np.zeros((n, size, size))
  for _ in range(2):
    theta = rng.uniform(0, np.pi, size=(n, 1, 1))
    freq = 2 * np.pi / rng.uniform(2.0, 5.0, size=(n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    amp = rng.uniform(0.3, 1.0, size=(n, 1, 1))
    tex += amp * np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy)
                        + phase)
  tex += 0.5 * rng.standard_normal((n, size, size))
  tex *= config.texture_amplitude / 4.0
  return (base + tex).astype(np.float32)


def render(config: WorldConfig, labels: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
  """Images of class `labels` ([N] int, -1: texture only) on fresh
  textures; ``[N, size, size]`` float32 clipped to [0, 1]."""
  labels = np.asarray(labels)
  check(labels.ndim == 1, f"Expected labels [N]; got shape {labels.shape}.")
  check(bool(np.all((labels >= -1) & (labels < config.num_classes))),
        f"Labels must lie in [-1, {config.num_classes}).")
  layouts = class_layouts(config)
  s_max = config.max_shapes
  n = labels.size
  # Per-class parameter tables [C + 1, S] (row C: texture only, no shape).
  table = {k: np.zeros((config.num_classes + 1, s_max))
           for k in ("kind", "cy", "cx", "r", "level", "active")}
  for c, lay in enumerate(layouts):
    s = lay.kinds.size
    table["kind"][c, :s] = lay.kinds
    table["cy"][c, :s], table["cx"][c, :s] = lay.centers.T
    table["r"][c, :s] = lay.radii
    table["level"][c, :s] = lay.intensities
    table["active"][c, :s] = 1
  rows = np.where(labels < 0, config.num_classes, labels)
  p = {k: v[rows] for k, v in table.items()}          # [N, S]
  jitter = rng.standard_normal((2, n, s_max)) * config.position_jitter
  p["cy"] = p["cy"] + jitter[0]
  p["cx"] = p["cx"] + jitter[1]
  p["r"] = p["r"] * np.exp(config.size_jitter
                           * rng.standard_normal((n, s_max)))
  p["level"] = np.clip(p["level"] + 0.05 * rng.standard_normal((n, s_max)),
                       0.0, 1.0)
  images = textures(config, n, rng).astype(np.float64)
  yy, xx = np.meshgrid(np.arange(config.size) + 0.5,
                       np.arange(config.size) + 0.5, indexing="ij")
  for lo in range(0, n, _CHUNK):
    sl = slice(lo, lo + _CHUNK)
    e = lambda k: p[k][sl][:, :, None, None]
    d = _signed_distance(e("kind"), yy - e("cy"), xx - e("cx"), e("r"))
    alpha = e("active") / (1.0 + np.exp(np.clip(d / 0.5, -50, 50)))
    img = images[sl]
    for j in range(s_max):   # Composite shapes in slot order.
      a = alpha[:, j]
      img = img * (1 - a) + p["level"][sl][:, j, None, None] * a
    images[sl] = img
  return np.clip(images, 0.0, 1.0).astype(np.float32)


def private_images(config: WorldConfig, n: int, seed: int) -> ImageSet:
  """`n` private records: private classes, uniformly, on textures."""
  rng = np.random.default_rng((seed, _PRIVATE_STREAM))
  labels = rng.integers(0, config.num_private_classes, size=n)
  return ImageSet(render(config, labels, rng), labels.astype(np.int32))


def public_images(config: WorldConfig, n: int, seed: int) -> ImageSet:
  """`n` public images: texture-only (``texture_only_fraction``) or a
  public class (uniformly); never a private class."""
  rng = np.random.default_rng((seed, _PUBLIC_STREAM))
  k, m = config.num_private_classes, config.num_public_classes
  labels = (rng.integers(k, k + m, size=n) if m
            else np.full(n, TEXTURE_LABEL))
  labels = np.where(rng.random(n) < config.texture_only_fraction,
                    TEXTURE_LABEL, labels)
  return ImageSet(render(config, labels, rng), labels.astype(np.int32))


def make_world(config: WorldConfig, *, num_private: int, num_public: int,
               seed: int) -> World:
  """Both splits of the world for `seed`."""
  _validate.positive("num_private", num_private)
  _validate.positive("num_public", num_public)
  return World(config, private_images(config, num_private, seed),
               public_images(config, num_public, seed))


def random_patches(image: np.ndarray, size: int, count: int,
                   rng: np.random.Generator) -> np.ndarray:
  """`count` random ``size x size`` crops of a 2-D `image`, each rescaled
  to [0, 1] by the image's range; ``[count, size, size]`` float32. For
  real-photo texture sets (e.g. an array a package ships)."""
  image = np.asarray(image, np.float64)
  check(image.ndim == 2 and min(image.shape) >= size,
        f"Expected a 2-D image at least {size} on a side; got "
        f"{image.shape}.")
  lo, hi = float(image.min()), float(image.max())
  scaled = (image - lo) / max(hi - lo, 1e-12)
  r = rng.integers(0, image.shape[0] - size + 1, size=count)
  c = rng.integers(0, image.shape[1] - size + 1, size=count)
  idx_r = r[:, None, None] + np.arange(size)[None, :, None]
  idx_c = c[:, None, None] + np.arange(size)[None, None, :]
  return scaled[idx_r, idx_c].astype(np.float32)
