"""Shared, cached test inputs: a demo release, the public world, a base model.

Built once per test session under a temporary directory (pytest's
``tmp_path_factory``) and reused by every test module that asks.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from cbench.configs import micro
from cbench.tracks.geminon import generator as geminon
from cbench.tracks.geminon import pretrain

_CACHE: dict[str, str] = {}


def public_world(root: str) -> str:
  path = os.path.join(root, "public_world")
  if "public_world" not in _CACHE:
    if not os.path.exists(path):
      geminon.build_public_world(path)
    _CACHE["public_world"] = path
  return _CACHE["public_world"]


def demo_release(root: str, release_id: str = "2026q4") -> str:
  key = f"release-{release_id}"
  path = os.path.join(root, key)
  if key not in _CACHE:
    if not os.path.exists(path):
      geminon.build_release(
          geminon.make_config("geminon", release_id, "demo"), path)
    _CACHE[key] = path
  return _CACHE[key]


def micro_base_model(root: str) -> str:
  """A base model pretrained for a few steps with the `micro` recipe."""
  path = os.path.join(root, "base_micro")
  if "base_micro" not in _CACHE:
    pretrain.pretrain_base(public_world(root), path,
                           micro.harness().pretrain)
    _CACHE["base_micro"] = path
  return _CACHE["base_micro"]


SEED_ENV = "CBENCH_TEST_SEED"
_RANDOM_SEED: list[int] = []


def stat_seed(default: int = 0) -> int:
  """Seed of a statistical test: `default` (the suite's fixed seeds), or,
  for a reviewer's rerun (``pytest --seed=random`` or ``--seed=N``, which
  set CBENCH_TEST_SEED), `default` plus one fresh offset per process."""
  text = os.environ.get(SEED_ENV, "")
  if not text:
    return default
  if text == "random":
    if not _RANDOM_SEED:
      _RANDOM_SEED.append(int(np.random.SeedSequence().entropy % 2**30))
    return default + _RANDOM_SEED[0]
  return default + int(text)


def stat_key(default: int = 0):
  """`jax.random.key(stat_seed(default))`."""
  return jax.random.key(stat_seed(default))
