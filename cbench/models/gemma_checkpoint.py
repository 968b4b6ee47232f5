"""Gemma 3 parameters from orbax checkpoints (cbench or DeepMind `gemma`).

`load_checkpoint(path, config, mesh=...)` reads either layout; the config
comes from `cbench.models.gemma3.gemma3_config`.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from cbench._validate import CbenchError
from cbench.io import checkpoint
from cbench.models import gguf_loader
from cbench.models import registry
from cbench.models.config import ModelConfig


def params_from_gemma_tree(tree: dict, config: ModelConfig) -> dict:
  """cbench parameters from DeepMind `gemma` (gm.nn.Gemma3_*) parameters.

  Their layout (norm scales are ``1 + scale`` multipliers there too, so they
  copy unchanged): ``embedder/input_embedding [V, D]``, ``final_norm``,
  ``layer_i/{pre_attention_norm, post_attention_norm, pre_ffw_norm,
  post_ffw_norm}/scale``, ``layer_i/attn/{_query_norm,_key_norm}/scale``,
  ``attn/q_einsum/w [H, D, hd]`` + ``attn/kv_einsum/w [2, KV, D, hd]`` (or
  ``attn/qkv_einsum/w [3, H, D, hd]``), ``attn/attn_vec_einsum/w
  [H, hd, D]``, ``mlp/gating_einsum [2, F, D]`` (Gemma 3; ``[2, D, F]`` in
  older checkpoints) and ``mlp/linear [F, D]``. Unused entries (e.g. vision
  encoder weights) are ignored.

  Raises:
    CbenchError: a missing entry.
  """
  c = config

  def get(*path):
    node = tree
    for p in path:
      if not isinstance(node, dict) or p not in node:
        raise CbenchError(f"Gemma checkpoint lacks {'/'.join(path)}.")
      node = node[p]
    return np.asarray(node)

  scale = lambda *p: {"scale": get(*p, "scale")}
  params = {"embed": {"embedding": get("embedder", "input_embedding")},
            "final_norm": scale("final_norm")}
  for i in range(c.num_layers):
    layer = f"layer_{i}"
    attn = tree.get(layer, {}).get("attn", {})
    if "qkv_einsum" in attn:
      q, k, v = get(layer, "attn", "qkv_einsum", "w")
    else:
      q = get(layer, "attn", "q_einsum", "w")
      k, v = get(layer, "attn", "kv_einsum", "w")
    gating = get(layer, "mlp", "gating_einsum")
    if gating.shape[1] == c.d_model and gating.shape[2] == c.mlp_dim:
      gate, up = gating[0], gating[1]  # [2, D, F]
    else:
      gate, up = gating[0].T, gating[1].T  # [2, F, D]
    params[f"blocks_{i}"] = {
        "attn_norm": scale(layer, "pre_attention_norm"),
        "attn": {"q": {"kernel": q.transpose(1, 0, 2)},
                 "k": {"kernel": k.transpose(1, 0, 2)},
                 "v": {"kernel": v.transpose(1, 0, 2)},
                 "o": {"kernel": get(layer, "attn", "attn_vec_einsum", "w")},
                 "q_norm": scale(layer, "attn", "_query_norm"),
                 "k_norm": scale(layer, "attn", "_key_norm")},
        "post_attn_norm": scale(layer, "post_attention_norm"),
        "mlp_norm": scale(layer, "pre_ffw_norm"),
        "mlp": {"gate": {"kernel": gate}, "up": {"kernel": up},
                "down": {"kernel": get(layer, "mlp", "linear")}},
        "post_mlp_norm": scale(layer, "post_ffw_norm"),
    }
  return params


def load_checkpoint(path: str, config: ModelConfig, *, mesh=None):
  """Parameters of an orbax checkpoint directory, by path.

  Two layouts: a cbench parameter tree (e.g. ``W/params`` of a model
  directory; restored straight into the mesh's parameter shardings, any
  size) or DeepMind `gemma` parameters (optionally under a top-level
  'transformer' key; restored to host memory, converted with
  `params_from_gemma_tree`, then placed; needs host RAM for the whole
  checkpoint). Use `gemma3_config` for the matching config.

  Args:
    path: the checkpoint directory.
    config: the model's config (arch 'gemma3').
    mesh: place parameters in `registry.param_shardings` over
      this mesh (None: default device).

  Raises:
    CbenchError: a missing path, an unknown layout, or shapes that do not
      fit `config`.
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise CbenchError(f"Checkpoint directory not found: {path}")
  try:
    meta = ocp.StandardCheckpointer().metadata(path)
  except (ValueError, FileNotFoundError, OSError) as e:
    raise CbenchError(f"{path}: not an orbax checkpoint ({e}).") from e
  meta = getattr(meta, "item_metadata", meta)
  meta = getattr(meta, "tree", meta)
  target = jax.eval_shape(lambda: registry.init_params(
      config, jax.random.key(0)))
  shardings = None
  if mesh is not None:
    shardings = registry.param_shardings(config, mesh)
  if isinstance(meta, dict) and "blocks_0" in meta and "embed" in meta:
    if shardings is not None:
      target = jax.tree.map(
          lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
          target, shardings)
    return checkpoint.load_params(path, target)
  if isinstance(meta, dict) and "transformer" in meta:
    prefix = ("transformer",)
  elif isinstance(meta, dict) and "embedder" in meta:
    prefix = ()
  else:
    keys = sorted(meta)[:6] if isinstance(meta, dict) else type(meta)
    raise CbenchError(f"{path}: unknown checkpoint layout (top-level keys "
                      f"{keys}); expected a cbench tree (embed, blocks_0, "
                      f"...) or gemma's (embedder, layer_0, ...).")
  tree = ocp.PyTreeCheckpointer().restore(path)
  for p in prefix:
    tree = tree[p]
  flat = gguf_loader.flatten(params_from_gemma_tree(tree, config))
  del tree
  want = gguf_loader.flatten(target)
  bad = sorted(k for k in want if want[k].shape != flat[k].shape)
  if bad:
    raise CbenchError(f"{path}: shapes do not fit {config.name!r}: "
                      f"{[(k, flat[k].shape, want[k].shape) for k in bad[:3]]}")
  dtype = config.params_dtype
  placed = {}
  flat_shardings = gguf_loader.flatten(shardings) if shardings else {}
  for k in list(flat):
    x = flat.pop(k).astype(dtype)
    placed[k] = jax.device_put(x, flat_shardings.get(k))
  return gguf_loader.unflatten(placed)
