"""The private-prediction benchmark compares like with like (micro sizes)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import private_prediction_speed as bench
from cbench.decoding import decoder
from cbench.decoding import token_samplers
from cbench.models import config as config_lib

S, G, V = 2, 2, 64


@pytest.fixture(scope="module")
def micro():
  return bench.load_model("micro", V, 64)


def _inputs(loaded, short=1, steps=3):
  return bench.make_inputs(loaded, batch_size=S, num_docs=G, prompt_len=4,
                           short=short, steps=steps)


def test_both_sides_decode_the_same_rows_with_the_same_shapes(
    micro, monkeypatch):
  calls = []
  real = decoder.generate

  def recording(params, config, prompts, n, sampler, key, **kw):
    out = real(params, config, prompts, n, sampler, key, **kw)
    calls.append(dict(params=params, config=config, prompts=prompts, n=n,
                      sampler=sampler, key=key, kw=kw,
                      shape=out.tokens.shape, steps=int(out.num_steps)))
    return out
  monkeypatch.setattr(bench.decoder, "generate", recording)
  inputs = _inputs(micro)
  no_eos = bench._NO_EOS  # pylint: disable=protected-access
  rows = bench.measure(inputs, ["svt"], rounds=1, model="micro")
  plain = [c for c in calls if isinstance(c["sampler"],
                                          token_samplers.Temperature)]
  private = [c for c in calls if c not in plain]
  assert len(plain) == len(private) == 3        # warm-up, then n1 and n2
  # The timed runs alternate: plain, then the method, each (n1, n2).
  assert [c["n"] for c in calls] == [4, 4, 1, 4, 1, 4]
  assert [c["sampler"] for c in calls[2:]] == [plain[1]["sampler"]] * 2 + [
      private[1]["sampler"]] * 2
  for c in calls:
    assert c["prompts"] is inputs.prompts          # one array for both
    assert c["prompts"].shape == (G * (S + 1), 4)
    assert c["params"] is inputs.params and c["config"] is inputs.config
    assert c["key"] is inputs.key
    assert c["kw"] == {"group_size": S + 1, "eos_id": no_eos,
                       "new_tokens_bucket": inputs.bucket}
    assert c["shape"] == (G, c["n"]) and c["steps"] == c["n"]
  assert [c["n"] for c in plain] == [c["n"] for c in private] == [4, 1, 4]
  (row,) = rows
  assert row["rows"] == G * (S + 1) and row["method"] == "svt"
  assert row["plain_random_words_per_step"] == G * V   # not rows x V
  # 3 steps are timing noise (the difference can be negative): numbers.
  r = row["ratio"]
  assert r["min"] <= r["median"] <= r["max"], row
  for k in ("plain_ms_per_step", "private_ms_per_step", "ratio_of_min_steps"):
    assert math.isfinite(row[k]), (k, row)
  assert row["private_docs_per_s"] > 0 and row["plain_docs_per_s"] > 0


@dataclasses.dataclass(frozen=True)
class _EveryRow(token_samplers.Temperature):
  """The old, unfair baseline's sampling: a draw for every row."""

  def next_tokens(self, logits, key, state=None):
    every = jax.random.categorical(key, logits / self.temperature, axis=-1)
    tokens = every[:, 0].astype(jnp.int32)
    return tokens, jnp.zeros(tokens.shape, jnp.bool_), state


def test_plain_side_draws_once_per_emitted_stream(micro):
  inputs = _inputs(micro)
  gs = S + 1
  assert bench.random_words(token_samplers.Temperature(1.0), G, gs, V) == (
      G * V)
  assert bench.random_words(token_samplers.Greedy(), G, gs, V) == 0
  assert bench.random_words(_EveryRow(1.0), G, gs, V) == G * gs * V
  svt = bench.make_sampler("svt", S, inputs.n2)
  assert bench.check_like_with_like(
      inputs, token_samplers.Temperature(1.0), {"svt": svt}) == G * V
  with pytest.raises(ValueError, match="one draw per emitted token"):
    bench.check_like_with_like(inputs, _EveryRow(1.0), {"svt": svt})
  short = bench.make_sampler("median", S, inputs.n2 - 1)
  with pytest.raises(ValueError, match="end streams early"):
    bench.check_like_with_like(inputs, token_samplers.Temperature(1.0),
                               {"median": short})


def test_no_timed_sampler_ends_a_stream_early():
  """Over n2 steps no sampler stops a stream (a stream that ended early
  would make its side's step time too small)."""
  n = 12
  logits = jax.random.normal(jax.random.key(0), (G, S + 1, V)) * 3.0
  for method in ("svt", "exp_mech", "invisible_ink", "median", "median_sort",
                 "public_only"):
    sampler = bench.make_sampler(method, S, n)

    @jax.jit
    def stops(key, sampler=sampler):
      def step(state, i):
        _, stop, state = sampler.next_tokens(
            logits, jax.random.fold_in(key, i), state)
        return state, stop
      return jax.lax.scan(step, sampler.init_state(G, key), jnp.arange(n))[1]
    stop = np.asarray(stops(jax.random.key(1)))
    assert not stop[:-1].any(), method


def test_sampler_alone_reports_median_before_and_after():
  rows = bench.measure_samplers(num_groups=G, batch_size=5, vocab_size=V,
                                methods=["median", "median_sort"], calls=1,
                                rounds=1)
  assert [r["method"] for r in rows] == ["median", "median_sort"]
  for r in rows:
    assert r["ms_per_call"]["min"] > 0 and r["plain_ms_per_call"] > 0


def test_pretrained_names_use_their_own_weights_and_vocabulary(
    micro, monkeypatch):
  # A micro model of the gemma3 architecture stands in for Gemma 3 270M
  # (loading the real one takes a minute); the dispatch is what is tested.
  cfg = config_lib.get_model_config("micro", 96, arch="gemma3", max_len=64)
  loads = []

  def fake_load(name, dtype):
    loads.append((name, dtype))
    return cfg, micro[1], "gguf"         # params unused: no decoding here
  monkeypatch.setattr(bench.model_speed, "load", fake_load)
  loaded = bench.load_model("gemma3_270m", 512, 40)
  assert loads == [("gemma3_270m", "float32")]
  inputs = bench.make_inputs(loaded, batch_size=2, num_docs=1, prompt_len=4,
                             short=1, steps=2)
  assert inputs.weights == "gguf" and inputs.config.vocab_size == 96
  assert int(inputs.prompts.max()) < 96                     # not 512
  assert micro[0].vocab_size == V and micro[2] == "random"
  assert not loads[1:]                     # named sizes never load GGUF
  with pytest.raises(ValueError, match="max_len"):
    bench.make_inputs(loaded, batch_size=2, num_docs=1, prompt_len=60,
                      short=1, steps=2)
