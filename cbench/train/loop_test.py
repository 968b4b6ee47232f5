"""The training loop: resume, kill/resume determinism, hooks, metrics, NaN.

Runs `loop.run` on a tiny pure-JAX linear regression whose step also uses
its PRNG key (gradient noise), so a wrong step key or a wrong batch after a
resume changes the final parameters.
"""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cbench.io import checkpoint
from cbench.train import loop

_OPT = optax.adam(0.1)
_TRUE_W = np.asarray([1.5, -2.0, 0.5], np.float32)


def _init_state() -> loop.TrainState:
  params = {"w": jnp.zeros((3,), jnp.float32), "b": jnp.zeros((), jnp.float32)}
  return loop.TrainState(jnp.zeros((), jnp.int32), params, _OPT.init(params))


def _batch(step: int, nan_at: int | None = None):
  rng = np.random.default_rng(1000 + step)
  x = rng.normal(size=(8, 3)).astype(np.float32)
  y = x @ _TRUE_W + 0.25
  if step == nan_at:
    y = y * np.nan
  return {"x": jnp.asarray(x), "y": jnp.asarray(y, jnp.float32)}


@functools.partial(jax.jit, donate_argnums=(0,))
def _step(state, batch, key):
  def loss_fn(p):
    pred = batch["x"] @ p["w"] + p["b"]
    return jnp.mean(jnp.square(pred - batch["y"]))
  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  noise = jax.random.normal(key, (3,)) * 0.01  # Makes the step key matter.
  grads = {"w": grads["w"] + noise, "b": grads["b"]}
  updates, opt_state = _OPT.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss, "grad_norm": loop.global_norm(grads)}
  return loop.TrainState(state.step + 1, params, opt_state), metrics


KEY = jax.random.key(42)


def _config(num_steps=7, log_every=2, checkpoint_every=3):
  return loop.LoopConfig(num_steps=num_steps, log_every=log_every,
                         checkpoint_every=checkpoint_every,
                         progress_seconds=1e9, name="lin")


def _run(workdir, config, **kw):
  return loop.run(_init_state(), _step, _batch, config=config, key=KEY,
                  workdir=str(workdir), **kw)


def _reference(num_steps):
  """The same training written out by hand: state and per-step losses."""
  state, losses = _init_state(), []
  for s in range(num_steps):
    state, m = _step(state, _batch(s), jax.random.fold_in(KEY, s))
    losses.append(float(m["loss"]))
  return jax.device_get(state), losses


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _assert_same_state(a, b):
  a, b = jax.device_get(a), jax.device_get(b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class _Recorder:
  """Records every hook call in order."""

  def __init__(self):
    self.calls = []

  def before_step(self, step):
    self.calls.append(("before_step", step))

  def after_step(self, step, metrics):
    self.calls.append(("after_step", step,
                       None if metrics is None else sorted(metrics)))

  def before_save(self, step):
    self.calls.append(("before_save", step))


class _OnlyAfter:
  """A hook implementing a subset of the protocol."""

  def __init__(self):
    self.logged = {}

  def after_step(self, step, metrics):
    if metrics is not None:
      self.logged[step] = metrics["loss"]


def test_uninterrupted_run_matches_a_hand_written_loop(tmp_path):
  state = _run(tmp_path, _config())
  ref, losses = _reference(7)
  assert int(state.step) == 7
  _assert_same_state(state, ref)
  # It actually trains: w moves towards the true weights (from 0).
  distance = np.linalg.norm(np.asarray(ref.params["w"]) - _TRUE_W)
  assert distance < 0.8 * np.linalg.norm(_TRUE_W)
  assert len(losses) == 7 and all(math.isfinite(x) for x in losses)
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  try:
    assert ckpt.latest_step() == 7
    _assert_same_state(ckpt.restore(_init_state()), ref)
  finally:
    ckpt.close()


@pytest.mark.parametrize("stop_after", [1, 4, 5])
def test_killed_then_resumed_run_ends_in_the_same_state(tmp_path, stop_after):
  config = _config(num_steps=7, checkpoint_every=3)
  full = _run(tmp_path / "full", config)
  workdir = tmp_path / "killed"
  partial = _run(workdir, config, stop_after=stop_after)
  assert int(partial.step) == stop_after
  # The crash loses the steps after the last checkpoint (a multiple of 3).
  last_ckpt = stop_after // 3 * 3
  ckpt = checkpoint.Checkpointer(str(workdir / "checkpoints"))
  try:
    assert ckpt.latest_step() == (last_ckpt or None)
  finally:
    ckpt.close()
  rec = _Recorder()
  resumed = _run(workdir, config, hooks=[rec])
  starts = [c[1] for c in rec.calls if c[0] == "before_step"]
  assert starts == list(range(last_ckpt, 7))  # Replays exactly what it lost.
  assert int(resumed.step) == 7
  _assert_same_state(resumed, full)
  # Every logged step appears once, in order, as in the uninterrupted run:
  # rows after the restored checkpoint were dropped before the replay.
  assert _metrics(workdir) == _metrics(tmp_path / "full")


def test_a_finished_run_resumes_to_the_same_state_without_steps(tmp_path):
  config = _config(num_steps=4)
  first = _run(tmp_path, config)
  rec = _Recorder()
  again = _run(tmp_path, config, hooks=[rec])
  assert rec.calls == []
  assert int(again.step) == 4
  _assert_same_state(again, first)


def test_hooks_are_called_at_the_right_steps(tmp_path):
  rec, partial = _Recorder(), _OnlyAfter()
  _run(tmp_path, _config(num_steps=5, log_every=2, checkpoint_every=2),
       hooks=[rec, partial])
  logged = ["grad_norm", "loss"]
  assert rec.calls == [
      ("before_step", 0), ("after_step", 0, None),
      ("before_step", 1), ("after_step", 1, logged), ("before_save", 2),
      ("before_step", 2), ("after_step", 2, None),
      ("before_step", 3), ("after_step", 3, logged), ("before_save", 4),
      ("before_step", 4), ("after_step", 4, logged), ("before_save", 5),
  ]
  _, losses = _reference(5)
  assert partial.logged == pytest.approx({1: losses[1], 3: losses[3],
                                          4: losses[4]}, rel=1e-6)


def test_metrics_rows_at_log_every_and_the_last_step(tmp_path):
  _run(tmp_path, _config(num_steps=7, log_every=3))
  rows = _metrics(tmp_path)
  assert [r["step"] for r in rows] == [3, 6, 7]
  assert all(set(r) == {"step", "loss", "grad_norm"} for r in rows)
  _, losses = _reference(7)
  assert [r["loss"] for r in rows] == pytest.approx(
      [losses[2], losses[5], losses[6]], rel=1e-6)
  assert all(r["grad_norm"] > 0 for r in rows)


def test_a_non_finite_loss_raises_naming_the_step(tmp_path):
  batch_fn = functools.partial(_batch, nan_at=2)
  with pytest.raises(FloatingPointError,
                     match=r"lin: non-finite loss nan at step 3\."):
    loop.run(_init_state(), _step, batch_fn, config=_config(log_every=1),
             key=KEY, workdir=str(tmp_path))
  assert [r["step"] for r in _metrics(tmp_path)] == [1, 2]
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  try:  # Step 3 would have been saved (checkpoint_every=3): it was not.
    assert ckpt.latest_step() is None
  finally:
    ckpt.close()


def test_a_non_finite_loss_at_the_last_step_is_caught(tmp_path):
  batch_fn = functools.partial(_batch, nan_at=6)
  with pytest.raises(FloatingPointError, match="at step 7"):
    loop.run(_init_state(), _step, batch_fn,
             config=_config(num_steps=7, log_every=100), key=KEY,
             workdir=str(tmp_path))


def test_global_norm():
  tree = {"a": jnp.asarray([3.0, 4.0]),
          "b": {"c": jnp.asarray([[12.0]], jnp.bfloat16)},
          "d": jnp.asarray([0, 0], jnp.int32)}
  out = loop.global_norm(tree)
  assert out.dtype == jnp.float32
  assert float(out) == pytest.approx(13.0)
  rng = np.random.default_rng(0)
  leaves = [rng.normal(size=s).astype(np.float32) for s in [(5,), (2, 3), ()]]
  expected = math.sqrt(sum(float(np.sum(x.astype(np.float64) ** 2))
                           for x in leaves))
  assert float(loop.global_norm(leaves)) == pytest.approx(expected, rel=1e-6)
