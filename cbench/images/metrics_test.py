"""Tests of the image metrics (Frechet distance, classifier, band energy)."""

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.images import experiment
from cbench.images import metrics

from cbench.images.conftest import CLS


def test_frechet_identical_sets_zero_and_grows_with_shift():
  rng = np.random.default_rng(0)
  a = rng.standard_normal((400, 8)) @ rng.standard_normal((8, 8))
  assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
  shifted = [metrics.frechet_distance(a, a + s * np.eye(8)[0])
             for s in (0.5, 1.0, 2.0)]
  # Same covariance: the distance is exactly |shift|^2.
  np.testing.assert_allclose(shifted, [0.25, 1.0, 4.0], rtol=1e-6)
  # b = 2a: tr(S + 4S - 2 * 2S) = tr(S), mean shift |mu|^2.
  cov_a = np.cov(a, rowvar=False)
  expected = np.trace(cov_a) + np.sum(a.mean(0) ** 2)
  assert metrics.frechet_distance(a, 2 * a) == pytest.approx(expected,
                                                             rel=1e-6)
  # Two samples of one Gaussian: small, and far below a real shift.
  b = rng.standard_normal((400, 8)) @ np.eye(8)
  c = rng.standard_normal((400, 8))
  assert metrics.frechet_distance(b, c) < 0.3 < metrics.frechet_distance(
      b, c + 1.0)


def test_frechet_errors():
  with pytest.raises(CbenchError, match="Expected features"):
    metrics.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
  with pytest.raises(CbenchError, match="at least 2"):
    metrics.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
  with pytest.raises(CbenchError, match="non-finite"):
    metrics.frechet_distance(np.full((3, 2), np.nan), np.zeros((3, 2)))


def test_band_energy_parseval_and_known_images():
  rng = np.random.default_rng(1)
  x = rng.random((6, 16, 16)).astype(np.float32)
  e = metrics.band_energy(x, "db2", 2)
  names = metrics.band_names(2)
  assert names == ("A2", "H2", "V2", "D2", "H1", "V1", "D1")
  sizes = np.array([16, 16, 16, 16, 64, 64, 64])
  # Orthonormal DWT: band energies times band sizes sum to pixel energy.
  np.testing.assert_allclose(np.sum(e * sizes), np.mean(np.sum(
      x.astype(np.float64) ** 2, axis=(1, 2))), rtol=1e-4)
  flat = metrics.band_energy(np.full((2, 16, 16), 0.5, np.float32), "db2", 2)
  assert flat[0] > 0 and np.all(flat[1:] < 1e-10)
  checker = (np.indices((16, 16)).sum(0) % 2).astype(np.float32)[None]
  ce = metrics.band_energy(checker - 0.5, "haar", 2)
  assert np.argmax(ce) == names.index("D1") and ce[0] < 1e-10
  assert metrics.band_error(e, e) == 0.0
  assert metrics.band_error(10 * e, e) == pytest.approx(1.0)


def test_classifier_learns_and_public_features_separate_splits(small_world):
  w = small_world
  pub_labels = experiment.public_metric_labels(w.config, w.public.labels)
  assert set(np.unique(pub_labels)) == {0, 1, 2, 3, 4}
  net = metrics.train_classifier(w.public.images, pub_labels, 5, CLS)
  assert metrics.accuracy(net, w.public.images, pub_labels) > 0.6
  f = metrics.features(net, w.private.images)
  assert f.shape == (64, 16) and f.dtype == np.float64
  fp = metrics.features(net, w.public.images[:32])
  same = metrics.frechet_distance(f[:32], f[32:])
  assert same < metrics.frechet_distance(f[:32], fp)
  with pytest.raises(CbenchError, match="Labels must lie"):
    metrics.train_classifier(w.public.images, pub_labels + 5, 5, CLS)
  with pytest.raises(CbenchError, match="public labels only"):
    experiment.public_metric_labels(w.config, w.private.labels)
