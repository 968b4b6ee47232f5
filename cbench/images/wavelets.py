"""Multi-level 2-D discrete wavelet transform in JAX (periodization mode).

    coeffs = wavelets.wavedec2(images, "db2", levels=2)   # images [..., H, W]
    back = wavelets.waverec2(coeffs, "db2")                # == images

Orthogonal wavelets only (Haar, Daubechies db2..db4), boundary mode
PERIODIZATION: the signal is treated as periodic, so every level halves
each side exactly (H and W must be multiples of ``2**levels``) and the
transform is orthonormal (energy preserving). The inverse is the transpose,
exact to float rounding. Coefficients agree with ``pywt.wavedec2(x, name,
mode='periodization', level=levels)``.

One level along an axis of length N is an N x N orthonormal matrix
``A = [Lo; Hi]`` built on the host from the filters (``lo[k] = sum_j
dec_lo[j] x[(2k + F/2 - j) mod N]``, pywt's indexing); the 2-D level is
``A_H X A_W^T`` on the current approximation block, giving the packed
(Mallat) layout

    [[LL, V],      LL: approximation, V: detail along W (pywt cV),
     [H,  D]]      H: detail along H (pywt cH), D: diagonal (pywt cD),

repeated on LL for the next level. Leading axes are batch axes (put channels
there: ``[batch, C, H, W]``). Everything is jittable; shapes are static.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from cbench._validate import CbenchError, check

_S3 = math.sqrt(3.0)
_S10 = math.sqrt(10.0)
_R = math.sqrt(5.0 + 2.0 * _S10)

# Decomposition low-pass filters (pywt's dec_lo order).
_FILTERS = {
    "haar": (1 / math.sqrt(2), 1 / math.sqrt(2)),
    "db1": (1 / math.sqrt(2), 1 / math.sqrt(2)),
    "db2": tuple(c / (4 * math.sqrt(2)) for c in
                 (1 - _S3, 3 - _S3, 3 + _S3, 1 + _S3)),
    "db3": tuple(c / (16 * math.sqrt(2)) for c in (
        1 + _S10 - _R, 5 + _S10 - 3 * _R, 10 - 2 * _S10 - 2 * _R,
        10 - 2 * _S10 + 2 * _R, 5 + _S10 + 3 * _R, 1 + _S10 + _R)),
}
NAMES = tuple(sorted(_FILTERS))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Wavelet:
  """An orthogonal wavelet given by its decomposition low-pass filter.

  Attributes:
    name: label.
    dec_lo: low-pass analysis filter (pywt order), even length, orthonormal
      to its even shifts; the high-pass is ``dec_hi[j] = (-1)**(j + 1)
      dec_lo[F - 1 - j]``.
  """
  name: str
  dec_lo: tuple[float, ...]

  def __post_init__(self):
    h = np.asarray(self.dec_lo, np.float64)
    check(h.ndim == 1 and h.size >= 2 and h.size % 2 == 0,
          f"Wavelet {self.name!r}: expected an even-length filter, got "
          f"{h.size} taps.")
    shifts = [float(np.dot(h[2 * s:], h[:h.size - 2 * s]))
              for s in range(h.size // 2)]
    check(np.allclose(shifts, [1.0] + [0.0] * (len(shifts) - 1),
                      atol=1e-10),
          f"Wavelet {self.name!r}: filter is not orthonormal to its even "
          f"shifts (only orthogonal wavelets have an exact transpose "
          f"inverse).")

  @property
  def dec_hi(self) -> tuple[float, ...]:
    f = len(self.dec_lo)
    return tuple((-1) ** (j + 1) * self.dec_lo[f - 1 - j] for j in range(f))


WaveletLike = Union[str, Wavelet]


def get(wavelet: WaveletLike) -> Wavelet:
  """The named wavelet ('haar', 'db1'..'db3') or `wavelet` itself."""
  if isinstance(wavelet, Wavelet):
    return wavelet
  if wavelet not in _FILTERS:
    raise CbenchError(f"Unknown wavelet={wavelet!r}; expected one of "
                      f"{list(NAMES)}.")
  return Wavelet(name=wavelet, dec_lo=_FILTERS[wavelet])


@functools.lru_cache(maxsize=64)
def _matrix(dec_lo: tuple[float, ...], n: int) -> np.ndarray:
  """[n, n] float64 one-level analysis matrix [Lo; Hi] (periodization)."""
  w = get(Wavelet(name="m", dec_lo=dec_lo))
  lo, hi = np.asarray(w.dec_lo), np.asarray(w.dec_hi)
  f = lo.size
  m = np.zeros((n, n))
  k = np.arange(n // 2)[:, None]
  cols = (2 * k + f // 2 - np.arange(f)[None, :]) % n
  rows = np.broadcast_to(k, cols.shape)
  np.add.at(m, (rows, cols), lo[None, :])
  np.add.at(m, (rows + n // 2, cols), hi[None, :])
  return m


def _level_matrices(w: Wavelet, h: int, width: int, dtype):
  return (jnp.asarray(_matrix(w.dec_lo, h), dtype),
          jnp.asarray(_matrix(w.dec_lo, width), dtype))


def check_shape(shape: tuple[int, ...], levels: int) -> None:
  """Raises CbenchError unless `shape` [..., H, W] takes `levels` levels."""
  check(levels >= 1, f"Expected levels={levels} >= 1.")
  check(len(shape) >= 2, f"Expected images [..., H, W]; got shape {shape}.")
  h, w = shape[-2:]
  unit = 2 ** levels
  check(h % unit == 0 and w % unit == 0,
        f"Image side {h}x{w} must be a multiple of 2**levels={unit} "
        f"(periodization mode).")


def _mm(a, x, b):
  """a @ x @ b^T over the last two axes, full float32 precision."""
  hp = jax.lax.Precision.HIGHEST
  y = jnp.einsum("ij,...jk->...ik", a, x, precision=hp)
  return jnp.einsum("...ik,lk->...il", y, b, precision=hp)


def dwt2_packed(x: jax.Array, wavelet: WaveletLike, levels: int
                ) -> jax.Array:
  """`levels`-level DWT of ``x [..., H, W]`` in the packed layout (same
  shape; the level-L approximation is ``[..., :H >> L, :W >> L]``)."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  check_shape(x.shape, levels)
  return _dwt2_packed(x, get(wavelet), levels)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _dwt2_packed(x: jax.Array, w: Wavelet, levels: int) -> jax.Array:
  h, wd = x.shape[-2:]
  for l in range(levels):
    nh, nw = h >> l, wd >> l
    a_h, a_w = _level_matrices(w, nh, nw, x.dtype)
    x = x.at[..., :nh, :nw].set(_mm(a_h, x[..., :nh, :nw], a_w))
  return x


def idwt2_packed(y: jax.Array, wavelet: WaveletLike, levels: int
                 ) -> jax.Array:
  """Inverse of `dwt2_packed` (the transpose; exact up to rounding)."""
  y = jnp.asarray(y)
  check_shape(y.shape, levels)
  return _idwt2_packed(y, get(wavelet), levels)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _idwt2_packed(y: jax.Array, w: Wavelet, levels: int) -> jax.Array:
  h, wd = y.shape[-2:]
  for l in reversed(range(levels)):
    nh, nw = h >> l, wd >> l
    a_h, a_w = _level_matrices(w, nh, nw, y.dtype)
    y = y.at[..., :nh, :nw].set(_mm(a_h.T, y[..., :nh, :nw], a_w.T))
  return y


class Coeffs(NamedTuple):
  """pywt-ordered coefficients.

  Attributes:
    approx: ``[..., H >> L, W >> L]`` level-L approximation.
    details: coarsest first: ``details[i] = (cH, cV, cD)`` of level
      ``L - i``, each ``[..., H >> (L - i), W >> (L - i)]``.
  """
  approx: jax.Array
  details: tuple[tuple[jax.Array, jax.Array, jax.Array], ...]


def unpack(y: jax.Array, levels: int) -> Coeffs:
  """Packed layout -> `Coeffs` (pywt's wavedec2 order)."""
  check_shape(y.shape, levels)
  h, w = y.shape[-2:]
  details = []
  for l in range(levels, 0, -1):
    bh, bw = h >> l, w >> l
    details.append((y[..., bh:2 * bh, :bw], y[..., :bh, bw:2 * bw],
                    y[..., bh:2 * bh, bw:2 * bw]))
  return Coeffs(y[..., :h >> levels, :w >> levels], tuple(details))


def pack(coeffs: Coeffs) -> jax.Array:
  """`Coeffs` -> packed layout (inverse of `unpack`)."""
  y = jnp.asarray(coeffs.approx)
  for ch, cv, cd in coeffs.details:
    top = jnp.concatenate([y, jnp.asarray(cv)], axis=-1)
    bottom = jnp.concatenate([jnp.asarray(ch), jnp.asarray(cd)], axis=-1)
    y = jnp.concatenate([top, bottom], axis=-2)
  return y


def wavedec2(x: jax.Array, wavelet: WaveletLike, levels: int) -> Coeffs:
  """pywt.wavedec2(x, wavelet, mode='periodization', level=levels)."""
  return unpack(dwt2_packed(x, wavelet, levels), levels)


def waverec2(coeffs: Coeffs, wavelet: WaveletLike) -> jax.Array:
  """pywt.waverec2(coeffs, wavelet, mode='periodization')."""
  return idwt2_packed(pack(coeffs), wavelet, len(coeffs.details))


def coarse(x: jax.Array, wavelet: WaveletLike, levels: int) -> jax.Array:
  """The level-`levels` approximation band ``[..., H >> L, W >> L]``."""
  return dwt2_packed(x, wavelet, levels)[
      ..., :x.shape[-2] >> levels, :x.shape[-1] >> levels]


def upsample(approx: jax.Array, wavelet: WaveletLike, levels: int
             ) -> jax.Array:
  """Image from the approximation band alone (all details zero):
  ``[..., h, w] -> [..., h << L, w << L]``."""
  approx = jnp.asarray(approx)
  h, w = approx.shape[-2:]
  y = jnp.zeros(approx.shape[:-2] + (h << levels, w << levels),
                approx.dtype)
  return idwt2_packed(y.at[..., :h, :w].set(approx), wavelet, levels)


def detail_mask(h: int, w: int, levels: int) -> np.ndarray:
  """[h, w] bool: True on detail coefficients of the packed layout."""
  m = np.ones((h, w), bool)
  m[:h >> levels, :w >> levels] = False
  return m
