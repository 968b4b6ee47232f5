"""Coarse-to-fine DP image generation against full-resolution DP, one grid.

    summary = run_images(get_config(), out_dir)

Bayrooti et al. ("Decomposing Private Image Generation via Coarse-to-Fine
Wavelet Modeling") DP fine-tune an autoregressive generator on the coarse
wavelet band only and add the fine bands with a PUBLIC super-resolution
model. This module runs that method ('c2f') and the baseline it improves
on ('full': DP fine-tuning on full-resolution tokens, coarse then every
detail band) in one harness, at each target epsilon of the config:

1. World: private records (private classes) and public images, generated
   (`world.make_world`) or scikit-learn's 8x8 handwritten digits split by
   class (`digits.make_world`, config 'digits'); a held-out real private
   TEST set of the same distribution, used by the metrics only (never
   trained on, never released).
2. Public stages, from a view of the world whose private split is EMPTY
   (`public_view`, so nothing private can be read): the coarse and the
   full-resolution tokenizers, the conv super-resolution net
   (`pipeline.fit_public_stages`), and the metric network
   (`metrics.train_classifier` on the public classes plus texture-only).
3. Per method: the project's transformer (`config.model`, the same size
   for both) is pretrained non-privately on PUBLIC images' tokens
   (`pipeline.pretrain_stage1`), class-conditional: each row is
   ``[BOS, class] + tokens + [EOS]``, the class replaced by a NULL token
   with probability ``class_dropout``. Public classes and texture-only have
   their class tokens; the private classes' tokens are first seen in
   step 4. The public full-resolution model is also c2f's STAGE 2.
4. Per method and epsilon: `dp_finetune.plan` (sigma calibrated by PLD),
   a write-ahead ledger (`dp_finetune.make_ledger_header`,
   `ledger.Ledger`) and `dp_finetune.finetune` (Poisson sampling,
   per-example clipping, each step charged before it runs) on the PRIVATE
   rows: one private image with its class token per row (the record), the
   same steps, expected batch, clip norm and learning rate for both
   methods. The ledger header's configuration records the stage-2
   provenance (public split only, its hash, zero private images read).
5. Sampling (post-processing): `num_samples` images, class-balanced over
   the private classes (the prompt ``[BOS, class]``), through the shared
   decoder. 'full' decodes all its bands. 'c2f' samples the coarse band
   from its DP stage 1, then stage 2, the PUBLIC full-resolution model,
   continues ``[BOS, NULL] + coarse`` with the detail tokens (a generative
   super-resolution: it reads only public data and the DP coarse tokens,
   so it costs no privacy). With ``conv_stage2`` the same coarse samples
   also go through the conv net of `superres` (a regression to the mean
   detail; rows 'c2f_conv'). Pixels are clipped to [0, 1].
6. Metrics against the real private TEST set (`metrics`): the Frechet
   distance of the public metric network's features; downstream accuracy
   of a fresh classifier trained on the synthetic images with their
   prompt classes as labels (train on synthetic, test on real); per-band
   energy spectra and their mean |log10| ratio to the real spectrum.
   References: two real sets (the Frechet floor), a classifier trained on
   the real private training images (the accuracy ceiling; not a release),
   and each pretrained model sampled without DP fine-tuning (epsilon 0:
   public data only).

Outputs in ``out_dir``: images_c2f.json (config, every row, references,
wall times), images_c2f.md (the table), images_samples.png (sample grid),
images_curves.png (metrics against epsilon, band spectra, run time), and
``runs/<method>_eps<e>/`` (ledger.jsonl and the DP work directory).
Resumable: a rerun in the same directory resumes training from the
checkpoints and the ledgers (charged steps are never charged twice) and
redoes sampling and metrics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from cbench import _validate
from cbench._validate import check
from cbench.images import digits as digits_lib
from cbench.images import metrics
from cbench.images import pipeline
from cbench.images import superres
from cbench.images import tokenizer as tokenizer_lib
from cbench.images import world as world_lib
from cbench.io import files
from cbench.parallel import mesh as mesh_lib
from cbench.synthesis import api
from cbench.synthesis import common
from cbench.synthesis import dp_finetune
from cbench.train import optim

PyTree = Any
# The config of either image world (both have size and class counts).
WorldLike = world_lib.WorldConfig | digits_lib.DigitsConfig
METHODS = ("c2f", "full")
ROWS = ("c2f", "c2f_conv", "full")
JSON_NAME = "images_c2f.json"
MARKDOWN_NAME = "images_c2f.md"
SAMPLES_PNG = "images_samples.png"
CURVES_PNG = "images_curves.png"
_TEST_STREAM, _SAMPLE_STREAM, _DROPOUT_STREAM = 0x5445, 0x5341, 0x4E55
_LABELS = {"c2f": "coarse-to-fine", "c2f_conv": "c2f, conv stage 2",
           "full": "full-resolution"}
_GRID_PER_CLASS = 3
_STYLE = {"c2f": "s-", "c2f_conv": "^:", "full": "o--"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImagesConfig:
  """One grid: both methods at every epsilon. Defaults: `get_config`.

  Attributes:
    world: the image world: generated (`world.WorldConfig`) or the real
      handwritten digits (`digits.DigitsConfig`: 8x8, so ``levels`` 1,
      needs the 'images' extra).
    num_private: private training records n.
    num_public: public images (stage 2, tokenizers, pretraining, metric
      network).
    num_test: held-out real private images (metrics only).
    seed: world, training, sampling and metric seed.
    wavelet: wavelet of both tokenizers and stage 2.
    levels: L; 'c2f' models the level-L approximation band.
    vocab_size: V, bins per band.
    model: the transformer size (`models.config.MODEL_NAMES`), both methods.
    pretrain_steps: public pretraining steps (per method).
    pretrain_batch_size: public pretraining batch.
    pretrain_learning_rate: public pretraining peak learning rate.
    class_dropout: share of public pretraining rows whose class token is
      NULL (what c2f's stage 2 is prompted with).
    dp_steps: DP-SGD steps T (both methods, every epsilon).
    dp_batch_size: expected Poisson batch B (q = B / n).
    dp_learning_rate: DP fine-tuning peak learning rate.
    clip_norm: per-example clip norm C.
    pad_unit: Poisson batches are padded to multiples of this (one bucket
      near B + 3 sqrt(B) compiles the step once per run).
    dp_microbatch: per-device chunk of the clipped sum (0: none; bounds
      the memory of per-example gradients).
    epsilons: target epsilons (inf: the non-private run of the same path).
    delta: target delta; None: 1 / (10 n).
    methods: which of `METHODS` to run.
    num_samples: synthetic images per run (class-balanced).
    decode_batch: rows per decoder call.
    temperature: sampling temperature (post-processing).
    public_only: also sample each pretrained model (epsilon 0).
    conv_stage2: also render c2f's coarse samples with the conv net.
    superres: the conv stage 2 (its wavelet and levels must match).
    classifier: the metric network and the downstream classifier.
  """
  world: WorldLike = world_lib.WorldConfig(size=16)
  num_private: int = 8000
  num_public: int = 2000
  num_test: int = 512
  seed: int = 0
  wavelet: str = "db2"
  levels: int = 2
  vocab_size: int = 32
  model: str = "micro"
  pretrain_steps: int = 300
  pretrain_batch_size: int = 32
  pretrain_learning_rate: float = 3e-3
  class_dropout: float = 0.25
  dp_steps: int = 60
  dp_batch_size: float = 64.0
  dp_learning_rate: float = 1e-2
  clip_norm: float = 1.0
  pad_unit: int = 88
  dp_microbatch: int = 0
  epsilons: tuple[float, ...] = (1.0, 10.0, math.inf)
  delta: Optional[float] = None
  methods: tuple[str, ...] = METHODS
  num_samples: int = 512
  decode_batch: int = 128
  temperature: float = 1.0
  public_only: bool = True
  conv_stage2: bool = True
  superres: superres.SuperResConfig = superres.SuperResConfig(
      channels=16, depth=3, steps=300, batch_size=64, learning_rate=3e-3,
      log_every=100, checkpoint_every=300)
  classifier: metrics.ClassifierConfig = metrics.ClassifierConfig()

  def __post_init__(self):
    check(isinstance(self.world, (world_lib.WorldConfig,
                                  digits_lib.DigitsConfig)),
          f"Expected a WorldConfig or a DigitsConfig; got {self.world!r}.")
    for name in ("num_private", "num_public", "num_test", "pretrain_steps",
                 "pretrain_batch_size", "dp_steps", "pad_unit",
                 "num_samples", "decode_batch"):
      _validate.positive(name, getattr(self, name))
    _validate.non_negative("seed", self.seed)
    _validate.non_negative("dp_microbatch", self.dp_microbatch)
    _validate.in_range("class_dropout", self.class_dropout, 0.0, 1.0)
    for name in ("pretrain_learning_rate", "dp_batch_size",
                 "dp_learning_rate", "clip_norm", "temperature"):
      _validate.positive(name, getattr(self, name))
    check(len(self.epsilons) >= 1, "Expected at least one target epsilon.")
    for e in self.epsilons:
      api.check_epsilon(e)
    check(self.methods and set(self.methods) <= set(METHODS)
          and len(set(self.methods)) == len(self.methods),
          f"Expected methods from {list(METHODS)}; got {self.methods}.")
    check(self.superres.wavelet == self.wavelet
          and self.superres.levels == self.levels,
          f"Stage 2 ({self.superres.wavelet}, L={self.superres.levels}) "
          f"does not match the tokenizer ({self.wavelet}, L={self.levels}).")
    check(self.world.size % (2 ** self.levels) == 0,
          f"World size {self.world.size} is not a multiple of "
          f"2**levels={2 ** self.levels}.")
    check(self.num_samples >= 2 * self.world.num_private_classes
          and self.num_test >= 2,
          f"Expected num_samples={self.num_samples} >= 2 per private class "
          f"and num_test={self.num_test} >= 2.")

  @property
  def dataset(self) -> str:
    """'generated' or 'digits' (which image world `world` selects)."""
    return ("digits" if isinstance(self.world, digits_lib.DigitsConfig)
            else "generated")

  def to_dict(self) -> dict:
    return common.jsonable(dataclasses.asdict(self))


CONFIGS = ("default", "accelerator", "digits")


def get_config() -> ImagesConfig:
  """The default grid: 16x16 images, micro transformer; sized for two CPU
  cores (about 8 minutes unloaded)."""
  return ImagesConfig()


def get_accelerator_config() -> ImagesConfig:
  """A larger grid for one accelerator: 32x32 images (8x8 coarse band,
  1024 full-resolution tokens), ten thousand private records, the tiny
  transformer, longer training."""
  return ImagesConfig(
      world=world_lib.WorldConfig(size=32, num_private_classes=8,
                                  num_public_classes=8),
      num_private=10000, num_public=20000, num_test=2048, vocab_size=64,
      model="tiny", pretrain_steps=2000, pretrain_batch_size=128,
      pretrain_learning_rate=1e-3, dp_steps=300, dp_batch_size=256.0,
      dp_learning_rate=1e-3, pad_unit=320, dp_microbatch=32,
      num_samples=2048, decode_batch=512,
      superres=superres.SuperResConfig(channels=32, depth=4, steps=2000,
                                       batch_size=128, log_every=200,
                                       checkpoint_every=1000),
      classifier=metrics.ClassifierConfig(channels=(32, 64), features=128,
                                          steps=1500, batch_size=128))


def get_digits_config() -> ImagesConfig:
  """The real image world on two CPU cores: scikit-learn's bundled 8x8
  handwritten digits (`digits`; needs ``pip install 'cbench[images]'``).

    python -m experiments.images_c2f --out=/tmp/images_digits --config=digits

  Private: digits 5-9, 640 training records and 256 held-out test images
  (all 896 of them); public: the 901 images of digits 0-4. One wavelet
  level: a 4x4 coarse band (16 c2f tokens) against 64 full-resolution
  tokens. Otherwise the default's model, steps, batch and learning rates.

  Expected (measured once, seed 0): 482 s wall, 257 CPU s on two loaded
  CPU cores. Frechet (real-vs-real floor 0.60) / downstream accuracy
  (trained on real 0.99, chance 0.20) at epsilon 1, 10, inf: c2f
  29.7 / 0.25, 26.9 / 0.47, 22.6 / 0.70; c2f with the conv stage 2
  18.1 / 0.31, 12.9 / 0.60, 7.9 / 0.77; full-resolution 35.3 / 0.16,
  33.0 / 0.25, 20.4 / 0.64.
  """
  return ImagesConfig(
      world=digits_lib.DigitsConfig(), num_private=640, num_public=901,
      num_test=256, levels=1, num_samples=500, decode_batch=125,
      superres=dataclasses.replace(ImagesConfig().superres, levels=1))


_NAMED = {"default": get_config, "accelerator": get_accelerator_config,
          "digits": get_digits_config}


def named_config(name: str) -> ImagesConfig:
  """`get_config` ('default'), `get_accelerator_config` ('accelerator') or
  `get_digits_config` ('digits')."""
  _validate.one_of("config", name, CONFIGS)
  return _NAMED[name]()


# ---------------------------------------------------------------------------
# Pieces


def _sha256(array: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def eps_name(epsilon: float) -> str:
  """'inf', '0', '1', '10', '0.5': a run directory's epsilon tag."""
  return "inf" if math.isinf(epsilon) else f"{epsilon:g}"


def make_worlds(config: ImagesConfig
                ) -> tuple[world_lib.World, world_lib.ImageSet]:
  """(the world: private training records and public images, the held-out
  real private test set), generated or loaded (`config.dataset`)."""
  if config.dataset == "digits":
    return digits_lib.make_world(
        config.world, num_private=config.num_private,
        num_public=config.num_public, num_test=config.num_test,
        seed=config.seed)
  w = world_lib.make_world(config.world, num_private=config.num_private,
                           num_public=config.num_public, seed=config.seed)
  test = world_lib.private_images(config.world, config.num_test,
                                  (config.seed, _TEST_STREAM))
  return w, test


def public_view(w: world_lib.World) -> world_lib.World:
  """`w` with its private split replaced by an empty one: what every public
  stage is given, so none can read a private image."""
  s = w.config.size
  empty = world_lib.ImageSet(np.zeros((0, s, s), np.float32),
                             np.zeros((0,), np.int32))
  return dataclasses.replace(w, private=empty)


def public_metric_labels(config: WorldLike,
                         labels: np.ndarray) -> np.ndarray:
  """Public labels -> metric-network classes: public class k -> k - K,
  texture-only -> M (K private, M public classes; the digits world has no
  texture-only images, so class M stays unused)."""
  labels = np.asarray(labels)
  k, m = config.num_private_classes, config.num_public_classes
  check(bool(np.all((labels == world_lib.TEXTURE_LABEL) | (labels >= k))),
        "The metric network takes public labels only.")
  return np.where(labels == world_lib.TEXTURE_LABEL, m, labels - k).astype(
      np.int32)


def num_class_tokens(config: WorldLike) -> int:
  """Class tokens: every private and public class, texture-only (unused
  in the digits world), NULL."""
  return config.num_classes + 2


def null_class(config: WorldLike) -> int:
  """The NULL class index (no class: stage 2's prompt)."""
  return config.num_classes + 1


def class_index(config: WorldLike, labels: np.ndarray
                ) -> np.ndarray:
  """World labels -> class indices: class c -> c, texture-only -> K + M."""
  labels = np.asarray(labels)
  return np.where(labels == world_lib.TEXTURE_LABEL, config.num_classes,
                  labels).astype(np.int32)


def sample_labels(num_samples: int, num_classes: int) -> np.ndarray:
  """Class-balanced prompt labels ``0, 1, ..., K-1, 0, ...`` (public: the
  private classes are uniform by design; near uniform for the digits)."""
  return (np.arange(num_samples) % num_classes).astype(np.int32)


def dp_options(config: ImagesConfig, width: int) -> tuple:
  """`dp_finetune.Options` overrides of one run (rows `width` wide)."""
  return (("steps", config.dp_steps), ("batch_size", config.dp_batch_size),
          ("clip_norm", config.clip_norm),
          ("learning_rate", config.dp_learning_rate),
          ("seq_len", width - 1), ("pad_unit", config.pad_unit),
          ("microbatch_size", config.dp_microbatch),
          ("checkpoint_every", config.dp_steps),
          ("log_every", max(1, config.dp_steps // 4)),
          ("decode_batch", config.decode_batch),
          ("temperature", config.temperature))


@dataclasses.dataclass(frozen=True)
class Setup:
  """What is fixed before any private step: data and public stages.

  Attributes:
    world: private training records and public images.
    test: held-out real private images (metrics only).
    public: `public_view` of `world` (what every public stage is given).
    stages: coarse tokenizer and the conv stage 2.
    tokenizers: method -> its tokenizer ('c2f' coarse, 'full').
    metric_net: the public metric network.
    seconds: wall time of the public stages.
  """
  world: world_lib.World
  test: world_lib.ImageSet
  public: world_lib.World
  stages: pipeline.PublicStages
  tokenizers: dict
  metric_net: metrics.Classifier
  seconds: float


def fit_public(config: ImagesConfig, workdir: str) -> Setup:
  """Worlds, then every public stage from `public_view` (no private read)."""
  t0 = time.monotonic()
  w, test = make_worlds(config)
  pub = public_view(w)
  coarse_cfg = tokenizer_lib.TokenizerConfig(
      wavelet=config.wavelet, levels=config.levels,
      vocab_size=config.vocab_size)
  stages = pipeline.fit_public_stages(pub, coarse_cfg, config.superres,
                                      os.path.join(workdir, "stage2_conv"))
  full = tokenizer_lib.fit(pub.public.images, dataclasses.replace(
      coarse_cfg, detail_levels=config.levels))
  coarse = stages.tokenizer
  # Stage 2 continues coarse tokens: both tokenizers share the coarse band.
  check(np.array_equal(full.edges[0], coarse.edges[0]),
        "The full-resolution tokenizer's coarse codebook differs.")
  wc = config.world
  net = metrics.train_classifier(
      pub.public.images, public_metric_labels(wc, pub.public.labels),
      wc.num_public_classes + 1, config.classifier)
  return Setup(w, test, pub, stages, {"c2f": coarse, "full": full}, net,
               time.monotonic() - t0)


def pretrain(config: ImagesConfig, setup: Setup, method: str, workdir: str,
             mesh) -> tuple[Any, PyTree, float]:
  """(model config, params, seconds): `method`'s transformer pretrained on
  ``setup.public`` (public images; class dropout to NULL)."""
  t0 = time.monotonic()
  tok = setup.tokenizers[method]
  wc = config.world
  c = num_class_tokens(wc)
  model_cfg = pipeline.model_config(tok, config.model, num_classes=c)
  recipe = pipeline.default_recipe(
      tok, config.pretrain_steps, conditional=True,
      batch_size=config.pretrain_batch_size, seed=config.seed,
      log_every=max(1, config.pretrain_steps // 4),
      optimizer=optim.OptimizerConfig(
          peak_learning_rate=config.pretrain_learning_rate))
  pub = setup.public.public
  rng = np.random.default_rng((config.seed, _DROPOUT_STREAM))
  classes = np.where(rng.random(len(pub)) < config.class_dropout,
                     null_class(wc), class_index(wc, pub.labels))
  params, _ = pipeline.pretrain_stage1(
      tok, pub.images, model_cfg, recipe,
      os.path.join(workdir, f"pretrain_{method}"), mesh=mesh,
      classes=classes, num_classes=c)
  return model_cfg, params, time.monotonic() - t0


@dataclasses.dataclass(frozen=True)
class Model:
  """A transformer of one method: config and (public or DP) params."""
  config: Any
  params: PyTree


def stage2_record(setup: Setup, stage2: Model) -> dict:
  """What every c2f ledger header and the summary say about stage 2."""
  return {
      "model": "the public full-resolution transformer, prompted with "
               "[BOS, NULL] + the DP coarse tokens; conv variant: "
               "superres on the DP coarse band",
      "trained_on": "public split only",
      "private_images_read": int(setup.public.private.images.shape[0]),
      "public_images": len(setup.public.public),
      "public_images_sha256": _sha256(setup.public.public.images),
      "transformer_params_sha256": dp_finetune.params_sha256(stage2.params),
      "conv_params_sha256": dp_finetune.params_sha256(
          setup.stages.superres_params),
      "tokenizers": "fitted on the public split only",
      "privacy_cost": "none (post-processing of the DP coarse tokens)"}


def generate(config: ImagesConfig, setup: Setup, method: str, stage1: Model,
             stage2: Optional[Model], key: jax.Array, mesh
             ) -> tuple[dict, np.ndarray]:
  """({row method: images in [0, 1] ``[N, H, W]``}, prompt labels ``[N]``):
  class-balanced samples (post-processing of `stage1`'s params)."""
  wc = config.world
  labels = sample_labels(config.num_samples, wc.num_private_classes)
  c = num_class_tokens(wc)
  opts = dict(decode_batch=config.decode_batch,
              temperature=config.temperature, mesh=mesh)
  tok = setup.tokenizers[method]
  tokens = pipeline.sample_coarse_tokens(
      stage1.params, stage1.config, tok, config.num_samples,
      jax.random.fold_in(key, 0), classes=labels, num_classes=c, **opts)
  out = {}
  if method == "c2f":
    full = setup.tokenizers["full"]
    prompt = pipeline.prompts(
        config.num_samples, full.vocab_size,
        np.full(config.num_samples, null_class(wc)), c, tokens)
    detail = pipeline.sample_tokens(
        stage2.params, stage2.config, prompt, full.seq_len - tok.seq_len,
        full.vocab_size, jax.random.fold_in(key, 1), **opts)
    out["c2f"] = full.decode(jnp.asarray(np.concatenate([tokens, detail],
                                                        axis=1)))
    if config.conv_stage2:
      out["c2f_conv"] = pipeline.render(tokens, setup.stages)
  else:
    out["full"] = tok.decode(jnp.asarray(tokens))
  return ({k: np.clip(np.asarray(v), 0.0, 1.0).astype(np.float32)
           for k, v in out.items()}, labels)


def evaluate(config: ImagesConfig, setup: Setup, images: np.ndarray,
             labels: np.ndarray, real_features: np.ndarray,
             real_energy: np.ndarray) -> dict:
  """The metrics of one synthetic set against the real private test set."""
  test = setup.test
  fd = metrics.frechet_distance(metrics.features(setup.metric_net, images),
                                real_features)
  down = metrics.train_classifier(images, labels,
                                  config.world.num_private_classes,
                                  config.classifier)
  energy = metrics.band_energy(images, config.wavelet, config.levels)
  return {"frechet": fd,
          "downstream_accuracy": metrics.accuracy(down, test.images,
                                                  test.labels),
          "band_energy": energy.tolist(),
          "band_error": metrics.band_error(energy, real_energy)}


def references(config: ImagesConfig, setup: Setup, real_features: np.ndarray
               ) -> dict:
  """Real-data anchors of the metrics (not releases)."""
  train = setup.world.private
  m = min(len(train), config.num_test)
  floor = metrics.frechet_distance(
      metrics.features(setup.metric_net, train.images[:m]), real_features)
  ceiling = metrics.train_classifier(train.images, train.labels,
                                     config.world.num_private_classes,
                                     config.classifier)
  return {
      "frechet_real_vs_real": floor,
      "frechet_public_vs_real": metrics.frechet_distance(
          metrics.features(setup.metric_net,
                           setup.world.public.images[:config.num_test]),
          real_features),
      "accuracy_trained_on_real": metrics.accuracy(
          ceiling, setup.test.images, setup.test.labels),
      "chance_accuracy": 1.0 / config.world.num_private_classes,
      "band_energy_real": metrics.band_energy(
          setup.test.images, config.wavelet, config.levels).tolist(),
  }


def dp_run(config: ImagesConfig, setup: Setup, method: str, epsilon: float,
           base: Model, run_dir: str, mesh, stage2: Optional[dict]
           ) -> tuple[Model, dict]:
  """DP fine-tuning of `base` on the private rows of `method` at
  `epsilon`, ledger first; (fine-tuned model, run record). `stage2`: the
  stage-2 record bound into the ledger header (c2f)."""
  tok = setup.tokenizers[method]
  private = setup.world.private
  c = num_class_tokens(config.world)
  rows = pipeline.token_rows(np.asarray(tok.encode(private.images)),
                             tok.vocab_size,
                             class_index(config.world, private.labels), c)
  width = rows.tokens.shape[1]
  syn = api.SynthesisConfig(method=dp_finetune.METHOD, epsilon=epsilon,
                            delta=config.delta, num_docs=config.num_samples,
                            seed=config.seed,
                            options=dp_options(config, width))
  p = dp_finetune.plan(syn, rows.num_rows)   # raises before any file
  sampler = p.make_sampler(config.seed, dp_finetune.pad_unit(p.options, mesh))
  binding = {
      "experiment": "images_c2f", "method": method,
      "plan": p.to_dict(), "request": syn.to_dict(),
      "config": config.to_dict(), "model_config": base.config.to_dict(),
      "base_params_sha256": dp_finetune.params_sha256(base.params),
      "pad_unit": sampler.pad_unit,
      "record": "one private image and its class token per row "
                f"({width} tokens)",
      "private_rows_sha256": _sha256(rows.tokens),
      "stage2": stage2 if stage2 is not None else
                "none: every band is DP fine-tuned",
      "metric_network": "public split only"}
  header = dp_finetune.make_ledger_header(p, sampler, binding)
  ledger_file = os.path.join(run_dir, "ledger.jsonl")
  # Samples are scored in memory; `out` names the run's directory.
  run_files = common.RunFiles(out=run_dir, ledger=ledger_file,
                              workdir=os.path.join(run_dir, "work"))
  with common.open_run(run_files, header, "images_c2f") as ledger:
    # finetune donates its params: a copy, replicated on the mesh.
    params = jax.tree.map(jnp.copy, base.params)
    if mesh is not None:
      params = jax.device_put(params, NamedSharding(mesh, P()))
    result = dp_finetune.finetune(
        params, base.config, rows, p, run_files.workdir, ledger,
        seed=config.seed, mesh=mesh)
    common.require_charges(ledger, (f"step:{s}" for s in range(p.steps)),
                           ledger_file)
    eps = ledger.epsilon()
  return Model(base.config, result.params), {
      "ledger_epsilon": eps, "delta": p.delta,
      "noise_multiplier": p.noise_multiplier, "clip_norm": p.clip_norm,
      "sampling_prob": p.sampling_prob, "steps": p.steps,
      "executed_steps": result.executed, "train_seconds": result.seconds,
      "ledger": ledger_file}


# ---------------------------------------------------------------------------
# Report


def _fmt(x: Any, digits: int = 3) -> str:
  if isinstance(x, str):
    return x
  if x is None:
    return "–"
  if math.isinf(x):
    return "∞"
  return f"{x:.{digits}g}"


def markdown(result: dict) -> str:
  """The table of images_c2f.md."""
  cfg, ref = result["config"], result["references"]
  lines = [
      f"### Coarse-to-fine vs full-resolution DP fine-tuning "
      f"({result['dataset']} world, "
      f"{result['image_size']}x{result['image_size']} images, "
      f"n={cfg['num_private']} private, model {cfg['model']}, "
      f"T={cfg['dp_steps']} DP steps, B={cfg['dp_batch_size']:g}, "
      f"{cfg['num_samples']} samples)", "",
      "| method | target ε | ledger ε | σ | Fréchet ↓ "
      "| downstream acc ↑ | band error ↓ | DP train s | total s |",
      "|---|---|---|---|---|---|---|---|---|"]
  for r in result["rows"]:
    lines.append(
        f"| {_LABELS[r['method']]} | {_fmt(r['target_epsilon'])} "
        f"| {_fmt(r['ledger_epsilon'])} | {_fmt(r['noise_multiplier'])} "
        f"| {r['frechet']:.3f} | {r['downstream_accuracy']:.3f} "
        f"| {r['band_error']:.3f} | {_fmt(r['train_seconds'], 3)} "
        f"| {r['seconds']:.0f} |")
  lines += [
      "", f"References: Fréchet of two real sets "
      f"{ref['frechet_real_vs_real']:.3f}, of public vs private "
      f"{ref['frechet_public_vs_real']:.3f}; accuracy trained on real "
      f"private images {ref['accuracy_trained_on_real']:.3f}, chance "
      f"{ref['chance_accuracy']:.3f}. ε 0 rows: the public pretrained "
      f"model sampled without DP fine-tuning. Wall time "
      f"{result['wall_seconds']:.0f} s, {result['cpu_seconds']:.0f} CPU s "
      f"(public stages "
      f"{result['public_seconds']:.0f} s, pretraining "
      + ", ".join(f"{_LABELS[m]} {s:.0f} s"
                  for m, s in result["pretrain_seconds"].items()) + ")."]
  return "\n".join(lines) + "\n"


def _eps_axis(rows: list[dict]) -> tuple[list[float], list[str]]:
  """Sorted target epsilons and their tick labels (0, 1, 10, ∞)."""
  eps = sorted({float(r["target_epsilon"]) for r in rows})
  return eps, [_fmt(e) for e in eps]


def plot_curves(result: dict, path: str) -> None:
  """Frechet distance and downstream accuracy against epsilon, band energy
  spectra, and run time per method."""
  rows, ref = result["rows"], result["references"]
  eps, ticks = _eps_axis(rows)
  pos = {e: i for i, e in enumerate(eps)}
  fig, ax = plt.subplots(1, 4, figsize=(18, 4))
  for method in [m for m in ROWS if any(r["method"] == m for r in rows)]:
    rs = sorted((r for r in rows if r["method"] == method),
                key=lambda r: float(r["target_epsilon"]))
    x = [pos[float(r["target_epsilon"])] for r in rs]
    ax[0].plot(x, [r["frechet"] for r in rs], "o-", label=_LABELS[method])
    ax[1].plot(x, [r["downstream_accuracy"] for r in rs], "o-",
               label=_LABELS[method])
    ax[3].plot(x, [r["seconds"] for r in rs], "o-", label=_LABELS[method])
  ax[0].axhline(ref["frechet_real_vs_real"], color="k", ls=":",
                label="real vs real")
  ax[0].set_ylabel("Fréchet distance (public features)")
  ax[0].set_yscale("log")
  ax[1].axhline(ref["accuracy_trained_on_real"], color="k", ls=":",
                label="trained on real")
  ax[1].axhline(ref["chance_accuracy"], color="gray", ls="--",
                label="chance")
  ax[1].set_ylabel("accuracy on real private (train on synthetic)")
  ax[3].set_ylabel("wall seconds (DP fine-tune + sampling + metrics)")
  for a in (ax[0], ax[1], ax[3]):
    a.set_xticks(range(len(eps)), ticks)
    a.set_xlabel("target ε (0: public only)")
    a.legend(fontsize=8)
  names = metrics.band_names(result["config"]["levels"])
  ax[2].plot(names, ref["band_energy_real"], "k-", lw=2, label="real")
  dp_eps = [e for e in eps if e > 0]
  for r in rows:
    if float(r["target_epsilon"]) in (min(dp_eps), max(dp_eps)):
      ax[2].plot(names, r["band_energy"], _STYLE[r["method"]],
                 label=f"{_LABELS[r['method']]} ε="
                 f"{_fmt(r['target_epsilon'])}", alpha=0.8)
  ax[2].set_yscale("log")
  ax[2].set_ylabel("mean squared coefficient")
  ax[2].set_xlabel("wavelet band (coarse → fine)")
  ax[2].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_samples(grids: list[tuple[str, np.ndarray, np.ndarray]],
                 num_classes: int, path: str) -> None:
  """One row per (title, images, labels): `_GRID_PER_CLASS` images of each
  class, class-major."""
  cols = num_classes * _GRID_PER_CLASS
  fig, ax = plt.subplots(len(grids), 1, figsize=(cols * 0.6 + 2.2,
                                                 len(grids) * 0.72 + 0.3))
  ax = np.atleast_1d(ax)
  for a, (title, images, labels) in zip(ax, grids):
    picks = [np.flatnonzero(labels == k)[:_GRID_PER_CLASS]
             for k in range(num_classes)]
    strip = np.concatenate([np.concatenate(
        [images[i] for i in idx] + [np.ones_like(images[0])]
        * (_GRID_PER_CLASS - len(idx)), axis=1) for idx in picks], axis=1)
    a.imshow(strip, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    a.set_xticks([])
    a.set_yticks([])
    a.set_ylabel(title, rotation=0, ha="right", va="center", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# ---------------------------------------------------------------------------
# The run


def _check_out_dir(config: ImagesConfig, out_dir: str) -> None:
  """Binds `out_dir` to `config` (a rerun with another config refuses)."""
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "config.json")
  want = common.config_hash(config.to_dict())
  if os.path.exists(path):
    got = files.read_json(path).get("config_hash")
    check(got == want, f"{out_dir} holds a run of another config "
          f"({got} != {want}); use a new directory.")
  else:
    files.write_json(path, {"config_hash": want,
                            "config": config.to_dict()})


def run_images(config: ImagesConfig, out_dir: str) -> dict:
  """Runs the grid; writes the JSON, the table and the PNGs in `out_dir`.

  Returns:
    {"dataset" ('generated' or 'digits'), "image_size" (pixels), "config",
    "rows" (per row method and epsilon: target and ledger epsilon, sigma,
    Frechet, downstream accuracy, band energies, seconds), "references",
    "stage2", "public_seconds", "pretrain_seconds", "wall_seconds",
    "cpu_seconds", "files"}.

  Raises:
    CbenchError: an infeasible epsilon (before any private step), or an
      `out_dir` holding a run of another config.
  """
  start, cpu_start = time.monotonic(), time.process_time()
  _check_out_dir(config, out_dir)
  workdir = os.path.join(out_dir, "work")
  mesh = mesh_lib.make_mesh()
  setup = fit_public(config, workdir)
  real_features = metrics.features(setup.metric_net, setup.test.images)
  ref = references(config, setup, real_features)
  real_energy = np.asarray(ref["band_energy_real"])
  bases, pretrain_seconds = {}, {}
  # The full-resolution public model is also c2f's stage 2.
  for method in sorted(set(config.methods) | {"full"}, reverse=True):
    cfg, params, secs = pretrain(config, setup, method, workdir, mesh)
    bases[method], pretrain_seconds[method] = Model(cfg, params), secs
  stage2 = bases["full"]
  s2_record = stage2_record(setup, stage2)
  grids = [("real (test)", setup.test.images, setup.test.labels)]
  rows = []
  base_key = jax.random.fold_in(jax.random.key(config.seed), _SAMPLE_STREAM)
  for mi, method in enumerate(config.methods):
    grid = ([0.0] if config.public_only else []) + list(config.epsilons)
    for ei, eps in enumerate(grid):
      t0 = time.monotonic()
      run_dir = os.path.join(out_dir, "runs", f"{method}_eps{eps_name(eps)}")
      if eps == 0.0:
        model, rec = bases[method], {
            "ledger_epsilon": 0.0, "delta": None, "noise_multiplier": None,
            "clip_norm": None, "sampling_prob": None, "steps": 0,
            "executed_steps": 0, "train_seconds": 0.0, "ledger": None}
      else:
        model, rec = dp_run(config, setup, method, eps, bases[method],
                            run_dir, mesh,
                            s2_record if method == "c2f" else None)
      images, labels = generate(
          config, setup, method, model, stage2,
          jax.random.fold_in(base_key, 100 * mi + ei), mesh)
      for name, imgs in images.items():
        row = {"method": name, "target_epsilon": eps, **rec,
               "stage2_private_images_read": (
                   s2_record["private_images_read"] if method == "c2f"
                   else None),
               **evaluate(config, setup, imgs, labels, real_features,
                          real_energy)}
        row["seconds"] = time.monotonic() - t0
        rows.append(row)
        grids.append((f"{_LABELS[name]} ε={_fmt(eps)}", imgs, labels))
  result = {
      "dataset": config.dataset, "image_size": config.world.size,
      "config": config.to_dict(), "rows": rows, "references": ref,
      "stage2": s2_record, "public_seconds": setup.seconds,
      "pretrain_seconds": pretrain_seconds,
      "band_names": list(metrics.band_names(config.levels)),
      "design": {
          "features": "penultimate layer of a ConvNet trained on the "
                      "public classes + texture-only (public split only)"
                      if config.dataset == "generated" else
                      "penultimate layer of a ConvNet trained on the "
                      "public digits (public split only)",
          "downstream": "ConvNet trained on synthetic images labelled by "
                        "their class prompt, tested on held-out real "
                        "private images",
          "reference_set": "held-out real private test images"}}
  result["wall_seconds"] = time.monotonic() - start
  result["cpu_seconds"] = time.process_time() - cpu_start
  plot_curves(result, os.path.join(out_dir, CURVES_PNG))
  plot_samples(grids, config.world.num_private_classes,
               os.path.join(out_dir, SAMPLES_PNG))
  result["files"] = [JSON_NAME, MARKDOWN_NAME, SAMPLES_PNG, CURVES_PNG]
  files.write_text(os.path.join(out_dir, MARKDOWN_NAME), markdown(result))
  files.write_json(os.path.join(out_dir, JSON_NAME), common.jsonable(result))
  return result
