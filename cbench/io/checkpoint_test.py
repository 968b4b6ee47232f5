"""Orbax checkpoints: roundtrip, latest step, retention, incomplete saves.

`Checkpointer` saves a pytree per step and restores it with the dtypes and
shardings of a target; `save_params` / `load_params` store one final tree.
"""

import os

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.io import checkpoint
from cbench.parallel import mesh as mesh_lib


def _state(scale: float):
  """A small mixed-dtype tree whose values depend on `scale`."""
  return {
      "w": jnp.arange(16, dtype=jnp.float32).reshape(8, 2) * scale,
      "b": jnp.full((3,), scale, dtype=jnp.bfloat16),
      "step": jnp.asarray(int(scale), dtype=jnp.int32),
      "nested": {"v": jnp.arange(8, dtype=jnp.int32) + int(scale)},
  }


def _zeros_like(tree):
  return jax.tree.map(jnp.zeros_like, tree)


def _assert_tree_equal(actual, expected):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert a.dtype == e.dtype
    assert a.shape == e.shape
    np.testing.assert_array_equal(np.asarray(a, np.float64),
                                  np.asarray(e, np.float64))


def _step_dirs(directory):
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def test_roundtrip_keeps_values_and_dtypes(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  try:
    assert ckpt.latest_step() is None
    ckpt.save(3, _state(3.0))
    ckpt.wait()
    assert ckpt.latest_step() == 3
    restored = ckpt.restore(_zeros_like(_state(3.0)))
  finally:
    ckpt.close()
  _assert_tree_equal(restored, _state(3.0))
  assert restored["b"].dtype == jnp.bfloat16
  assert restored["step"].dtype == jnp.int32


def test_restore_uses_the_shardings_of_the_target(tmp_path):
  mesh = mesh_lib.make_mesh()
  assert mesh.devices.size == 8
  saved = {"w": jnp.arange(32, dtype=jnp.float32).reshape(8, 4)}  # One device.
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  try:
    ckpt.save(1, saved)
    ckpt.wait()
    sharded = NamedSharding(mesh, P("data", None))
    target = {"w": jax.device_put(jnp.zeros((8, 4), jnp.float32), sharded)}
    restored = ckpt.restore(target)
  finally:
    ckpt.close()
  assert restored["w"].sharding.is_equivalent_to(sharded, 2)
  assert len(restored["w"].addressable_shards) == 8
  assert restored["w"].addressable_shards[0].data.shape == (1, 4)
  np.testing.assert_array_equal(np.asarray(restored["w"]),
                                np.arange(32, dtype=np.float32).reshape(8, 4))


def test_restore_of_an_explicit_older_step(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), max_to_keep=5)
  try:
    for step in (1, 2, 3):
      ckpt.save(step, _state(float(step)))
    ckpt.wait()
    assert ckpt.latest_step() == 3
    older = ckpt.restore(_zeros_like(_state(0.0)), step=2)
    latest = ckpt.restore(_zeros_like(_state(0.0)))
  finally:
    ckpt.close()
  _assert_tree_equal(older, _state(2.0))
  _assert_tree_equal(latest, _state(3.0))


def test_max_to_keep_deletes_the_oldest_steps(tmp_path):
  directory = str(tmp_path / "ckpt")
  ckpt = checkpoint.Checkpointer(directory, max_to_keep=2)
  try:
    for step in (10, 20, 30, 40):
      ckpt.save(step, _state(float(step)))
    ckpt.wait()
  finally:
    ckpt.close()
  assert _step_dirs(directory) == [30, 40]
  reopened = checkpoint.Checkpointer(directory, max_to_keep=2)
  try:
    assert reopened.latest_step() == 40
    restored = reopened.restore(_zeros_like(_state(0.0)), step=30)
  finally:
    reopened.close()
  _assert_tree_equal(restored, _state(30.0))


def test_a_new_checkpointer_finds_the_latest_step_on_disk(tmp_path):
  directory = str(tmp_path / "ckpt")
  first = checkpoint.Checkpointer(directory)
  try:
    first.save(7, _state(7.0))
  finally:
    first.close()
  second = checkpoint.Checkpointer(directory)
  try:
    assert second.latest_step() == 7
    _assert_tree_equal(second.restore(_zeros_like(_state(0.0))), _state(7.0))
  finally:
    second.close()


def test_an_incomplete_tmp_checkpoint_is_ignored(tmp_path):
  directory = str(tmp_path / "ckpt")
  ckpt = checkpoint.Checkpointer(directory)
  try:
    ckpt.save(5, _state(5.0))
  finally:
    ckpt.close()
  # What a kill mid-save leaves: a newer step under orbax's temporary name,
  # never finalised by the rename (garbage inside, no metadata).
  tmp_dir = os.path.join(directory, "9.orbax-checkpoint-tmp-1234567890")
  os.makedirs(os.path.join(tmp_dir, "default"))
  with open(os.path.join(tmp_dir, "default", "junk"), "wb") as f:
    f.write(b"\x00partial")
  reopened = checkpoint.Checkpointer(directory)
  try:
    assert reopened.latest_step() == 5
    restored = reopened.restore(_zeros_like(_state(0.0)))
  finally:
    reopened.close()
  _assert_tree_equal(restored, _state(5.0))


def test_save_params_and_load_params_roundtrip(tmp_path):
  params = {"dense": {"kernel": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4),
                      "bias": jnp.asarray([0.5, -0.5, 2.0, 0.0], jnp.bfloat16)},
            "scale": jnp.asarray(3, jnp.int32)}
  path = str(tmp_path / "params")
  checkpoint.save_params(path, params)
  assert os.path.isdir(path)
  assert not [d for d in os.listdir(tmp_path) if "tmp" in d]
  loaded = checkpoint.load_params(path, _zeros_like(params))
  _assert_tree_equal(loaded, params)
  # force=True: saving again over the same path replaces the tree.
  doubled = jax.tree.map(lambda x: x * 2, params)
  checkpoint.save_params(path, doubled)
  _assert_tree_equal(checkpoint.load_params(path, _zeros_like(params)), doubled)


def _damage(directory, how):
  """Truncates or removes the files orbax needs under `directory`."""
  hit = 0
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      if how == "truncate" and (name == "_METADATA" or name.startswith(
          ("d", "manifest"))):
        with open(path, "r+b") as f:
          f.truncate(max(os.path.getsize(path) // 3, 1))
        hit += 1
      elif how == "remove" and name == "manifest.ocdbt":
        os.remove(path)
        hit += 1
  assert hit, f"nothing to damage under {directory}"


@pytest.mark.parametrize("how", ["truncate", "remove"])
def test_a_damaged_newest_step_falls_back_then_fails_in_one_line(
    tmp_path, how, caplog):
  state = {"w": jnp.arange(6.0)}
  ckpt = checkpoint.Checkpointer(str(tmp_path / "c"), max_to_keep=2)
  ckpt.save(2, state)
  ckpt.save(4, jax.tree.map(lambda x: x + 1, state))
  ckpt.wait()
  _damage(str(tmp_path / "c" / "4"), how)
  restored, step = ckpt.restore_latest(state)
  assert step == 2
  np.testing.assert_array_equal(np.asarray(restored["w"]), np.arange(6.0))
  assert any("damaged" in r.message for r in caplog.records)
  _damage(str(tmp_path / "c" / "2"), how)
  with pytest.raises(CbenchError) as err:
    ckpt.restore_latest(state)
  assert "No checkpoint under" in str(err.value) and "\n" not in str(
      err.value)
  ckpt.close()


def test_damaged_final_params_are_named(tmp_path):
  path = str(tmp_path / "params")
  checkpoint.save_params(path, {"w": jnp.ones(4)})
  _damage(path, "truncate")
  with pytest.raises(CbenchError, match="Checkpoint .*params is damaged"):
    checkpoint.load_params(path, {"w": jnp.ones(4)})
  with pytest.raises(CbenchError, match="not found"):
    checkpoint.load_params(str(tmp_path / "nope"), {"w": jnp.ones(4)})
