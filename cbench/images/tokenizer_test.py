"""Tests of the spectral tokenizer (quantile codebooks, coarse-to-fine)."""

import jax
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.images import tokenizer
from cbench.images import wavelets


@pytest.fixture(scope="module")
def images(small_world):
  return small_world.public.images, small_world.private.images


def _bin_bounds(tok):
  """[G, V + 1] bin boundaries (public min, edges, public max)."""
  return np.concatenate([np.minimum(tok.bounds[:, :1], tok.edges[:, :1]),
                         tok.edges,
                         np.maximum(tok.bounds[:, 1:], tok.edges[:, -1:])],
                        axis=1)


def test_coarse_round_trip_within_bin_width(images):
  public, private = images
  tok = tokenizer.fit(public, tokenizer.TokenizerConfig(levels=2,
                                                         vocab_size=32))
  assert tok.seq_len == 64 and tok.coarse_shape == (8, 8)
  for x in (public, private):
    ids = np.asarray(tok.encode(x))
    assert ids.dtype == np.int32 and ids.shape == (len(x), 64)
    assert ids.min() >= 0 and ids.max() < 32
    vals = np.asarray(tok.coefficients(x))
    back = np.asarray(tok.dequantize(ids))
    bb = _bin_bounds(tok)[tok.group_of_token]          # [T, V + 1]
    t = np.arange(tok.seq_len)
    width = bb[t, ids + 1] - bb[t, ids]
    inside = (vals >= bb[t, 0]) & (vals <= bb[t, -1])
    assert inside.mean() > 0.95
    assert np.all(np.abs(back - vals)[inside] <= width[inside] + 1e-5)
  # decode of a coarse-only sequence = wavelet upsample of the coarse band.
  ids = tok.encode(public[:8])
  np.testing.assert_allclose(
      tok.decode(ids), wavelets.upsample(tok.decode_coarse(ids), "db2", 2),
      atol=1e-5)


def test_bins_are_public_quantiles(images):
  public, _ = images
  tok = tokenizer.fit(public, tokenizer.TokenizerConfig(vocab_size=16))
  counts = np.bincount(np.asarray(tok.encode(public)).ravel(), minlength=16)
  freq = counts / counts.sum()
  np.testing.assert_allclose(freq, 1 / 16, atol=0.01)


def test_full_resolution_round_trip_and_more_bins_help(images):
  public, private = images
  errs = []
  for v in (8, 64):
    tok = tokenizer.fit(public, tokenizer.TokenizerConfig(
        levels=2, vocab_size=v, detail_levels=2))
    assert tok.seq_len == 32 * 32
    assert tok.group_names == ("A2", "H2", "V2", "D2", "H1", "V1", "D1")
    ids = tok.encode(private)
    recon = np.asarray(tok.decode(ids))
    errs.append(np.sqrt(np.mean((recon - private) ** 2)))
  assert errs[1] < 0.5 * errs[0]
  assert errs[1] < 0.04   # Private edges fall in the public end bins.
  # Coarse tokens come first: the full sequence starts with the coarse one.
  coarse_tok = tokenizer.fit(public, tokenizer.TokenizerConfig(vocab_size=64))
  np.testing.assert_array_equal(ids[:, :64], coarse_tok.encode(private))


def test_jittable_and_serialisable(images):
  public, _ = images
  tok = tokenizer.fit(public, tokenizer.TokenizerConfig(vocab_size=16))
  ids = jax.jit(tok.encode)(public[:4])
  np.testing.assert_array_equal(ids, tok.encode(public[:4]))
  again = tokenizer.SpectralTokenizer.from_dict(tok.to_dict())
  np.testing.assert_array_equal(again.encode(public[:4]), ids)
  np.testing.assert_array_equal(again.decode(ids), tok.decode(ids))


def test_errors(images):
  public, _ = images
  with pytest.raises(CbenchError, match="non-finite"):
    bad = public.copy()
    bad[0, 0, 0] = np.nan
    tokenizer.fit(bad, tokenizer.TokenizerConfig())
  with pytest.raises(CbenchError, match="detail_levels"):
    tokenizer.TokenizerConfig(levels=2, detail_levels=3)
  tok = tokenizer.fit(public, tokenizer.TokenizerConfig())
  with pytest.raises(CbenchError, match="Expected images"):
    tok.encode(np.zeros((2, 16, 16)))
