"""Replay rows: stored with a harness-built base model, mixed into fine-tuning.

``W/replay.npz`` of a base model directory holds tokenized rows (`TokenRows`)
that the harness fine-tuning recipe mixes into every batch
(``TrainRecipe.replay_fraction``): the practice world
(`pretrain.practice_texts`) or, without one, the public-world pretraining
rows. They hold no release facts. Pretrained models (a model name) have none.
"""

from __future__ import annotations

import os

import numpy as np

from cbench.io import files
from cbench.train import text_data

FILENAME = "replay.npz"


def save(workdir: str, rows: text_data.TokenRows) -> None:
  """Writes `rows` (tokens and lengths) atomically into `workdir`."""
  with files.atomic_open(os.path.join(workdir, FILENAME), "wb") as f:
    np.savez(f, tokens=rows.tokens, lengths=rows.lengths)


def load(workdir: str) -> text_data.TokenRows | None:
  """The rows fine-tuning mixes in, or None when `workdir` has none."""
  path = os.path.join(workdir, FILENAME)
  if not os.path.exists(path):
    return None
  with np.load(path) as z:
    return text_data.TokenRows(z["tokens"], z["lengths"], 0)
