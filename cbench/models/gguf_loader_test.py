"""GGUF -> params conversion on tiny GGUF files written here (fast).

Each test writes a small 'gemma3' or 'llama' GGUF file with `gguf.GGUFWriter`
(float32 and Q8_0 tensors, a tokenizer) and checks the converted model
against an independent NumPy forward pass on the *raw* GGUF tensors, written
the way llama.cpp computes: norm weights used as multipliers (Gemma's
already include +1), and for 'llama' interleaved RoPE on the permuted Q/K
rows. Broken variants (no -1 on the norms, no Q/K un-permutation) are shown
to disagree with that reference.
"""

import os

import jax
import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="needs the 'models' extra (gguf)")
pytest.importorskip("safetensors", reason="needs the 'models' extra")
pytest.importorskip("tokenizers", reason="needs the 'models' extra")

from cbench._validate import CbenchError  # pylint: disable=g-import-not-at-top,wrong-import-position
from cbench.models import gguf_loader  # pylint: disable=g-import-not-at-top,wrong-import-position
from cbench.models import registry  # pylint: disable=g-import-not-at-top,wrong-import-position
from cbench.parallel import mesh as mesh_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from cbench.text import gguf_tokenizer

Q8 = gguf.GGMLQuantizationType.Q8_0
D, LAYERS, HEADS, HD, MLP = 32, 6, 4, 8, 64


# ------------------------------------------------------------ tokenizers


def gemma_vocab():
  """Tokens/scores/types like Gemma's GGUF (user-defined pieces with
  spaces, CONTROL <unk>, CONTROL turn markers, byte pieces)."""
  toks = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>",
          "<end_of_turn>", "\n", "\n\n", "  ", "<b>"]
  types = [3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4]
  toks += [f"<0x{i:02X}>" for i in range(256)]
  types += [6] * 256
  normal = ["\u2581", "t", "h", "e", "c", "a", "T", "1", "2", "\u2581t",
            "he", "\u2581the", "\u2581c", "at", "\u2581cat"]
  toks += normal
  types += [1] * len(normal)
  scores = [0.0] * (len(toks) - len(normal)) + [-float(i) for i in range(
      len(normal))]
  return toks, scores, types


def bpe_vocab():
  from tokenizers import pre_tokenizers  # pylint: disable=g-import-not-at-top
  specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
  alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
  merges = ["\u0120 t", "h e", "\u0120t he", "a t", "\u0120 c", "\u0120c at"]
  toks = specials + alphabet + ["\u0120t", "he", "\u0120the", "at", "\u0120c",
                                "\u0120cat"]
  types = [3] * 3 + [1] * (len(toks) - 3)
  return toks, merges, types


# ------------------------------------------------------------ writers


def _q8(w):
  """Q8_0 bytes and the values they decode to."""
  q = gguf.quants.quantize(w.astype(np.float32), Q8)
  return q, gguf.quants.dequantize(q, Q8).reshape(w.shape)


def write_gguf(path, arch, seed=0, extra_tensor=False, drop=None):
  """Writes a tiny GGUF file; returns its raw float tensors (as stored)."""
  rng = np.random.default_rng(seed)
  kv = 2
  w = gguf.GGUFWriter(str(path), arch)
  w.add_context_length(128)
  w.add_embedding_length(D)
  w.add_block_count(LAYERS)
  w.add_feed_forward_length(MLP)
  w.add_head_count(HEADS)
  w.add_head_count_kv(kv)
  w.add_layer_norm_rms_eps(1e-6)
  if arch == "gemma3":
    toks, scores, types = gemma_vocab()
    w.add_key_length(HD)
    w.add_value_length(HD)
    w.add_rope_freq_base(1e6)
    w.add_sliding_window(3)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
  else:
    toks, merges, types = bpe_vocab()
    w.add_rope_freq_base(1e5)
    w.add_rope_dimension_count(HD)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
  vocab = len(toks)
  raw = {}

  def put(name, value, quant=False):
    if drop == name:
      return
    if quant:
      q, value = _q8(value)
      w.add_tensor(name, q, raw_dtype=Q8)
    else:
      w.add_tensor(name, value.astype(np.float32))
    raw[name] = value.astype(np.float64)

  n = lambda *s: rng.standard_normal(s)
  norm = lambda k: (1.0 + 0.3 * n(k)) if arch == "gemma3" else 1.0 + 0.3 * n(k)
  put("token_embd.weight", n(vocab, D), quant=True)
  put("output_norm.weight", norm(D))
  for i in range(LAYERS):
    p = f"blk.{i}."
    put(p + "attn_norm.weight", norm(D))
    put(p + "attn_q.weight", n(HEADS * HD, D) / np.sqrt(D) * 2)
    put(p + "attn_k.weight", n(kv * HD, D) / np.sqrt(D) * 2)
    put(p + "attn_v.weight", n(kv * HD, D) / np.sqrt(D), quant=True)
    put(p + "attn_output.weight", n(D, HEADS * HD) / np.sqrt(HEADS * HD))
    put(p + "ffn_norm.weight", norm(D))
    put(p + "ffn_gate.weight", n(MLP, D) / np.sqrt(D), quant=True)
    put(p + "ffn_up.weight", n(MLP, D) / np.sqrt(D))
    put(p + "ffn_down.weight", n(D, MLP) / np.sqrt(MLP))
    if arch == "gemma3":
      put(p + "attn_q_norm.weight", norm(HD))
      put(p + "attn_k_norm.weight", norm(HD))
      put(p + "post_attention_norm.weight", norm(D))
      put(p + "post_ffw_norm.weight", norm(D))
  if extra_tensor:
    put("output.weight", n(vocab, D))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return raw


# ------------------------------------------------------------ references


def _rms(x, w, eps=1e-6):
  return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * w


def _rope_half(x, pos, base):
  hd = x.shape[-1]
  freq = base ** (-np.arange(0, hd, 2) / hd)
  ang = pos[:, None, None] * freq
  x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
  return np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang),
                         x2 * np.cos(ang) + x1 * np.sin(ang)], -1)


def _rope_interleaved(x, pos, base):
  """llama.cpp's 'normal' RoPE: rotates adjacent pairs (2j, 2j+1)."""
  hd = x.shape[-1]
  freq = base ** (-np.arange(0, hd, 2) / hd)
  ang = pos[:, None, None] * freq
  a, b = x[..., 0::2], x[..., 1::2]
  out = np.empty_like(x)
  out[..., 0::2] = a * np.cos(ang) - b * np.sin(ang)
  out[..., 1::2] = b * np.cos(ang) + a * np.sin(ang)
  return out


def reference_logits(raw, arch, tokens):
  """NumPy float64 forward on raw GGUF tensors (llama.cpp conventions)."""
  gemma = arch == "gemma3"
  t = len(tokens)
  pos = np.arange(t, dtype=np.float64)
  emb = raw["token_embd.weight"]
  x = emb[tokens] * (np.sqrt(D) if gemma else 1.0)
  kv = raw["blk.0.attn_k.weight"].shape[0] // HD
  for i in range(LAYERS):
    g = lambda k: raw[f"blk.{i}.{k}.weight"]
    h = _rms(x, g("attn_norm"))
    q = (h @ g("attn_q").T).reshape(t, HEADS, HD)
    k = (h @ g("attn_k").T).reshape(t, kv, HD)
    v = (h @ g("attn_v").T).reshape(t, kv, HD)
    is_global = (not gemma) or (i + 1) % 6 == 0
    mask = pos[:, None] >= pos[None, :]
    if gemma:
      q, k = _rms(q, g("attn_q_norm")), _rms(k, g("attn_k_norm"))
      base = 1e6 if is_global else 1e4
      q, k = _rope_half(q, pos, base), _rope_half(k, pos, base)
      if not is_global:
        mask &= (pos[:, None] - pos[None, :]) < 3
    else:
      q, k = _rope_interleaved(q, pos, 1e5), _rope_interleaved(k, pos, 1e5)
    out = np.empty((t, HEADS, HD))
    for hh in range(HEADS):
      kk = hh // (HEADS // kv)
      s = q[:, hh] @ k[:, kk].T / np.sqrt(HD)
      s = np.where(mask, s, -np.inf)
      p = np.exp(s - s.max(-1, keepdims=True))
      p /= p.sum(-1, keepdims=True)
      out[:, hh] = p @ v[:, kk]
    a = out.reshape(t, -1) @ g("attn_output").T
    x = x + (_rms(a, g("post_attention_norm")) if gemma else a)
    h = _rms(x, g("ffn_norm"))
    gate = h @ g("ffn_gate").T
    if gemma:
      act = 0.5 * gate * (1 + np.tanh(np.sqrt(2 / np.pi) * (
          gate + 0.044715 * gate ** 3)))
    else:
      act = gate / (1 + np.exp(-gate))
    m = (act * (h @ g("ffn_up").T)) @ g("ffn_down").T
    x = x + (_rms(m, g("post_ffw_norm")) if gemma else m)
  return _rms(x, raw["output_norm.weight"]) @ emb.T


def _convert(path):
  fields, tensors = gguf_loader.read_gguf(str(path))
  vocab = int(tensors["token_embd.weight"].shape[1])
  config = gguf_loader.config_from_gguf(fields, vocab, "t")
  return config, gguf_loader.params_from_gguf(tensors, config)


def _logits(config, params, tokens):
  model = registry.make_model(config)
  return np.asarray(jax.jit(lambda p, t: model.apply({"params": p}, t))(
      params, np.asarray(tokens, np.int32)[None])[0])


TOKENS = [2, 260, 250, 5, 7, 180, 100, 261, 199, 12, 40, 255]


# ------------------------------------------------------------ tests


@pytest.fixture(scope="module", params=["gemma3", "llama"])
def converted(request, tmp_path_factory):
  arch = request.param
  path = tmp_path_factory.mktemp(arch) / f"{arch}.gguf"
  raw = write_gguf(path, arch)
  config, params = _convert(path)
  return arch, path, raw, config, params


def test_config_from_metadata(converted):
  arch, _, raw, config, _ = converted
  assert config.arch == arch
  assert (config.d_model, config.num_layers, config.num_heads,
          config.num_kv_heads, config.head_dim, config.mlp_dim) == (
              D, LAYERS, HEADS, 2, HD, MLP)
  assert config.vocab_size == raw["token_embd.weight"].shape[0]
  assert config.max_len == 128 and config.norm_eps == 1e-6
  if arch == "gemma3":
    assert (config.sliding_window, config.global_every, config.rope_base,
            config.local_rope_base) == (3, 6, 1e6, 1e4)
    assert config.attn_scale == HD ** -0.5
  else:
    assert config.rope_base == 1e5 and config.sliding_window == 0


def test_logits_match_reference_forward(converted):
  arch, _, raw, config, params = converted
  want = reference_logits(raw, arch, np.array(TOKENS))
  got = _logits(config, params, TOKENS)
  np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_norms_store_multiplier_minus_one(converted):
  """cbench norms are x*(1+scale): the loader subtracts 1 from GGUF
  multipliers (Gemma's include the +1); without it logits are wrong."""
  arch, _, raw, config, params = converted
  np.testing.assert_allclose(params["final_norm"]["scale"],
                             raw["output_norm.weight"] - 1, atol=1e-6)
  np.testing.assert_allclose(params["blocks_2"]["mlp_norm"]["scale"],
                             raw["blk.2.ffn_norm.weight"] - 1, atol=1e-6)
  if arch == "gemma3":
    np.testing.assert_allclose(params["blocks_1"]["attn"]["k_norm"]["scale"],
                               raw["blk.1.attn_k_norm.weight"] - 1, atol=1e-6)
  broken = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 1 if p[-1].key == "scale" else x, params)
  want = reference_logits(raw, arch, np.array(TOKENS))
  assert np.abs(_logits(config, broken, TOKENS) - want).max() > (
      0.05 * np.abs(want).max())


def test_llama_qk_rows_are_unpermuted(converted):
  """GGUF Q/K rows are permuted for interleaved RoPE; un-permuted, they
  give the Hugging Face (rotate-half) kernel and the same logits."""
  arch, _, raw, config, params = converted
  if arch != "llama":
    pytest.skip("gemma3 GGUFs are not permuted")
  wq = raw["blk.0.attn_q.weight"]
  hf = gguf_loader.unpermute_qk(wq, HEADS)
  np.testing.assert_array_equal(gguf_loader.permute_qk(hf, HEADS), wq)
  np.testing.assert_allclose(
      params["blocks_0"]["attn"]["q"]["kernel"],
      hf.T.reshape(D, HEADS, HD), atol=1e-6)
  # Skipping the un-permutation (rotate-half on interleaved rows) is wrong.
  broken = jax.tree.map(lambda x: x, params)
  for i in range(LAYERS):
    for name, heads in (("q", HEADS), ("k", 2)):
      w = raw[f"blk.{i}.attn_{name}.weight"]
      broken[f"blocks_{i}"]["attn"][name]["kernel"] = np.float32(
          w.T.reshape(D, heads, HD))
  want = reference_logits(raw, arch, np.array(TOKENS))
  assert np.abs(_logits(config, broken, TOKENS) - want).max() > (
      0.05 * np.abs(want).max())


def test_convert_cache_and_sharded_load(converted, tmp_path, monkeypatch):
  arch, path, _, config, params = converted
  monkeypatch.setenv("CBENCH_CACHE", str(tmp_path / "cache"))
  first = gguf_loader.load_pretrained(str(path))
  cache_dir = first.info["cache_dir"]
  assert cache_dir.startswith(str(tmp_path / "cache"))
  assert set(os.listdir(cache_dir)) == {"params.safetensors", "info.json",
                                        "model_config.json", "tokenizer.model"}
  assert first.config == config.replace(name=first.config.name)
  for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), b)
  # A second load reads the cache and does not convert again.
  monkeypatch.setattr(gguf_loader, "convert", None)
  mesh = mesh_lib.make_mesh(data=2, fsdp=2, model=2)
  sharded = gguf_loader.load_pretrained(str(path), mesh=mesh)
  up = sharded.params["blocks_0"]["mlp"]["up"]["kernel"]
  assert len(up.sharding.device_set) == 8
  assert up.addressable_shards[0].data.shape == (D // 2, MLP // 2)
  for a, b in zip(jax.tree.leaves(sharded.params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), b)
  np.testing.assert_allclose(_logits(sharded.config, sharded.params, TOKENS),
                             _logits(config, params, TOKENS), atol=1e-4)
  bf16 = gguf_loader.load_pretrained(str(path), param_dtype="bfloat16")
  assert bf16.params["embed"]["embedding"].dtype == np.dtype("bfloat16")
  tok = first.tokenizer
  assert tok.decode(tok.encode("the cat")) == "the cat"


def test_gemma_tokenizer_fixes(tmp_path):
  write_gguf(tmp_path / "g.gguf", "gemma3")
  fields, _ = gguf_loader.read_gguf(str(tmp_path / "g.gguf"))
  tok = gguf_tokenizer.tokenizer_from_gguf(fields)
  ids = {t: i for i, t in enumerate(fields["tokenizer.ggml.tokens"])}
  # Fix 2: <unk> (CONTROL in GGUF) is the unknown piece.
  assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)
  assert tok.newline_id == ids["\n"]
  # Fix 1: the user-defined two-space piece matches a run of spaces.
  assert tok.encode("  the") == [ids["  "], ids["t"], ids["he"]]
  # Fix 3: turn markers are parsed in text.
  assert tok.encode("<start_of_turn>a") == [5, ids["a"]]
  assert tok.encode(" the cat") == [ids["\u2581the"], ids["\u2581cat"]]
  assert tok.encode("12") == [ids["1"], ids["2"]]
  assert tok.encode("\n\n<b>") == [ids["\n\n"], ids["<b>"]]
  assert tok.encode("a", bos=True, eos=True) == [2, ids["a"], 1]
  for text in ("the  cat\n\n12", "T\u00e9\u4e2d\U0001F600<b>x", "\t\r\n"):
    assert tok.decode(tok.encode(text)) == text


def test_bpe_tokenizer(tmp_path):
  write_gguf(tmp_path / "l.gguf", "llama")
  fields, _ = gguf_loader.read_gguf(str(tmp_path / "l.gguf"))
  tok = gguf_tokenizer.tokenizer_from_gguf(fields)
  toks = fields["tokenizer.ggml.tokens"]
  # add_bos_token is false and BOS is a chat marker: documents start (and
  # end) with <|endoftext|>.
  assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id) == (0, 0, 2, 0)
  assert tok.encode("the cat") == [toks.index("t"), toks.index("he"),
                                   toks.index("\u0120cat")]
  assert tok.encode("12") == [toks.index("1"), toks.index("2")]
  assert tok.encode("a<|im_end|>") == [toks.index("a"), 2]
  assert tok.encode("x", bos=True, eos=True) == [0, toks.index("x"), 0]
  assert tok.newline_id == toks.index("\u010a")
  for text in ("the  cat\n\n12", "T\u00e9\u4e2d\U0001F600<b>x", "\t\r\n"):
    assert tok.decode(tok.encode(text)) == text
  assert tok.decode([0, toks.index("x"), 2]) == "x"
  path = str(tmp_path / "tok.json")
  tok.save(path)
  again = gguf_tokenizer.load_tokenizer(path)
  assert again.encode("the cat\n") == tok.encode("the cat\n")
  assert (again.bos_id, again.pad_id) == (0, 2)


def test_conversion_errors(tmp_path):
  write_gguf(tmp_path / "extra.gguf", "llama", extra_tensor=True)
  with pytest.raises(CbenchError, match="output.weight"):
    _convert(tmp_path / "extra.gguf")
  write_gguf(tmp_path / "missing.gguf", "gemma3",
             drop="blk.3.post_ffw_norm.weight")
  with pytest.raises(CbenchError, match="blk.3.post_ffw_norm"):
    _convert(tmp_path / "missing.gguf")
  with pytest.raises(CbenchError, match="architecture"):
    gguf_loader.config_from_gguf({"general.architecture": "gpt2"}, 10)
  bad = tmp_path / "bad.gguf"
  bad.write_bytes(b"not a gguf file at all")
  with pytest.raises(CbenchError, match="GGUF"):
    gguf_loader.read_gguf(str(bad))
  with pytest.raises(CbenchError, match="pretrained model"):
    gguf_loader.load_pretrained("gpt9_tiny")
  with pytest.raises(CbenchError, match="not found"):
    gguf_loader.load_pretrained(str(tmp_path / "nope.gguf"))
