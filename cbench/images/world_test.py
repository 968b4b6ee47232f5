"""Tests of the generated image world and its public/private split."""

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.images import wavelets
from cbench.images import world


@pytest.fixture(scope="module")
def small_world():
  return world.make_world(world.WorldConfig(), num_private=400,
                          num_public=400, seed=3)


def test_shapes_ranges_and_determinism(small_world):
  w = small_world
  for s in (w.private, w.public):
    assert s.images.shape == (400, 32, 32) and s.images.dtype == np.float32
    assert s.images.min() >= 0 and s.images.max() <= 1
    assert s.labels.shape == (400,) and s.labels.dtype == np.int32
  again = world.make_world(world.WorldConfig(), num_private=10,
                           num_public=400, seed=3)
  # The public split does not depend on the private size.
  np.testing.assert_array_equal(again.public.images, w.public.images)
  other = world.make_world(world.WorldConfig(), num_private=10,
                           num_public=10, seed=4)
  assert not np.allclose(other.private.images, w.private.images[:10])


def test_split_is_disjoint_by_class(small_world):
  cfg, w = small_world.config, small_world
  assert set(np.unique(w.private.labels)) == set(range(4))
  assert set(np.unique(w.public.labels)) == {-1, 4, 5, 6, 7}
  frac = np.mean(w.public.labels == world.TEXTURE_LABEL)
  assert abs(frac - cfg.texture_only_fraction) < 0.1
  layouts = world.class_layouts(cfg)
  sigs = {tuple(sorted(zip(np.round(l.centers).astype(int).ravel().tolist(),
                           np.repeat(l.kinds, 2).tolist())))
          for l in layouts}
  assert len(layouts) == 8 and len(sigs) == 8


def test_class_lives_in_coarse_band_texture_in_fine(small_world):
  """The design hypothesis: nearest-class-mean on the 8x8 coarse band
  (background level removed) separates the private classes; texture energy
  sits in detail bands."""
  w = small_world
  c = np.asarray(wavelets.coarse(w.private.images, "db2", 2)).reshape(400, -1)
  c = c - np.median(c, axis=1, keepdims=True)
  train, test = slice(0, 200), slice(200, 400)
  means = np.stack([c[train][w.private.labels[train] == k].mean(0)
                    for k in range(4)])
  pred = np.argmin(((c[test][:, None] - means[None]) ** 2).sum(-1), axis=1)
  assert np.mean(pred == w.private.labels[test]) > 0.98
  tex = w.public.images[w.public.labels == world.TEXTURE_LABEL]
  tex = tex - tex.mean(axis=(1, 2), keepdims=True)
  y = np.asarray(wavelets.dwt2_packed(tex, "db2", 2))
  detail = wavelets.detail_mask(32, 32, 2)
  assert (y[:, detail] ** 2).sum() / (y ** 2).sum() > 0.9


def test_render_texture_only_has_no_shapes():
  cfg = world.WorldConfig(texture_amplitude=0.0)
  rng = np.random.default_rng(0)
  img = world.render(cfg, np.array([-1, 0]), rng)
  assert np.ptp(img[0]) < 1e-6        # flat background without texture
  assert np.ptp(img[1]) > 0.3         # a class image has bright shapes


def test_random_patches():
  img = np.arange(100 * 80, dtype=np.float64).reshape(100, 80)
  p = world.random_patches(img, 16, 5, np.random.default_rng(0))
  assert p.shape == (5, 16, 16) and p.min() >= 0 and p.max() <= 1
  # Each patch is a contiguous crop: rows differ by one image row.
  np.testing.assert_allclose(np.diff(p[0], axis=0), 80 / (100 * 80 - 1),
                             rtol=1e-5)


def test_real_photo_patches_from_pywt_data():
  pywt_data = pytest.importorskip("pywt.data")
  p = world.random_patches(pywt_data.camera(), 32, 8,
                           np.random.default_rng(0))
  assert p.shape == (8, 32, 32) and np.all(np.isfinite(p))


def test_errors():
  with pytest.raises(CbenchError, match="max_shapes"):
    world.WorldConfig(max_shapes=12)
  with pytest.raises(CbenchError, match="Labels"):
    world.render(world.WorldConfig(), np.array([9]),
                 np.random.default_rng(0))
  with pytest.raises(CbenchError, match="num_private"):
    world.make_world(world.WorldConfig(), num_private=0, num_public=1,
                     seed=0)
