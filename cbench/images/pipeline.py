"""Coarse-to-fine wavelet image generation: the pieces around stage 1.

The method (Bayrooti et al., "Decomposing Private Image Generation via
Coarse-to-Fine Wavelet Modeling"):

  public (no privacy cost)                      private
  ------------------------                      -------
  1. `fit_public_stages`: tokenizer codebooks and stage 2 (super-resolution)
     from the PUBLIC split only.
  2. `pretrain_stage1`: the project's transformer learns PUBLIC coarse-token
     sequences (non-private, `lm_train.train_lm`).
  3. DP fine-tune of that transformer on `token_rows` of the PRIVATE coarse
     tokens (one image = one row = one record), through the DP-SGD engine
     and the write-ahead ledger (`cbench.images.experiment`).
  4. `sample_coarse_tokens` (the shared decoder), then stage 2: `render`
     (tokenizer decode + the conv net of `superres`) or `sample_tokens`
     continuing ``prompts(..., tokens=coarse)`` with a PUBLIC
     full-resolution transformer (a generative stage 2; `experiment`):
     post-processing of the DP parameters.

Stage-1 vocabulary: ids ``0, 1, 2`` are PAD, BOS, EOS; image token t (a bin
of the `SpectralTokenizer`, in [0, V)) is id ``t + OFFSET``; with class
conditioning, class index c in [0, C) (the caller maps its labels to
indices) is id ``OFFSET + V + c``. A row is ``[BOS] + tokens + [EOS]``
(``T + 2`` wide), or ``[BOS, class] + tokens + [EOS]`` (``T + 3``), never
packed; `row_width` gives the width.

Step 3 is `cbench.synthesis.dp_finetune.finetune` on these rows, unchanged
(``Options(seq_len=row_width - 1)``, ``num_records`` = private images); the
whole experiment, with the full-resolution baseline and the metrics, is
`cbench.images.experiment`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cbench._validate import check
from cbench.decoding import decoder
from cbench.images import superres
from cbench.images import tokenizer as tokenizer_lib
from cbench.images import world as world_lib
from cbench.models import config as config_lib
from cbench.models import registry
from cbench.train import lm_train
from cbench.train import text_data

PyTree = Any
PAD, BOS, EOS = 0, 1, 2
OFFSET = 3


@dataclasses.dataclass(frozen=True)
class PublicStages:
  """Everything fitted on public data: the tokenizer and stage 2."""
  tokenizer: tokenizer_lib.SpectralTokenizer
  superres_config: superres.SuperResConfig
  superres_params: PyTree


def fit_public_stages(world: world_lib.World,
                      tokenizer_config: tokenizer_lib.TokenizerConfig,
                      superres_config: superres.SuperResConfig,
                      workdir: str) -> PublicStages:
  """Fits the tokenizer and trains stage 2 on ``world.public`` only (the
  private split is never read)."""
  check(tokenizer_config.detail_levels == 0,
        "Stage 1 models the coarse band only: expected detail_levels=0.")
  public = world.public.images
  tok = tokenizer_lib.fit(public, tokenizer_config)
  params = superres.train(public, superres_config, workdir, tokenizer=tok)
  return PublicStages(tok, superres_config, params)


def row_width(seq_len: int, conditional: bool = False) -> int:
  """Tokens per stage-1 row: ``T + 2``, plus one for a class token."""
  return seq_len + 2 + int(conditional)


def class_ids(classes: np.ndarray, vocab_size: int, num_classes: int
              ) -> np.ndarray:
  """Token ids ``OFFSET + vocab_size + c`` of class indices ``classes`` in
  [0, num_classes) (the caller maps its labels to indices)."""
  classes = np.asarray(classes)
  check(bool(np.all((classes >= 0) & (classes < num_classes))),
        f"Class indices must lie in [0, {num_classes}).")
  return (OFFSET + vocab_size + classes).astype(np.int32)


def token_rows(tokens: np.ndarray, vocab_size: int,
               classes: Optional[np.ndarray] = None, num_classes: int = 0
               ) -> text_data.TokenRows:
  """Image tokens ``[N, T]`` in [0, V) -> one-image rows ``[N, T + 2]``
  (``[BOS] + (tokens + OFFSET) + [EOS]``), the project's training rows;
  with class indices ``classes [N]``, ``[N, T + 3]`` rows
  ``[BOS, class] + ...``."""
  tokens = np.asarray(tokens)
  check(tokens.ndim == 2 and tokens.shape[1] >= 1,
        f"Expected tokens [N, T]; got {tokens.shape}.")
  check(bool(np.all((tokens >= 0) & (tokens < vocab_size))),
        f"Image tokens must lie in [0, {vocab_size}).")
  n = tokens.shape[0]
  head = [np.full((n, 1), BOS)]
  if classes is not None:
    check(np.shape(classes) == (n,),
          f"Expected classes [{n}]; got {np.shape(classes)}.")
    head.append(class_ids(classes, vocab_size, num_classes)[:, None])
  rows = np.concatenate(head + [tokens + OFFSET, np.full((n, 1), EOS)],
                        axis=1).astype(np.int32)
  return text_data.TokenRows(rows, np.full(n, rows.shape[1], np.int32), 0)


def model_config(tok: tokenizer_lib.SpectralTokenizer, size: str = "micro",
                 num_classes: int = 0, **overrides) -> config_lib.ModelConfig:
  """The named transformer size for ``V + OFFSET + num_classes`` ids and
  rows of `row_width` tokens (`max_len`)."""
  overrides.setdefault("max_len", row_width(tok.seq_len, num_classes > 0))
  return config_lib.get_model_config(
      size, tok.vocab_size + OFFSET + num_classes, **overrides)


def pretrain_stage1(tok: tokenizer_lib.SpectralTokenizer,
                    public_images: np.ndarray,
                    config: config_lib.ModelConfig,
                    recipe: lm_train.TrainRecipe, workdir: str, *,
                    mesh=None, classes: Optional[np.ndarray] = None,
                    num_classes: int = 0) -> tuple[PyTree, dict]:
  """Non-private training of stage 1 on PUBLIC image tokens (the base
  model that step 3 DP fine-tunes), class-conditional when the public
  images' class indices `classes` are given. ``recipe.seq_len`` must be
  ``row_width - 1`` and ``recipe.pack`` False."""
  width = row_width(tok.seq_len, classes is not None)
  check(recipe.seq_len == width - 1 and not recipe.pack,
        f"Expected recipe seq_len={width - 1} and pack=False; got "
        f"{recipe.seq_len}, pack={recipe.pack}.")
  rows = token_rows(np.asarray(tok.encode(public_images)), tok.vocab_size,
                    classes, num_classes)
  params = registry.init_params(config, jax.random.key(recipe.seed))
  return lm_train.train_lm(params, config, rows, recipe, workdir,
                           name="stage1_public", mesh=mesh)


@dataclasses.dataclass(frozen=True)
class ImageTokenSampler:
  """Temperature sampling restricted to image ids (``OFFSET`` up to
  ``OFFSET + vocab_size``; no upper bound when `vocab_size` is 0): a
  stream never ends early, so every sample has exactly T image tokens.
  Implements `cbench.decoding.sampler_protocol.Sampler` (group_size 1)."""
  temperature: float = 1.0
  vocab_size: int = 0

  def init_state(self, num_groups: int, key: jax.Array) -> Any:
    del num_groups, key
    return ()

  def next_tokens(self, logits: jax.Array, key: jax.Array, state: Any):
    logits = logits[:, 0] if logits.ndim == 3 else logits
    ids = jnp.arange(logits.shape[-1])
    image = ids >= OFFSET
    if self.vocab_size:
      image = image & (ids < OFFSET + self.vocab_size)
    scaled = jnp.where(image,
                       logits.astype(jnp.float32) / self.temperature,
                       -jnp.inf)
    tokens = jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)
    return tokens, jnp.zeros(tokens.shape, jnp.bool_), state


def sample_tokens(params: PyTree, config: config_lib.ModelConfig,
                  prompts: np.ndarray, num_new: int, vocab_size: int,
                  key: jax.Array, *, decode_batch: int = 64,
                  temperature: float = 1.0, mesh=None) -> np.ndarray:
  """``[N, num_new]`` image tokens in [0, vocab_size) continuing the id
  rows ``prompts [N, P]`` (each starting with BOS), through the shared
  decoder in calls of a fixed shape (``decode_batch`` rows; the last call
  is padded and its extra rows dropped)."""
  prompts = np.asarray(prompts, np.int32)
  check(prompts.ndim == 2 and prompts.shape[0] >= 1 and decode_batch >= 1
        and bool(np.all(prompts[:, 0] == BOS)),
        f"Expected prompts [N >= 1, P] starting with BOS and decode_batch="
        f"{decode_batch} >= 1; got {prompts.shape}.")
  n = prompts.shape[0]
  calls = -(-n // decode_batch)
  padded = np.resize(prompts, (calls * decode_batch, prompts.shape[1]))
  sampler = ImageTokenSampler(temperature, vocab_size)
  out = []
  for c in range(calls):
    res = decoder.generate(params, config,
                           padded[c * decode_batch:(c + 1) * decode_batch],
                           num_new, sampler, jax.random.fold_in(key, c),
                           eos_id=EOS, pad_id=PAD, mesh=mesh)
    out.append(np.asarray(jax.device_get(res.tokens)))
  tokens = np.concatenate(out)[:n] - OFFSET
  check(bool(np.all((tokens >= 0) & (tokens < vocab_size))),
        "Decoder returned a non-image token.")
  return tokens


def prompts(num_images: int, vocab_size: int,
            classes: Optional[np.ndarray] = None, num_classes: int = 0,
            tokens: Optional[np.ndarray] = None) -> np.ndarray:
  """Prompt id rows ``[BOS] (+ [class]) (+ tokens + OFFSET)``."""
  parts = [np.full((num_images, 1), BOS, np.int32)]
  if classes is not None:
    check(np.shape(classes) == (num_images,),
          f"Expected classes [{num_images}]; got {np.shape(classes)}.")
    parts.append(class_ids(classes, vocab_size, num_classes)[:, None])
  if tokens is not None:
    tokens = np.asarray(tokens)
    check(tokens.ndim == 2 and tokens.shape[0] == num_images
          and bool(np.all((tokens >= 0) & (tokens < vocab_size))),
          f"Expected prompt tokens [{num_images}, P] in [0, {vocab_size}).")
    parts.append((tokens + OFFSET).astype(np.int32))
  return np.concatenate(parts, axis=1)


def sample_coarse_tokens(params: PyTree, config: config_lib.ModelConfig,
                         tok: tokenizer_lib.SpectralTokenizer,
                         num_images: int, key: jax.Array, *,
                         decode_batch: int = 64, temperature: float = 1.0,
                         mesh=None, classes: Optional[np.ndarray] = None,
                         num_classes: int = 0) -> np.ndarray:
  """``[num_images, T]`` image tokens in [0, V) from ``[BOS]`` (or
  ``[BOS, class]`` of class indices ``classes [num_images]``) through the
  shared decoder (`sample_tokens`)."""
  check(num_images >= 1, f"Expected num_images={num_images} >= 1.")
  return sample_tokens(
      params, config, prompts(num_images, tok.vocab_size, classes,
                              num_classes),
      tok.seq_len, tok.vocab_size, key, decode_batch=decode_batch,
      temperature=temperature, mesh=mesh)


def render(tokens: np.ndarray, stages: PublicStages,
           *, with_stage2: bool = True) -> np.ndarray:
  """Image tokens ``[N, T]`` -> images ``[N, H, W]``: dequantized coarse
  band, then stage 2's fine bands (or the plain wavelet upsample when
  `with_stage2` is False, the coarse-only ablation)."""
  tok, tokens = stages.tokenizer, jnp.asarray(tokens)
  if not with_stage2:
    return np.asarray(tok.decode(tokens))
  approx = tok.decode_coarse(tokens)
  return np.asarray(superres.super_resolve(stages.superres_params,
                                           stages.superres_config, approx))


def generate_images(params: PyTree, config: config_lib.ModelConfig,
                    stages: PublicStages, num_images: int, key: jax.Array,
                    *, decode_batch: int = 64, temperature: float = 1.0,
                    mesh=None, with_stage2: bool = True,
                    classes: Optional[np.ndarray] = None,
                    num_classes: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
  """(images ``[N, H, W]``, tokens ``[N, T]``) sampled from stage 1."""
  tokens = sample_coarse_tokens(params, config, stages.tokenizer, num_images,
                                key, decode_batch=decode_batch,
                                temperature=temperature, mesh=mesh,
                                classes=classes, num_classes=num_classes)
  return render(tokens, stages, with_stage2=with_stage2), tokens


def default_recipe(tok: tokenizer_lib.SpectralTokenizer, num_steps: int,
                   conditional: bool = False, **overrides
                   ) -> lm_train.TrainRecipe:
  """A `TrainRecipe` for stage-1 rows (seq_len ``row_width - 1``,
  unpacked)."""
  fields = dict(num_steps=num_steps, batch_size=32,
                seq_len=row_width(tok.seq_len, conditional) - 1,
                pack=False, log_every=max(1, min(25, num_steps)),
                checkpoint_every=max(1, num_steps))
  fields.update(overrides)
  return lm_train.TrainRecipe(**fields)

