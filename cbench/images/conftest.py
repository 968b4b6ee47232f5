"""Shared fixtures of the image tests: a small world and its public stages
(trained once per session; the stage-2 step compiles once)."""

import pytest

from cbench.images import metrics
from cbench.images import pipeline
from cbench.images import superres
from cbench.images import tokenizer
from cbench.images import world

SR = superres.SuperResConfig(channels=8, depth=2, steps=25, batch_size=32,
                             learning_rate=1e-2, log_every=25,
                             checkpoint_every=25)
TOK = tokenizer.TokenizerConfig(levels=2, vocab_size=16)
CLS = metrics.ClassifierConfig(channels=(8, 8), features=16, steps=40,
                               batch_size=32, learning_rate=1e-2)


@pytest.fixture(scope="session")
def small_world():
  return world.make_world(world.WorldConfig(), num_private=64,
                          num_public=256, seed=1)


@pytest.fixture(scope="session")
def public_stages(small_world, tmp_path_factory):
  return pipeline.fit_public_stages(
      small_world, TOK, SR, str(tmp_path_factory.mktemp("stage2")))
