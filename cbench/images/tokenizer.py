"""Spectral image tokenizer: wavelet bands -> scalar-quantized token ids.

    tok = tokenizer.fit(public_images, TokenizerConfig(levels=2,
                                                        vocab_size=64))
    ids = tok.encode(images)          # [N, tok.seq_len] int32 in [0, V)
    approx = tok.decode_coarse(ids)   # [N, H >> L, W >> L]
    recon = tok.decode(ids)           # [N, H, W]

Sequence order is coarse to fine: the level-L approximation band in raster
order (``(H >> L) * (W >> L)`` tokens; this alone is stage 1's sequence),
then, for the full-resolution baseline (``detail_levels = d > 0``), the
detail bands of levels L, L-1, ..., L-d+1, each as cH, cV, cD in raster
order. Bands not encoded decode as zeros (``decode`` of a coarse-only
sequence is the wavelet upsample of the coarse band).

Quantizer: one scalar codebook per band group (the approximation, and each
(level, orientation) detail band), V bins whose edges are the
``1/V, ..., (V-1)/V`` quantiles of that group's coefficients over the
PUBLIC fitting images, and whose reconstruction values are the public
means of each bin (Lloyd centroids; the edge midpoint for an empty bin).
Values beyond the public range fall in the end bins. Fitting reads only the
images it is given: pass public images only (the codebooks are then public
and cost no privacy).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cbench import _validate
from cbench._validate import check
from cbench.images import wavelets

_ORIENT = ("H", "V", "D")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenizerConfig:
  """Attributes:
    wavelet: wavelet name (`wavelets.NAMES`).
    levels: L, decomposition levels; the coarse band is ``2**L`` smaller
      per side.
    vocab_size: V, bins per band group (token ids in [0, V)).
    detail_levels: d in [0, L], detail levels appended after the coarse
      band (0: stage-1 coarse tokens; L: full-resolution baseline).
  """
  wavelet: str = "db2"
  levels: int = 2
  vocab_size: int = 64
  detail_levels: int = 0

  def __post_init__(self):
    _validate.one_of("wavelet", self.wavelet, wavelets.NAMES)
    _validate.in_range("levels", self.levels, 1, 8)
    _validate.in_range("vocab_size", self.vocab_size, 2, 65536)
    _validate.in_range("detail_levels", self.detail_levels, 0, self.levels)


def _layout(config: TokenizerConfig, h: int, w: int):
  """(flat indices into the packed [h*w] layout, group of each token,
  group names), coarse to fine."""
  ln = config.levels
  idx, grp, names = [], [], []

  def block(r0, c0, bh, bw, name):
    rr, cc = np.meshgrid(np.arange(r0, r0 + bh), np.arange(c0, c0 + bw),
                         indexing="ij")
    idx.append((rr * w + cc).ravel())
    grp.append(np.full(bh * bw, len(names)))
    names.append(name)

  block(0, 0, h >> ln, w >> ln, f"A{ln}")
  for l in range(ln, ln - config.detail_levels, -1):
    bh, bw = h >> l, w >> l
    block(bh, 0, bh, bw, f"H{l}")
    block(0, bw, bh, bw, f"V{l}")
    block(bh, bw, bh, bw, f"D{l}")
  return (np.concatenate(idx).astype(np.int32),
          np.concatenate(grp).astype(np.int32), tuple(names))


@dataclasses.dataclass(frozen=True, eq=False)
class SpectralTokenizer:
  """A fitted tokenizer (construct with `fit` or `from_dict`).

  Attributes:
    config: the `TokenizerConfig`.
    image_shape: (H, W) it encodes.
    edges: ``[G, V - 1]`` float32 bin edges per band group (increasing).
    centers: ``[G, V]`` float32 reconstruction value per bin.
    bounds: ``[G, 2]`` public (min, max) per group.
  """
  config: TokenizerConfig
  image_shape: tuple[int, int]
  edges: np.ndarray
  centers: np.ndarray
  bounds: np.ndarray

  def __post_init__(self):
    h, w = self.image_shape
    idx, grp, names = _layout(self.config, h, w)
    object.__setattr__(self, "_index", idx)
    object.__setattr__(self, "_group", grp)
    object.__setattr__(self, "group_names", names)
    v = self.config.vocab_size
    check(self.edges.shape == (len(names), v - 1)
          and self.centers.shape == (len(names), v),
          f"Tokenizer tables {self.edges.shape}, {self.centers.shape} do "
          f"not match {len(names)} groups of V={v}.")

  @property
  def vocab_size(self) -> int:
    return self.config.vocab_size

  @property
  def coarse_shape(self) -> tuple[int, int]:
    h, w = self.image_shape
    return h >> self.config.levels, w >> self.config.levels

  @property
  def seq_len(self) -> int:
    return int(self._index.size)

  @property
  def group_of_token(self) -> np.ndarray:
    """``[seq_len]`` band group of each position."""
    return self._group

  def _check_images(self, images) -> None:
    check(tuple(images.shape[-2:]) == tuple(self.image_shape),
          f"Expected images [..., {self.image_shape[0]}, "
          f"{self.image_shape[1]}]; got {tuple(images.shape)}.")

  def coefficients(self, images) -> jax.Array:
    """``[..., seq_len]`` unquantized coefficients in token order."""
    images = jnp.asarray(images, jnp.float32)
    self._check_images(images)
    packed = wavelets.dwt2_packed(images, self.config.wavelet,
                                  self.config.levels)
    flat = packed.reshape(packed.shape[:-2] + (-1,))
    return flat[..., self._index]

  def quantize(self, values) -> jax.Array:
    """Coefficients in token order ``[..., seq_len]`` -> int32 ids."""
    return _quantize(jnp.asarray(values), self.edges[self._group])

  def dequantize(self, tokens) -> jax.Array:
    """int ids ``[..., seq_len]`` -> reconstruction values."""
    tokens = jnp.asarray(tokens)
    check(tokens.shape[-1] == self.seq_len,
          f"Expected {self.seq_len} tokens per image; got "
          f"{tokens.shape[-1]}.")
    return _dequantize(tokens, self.centers, self._group)

  def encode(self, images) -> jax.Array:
    """``[..., H, W]`` images -> ``[..., seq_len]`` int32 in [0, V)."""
    return self.quantize(self.coefficients(images))

  def decode_packed(self, tokens) -> jax.Array:
    """Packed wavelet layout ``[..., H, W]`` (unencoded bands zero)."""
    values = self.dequantize(tokens)
    h, w = self.image_shape
    flat = jnp.zeros(values.shape[:-1] + (h * w,), values.dtype)
    return flat.at[..., self._index].set(values).reshape(
        values.shape[:-1] + (h, w))

  def decode_coarse(self, tokens) -> jax.Array:
    """The dequantized level-L approximation ``[..., H >> L, W >> L]``."""
    ch, cw = self.coarse_shape
    return self.dequantize(tokens)[..., :ch * cw].reshape(
        tokens.shape[:-1] + (ch, cw))

  def decode(self, tokens) -> jax.Array:
    """Tokens -> images ``[..., H, W]`` (inverse DWT of `decode_packed`)."""
    return wavelets.idwt2_packed(self.decode_packed(tokens),
                                 self.config.wavelet, self.config.levels)

  def to_dict(self) -> dict[str, Any]:
    return {"config": dataclasses.asdict(self.config),
            "image_shape": list(self.image_shape),
            "edges": self.edges.tolist(), "centers": self.centers.tolist(),
            "bounds": self.bounds.tolist()}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "SpectralTokenizer":
    return cls(TokenizerConfig(**d["config"]), tuple(d["image_shape"]),
               np.asarray(d["edges"], np.float32),
               np.asarray(d["centers"], np.float32),
               np.asarray(d["bounds"], np.float32))


@jax.jit
def _quantize(values: jax.Array, edges: jax.Array) -> jax.Array:
  """values [..., T], per-position edges [T, V-1] -> bins [..., T]."""
  return jnp.sum(values[..., None] >= edges, axis=-1).astype(jnp.int32)


@jax.jit
def _dequantize(tokens: jax.Array, centers: jax.Array, group: jax.Array
                ) -> jax.Array:
  return centers[group, tokens]


def _fit_group(values: np.ndarray, v: int):
  values = np.sort(values.astype(np.float64))
  edges = np.quantile(values, np.arange(1, v) / v)
  # Strictly increasing edges even where quantiles tie (e.g. clipped pixels).
  span = max(values[-1] - values[0], 1e-6)
  edges = np.maximum.accumulate(edges + np.arange(v - 1) * span * 1e-9)
  lo, hi = values[0], values[-1]
  bins = np.searchsorted(edges, values, side="right")
  sums = np.bincount(bins, weights=values, minlength=v)
  counts = np.bincount(bins, minlength=v)
  bounds = np.concatenate([[min(lo, edges[0])], edges,
                           [max(hi, edges[-1])]])
  mid = 0.5 * (bounds[:-1] + bounds[1:])
  centers = np.where(counts > 0, sums / np.maximum(counts, 1), mid)
  return edges, centers, (lo, hi)


def fit(public_images: np.ndarray, config: TokenizerConfig
        ) -> SpectralTokenizer:
  """Fits the codebooks on `public_images` ``[N, H, W]`` only.

  Raises:
    CbenchError: non-finite images, a shape the DWT cannot take, or fewer
      images than needed for V quantiles of the coarse band.
  """
  images = np.asarray(public_images, np.float32)
  check(images.ndim == 3, f"Expected public images [N, H, W]; got "
        f"{images.shape}.")
  check(bool(np.all(np.isfinite(images))),
        "Public images hold non-finite values.")
  h, w = images.shape[1:]
  wavelets.check_shape(images.shape, config.levels)
  idx, grp, names = _layout(config, h, w)
  coarse_values = images.shape[0] * (h >> config.levels) * (
      w >> config.levels)
  check(coarse_values >= config.vocab_size,
        f"Need at least vocab_size={config.vocab_size} coarse coefficients "
        f"to fit; got {coarse_values}.")
  packed = np.asarray(jax.device_get(wavelets.dwt2_packed(
      images, config.wavelet, config.levels))).reshape(images.shape[0], -1)
  values = packed[:, idx]
  out = [_fit_group(values[:, grp == g].ravel(), config.vocab_size)
         for g in range(len(names))]
  return SpectralTokenizer(
      config, (int(h), int(w)),
      np.stack([o[0] for o in out]).astype(np.float32),
      np.stack([o[1] for o in out]).astype(np.float32),
      np.asarray([o[2] for o in out], np.float32))
