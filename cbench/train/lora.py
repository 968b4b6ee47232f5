"""Low-rank adapters (LoRA) on a parameter tree.

A projection kernel W (any rank >= 2, e.g. ``attn/q/kernel [d, heads, hd]``)
is viewed as a matrix ``[d_in, d_out]``: its first `input_axes` axes
flattened into d_in, the rest into d_out (``attn/o/kernel [heads, hd, d]``
contracts two axes, every other kernel of the cbench / gemma3 / llama models
one). Its adapter is ``A [d_in, r]``, ``B [r, d_out]`` and the adapted kernel
is ``W + (alpha / r) A B`` (reshaped back to W's shape).

Init: A ~ N(0, 1 / d_in) (std 1 / sqrt(d_in)), B = 0, so the adapted model
starts exactly equal to the base. Adapters are float32 whatever W's dtype;
the merge adds in float32 and casts back to W's dtype.

Trees: `init` returns the adapters as their own tree, mirroring the kernels'
parents (``blocks_0/attn/q/kernel`` -> ``blocks_0/attn/q/{a, b}``); `merge`
takes base and adapters separately. `init_lora` / `merge_lora` keep them in
one tree under the key ``"lora"`` (what DP-SGD's trainable/frozen partition
by regex wants).

Sharding rule (`shardings`): A is sharded like the kernel's first input axis
and B like its first output axis (the rank axis is replicated), so ``A @ B``
lands in the kernel's own layout without communication; when a kernel shards
an input (output) axis other than the first, flattening does not give a
block sharding and A (B) is replicated instead. Adapters are small, so the
replicated fallback costs little.

No privacy assumptions here: the adapters are what a private trainer
clips/noises; the base is treated as public.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from flax import traverse_util
from jax.sharding import PartitionSpec as P

from cbench import _validate
from cbench._validate import CbenchError

PyTree = Any
KEY = "lora"

# Every attention (q, k, v, o) and MLP (gate, up, down) projection kernel of
# every block; the same paths in the cbench, gemma3 and llama models (norm
# scales and the embedding are not adapted).
DEFAULT_TARGETS = r"^blocks_\d+/(attn|mlp)/\w+/kernel$"


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoraConfig:
  """Rank, scale and target kernels of the adapters.

  Attributes:
    rank: r >= 1.
    alpha: the update is ``alpha / rank * A @ B``.
    targets: regex searched in each parameter's '/'-joined path; every
      matching leaf with >= 2 dims gets an adapter.
  """
  rank: int
  alpha: float = 16.0
  targets: str = DEFAULT_TARGETS

  def __post_init__(self):
    validate(self.rank, self.alpha, self.targets, prefix="lora_")

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


def validate(rank: int, alpha: float, targets: str, *, prefix: str = "lora_",
             allow_zero: bool = False) -> None:
  """Raises CbenchError naming ``{prefix}rank`` / alpha / targets."""
  _validate.check(
      isinstance(rank, (int, np.integer)) and not isinstance(rank, bool)
      and rank >= (0 if allow_zero else 1),
      f"Expected {prefix}rank={rank!r} to be an integer >= "
      f"{0 if allow_zero else 1}.")
  _validate.check(isinstance(alpha, (int, float)) and not isinstance(alpha, bool),
                  f"Expected a number {prefix}alpha={alpha!r}.")
  _validate.positive(f"{prefix}alpha", alpha)
  _validate.finite(f"{prefix}alpha", alpha)
  _validate.check(isinstance(targets, str),
                  f"Expected a regex string {prefix}targets={targets!r}.")
  try:
    re.compile(targets)
  except re.error as e:
    raise CbenchError(f"Bad regex {prefix}targets={targets!r}: {e}") from e


# ---------------------------------------------------------------------------
# Trees


def flatten(tree: Mapping) -> dict[tuple, Any]:
  """``{path tuple: leaf}`` of a nested dict (`flax.traverse_util`)."""
  return traverse_util.flatten_dict(tree)


def unflatten(flat: Mapping[tuple, Any]) -> dict:
  return traverse_util.unflatten_dict(flat)


def input_axes(path: tuple) -> int:
  """Leading axes of a kernel that are contracted with the input.

  ``attn/o/kernel [heads, head_dim, d]`` contracts two; every other
  projection of the cbench / gemma3 / llama models contracts its first.
  """
  return 2 if tuple(path[-2:]) == ("o", "kernel") else 1


def _matrix_shape(path: tuple, shape: tuple) -> tuple[int, int]:
  k = input_axes(path)
  return int(np.prod(shape[:k])), int(np.prod(shape[k:]))


def target_paths(params: PyTree, pattern: str, *, field: str = "lora_targets"
                 ) -> list[tuple]:
  """Sorted paths of the leaves `pattern` selects (>= 2 dims).

  Raises:
    CbenchError: naming `field`, if nothing matches.
  """
  rx = re.compile(pattern)
  paths = sorted(p for p, v in flatten(params).items()
                 if rx.search("/".join(p)) and np.ndim(v) >= 2)
  if not paths:
    raise CbenchError(f"{field}={pattern!r} selects no kernel (no parameter "
                      f"of >= 2 dims has a matching '/'-joined path).")
  return paths


def num_params(adapters: PyTree) -> int:
  return int(sum(np.size(x) for x in jax.tree.leaves(adapters)))


# ---------------------------------------------------------------------------
# Init and merge


def init(params: PyTree, config: LoraConfig, key: jax.Array,
         shardings: PyTree | None = None) -> dict:
  """Adapters for the kernels ``config.targets`` selects (see module doc).

  Args:
    params: the base tree (arrays or `jax.ShapeDtypeStruct`s: only shapes
      are read).
    config: rank and targets.
    key: target i (in sorted path order) draws A from ``fold_in(key, i)``.
    shardings: optional tree like the result (`shardings`) to place it.

  Returns:
    ``{..parent path..: {"a": [d_in, r], "b": [r, d_out]}}`` float32.
  """
  flat = flatten(params)
  out: dict = {}
  for i, path in enumerate(target_paths(params, config.targets)):
    d_in, d_out = _matrix_shape(path, np.shape(flat[path]))
    a = jax.random.normal(jax.random.fold_in(key, i), (d_in, config.rank),
                          jnp.float32) / math.sqrt(d_in)
    out[path[:-1] + ("a",)] = a
    out[path[:-1] + ("b",)] = jnp.zeros((config.rank, d_out), jnp.float32)
  adapters = unflatten(out)
  if shardings is not None:
    adapters = jax.device_put(adapters, shardings)
  return adapters


def merge(params: PyTree, adapters: PyTree, scale: float) -> dict:
  """`params` with each adapted kernel W replaced by ``W + scale A B``.

  Pure and jittable; the result has the structure of `params` (as a nested
  dict) and each leaf keeps its dtype. Non-adapted leaves are passed
  through (the same arrays outside jit).

  Raises:
    CbenchError: an adapter whose parent has no ``kernel`` in `params`.
  """
  flat = flatten(params)
  merged = dict(flat)
  ad = flatten(adapters)
  for path_a, a in ad.items():
    if path_a[-1] != "a":
      continue
    node = path_a[:-1]
    w = flat.get(node + ("kernel",))
    if w is None or node + ("b",) not in ad:
      raise CbenchError(f"LoRA adapter {'/'.join(node)} has no base kernel "
                        f"or no 'b' matrix.")
    b = ad[node + ("b",)]
    delta = scale * (a.astype(jnp.float32) @ b.astype(jnp.float32))
    merged[node + ("kernel",)] = (w.astype(jnp.float32)
                                  + delta.reshape(w.shape)).astype(w.dtype)
  return unflatten(merged)


def init_lora(params: PyTree, pattern: str, rank: int, key: jax.Array
              ) -> dict:
  """``{"lora": init(...)}``: adapters as a subtree to put beside the base
  (alpha does not affect init)."""
  return {KEY: init(params, LoraConfig(rank=rank, targets=pattern), key)}


def merge_lora(params: PyTree, scale: float) -> dict:
  """`merge` of a combined tree: the base plus its ``"lora"`` subtree; the
  result has the base tree's structure (no ``"lora"`` key)."""
  base = {k: v for k, v in params.items() if k != KEY}
  return merge(base, params.get(KEY, {}), scale)


# ---------------------------------------------------------------------------
# Shardings


def _follow(spec: tuple, axes: range) -> Any:
  """Mesh axes of the first of `axes` if the others are unsharded."""
  axes = list(axes)
  if any(spec[i] is not None for i in axes[1:]):
    return None
  return spec[axes[0]]


def shardings(params: PyTree, adapters: PyTree, mesh) -> dict:
  """NamedShardings for `adapters` (see the module doc's rule).

  A kernel that is not a `NamedSharding` on `mesh` (host arrays, one device)
  gets replicated adapters.
  """
  flat = flatten(params)
  out = {}
  for path, _ in flatten(adapters).items():
    node, which = path[:-1], path[-1]
    kpath = node + ("kernel",)
    w = flat[kpath]
    sharding = getattr(w, "sharding", None)
    spec = None
    if isinstance(sharding, NamedSharding) and sharding.mesh == mesh:
      full = tuple(sharding.spec) + (None,) * (np.ndim(w) - len(sharding.spec))
      k = input_axes(kpath)
      if which == "a":
        spec = P(_follow(full, range(0, k)), None)
      else:
        spec = P(None, _follow(full, range(k, np.ndim(w))))
    out[path] = NamedSharding(mesh, spec if spec is not None else P())
  return unflatten(out)
