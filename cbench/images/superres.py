"""Stage 2: a public super-resolution model, coarse band -> fine bands.

    params = superres.train(world.public.images, SuperResConfig(), workdir,
                            tokenizer=tok)
    images = superres.super_resolve(params, config, approx)  # [B, H, W]

Model: the coarse band ``approx [B, H >> L, W >> L]`` is upsampled by the
inverse DWT with zero details (``u``); a small circular-padded conv net
(`SuperResNet`) predicts a residual ``r`` at full resolution; the output
keeps ``approx`` EXACTLY as its level-L approximation and takes its detail
bands from the DWT of ``u + r``. So stage 2 only ever adds fine bands: the
coarse band (stage 1's DP output) passes through unchanged. Loss: mean
squared error of the predicted detail coefficients (equal to the image MSE,
the DWT being orthonormal).

Privacy: `train` takes PUBLIC images only (the caller passes the public
split, nothing else); with a public `tokenizer` the inputs are the
quantize-dequantized coarse bands, as stage 2 will see them at sampling
time. Applying the trained model to stage 1's DP coarse bands is
post-processing: no privacy cost. Trained through the one loop
(`cbench.train.loop`; resumable from `workdir`), AdamW (`optim`), epoch
order (`text_data.EpochOrder`), all seeded by ``config.seed``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbench import _validate
from cbench._validate import check
from cbench.images import tokenizer as tokenizer_lib
from cbench.images import wavelets
from cbench.train import loop
from cbench.train import optim
from cbench.train import text_data

PyTree = Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class SuperResConfig:
  """Attributes:
    wavelet: wavelet of the coarse band (match the tokenizer).
    levels: L, levels between the coarse band and full resolution.
    channels: conv width.
    depth: hidden conv layers (3x3, GELU).
    steps: training steps.
    batch_size: images per step.
    learning_rate: AdamW peak learning rate (warmup + cosine).
    seed: init and data-order seed.
    log_every: steps between metrics lines.
    checkpoint_every: steps between checkpoints.
  """
  wavelet: str = "db2"
  levels: int = 2
  channels: int = 32
  depth: int = 3
  steps: int = 400
  batch_size: int = 64
  learning_rate: float = 3e-3
  seed: int = 0
  log_every: int = 50
  checkpoint_every: int = 200

  def __post_init__(self):
    _validate.one_of("wavelet", self.wavelet, wavelets.NAMES)
    for name in ("levels", "channels", "depth", "steps", "batch_size",
                 "log_every", "checkpoint_every"):
      _validate.positive(name, getattr(self, name))
    _validate.positive("learning_rate", self.learning_rate)


class SuperResNet(nn.Module):
  """``[B, H, W] -> [B, H, W]`` residual; circular padding (periodic, like
  the DWT's periodization)."""
  channels: int
  depth: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = x[..., None]
    for _ in range(self.depth):
      h = nn.gelu(nn.Conv(self.channels, (3, 3), padding="CIRCULAR")(h))
    return nn.Conv(1, (3, 3), padding="CIRCULAR",
                   kernel_init=nn.initializers.zeros)(h)[..., 0]


def _model(config: SuperResConfig) -> SuperResNet:
  return SuperResNet(config.channels, config.depth)


def init_params(config: SuperResConfig, image_shape: tuple[int, int]
                ) -> PyTree:
  """Fresh parameters (key ``config.seed``)."""
  x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  init = jax.jit(lambda key: _model(config).init(key, x)["params"])
  return init(jax.random.key(config.seed))


def predict_packed(params: PyTree, config: SuperResConfig,
                   approx: jax.Array) -> jax.Array:
  """Packed wavelet layout ``[B, H, W]``: `approx` as the level-L band,
  predicted detail bands elsewhere."""
  approx = jnp.asarray(approx, jnp.float32)
  h, w = approx.shape[-2:]
  up = wavelets.upsample(approx, config.wavelet, config.levels)
  r = _model(config).apply({"params": params}, up)
  y = wavelets.dwt2_packed(up + r, config.wavelet, config.levels)
  return y.at[..., :h, :w].set(approx)


@functools.partial(jax.jit, static_argnames=("config",))
def super_resolve(params: PyTree, config: SuperResConfig,
                  approx: jax.Array) -> jax.Array:
  """Coarse bands ``[B, h, w]`` -> images ``[B, h << L, w << L]``."""
  return wavelets.idwt2_packed(predict_packed(params, config, approx),
                               config.wavelet, config.levels)


@functools.partial(jax.jit, static_argnames=("config",))
def detail_loss(params: PyTree, config: SuperResConfig, approx: jax.Array,
                images: jax.Array) -> jax.Array:
  """Mean squared error of the detail coefficients (per coefficient)."""
  pred = predict_packed(params, config, approx)
  true = wavelets.dwt2_packed(images, config.wavelet, config.levels)
  mask = wavelets.detail_mask(*images.shape[-2:], config.levels)
  return jnp.sum(jnp.where(mask, (pred - true) ** 2, 0.0)) / (
      images.shape[0] * mask.sum())


@functools.lru_cache(maxsize=8)
def _step_fn(config: SuperResConfig):
  """(jitted donating step, optimizer); cached so runs share compilations."""
  optimizer = optim.make_optimizer(
      optim.OptimizerConfig(peak_learning_rate=config.learning_rate,
                            weight_decay=0.0), config.steps)

  def step(state, batch, key):
    del key  # Deterministic given the batch.
    loss, grads = jax.value_and_grad(detail_loss)(
        state.params, config, batch["approx"], batch["images"])
    updates, opt_state = optimizer.update(grads, state.opt_state,
                                          state.params)
    params = optax.apply_updates(state.params, updates)
    return (loop.TrainState(state.step + 1, params, opt_state),
            {"loss": loss, "grad_norm": loop.global_norm(grads)})
  return jax.jit(step, donate_argnums=(0,)), optimizer


def stage2_inputs(public_images: np.ndarray, config: SuperResConfig,
                  tokenizer: Optional[tokenizer_lib.SpectralTokenizer]
                  ) -> np.ndarray:
  """Coarse bands of `public_images` as stage 2 sees them: quantized by the
  (public) `tokenizer` if given, else exact."""
  if tokenizer is None:
    return np.asarray(wavelets.coarse(public_images, config.wavelet,
                                      config.levels))
  check(tokenizer.config.wavelet == config.wavelet
        and tokenizer.config.levels == config.levels,
        f"Tokenizer ({tokenizer.config.wavelet}, L={tokenizer.config.levels})"
        f" does not match stage 2 ({config.wavelet}, L={config.levels}).")
  return np.asarray(tokenizer.decode_coarse(tokenizer.encode(public_images)))


def train(public_images: np.ndarray, config: SuperResConfig, workdir: str,
          *, tokenizer: Optional[tokenizer_lib.SpectralTokenizer] = None,
          stop_after: Optional[int] = None) -> PyTree:
  """Trains stage 2 on PUBLIC images ``[N, H, W]`` only; resumes from
  `workdir`. Returns the parameters.

  Raises:
    CbenchError: non-finite images or a shape the DWT cannot take.
  """
  images = np.asarray(public_images, np.float32)
  check(images.ndim == 3, f"Expected public images [N, H, W]; got "
        f"{images.shape}.")
  check(bool(np.all(np.isfinite(images))),
        "Public images hold non-finite values.")
  wavelets.check_shape(images.shape, config.levels)
  approx = stage2_inputs(images, config, tokenizer)
  step_fn, optimizer = _step_fn(config)
  params = init_params(config, images.shape[1:])
  state = loop.TrainState(jnp.zeros((), jnp.int32), params,
                          optimizer.init(params))
  order = text_data.EpochOrder(images.shape[0], config.batch_size,
                               config.seed)

  def batch_fn(s: int):
    idx = order.indices(s)
    return {"approx": jnp.asarray(approx[idx]),
            "images": jnp.asarray(images[idx])}

  state = loop.run(
      state, step_fn, batch_fn,
      config=loop.LoopConfig(num_steps=config.steps,
                             log_every=config.log_every,
                             checkpoint_every=config.checkpoint_every,
                             name="superres"),
      key=jax.random.key(config.seed), workdir=workdir,
      stop_after=stop_after)
  return state.params
