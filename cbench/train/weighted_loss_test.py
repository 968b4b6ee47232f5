"""Per-document weights: the table, the rows, the loss, `train_lm`.

A uniform table must train bit for bit the parameters of the unweighted
run. The `micro` transformer on hand-built rows; three compilations.
"""

import functools
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbench._validate import CbenchError
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
  return jax.device_get(registry.init_params(CONFIG, jax.random.key(0)))


_lm_loss = jax.jit(functools.partial(lm_train.lm_loss,
                                     registry.make_model(CONFIG)))
_token_losses = jax.jit(functools.partial(lm_train.token_losses,
                                          registry.make_model(CONFIG)))


def _rows(num_docs: int = 16, seq_len: int = 16) -> text_data.TokenRows:
  rng = np.random.default_rng(0)
  width = seq_len + 1
  tokens = np.zeros((num_docs, width), np.int32)
  lengths = np.zeros((num_docs,), np.int32)
  for i in range(num_docs):
    n = int(rng.integers(4, width - 4))
    doc = [2, *rng.integers(10, 60, n).tolist(), 3]
    tokens[i, :len(doc)] = doc
    lengths[i] = len(doc)
  return text_data.TokenRows(tokens, lengths, 0)


def _params_sha(params) -> str:
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(jax.device_get(params)):
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()


# The table ----------------------------------------------------------------


def test_document_weights_divide_by_the_largest_weight():
  w = text_data.document_weights(["real", "syn-1", "syn-2", "real"],
                                 {"real": 4.0, "syn-1": 2.0, "syn-2": 1.0})
  np.testing.assert_array_equal(w, np.float32([1.0, 0.5, 0.25, 1.0]))
  # The normaliser is the table's constant: scaling the table changes
  # nothing, and a uniform table is exactly 1.
  scaled = text_data.document_weights(["real", "syn-1", "syn-2", "real"],
                                      {"real": 12.0, "syn-1": 6.0,
                                       "syn-2": 3.0})
  np.testing.assert_array_equal(w, scaled)
  uniform = text_data.document_weights(["a", "b", "a"], {"a": 0.3, "b": 0.3})
  assert uniform.dtype == np.float32 and np.all(uniform == 1.0)


@pytest.mark.parametrize("table, match", [
    ({"a": float("nan")}, "finite number >= 0"),
    ({"a": float("inf")}, "finite number >= 0"),
    ({"a": 1.0, "b": -0.5}, "finite number >= 0"),
    ({"a": 0.0, "b": 0.0}, "some weight > 0"),
    ({"a": "1"}, "finite number >= 0"),
    ({}, "at least one"),
])
def test_bad_tables_are_refused(table, match):
  with pytest.raises(CbenchError, match=match):
    text_data.document_weights(["a"], table)


def test_an_unweighted_tag_is_refused():
  with pytest.raises(CbenchError, match=r"tagged \['synthetic-9'\]"):
    text_data.document_weights(["real", "synthetic-9"], {"real": 1.0})


def test_recipe_validates_and_binds_only_when_weighted():
  base = lm_train.TrainRecipe(num_steps=1)
  assert "provenance_weights" not in base.to_dict()
  assert base.weight_table is None
  weighted = lm_train.TrainRecipe(num_steps=1, provenance_weights=(
      ("real", 1.0), ("synthetic-1", 0.5)))
  assert weighted.to_dict()["provenance_weights"] == (
      ("real", 1.0), ("synthetic-1", 0.5))
  assert weighted.weight_table == {"real": 1.0, "synthetic-1": 0.5}
  with pytest.raises(CbenchError, match="finite number >= 0"):
    lm_train.TrainRecipe(num_steps=1, provenance_weights=(("real", -1.0),))
  with pytest.raises(CbenchError, match="distinct string tags"):
    lm_train.TrainRecipe(num_steps=1, provenance_weights=(
        ("real", 1.0), ("real", 0.5)))


# The rows -----------------------------------------------------------------


def test_with_weights_fills_real_tokens_and_checks_its_input():
  rows = _rows(3, seq_len=8)
  out = text_data.with_weights(rows, np.asarray([1.0, 0.5, 0.0]))
  for i, w in enumerate((1.0, 0.5, 0.0)):
    n = rows.lengths[i]
    assert np.all(out.weights[i, :n] == w) and np.all(out.weights[i, n:] == 0)
  with pytest.raises(CbenchError, match=r"shape \(3,\), got \(2,\)"):
    text_data.with_weights(rows, np.ones(2))
  with pytest.raises(CbenchError, match="finite"):
    text_data.with_weights(rows, np.asarray([1.0, np.nan, 1.0]))
  with pytest.raises(CbenchError, match=">= 0"):
    text_data.with_weights(rows, np.asarray([1.0, -0.1, 1.0]))
  with pytest.raises(CbenchError, match="before packing"):
    text_data.with_weights(text_data.pack_rows(rows), np.ones(3))


def test_packing_keeps_each_documents_weight():
  rows = text_data.with_weights(_rows(8, seq_len=32),
                                np.linspace(0.1, 0.8, 8))
  packed = text_data.pack_rows(rows)
  assert packed.num_rows < rows.num_rows
  # Every token of segment s in a packed row carries its document's weight.
  docs = iter(np.linspace(0.1, 0.8, 8).astype(np.float32))
  for r in range(packed.num_rows):
    for s in range(1, packed.segments[r].max() + 1):
      w = next(docs)
      assert np.all(packed.weights[r][packed.segments[r] == s] == w)
    assert np.all(packed.weights[r][packed.segments[r] == 0] == 0)


# The loss -----------------------------------------------------------------


def test_weighted_loss_is_sum_of_weighted_ce_over_the_target_count():
  rows = _rows(6, seq_len=12)
  w = np.asarray([1.0, 0.0, 0.5, 0.25, 1.0, 0.75], np.float32)
  batch = lm_train.row_arrays(text_data.with_weights(rows, w))
  ce, mask = jax.device_get(_token_losses(_host_params(), batch))
  tok_w = batch["weights"][:, 1:]
  want = np.sum(ce * mask * tok_w) / np.sum(mask)
  got = float(_lm_loss(_host_params(), batch))
  assert got == pytest.approx(want, rel=1e-5)
  plain = float(_lm_loss(_host_params(), lm_train.row_arrays(rows)))
  assert got < plain  # Some documents count less: the sum shrinks.


def test_uniform_weights_give_the_unweighted_loss_exactly():
  rows = _rows(6, seq_len=12)
  ones = lm_train.row_arrays(text_data.with_weights(rows, np.ones(6)))
  plain = lm_train.row_arrays(rows)
  assert float(_lm_loss(_host_params(), ones)) == float(
      _lm_loss(_host_params(), plain))


# train_lm -----------------------------------------------------------------


def _train(rows, tmp_path, name):
  mesh = mesh_lib.make_mesh()
  recipe = lm_train.TrainRecipe(
      num_steps=3, batch_size=8, seq_len=16, pack=True,
      optimizer=optim.OptimizerConfig(peak_learning_rate=1e-2),
      log_every=2, checkpoint_every=100)
  params = lm_train.place_params(jax.tree.map(jnp.array, _host_params()),
                                 CONFIG, mesh)
  out, info = lm_train.train_lm(params, CONFIG, rows, recipe,
                                str(tmp_path / name), mesh=mesh)
  return _params_sha(out), info


def test_uniform_weights_train_the_unweighted_parameters_bit_for_bit(
    tmp_path):
  rows = _rows()
  plain, info = _train(rows, tmp_path, "plain")
  uniform = text_data.document_weights(["real"] * 8 + ["synthetic-1"] * 8,
                                       {"real": 0.7, "synthetic-1": 0.7})
  same, winfo = _train(text_data.with_weights(rows, uniform), tmp_path,
                       "uniform")
  assert same == plain
  # The weighted run did carry weights (a non-uniform table changes the
  # parameters: `cbench/harness/weighted_finetune_test.py`, slow).
  assert "mean_token_weight" not in info and winfo["mean_token_weight"] == 1

