"""A real image world: the UCI handwritten digits that scikit-learn ships.

    w, test = digits.make_world(DigitsConfig(), num_private=640,
                                num_public=901, num_test=256, seed=0)
    w.private.images   # [640, 8, 8] float32 in [0, 1]

`sklearn.datasets.load_digits` reads 1797 grayscale 8 x 8 images (pixel
counts 0..16, ten classes, about 180 per digit) from a file inside the
scikit-learn wheel: nothing is downloaded, ever. scikit-learn is an optional
dependency (the 'images' extra); without it this module still imports and
`load_digits` raises a `CbenchError`.

The split is by class, by design (the analogue of `world`'s):
  * private: the digits ``private_digits`` (default 5-9), world labels
    ``0 .. K-1`` in that order; only stage 1's DP fine-tuning reads them
    (and the metrics read the held-out private TEST images);
  * public: the digits ``public_digits`` (default 0-4), world labels
    ``K .. K+M-1``; they fit the tokenizers, the public pretraining, stage
    2 and the metric network. There are no texture-only images
    (`world.TEXTURE_LABEL` never occurs).
Values are scaled to [0, 1] (counts / 16), the generated world's range.
Which images land in the private training, private test and public sets is
a function of (seed, split) only: explicit `np.random.Generator` streams.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cbench._validate import CbenchError
from cbench._validate import check
from cbench.images import world as world_lib

try:  # Optional: the 'images' extra (the data ship inside the wheel).
  from sklearn import datasets as sklearn_datasets
except ImportError:
  sklearn_datasets = None

SIZE = 8                # Image side of the bundled set, pixels.
MAX_VALUE = 16.0        # Pixel counts lie in 0 .. 16.
NUM_DIGITS = 10
INSTALL = "pip install 'cbench[images]'"
UNUSED = -2             # World label of a digit in neither class set.
_PRIVATE_STREAM, _PUBLIC_STREAM = 0x4450, 0x4455


@dataclasses.dataclass(frozen=True, kw_only=True)
class DigitsConfig:
  """Public parameters of the digits world (the image side is fixed: 8).

  Attributes:
    private_digits: the K private classes (world labels 0 .. K-1).
    public_digits: the M public classes (world labels K .. K+M-1);
      disjoint from `private_digits`.
  """
  private_digits: tuple[int, ...] = (5, 6, 7, 8, 9)
  public_digits: tuple[int, ...] = (0, 1, 2, 3, 4)

  def __post_init__(self):
    both = self.private_digits + self.public_digits
    check(all(isinstance(d, int) and 0 <= d < NUM_DIGITS for d in both)
          and len(set(both)) == len(both),
          f"Expected distinct digits in 0..9; got private "
          f"{self.private_digits}, public {self.public_digits}.")
    check(len(self.private_digits) >= 2 and len(self.public_digits) >= 1,
          "Expected >= 2 private and >= 1 public digits.")

  @property
  def size(self) -> int:
    return SIZE

  @property
  def num_private_classes(self) -> int:
    return len(self.private_digits)

  @property
  def num_public_classes(self) -> int:
    return len(self.public_digits)

  @property
  def num_classes(self) -> int:
    return self.num_private_classes + self.num_public_classes


def load_digits() -> tuple[np.ndarray, np.ndarray]:
  """All bundled digits: (images ``[1797, 8, 8]`` float32 in [0, 1],
  digits ``[1797]`` int32 in 0..9), in the file's order.

  Raises:
    CbenchError: scikit-learn is not installed.
  """
  if sklearn_datasets is None:
    raise CbenchError(f"The digits world needs scikit-learn: {INSTALL}.")
  d = sklearn_datasets.load_digits()
  return ((d.images / MAX_VALUE).astype(np.float32),
          d.target.astype(np.int32))


def world_labels(config: DigitsConfig, digits: np.ndarray) -> np.ndarray:
  """Digits -> world labels: private ``0 .. K-1``, public ``K .. K+M-1``,
  `UNUSED` (-2) for a digit of neither set."""
  table = np.full(NUM_DIGITS, UNUSED, np.int32)
  table[list(config.private_digits + config.public_digits)] = np.arange(
      config.num_classes)
  return table[np.asarray(digits)]


def make_world(config: DigitsConfig, *, num_private: int, num_public: int,
               num_test: int, seed: int
               ) -> tuple[world_lib.World, world_lib.ImageSet]:
  """(the world: `num_private` private training records and `num_public`
  public images, `num_test` held-out private test images).

  Private test and training images are disjoint draws (test first, so it
  does not depend on `num_private`) from a permutation of the private
  digits' images; the public images from one of the public digits'.

  Raises:
    CbenchError: scikit-learn missing, or more images asked for than the
      set holds.
  """
  images, digits = load_digits()
  labels = world_labels(config, digits)
  priv = np.flatnonzero((labels >= 0)
                        & (labels < config.num_private_classes))
  pub = np.flatnonzero(labels >= config.num_private_classes)
  check(num_private >= 1 and num_test >= 1
        and num_private + num_test <= priv.size,
        f"The private digits hold {priv.size} images; asked for "
        f"num_private={num_private} + num_test={num_test}.")
  check(1 <= num_public <= pub.size,
        f"The public digits hold {pub.size} images; asked for "
        f"num_public={num_public}.")
  priv = np.random.default_rng((seed, _PRIVATE_STREAM)).permutation(priv)
  pub = np.random.default_rng((seed, _PUBLIC_STREAM)).permutation(pub)
  take = lambda idx: world_lib.ImageSet(images[idx], labels[idx])
  w = world_lib.World(config, take(priv[num_test:num_test + num_private]),
                      take(pub[:num_public]))
  return w, take(priv[:num_test])
