"""Next-token training: row arrays, the loss mask, the loss, `train_lm`.

Uses the randomly initialised `micro` transformer (a 64-id vocabulary) on
hand-built rows; one short `train_lm` run, a few seconds in all.
"""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbench.models import config as config_lib
from cbench.models import registry
from cbench.parallel import mesh as mesh_lib
from cbench.train import lm_train
from cbench.train import optim
from cbench.train import text_data

VOCAB = 64
CONFIG = config_lib.get_model_config("micro", VOCAB)


@functools.lru_cache(maxsize=None)
def _host_params():
  """Host copy of the initial parameters (never mutated)."""
  return jax.device_get(registry.init_params(CONFIG, jax.random.key(0)))


def _params(mesh):
  """Fresh arrays placed on `mesh` (`train_lm` donates its input)."""
  return lm_train.place_params(jax.tree.map(jnp.array, _host_params()),
                               CONFIG, mesh)


def _model():
  return registry.make_model(CONFIG)


# Jitted once: eager applies of the model dispatch op by op and are slow.
_token_losses = jax.jit(functools.partial(lm_train.token_losses, _model()))
_lm_loss = jax.jit(functools.partial(lm_train.lm_loss, _model()))


def _log_softmax_ce(logits, targets):
  """Cross-entropy from float64 numpy, independent of optax."""
  logits = np.asarray(logits, np.float64)
  top = logits.max(-1, keepdims=True)
  logz = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
  picked = np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  return logz - picked


@jax.jit
def _logits(params, batch):
  tokens, seg, pos = batch["tokens"], batch["segments"], batch["positions"]
  return _model().apply({"params": params}, tokens[:, :-1], pos[:, :-1],
                        seg[:, :-1])


# Two documents packed in one row, then padding; and a one-document row.
PACKED = {
    "tokens": np.asarray([[2, 10, 11, 12, 3, 2, 20, 21, 3, 0, 0],
                          [2, 30, 31, 32, 33, 34, 35, 3, 0, 0, 0]], np.int32),
    "segments": np.asarray([[1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0],
                            [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]], np.int32),
    "positions": np.asarray([[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 0],
                             [0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0]], np.int32),
}
# Target j (token j + 1) counts iff same document as input j and not padding.
PACKED_MASK = np.asarray([[1, 1, 1, 1, 0, 1, 1, 1, 0, 0],
                          [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]], np.float32)


def test_row_arrays_of_one_document_rows():
  rows = text_data.TokenRows(
      tokens=np.asarray([[2, 5, 6, 3, 0, 0], [2, 7, 3, 0, 0, 0]], np.int32),
      lengths=np.asarray([4, 3], np.int32), truncated=0)
  out = lm_train.row_arrays(rows)
  assert set(out) == {"tokens", "segments", "positions"}
  np.testing.assert_array_equal(out["tokens"], rows.tokens)
  np.testing.assert_array_equal(out["segments"], [[1, 1, 1, 1, 0, 0],
                                                  [1, 1, 1, 0, 0, 0]])
  assert out["segments"].dtype == np.int32
  np.testing.assert_array_equal(out["positions"], [[0, 1, 2, 3, 4, 5]] * 2)
  assert out["positions"].dtype == np.int32
  assert out["positions"].shape == rows.tokens.shape


def test_row_arrays_of_packed_rows_are_the_packed_arrays():
  packed = text_data.pack_rows(text_data.TokenRows(
      np.asarray([[2, 5, 3, 0, 0, 0, 0]] * 2, np.int32),
      np.asarray([3, 3], np.int32), 0))
  out = lm_train.row_arrays(packed)
  assert out["segments"] is packed.segments
  assert out["positions"] is packed.positions
  np.testing.assert_array_equal(out["tokens"], [[2, 5, 3, 2, 5, 3, 0]])
  np.testing.assert_array_equal(out["segments"], [[1, 1, 1, 2, 2, 2, 0]])
  np.testing.assert_array_equal(out["positions"], [[0, 1, 2, 0, 1, 2, 0]])


def test_token_losses_mask_and_values():
  params = _host_params()
  ce, mask = _token_losses(params, PACKED)
  assert ce.shape == mask.shape == (2, 10)
  np.testing.assert_array_equal(np.asarray(mask), PACKED_MASK)
  expected = _log_softmax_ce(_logits(params, PACKED), PACKED["tokens"][:, 1:])
  np.testing.assert_allclose(np.asarray(ce), expected, rtol=1e-5, atol=1e-5)


def test_a_packed_document_does_not_see_its_neighbour():
  params = _host_params()
  ce, _ = _token_losses(params, PACKED)
  alone = {"tokens": np.asarray([[2, 20, 21, 3]], np.int32),
           "segments": np.ones((1, 4), np.int32),
           "positions": np.arange(4, dtype=np.int32)[None]}
  ce_alone, _ = _token_losses(params, alone)
  # Targets 6, 7, 8 of row 0 are the second document's 20 -> 21 -> 3.
  np.testing.assert_allclose(np.asarray(ce)[0, 5:8],
                             np.asarray(ce_alone)[0, :3], rtol=1e-4, atol=1e-5)


def test_lm_loss_is_the_mean_over_counted_targets():
  params = _host_params()
  loss = float(_lm_loss(params, PACKED))
  ce = _log_softmax_ce(_logits(params, PACKED), PACKED["tokens"][:, 1:])
  expected = float((ce * PACKED_MASK).sum() / PACKED_MASK.sum())
  assert loss == pytest.approx(expected, rel=1e-5)
  # Not the mean over every position (the pads and the boundary differ).
  assert abs(loss - float(ce.mean())) > 1e-3


def test_lm_loss_of_a_zero_model_is_log_vocab():
  zeros = jax.tree.map(np.zeros_like, _host_params())  # Uniform logits.
  loss = float(_lm_loss(zeros, PACKED))
  assert loss == pytest.approx(math.log(VOCAB), rel=1e-5)


def test_lm_loss_of_an_all_padding_batch_is_zero():
  batch = {k: np.zeros_like(v) for k, v in PACKED.items()}
  assert float(_lm_loss(_host_params(), batch)) == 0.0


def _doc_rows(seq_len: int, num_docs: int = 16) -> text_data.TokenRows:
  """Learnable documents: bos, a counting run mod 50 from a random start."""
  rng = np.random.default_rng(0)
  width = seq_len + 1
  tokens = np.zeros((num_docs, width), np.int32)
  lengths = np.zeros((num_docs,), np.int32)
  for i in range(num_docs):
    n = int(rng.integers(6, width - 1))
    start = int(rng.integers(0, 50))
    doc = [2, *[(start + j) % 50 + 10 for j in range(n)], 3]
    tokens[i, :len(doc)] = doc
    lengths[i] = len(doc)
  return text_data.TokenRows(tokens, lengths, 0)


def _recipe(**kw):
  defaults = dict(num_steps=8, batch_size=8, seq_len=16, pack=False,
                  optimizer=optim.OptimizerConfig(peak_learning_rate=1e-2),
                  log_every=1, checkpoint_every=100)
  defaults.update(kw)
  return lm_train.TrainRecipe(**defaults)


def _all_rows_loss(params, rows):
  return float(_lm_loss(jax.device_get(params), lm_train.row_arrays(rows)))


def test_train_lm_lowers_the_loss(tmp_path):
  rows = _doc_rows(16)
  recipe = _recipe()
  before = _all_rows_loss(_host_params(), rows)
  mesh = mesh_lib.make_mesh()
  params, info = lm_train.train_lm(_params(mesh), CONFIG, rows, recipe,
                                   str(tmp_path), name="micro", mesh=mesh)
  after = _all_rows_loss(params, rows)
  assert after < before - 0.5, (before, after)
  assert info["steps"] == 8 and info["rows"] == 16
  assert info["trainable_params"] == registry.param_count(_host_params())
  assert info["epochs"] == pytest.approx(8 * 8 / 16)
  assert info["fill"] == pytest.approx(rows.lengths.sum() / rows.tokens.size)
  assert jax.tree.structure(params) == jax.tree.structure(_host_params())
  with open(os.path.join(tmp_path, "metrics.jsonl"), encoding="utf-8") as f:
    losses = [json.loads(line)["loss"] for line in f]
  assert len(losses) == 8
  assert all(math.isfinite(x) for x in losses)
  assert min(losses[-3:]) < losses[0]


def test_train_lm_rejects_rows_of_the_wrong_width(tmp_path):
  with pytest.raises(ValueError, match=r"rows are 17 wide; expected "
                     r"seq_len \+ 1 = 9"):
    lm_train.train_lm(_host_params(), CONFIG, _doc_rows(16),
                      _recipe(seq_len=8), str(tmp_path))
  assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))


def test_train_lm_needs_replay_rows_for_a_replay_fraction(tmp_path):
  with pytest.raises(ValueError,
                     match=r"replay_fraction > 0 needs replay rows"):
    mesh = mesh_lib.make_mesh()
    lm_train.train_lm(_params(mesh), CONFIG, _doc_rows(16),
                      _recipe(replay_fraction=0.25), str(tmp_path), mesh=mesh)
  assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))


def test_train_lm_accepts_unsharded_params(tmp_path):
  params = jax.tree.map(jnp.array, _host_params())  # On one device.
  assert len(jax.tree.leaves(params)[0].sharding.device_set) == 1
  out, info = lm_train.train_lm(params, CONFIG, _doc_rows(16),
                                _recipe(num_steps=1), str(tmp_path))
  assert info["steps"] == 1
  assert jax.tree.structure(out) == jax.tree.structure(_host_params())
