"""Tests of the digits world: scikit-learn's bundled 8x8 handwritten digits,
split by class (private 5-9, public 0-4)."""

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.images import digits
from cbench.images import experiment

needs_sklearn = pytest.mark.skipif(
    digits.sklearn_datasets is None,
    reason=f"needs the 'images' extra ({digits.INSTALL})")


def test_config_class_sets_and_labels():
  cfg = digits.DigitsConfig()
  assert not set(cfg.private_digits) & set(cfg.public_digits)
  assert (cfg.size, cfg.num_private_classes, cfg.num_public_classes,
          cfg.num_classes) == (8, 5, 5, 10)
  np.testing.assert_array_equal(
      digits.world_labels(cfg, np.arange(10)),
      [5, 6, 7, 8, 9, 0, 1, 2, 3, 4])
  part = digits.DigitsConfig(private_digits=(7, 1), public_digits=(0,))
  np.testing.assert_array_equal(digits.world_labels(part, [1, 7, 0, 3]),
                                [1, 0, 2, digits.UNUSED])
  for bad in (dict(private_digits=(1, 2), public_digits=(2,)),
              dict(private_digits=(1, 10)), dict(private_digits=(5,)),
              dict(public_digits=())):
    with pytest.raises(CbenchError):
      digits.DigitsConfig(**bad)


def test_missing_sklearn_names_the_extra(monkeypatch):
  """Without scikit-learn the library imports; asking for the digits world
  raises one CbenchError naming the extra."""
  monkeypatch.setattr(digits, "sklearn_datasets", None)
  with pytest.raises(CbenchError, match=r"pip install 'cbench\[images\]'"):
    experiment.make_worlds(experiment.named_config("digits"))


@needs_sklearn
def test_loader_shapes_ranges_and_split():
  images, labels = digits.load_digits()
  assert images.shape == (1797, 8, 8) and images.dtype == np.float32
  assert images.min() == 0.0 and images.max() == 1.0
  np.testing.assert_array_equal(np.unique(labels), np.arange(10))
  cfg = digits.DigitsConfig()
  w, test = digits.make_world(cfg, num_private=640, num_public=901,
                              num_test=256, seed=0)
  assert w.config is cfg
  assert w.private.images.shape == (640, 8, 8)
  assert w.public.images.shape == (901, 8, 8) and test.images.shape == (
      256, 8, 8)
  for s in (w.private, w.public, test):
    assert s.images.dtype == np.float32 and s.labels.dtype == np.int32
    assert 0.0 <= s.images.min() and s.images.max() <= 1.0
  # Disjoint class sets: private labels 0..4 (digits 5-9), public 5..9.
  assert set(w.private.labels) == set(test.labels) == set(range(5))
  assert set(w.public.labels) == set(range(5, 10))
  # Train and test partition the private digits' images (none twice).
  key = lambda x: sorted(map(bytes, x.reshape(len(x), -1)))
  assert key(np.concatenate([w.private.images, test.images])) == key(
      images[labels >= 5])
  assert key(w.public.images) == key(images[labels < 5])
  # Deterministic per seed; the test set does not depend on num_private.
  w2, test2 = digits.make_world(cfg, num_private=100, num_public=50,
                                num_test=256, seed=0)
  np.testing.assert_array_equal(test2.images, test.images)
  np.testing.assert_array_equal(w2.private.images, w.private.images[:100])
  np.testing.assert_array_equal(w2.public.images, w.public.images[:50])
  _, test3 = digits.make_world(cfg, num_private=100, num_public=50,
                               num_test=256, seed=1)
  assert not np.array_equal(test3.images, test.images)
  with pytest.raises(CbenchError, match="hold 896"):
    digits.make_world(cfg, num_private=641, num_public=1, num_test=256,
                      seed=0)
  with pytest.raises(CbenchError, match="hold 901"):
    digits.make_world(cfg, num_private=1, num_public=902, num_test=1,
                      seed=0)
