"""A model directory: tokenizer, config, parameters and few-shot exemplars.

Layout of a finished model directory ``W``::

  W/tokenizer.model      sentencepiece model (shared by base and fine-tunes)
  W/model_config.json    `ModelConfig` fields
  W/fewshot.json         public-world exemplars used by QA scoring
  W/replay.npz           (base models the harness built) rows mixed into
                         harness fine-tuning (`cbench.harness.replay`)
  W/params/              final parameters (orbax)
  W/DONE.json            written last: what produced W (recipe, data sha256)

A directory without DONE.json is unfinished (a run may resume into it).

`load` also accepts a pretrained model name (`gguf_loader.PRETRAINED_NAMES`:
'gemma3_270m', 'smollm2_135m') in place of a directory: the bundle then
comes from the converted GGUF weights, with no few-shot exemplars and
``info = {"pretrained": name, ...}``. Tokenizer files of any cbench
tokenizer load (`cbench.text.gguf_tokenizer.load_tokenizer`), so fine-tuned
copies of pretrained models are ordinary model directories.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax

from cbench._validate import CbenchError
from cbench.io import checkpoint
from cbench.io import files
from cbench.models import config as config_lib
from cbench.models import gguf_loader
from cbench.models import registry
from cbench.parallel import mesh as mesh_lib
from cbench.text import gguf_tokenizer
from cbench.text.tokenizer import Tokenizer

PyTree = Any
DONE = "DONE.json"


@dataclasses.dataclass(frozen=True)
class ModelBundle:
  path: str
  config: config_lib.ModelConfig
  tokenizer: Tokenizer  # or another cbench tokenizer (gguf_tokenizer)
  params: PyTree
  fewshot: list[dict]
  info: dict


def is_done(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, DONE))


def save_static(workdir: str, config: config_lib.ModelConfig,
                tokenizer: Tokenizer, fewshot: list[dict]) -> None:
  """Writes tokenizer, config and exemplars (before training starts)."""
  os.makedirs(workdir, exist_ok=True)
  tokenizer.save(os.path.join(workdir, "tokenizer.model"))
  files.write_json(os.path.join(workdir, "model_config.json"), config.to_dict())
  files.write_json(os.path.join(workdir, "fewshot.json"), fewshot)


def check_static(workdir: str, config: config_lib.ModelConfig) -> None:
  """Refuses a workdir that holds a different model configuration."""
  path = os.path.join(workdir, "model_config.json")
  if os.path.exists(path):
    existing = files.read_json(path)
    if existing != config.to_dict():
      diff = sorted(k for k in set(existing) | set(config.to_dict())
                    if existing.get(k) != config.to_dict().get(k))
      raise CbenchError(
          f"{workdir} holds a model with a different configuration "
          f"(fields {diff} differ); use a new --workdir.")


def finish(workdir: str, params: PyTree, info: dict) -> None:
  """Saves final params, then DONE.json (the commit point)."""
  checkpoint.save_params(os.path.join(workdir, "params"), params)
  files.write_json(os.path.join(workdir, DONE), info)


def load_config(path: str) -> config_lib.ModelConfig:
  cfg_path = os.path.join(path, "model_config.json")
  if not os.path.exists(cfg_path):
    raise CbenchError(f"{path} is not a cbench model directory "
                      f"(no model_config.json).")
  fields = files.read_json(cfg_path)
  try:
    return config_lib.ModelConfig(**fields)
  except TypeError as e:
    raise CbenchError(f"{cfg_path}: not a ModelConfig ({e}).") from e


def is_pretrained(path: str) -> bool:
  """Whether `load` reads `path` as a pretrained model name."""
  return path in gguf_loader.PRETRAINED_NAMES and not os.path.isdir(path)


def load_pretrained(name: str, *, mesh=None) -> ModelBundle:
  """A pretrained model (see the module docstring) as a bundle."""
  mesh = mesh_lib.make_mesh() if mesh is None else mesh
  m = gguf_loader.load_pretrained(name, mesh=mesh)
  info = {"pretrained": name,
          **{k: m.info.get(k) for k in ("gguf_sha256", "license",
                                        "num_params")}}
  return ModelBundle(name, m.config, m.tokenizer, m.params, [], info)


def load(path: str, *, mesh=None) -> ModelBundle:
  """Loads a finished model directory onto `mesh` (default: all devices).

  Parameters are restored straight into the mesh's parameter shardings, so a
  model saved on one topology (8 devices, a pod) loads on any other. A
  pretrained model name loads that model (`load_pretrained`).
  """
  if is_pretrained(path):
    return load_pretrained(path, mesh=mesh)
  if not os.path.isdir(path):
    raise CbenchError(f"Model directory not found: {path}")
  if not is_done(path):
    raise CbenchError(f"{path} is not a finished model directory (no {DONE}); "
                      f"its training did not complete.")
  config = load_config(path)
  tokenizer = gguf_tokenizer.load_tokenizer(
      os.path.join(path, "tokenizer.model"))
  if tokenizer.vocab_size != config.vocab_size:
    raise CbenchError(f"{path}: tokenizer has {tokenizer.vocab_size} ids but "
                      f"the model config expects {config.vocab_size}.")
  mesh = mesh_lib.make_mesh() if mesh is None else mesh
  shardings = registry.param_shardings(config, mesh)
  target = jax.eval_shape(lambda: registry.init_params(config, jax.random.key(0)))
  target = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      target, shardings)
  params = checkpoint.load_params(os.path.join(path, "params"), target)
  return ModelBundle(path, config, tokenizer, params,
                     files.read_json(os.path.join(path, "fewshot.json")),
                     files.read_json(os.path.join(path, DONE)))
