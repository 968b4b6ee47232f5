"""Tests of the JAX 2-D DWT against PyWavelets (test reference only)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt

from cbench._validate import CbenchError
from cbench.images import wavelets


def _images(shape=(3, 32, 32), seed=0):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _max_diff_vs_pywt(x, wavelet, name, levels):
  ours = wavelets.wavedec2(x, wavelet, levels)
  ref = pywt.wavedec2(x, name, mode="periodization", level=levels)
  diffs = [np.abs(np.asarray(ours.approx) - ref[0]).max()]
  assert len(ours.details) == len(ref) - 1
  for mine, theirs in zip(ours.details, ref[1:]):
    for a, b in zip(mine, theirs):
      assert a.shape == b.shape
      diffs.append(np.abs(np.asarray(a) - b).max())
  return max(diffs)


@pytest.mark.parametrize("name", ["haar", "db2", "db3"])
def test_filters_match_pywt(name):
  w = wavelets.get(name)
  np.testing.assert_allclose(w.dec_lo, pywt.Wavelet(name).dec_lo, atol=1e-12)
  np.testing.assert_allclose(w.dec_hi, pywt.Wavelet(name).dec_hi, atol=1e-12)


@pytest.mark.parametrize("name", ["haar", "db2", "db3"])
def test_wavedec2_matches_pywt_periodization(name):
  x = _images()
  assert _max_diff_vs_pywt(x, name, name, 2) < 1e-5


def test_non_square_and_channels_match_pywt():
  x = _images((2, 3, 16, 24), seed=1)       # [batch, C, H, W]
  assert _max_diff_vs_pywt(x, "db2", "db2", 2) < 1e-5


def test_wrong_filter_fails_the_comparison():
  # Time-reversed db2 is a valid orthogonal wavelet (the transform is still
  # exactly invertible) but not pywt's db2: the comparison must catch it.
  wrong = wavelets.Wavelet(name="db2_reversed",
                           dec_lo=tuple(reversed(wavelets.get("db2").dec_lo)))
  x = _images()
  assert _max_diff_vs_pywt(x, wrong, "db2", 2) > 1e-2
  back = wavelets.waverec2(wavelets.wavedec2(x, wrong, 2), wrong)
  np.testing.assert_allclose(back, x, atol=1e-5)


def test_non_orthogonal_filter_is_rejected():
  with pytest.raises(CbenchError, match="orthonormal"):
    wavelets.Wavelet(name="bad", dec_lo=(0.5, 0.9, 0.1, -0.1))
  with pytest.raises(CbenchError, match="Unknown wavelet"):
    wavelets.get("sym99")


@pytest.mark.parametrize("name,levels", [("haar", 1), ("haar", 3),
                                         ("db2", 2), ("db3", 3)])
def test_perfect_reconstruction(name, levels):
  x = _images((4, 32, 32), seed=levels)
  y = wavelets.dwt2_packed(x, name, levels)
  np.testing.assert_allclose(wavelets.idwt2_packed(y, name, levels), x,
                             atol=2e-5)
  # Orthonormal: energy is preserved.
  np.testing.assert_allclose(jnp.sum(y ** 2), np.sum(x ** 2), rtol=1e-5)
  c = wavelets.unpack(y, levels)
  np.testing.assert_array_equal(wavelets.pack(c), y)
  np.testing.assert_allclose(wavelets.waverec2(c, name), x, atol=2e-5)


def test_jit_and_batch_consistency():
  x = _images((5, 16, 16), seed=3)
  f = jax.jit(lambda a: wavelets.dwt2_packed(a, "db2", 2))
  batched = f(x)
  single = np.stack([np.asarray(f(x[i:i + 1]))[0] for i in range(5)])
  np.testing.assert_allclose(batched, single, atol=1e-6)


def test_coarse_and_upsample():
  x = _images((2, 32, 32), seed=4)
  c = wavelets.coarse(x, "db2", 2)
  assert c.shape == (2, 8, 8)
  up = wavelets.upsample(c, "db2", 2)
  assert up.shape == (2, 32, 32)
  # The upsample is the projection onto the coarse subspace: its coarse band
  # is c and its details are zero.
  y = wavelets.dwt2_packed(up, "db2", 2)
  np.testing.assert_allclose(y[:, :8, :8], c, atol=1e-5)
  mask = wavelets.detail_mask(32, 32, 2)
  assert np.abs(np.asarray(y)[:, mask]).max() < 1e-5


def test_bad_shapes_raise():
  with pytest.raises(CbenchError, match="multiple of 2"):
    wavelets.dwt2_packed(np.zeros((2, 30, 32)), "haar", 2)
  with pytest.raises(CbenchError, match="levels"):
    wavelets.dwt2_packed(np.zeros((2, 32, 32)), "haar", 0)
