"""Tests for the Greedy and Temperature token samplers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from cbench._validate import CbenchError
from cbench.decoding import token_samplers


def test_greedy_is_argmax_of_row0():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3, 11)),
                       jnp.float32)
  g = token_samplers.Greedy()
  state = g.init_state(5, jax.random.key(0))
  tokens, stop, new_state = g.next_tokens(logits, jax.random.key(1), state)
  np.testing.assert_array_equal(tokens, np.argmax(logits[:, 0], axis=-1))
  assert tokens.dtype == jnp.int32 and tokens.shape == (5,)
  assert stop.dtype == jnp.bool_ and not stop.any()
  assert new_state == state
  # Plain convenience call on [B, V].
  np.testing.assert_array_equal(g.next_tokens(logits[:, 1], None),
                                np.argmax(logits[:, 1], axis=-1))


def _frequencies(sampler, logits, n, key):
  batch = jnp.broadcast_to(logits, (n, logits.shape[-1]))
  tokens = jax.jit(sampler.next_tokens)(batch, key)
  return np.bincount(np.asarray(tokens), minlength=logits.shape[-1])


@pytest.mark.stat
def test_temperature_frequencies_match_softmax():
  """Chi-square goodness of fit, 40k draws, reject at alpha = 1e-3."""
  logits = jnp.asarray([2.0, 1.0, 0.5, 0.0, -1.0], jnp.float32)
  n, temperature = 40_000, 2.0
  counts = _frequencies(token_samplers.Temperature(temperature), logits, n,
                        jax.random.key(0))
  z = np.asarray(logits, np.float64) / temperature
  expected = n * np.exp(z) / np.exp(z).sum()
  assert stats.chisquare(counts, expected).pvalue > 1e-3
  # A wrong temperature (1.0 instead of 2.0) is rejected by the same test.
  wrong = _frequencies(token_samplers.Temperature(1.0), logits, n,
                       jax.random.key(0))
  assert stats.chisquare(wrong, expected).pvalue < 1e-3


def test_temperature_protocol_call_uses_row0_and_key():
  logits = jnp.zeros((4, 2, 50)).at[:, 1, 7].set(100.0)  # row 1 ignored
  t = token_samplers.Temperature(0.5)
  state = t.init_state(4, jax.random.key(0))
  a, stop, _ = t.next_tokens(logits, jax.random.key(1), state)
  b, _, _ = t.next_tokens(logits, jax.random.key(1), state)
  c, _, _ = t.next_tokens(logits, jax.random.key(2), state)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert not np.all(np.asarray(a) == 7)  # row 1 (all 7s) was not read
  assert a.shape == (4,) and not stop.any()


def test_temperature_validation():
  for bad in (0.0, -1.0, float("inf")):
    with pytest.raises(CbenchError, match="temperature"):
      token_samplers.Temperature(bad)
  assert hash(token_samplers.Temperature(0.7)) == hash(token_samplers.Temperature(0.7))
