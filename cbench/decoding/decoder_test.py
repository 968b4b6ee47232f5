"""Tests for the shared KV-cached decoder."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.decoding import decoder
from cbench.decoding import token_samplers
from cbench.models import config as config_lib
from cbench.models import registry
from cbench.models import transformer as tf
from cbench.parallel import mesh as mesh_lib
from cbench.text.tokenizer_test import blank_line_tokenizer

VOCAB = 300
NO_EOS = VOCAB + 1  # an id the model never produces


@pytest.fixture(scope="module")
def setup():
  config = config_lib.get_model_config("micro", VOCAB)
  params = registry.init_params(config, jax.random.key(0))
  # Larger weights make greedy outputs of the random model vary by step.
  params = jax.tree.map(lambda x: 3.0 * x, params)
  return config, params


def _prompts(lengths, width, seed=0):
  rng = np.random.default_rng(seed)
  tokens = np.zeros((len(lengths), width), np.int32)
  for i, n in enumerate(lengths):
    tokens[i, width - n:] = rng.integers(4, VOCAB, n)
  return tokens


def _reference(config, params, prompts, steps, group_size=1):
  """Greedy by full recomputation (no cache) over summed group logits."""
  n, p = prompts.shape
  model = tf.Transformer(config)
  forward = jax.jit(lambda t, pos, seg: model.apply({"params": params}, t,
                                                    pos, seg))
  buf = np.concatenate([prompts, np.zeros((n, steps), np.int32)], axis=1)
  valid = np.concatenate([prompts != 0, np.zeros((n, steps), bool)], axis=1)
  out = []
  for j in range(steps):
    pos = np.maximum(np.cumsum(valid, axis=1) - 1, 0).astype(np.int32)
    logits = np.asarray(forward(buf, pos, valid))[:, p + j - 1]
    summed = logits.reshape(n // group_size, group_size, -1).sum(1)
    tok = np.argmax(summed, axis=-1)
    out.append(tok)
    buf[:, p + j] = np.repeat(tok, group_size)
    valid[:, p + j] = True
  return np.stack(out, axis=1)


@dataclasses.dataclass(frozen=True)
class SumArgmax:
  """Argmax of the logits summed over a group's rows (group_size > 1)."""

  def init_state(self, num_groups, key):
    del key
    return jnp.zeros((num_groups,), jnp.int32)

  def next_tokens(self, logits, key, state):
    del key
    tokens = jnp.argmax(logits.sum(1), axis=-1).astype(jnp.int32)
    return tokens, jnp.zeros(tokens.shape, bool), state + 1


@dataclasses.dataclass(frozen=True)
class Scripted:
  """Emits script[g][step]; sets stop for group g at step stop_at[g]."""

  script: tuple
  stop_at: tuple

  def init_state(self, num_groups, key):
    del num_groups, key
    return jnp.int32(0)

  def next_tokens(self, logits, key, state):
    del key
    assert logits.ndim == 3
    script = jnp.asarray(self.script, jnp.int32)
    step = jnp.minimum(state, script.shape[1] - 1)
    stop = jnp.asarray(self.stop_at) == state
    return script[:, step], stop, state + 1


def test_cached_greedy_equals_full_recompute(setup):
  config, params = setup
  prompts = _prompts([9, 3, 6, 1], 9)
  steps = 10
  result = decoder.generate(params, config, prompts, steps, token_samplers.Greedy(),
                            jax.random.key(0), eos_id=NO_EOS)
  ref = _reference(config, params, prompts, steps)
  np.testing.assert_array_equal(result.tokens, ref)
  np.testing.assert_array_equal(result.lengths, [steps] * 4)
  assert int(result.num_steps) == steps
  assert len(np.unique(ref)) > 8  # the outputs are not degenerate


def test_group_rows_all_receive_the_group_token(setup):
  config, params = setup
  prompts = _prompts([5, 2, 7, 4], 7, seed=1)  # 2 groups x 2 different rows
  steps = 6
  result = decoder.generate(params, config, prompts, steps, SumArgmax(),
                            jax.random.key(0), group_size=2, eos_id=NO_EOS)
  ref = _reference(config, params, prompts, steps, group_size=2)
  np.testing.assert_array_equal(result.tokens, ref)
  assert result.tokens.shape == (2, steps)
  np.testing.assert_array_equal(result.sampler_state, [steps, steps])
  # Feeding each row its own argmax would give a different continuation.
  own = _reference(config, params, prompts, steps)
  assert not np.array_equal(own[::2], ref) or not np.array_equal(own[1::2],
                                                                  ref)


def test_stops_at_eos_stop_tokens_and_sampler_stop(setup):
  config, params = setup
  eos, newline = 3, 20
  script = ((10, 11, eos, 12, 13, 14),
            (10, newline, 30, 31, 32, 33),
            (5, 6, 7, 8, 9, 10),
            (40, 41, 42, 43, 44, 45))
  stop_at = (-1, -1, 2, -1)
  prompts = _prompts([3, 3, 3, 3], 3)
  result = decoder.generate(params, config, prompts, 6,
                            Scripted(script, stop_at), jax.random.key(0),
                            eos_id=eos, stop_token_ids=(newline,))
  np.testing.assert_array_equal(result.lengths, [2, 1, 3, 6])
  np.testing.assert_array_equal(result.tokens, [
      [10, 11, eos, 0, 0, 0],
      [10, newline, 0, 0, 0, 0],
      [5, 6, 7, 0, 0, 0],
      [40, 41, 42, 43, 44, 45]])
  assert int(result.num_steps) == 6
  # Without the never-ending stream the loop stops as soon as all are done.
  early = decoder.generate(params, config, prompts[:3], 6,
                           Scripted(script[:3], stop_at[:3]),
                           jax.random.key(0), eos_id=eos,
                           stop_token_ids=(newline,))
  np.testing.assert_array_equal(early.lengths, [2, 1, 3])
  assert int(early.num_steps) == 3 == int(early.sampler_state)
  # Without stop_token_ids the newline does not end stream 1.
  no_stop = decoder.generate(params, config, prompts[:2], 6,
                             Scripted(script[:2], stop_at[:2]),
                             jax.random.key(0), eos_id=eos)
  np.testing.assert_array_equal(no_stop.lengths, [2, 6])


def test_stops_at_every_newline_piece_of_a_blank_line_tokenizer():
  tok = blank_line_tokenizer()   # has "\n", "\n\n" and <0x0A> pieces
  config = config_lib.get_model_config("micro", tok.vocab_size)
  params = registry.init_params(config, jax.random.key(0))
  nl, nn = tok.newline_id, tok._sp.piece_to_id("\n\n")
  byte_nl = tok._sp.piece_to_id("<0x0A>")
  word = tok.encode("caves")[0]
  script = ((word, nn, word, word, word),
            (word, word, nl, word, word),
            (byte_nl, word, word, word, word),
            (word, word, word, word, word))
  prompts = _prompts([2, 2, 2, 2], 2)

  def run(stop_ids):
    return decoder.generate(params, config, prompts, 5,
                            Scripted(script, (-1,) * 4), jax.random.key(0),
                            eos_id=tok.eos_id, stop_token_ids=stop_ids)
  result = run(tok.newline_ids)
  np.testing.assert_array_equal(result.lengths, [1, 2, 0, 5])
  np.testing.assert_array_equal(result.tokens[:, :3], [
      [word, nn, 0], [word, word, nl], [byte_nl, 0, 0], [word] * 3])
  # Order and repeats of the stop ids do not matter (nor recompile).
  before = decoder._generate._cache_size()
  again = run(tuple(reversed(tok.newline_ids)) + (nl,))
  assert decoder._generate._cache_size() == before
  np.testing.assert_array_equal(again.tokens, result.tokens)
  # The single newline id alone (the old rule) misses "\n\n" and <0x0A>.
  old = run((nl,))
  np.testing.assert_array_equal(old.lengths, [5, 2, 5, 5])


def test_bucketing_does_not_change_outputs_or_recompile(setup):
  config, params = setup
  short = _prompts([4, 2], 4, seed=3)
  padded = np.pad(short, ((0, 0), (9, 0)))  # more left padding, same prompts
  a = decoder.generate(params, config, short, 5, token_samplers.Greedy(),
                       jax.random.key(0), eos_id=NO_EOS)
  before = decoder._generate._cache_size()
  b = decoder.generate(params, config, padded, 7, token_samplers.Greedy(),
                       jax.random.key(0), eos_id=NO_EOS)
  assert decoder._generate._cache_size() == before  # same buckets
  np.testing.assert_array_equal(a.tokens, b.tokens[:, :5])
  assert b.tokens.shape == (2, 7)


def test_temperature_decoding_is_reproducible(setup):
  config, params = setup
  prompts = _prompts([4, 6], 6, seed=4)
  run = lambda k: decoder.generate(params, config, prompts, 8,
                                   token_samplers.Temperature(1.0),
                                   jax.random.key(k), eos_id=NO_EOS).tokens
  np.testing.assert_array_equal(run(1), run(1))
  assert not np.array_equal(run(1), run(2))


def test_sharded_rows_give_the_same_tokens(setup):
  config, params = setup
  mesh = mesh_lib.make_mesh(data=8)
  sharded = registry.init_params_sharded(None, config, mesh, jax.random.key(0))
  sharded = jax.tree.map(lambda x: 3.0 * x, sharded)
  prompts = _prompts([3, 5, 1, 8, 2, 7, 4, 6], 8, seed=5)
  a = decoder.generate(params, config, prompts, 6, token_samplers.Greedy(),
                       jax.random.key(0), eos_id=NO_EOS)
  b = decoder.generate(sharded, config, prompts, 6, token_samplers.Greedy(),
                       jax.random.key(0), eos_id=NO_EOS, mesh=mesh)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  assert len(b.tokens.sharding.device_set) == 8
  # No implicit transfers (trainers run with the guard on).
  key = jax.random.key(0)
  with jax.transfer_guard("disallow"):
    c = decoder.generate(sharded, config, prompts, 6, token_samplers.Greedy(), key,
                         eos_id=NO_EOS, mesh=mesh)
    d = decoder.generate(params, config, prompts, 6, token_samplers.Greedy(), key,
                         eos_id=NO_EOS)
    # Single-device parameters are replicated onto the mesh.
    e = decoder.generate(params, config, prompts, 6, token_samplers.Greedy(), key,
                         eos_id=NO_EOS, mesh=mesh)
  np.testing.assert_array_equal(c.tokens, a.tokens)
  np.testing.assert_array_equal(d.tokens, a.tokens)
  np.testing.assert_array_equal(e.tokens, a.tokens)


class _StubTokenizer:
  pad_id, bos_id = 0, 2

  def encode_batch(self, texts):
    return [[10 + len(w) for w in t.split()] for t in texts]

  def decode(self, ids):
    return " ".join(str(i) for i in ids)


def test_prepare_prompts_and_decode_texts():
  tok = _StubTokenizer()
  prompts = decoder.prepare_prompts(tok, ["a bb ccc", "dddd"], bucket=8)
  np.testing.assert_array_equal(prompts, [[0, 0, 0, 0, 2, 11, 12, 13],
                                          [0, 0, 0, 0, 0, 0, 2, 14]])
  assert prompts.dtype == np.int32
  result = decoder.DecodeResult(jnp.asarray([[5, 6, 3], [7, 0, 0]]),
                                jnp.asarray([2, 1]), (), jnp.int32(3))
  assert decoder.decode_texts(tok, result) == ["5 6", "7"]


def test_errors(setup):
  config, params = setup
  greedy, key = token_samplers.Greedy(), jax.random.key(0)
  with pytest.raises(CbenchError, match="empty"):
    decoder.generate(params, config, np.zeros((2, 4), np.int32), 4, greedy,
                     key)
  with pytest.raises(CbenchError, match="max_len"):
    decoder.generate(params, config, _prompts([250], 250), 10, greedy, key)
  with pytest.raises(CbenchError, match="group_size"):
    decoder.generate(params, config, _prompts([2, 2, 2], 2), 4, greedy, key,
                     group_size=2)
  with pytest.raises(CbenchError, match="max_new_tokens"):
    decoder.generate(params, config, _prompts([2], 2), 0, greedy, key)
