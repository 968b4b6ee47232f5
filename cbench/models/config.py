"""Model configurations: a frozen dataclass and the named sizes.

Sizes (parameter counts at vocab_size=8000, tied embeddings):

| name  | d_model | layers | heads (kv) | mlp  | params | for |
|-------|---------|--------|------------|------|--------|-----|
| micro | 64      | 2      | 4 (2)      | 128  | ~0.6M  | unit tests |
| tiny  | 256     | 4      | 4 (4)      | 1024 | ~6.2M  | CPU default |
| small | 512     | 6      | 8 (8)      | 1536 | ~24.5M | accelerators |
| base  | 768     | 12     | 12 (12)    | 2048 | ~91M   | accelerators |
| large | 1024    | 24     | 16 (8)     | 3584 | ~348M  | accelerators |

The MLP is SwiGLU (three matrices of d_model x mlp_dim). CPU configs compute
in float32 (bfloat16 is slower on XLA:CPU); accelerator configs compute in
bfloat16 with float32 parameters.

`arch` picks the module (`cbench.models.registry.make_model`): 'cbench' (the
tiny LM above, `cbench.models.transformer`), 'gemma3'
(`cbench.models.gemma3`: qk-norm, post-norms, GELU-tanh MLP, sliding-window
local layers) or 'llama' (`cbench.models.llama`: no embedding scale).
Pretrained configurations come from their weights
(`cbench.models.gguf_loader`).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from cbench import _validate


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
  """Hyperparameters of `cbench.models.transformer.Transformer`.

  Attributes:
    name: the named size this came from (informational).
    vocab_size: number of token ids (embedding rows; logits width).
    d_model: residual stream width.
    num_layers: transformer blocks.
    num_heads: query heads.
    num_kv_heads: key/value heads (grouped-query attention); divides
      num_heads.
    head_dim: width of each head.
    mlp_dim: hidden width of the SwiGLU MLP.
    max_len: largest position + 1 the model is used at (training sequence
      length and prompt + generated tokens when decoding).
    rope_base: RoPE wavelength base.
    norm_eps: RMSNorm epsilon.
    dtype: activation/compute dtype name ("float32" or "bfloat16"); logits
      are returned in float32 regardless.
    param_dtype: parameter dtype name.
    remat: rematerialise each block in the backward pass (saves memory).
    arch: 'cbench' | 'gemma3' | 'llama' (see the module docstring).
    sliding_window: gemma3 local layers attend to keys at most
      ``sliding_window - 1`` positions back (0: no window).
    global_every: gemma3: layer i is global (full attention, `rope_base`,
      `rope_scale`) iff ``(i + 1) % global_every == 0``; the other layers are
      local (window, `local_rope_base`). 0: every layer global.
    local_rope_base: RoPE base of gemma3 local layers.
    rope_scale: linear RoPE position scaling of global layers (positions
      divided by it; Gemma 3 4B+ use 8).
    query_pre_attn_scalar: attention logits are scaled by its -1/2 power;
      0 means head_dim.

  The arch fields after `remat` are written by `to_dict` only when they
  differ from their defaults, so model directories and cache keys of
  'cbench' models are unchanged.
  """

  name: str = "custom"
  vocab_size: int
  d_model: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  max_len: int = 512
  rope_base: float = 10_000.0
  norm_eps: float = 1e-6
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat: bool = False
  arch: str = "cbench"
  sliding_window: int = 0
  global_every: int = 0
  local_rope_base: float = 10_000.0
  rope_scale: float = 1.0
  query_pre_attn_scalar: float = 0.0

  def __post_init__(self):
    for field in ("vocab_size", "d_model", "num_layers", "num_heads",
                  "num_kv_heads", "head_dim", "mlp_dim", "max_len"):
      _validate.positive(field, getattr(self, field))
    _validate.check(
        self.num_heads % self.num_kv_heads == 0,
        f"Expected num_kv_heads={self.num_kv_heads} to divide "
        f"num_heads={self.num_heads}.")
    _validate.check(self.head_dim % 2 == 0,
                    f"Expected an even head_dim={self.head_dim} (RoPE).")
    _validate.one_of("dtype", self.dtype, _DTYPES)
    _validate.one_of("param_dtype", self.param_dtype, _DTYPES)
    _validate.one_of("arch", self.arch, ARCHS)
    _validate.non_negative("sliding_window", self.sliding_window)
    _validate.non_negative("global_every", self.global_every)
    _validate.positive("rope_scale", self.rope_scale)
    _validate.non_negative("query_pre_attn_scalar", self.query_pre_attn_scalar)

  def is_global_layer(self, i: int) -> bool:
    """Whether layer i attends globally (always, unless arch='gemma3')."""
    if self.arch != "gemma3" or not self.global_every:
      return True
    return (i + 1) % self.global_every == 0

  @property
  def attn_scale(self) -> float:
    """Multiplier of the attention logits q.k."""
    return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

  @property
  def compute_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  @property
  def params_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.param_dtype)

  def replace(self, **changes) -> "ModelConfig":
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    out = dataclasses.asdict(self)
    for name, default in _ARCH_DEFAULTS.items():
      if out[name] == default:
        del out[name]
    return out

  def num_params(self) -> int:
    """Exact parameter count (tied embeddings, no biases)."""
    d, h, kv, hd = self.d_model, self.num_heads, self.num_kv_heads, self.head_dim
    attn = d * hd * (2 * h + 2 * kv)
    mlp = 3 * d * self.mlp_dim
    per_layer = attn + mlp + 2 * d
    if self.arch == "gemma3":  # qk-norms, post-attention and post-MLP norms
      per_layer += 2 * hd + 2 * d
    return self.vocab_size * d + self.num_layers * per_layer + d

  def flops_per_token(self, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward = 3x forward).

    Counts matmuls only: 2 FLOPs per multiply-add for the parameterised
    projections (embedding lookup excluded, logits included) and the
    attention scores/values at full (non-causal-skipped) length `seq_len`.
    """
    d, h, kv, hd = self.d_model, self.num_heads, self.num_kv_heads, self.head_dim
    matmul_params = self.num_layers * (d * hd * (2 * h + 2 * kv)
                                       + 3 * d * self.mlp_dim)
    matmul_params += self.vocab_size * d
    attention = self.num_layers * 2 * h * hd * seq_len
    return 3.0 * (2.0 * matmul_params + 2.0 * attention)


_DTYPES = ("float32", "bfloat16", "float16")
ARCHS = ("cbench", "gemma3", "llama")
_ARCH_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig)
                  if f.name in ("arch", "sliding_window", "global_every",
                                "local_rope_base", "rope_scale",
                                "query_pre_attn_scalar")}

_SIZES = {
    "micro": dict(d_model=64, num_layers=2, num_heads=4, num_kv_heads=2,
                  head_dim=16, mlp_dim=128, max_len=256),
    "tiny": dict(d_model=256, num_layers=4, num_heads=4, num_kv_heads=4,
                 head_dim=64, mlp_dim=1024, max_len=512),
    "small": dict(d_model=512, num_layers=6, num_heads=8, num_kv_heads=8,
                  head_dim=64, mlp_dim=1536, max_len=1024,
                  dtype="bfloat16"),
    "base": dict(d_model=768, num_layers=12, num_heads=12, num_kv_heads=12,
                 head_dim=64, mlp_dim=2048, max_len=2048,
                 dtype="bfloat16", remat=True),
    "large": dict(d_model=1024, num_layers=24, num_heads=16, num_kv_heads=8,
                  head_dim=64, mlp_dim=3584, max_len=2048,
                  dtype="bfloat16", remat=True),
}

MODEL_NAMES = tuple(_SIZES)


def get_model_config(name: str, vocab_size: int, **overrides) -> ModelConfig:
  """The named configuration for a tokenizer of `vocab_size` ids.

  Args:
    name: one of `MODEL_NAMES`.
    vocab_size: the tokenizer's vocabulary size.
    **overrides: ModelConfig fields to change (e.g. ``dtype="bfloat16"``).
  """
  _validate.one_of("model", name, MODEL_NAMES)
  fields = dict(_SIZES[name], name=name, vocab_size=vocab_size)
  unknown = set(overrides) - {f.name for f in dataclasses.fields(ModelConfig)}
  _validate.check(not unknown, f"Unknown ModelConfig field(s) {sorted(unknown)}.")
  fields.update(overrides)
  return ModelConfig(**fields)
