"""Contrastive pre-training, non-private vs naive DP-SGD vs Logit-DP, probed.

`run_comparison(config)`: generate an image-like dataset (`data.py`; the
unlabelled pre-training records are the private data), pre-train a small
MLP encoder with the summed InfoNCE loss on two random views per record
  (a) non-private (exact gradient),
  (b) naive DP-SGD (per-example loss gradients clipped; sensitivity 2nC),
  (c) Logit-DP (per-logit gradients clipped; sensitivity C(4 + 2(n-1)P_n)),
at equal (epsilon, delta) per target epsilon, then fit a linear probe
(multinomial logistic regression) on the frozen representation of a
separate labelled set and report test accuracy. References: the probe on raw
pixels and on a randomly initialised encoder.

Privacy: fixed-size batches from one shuffle per epoch, replace-one
adjacency, no amplification (`logit_dp.dp_event`); sigma is calibrated once
per epsilon by PLD (`accounting.calibrate_noise_multiplier`) and both DP
mechanisms use it, each with its own sensitivity (noise std = sigma * Delta).
Clip norms are fixed config constants (not tuned on the private data).
Views are drawn on the host with `np.random.Generator`; the noisy sum is
divided by the public batch size.

Writes results.json, results.md and probe_accuracy.png into
`config.out_dir`; also measures the step time of each mechanism side by side
(median of `timing_reps` jitted steps).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

from cbench._validate import check, one_of
from cbench.contrastive import data as data_lib
from cbench.contrastive import head as head_lib
from cbench.io import files
from cbench.privacy import accounting
from cbench.privacy import logit_dp

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

log = logging.getLogger("cbench")
PyTree = Any
METHODS = ("non_private", "naive", "logit_dp")
_LABELS = {"non_private": "non-private", "naive": "naive DP-SGD",
           "logit_dp": "Logit-DP"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbeConfig:
  """One comparison run (all fields public).

  Attributes:
    data: the generated data's shape and difficulty.
    num_train: unlabelled (private) pre-training records.
    num_probe_train / num_probe_test: labelled probe records (separate).
    hidden / rep_dim / proj_dim: MLP widths; the probe reads the rep_dim
      representation, the loss the proj_dim projection.
    batch_size: n pairs per step (fixed).
    epochs: passes over the pre-training records (= participations).
    learning_rate: Adam step size (all methods).
    temperature: tau of the cosine logits.
    logit_clip_norm: Logit-DP's per-logit clip norm C.
    naive_clip_norm: naive DP-SGD's per-example clip norm.
    epsilons: target epsilons of the DP runs.
    delta: target delta.
    value_discretization_interval: PLD discretisation for calibration and
      the reported epsilon (pessimistic at any value).
    seed: data, initialisation, views and noise.
    chunk_size: `ContrastiveDpConfig.chunk_size` (memory knob).
    probe_steps / probe_l2 / probe_learning_rate: the linear probe's
      full-batch Adam fit.
    timing_reps: jitted steps timed per mechanism (0: skip timing).
    out_dir: where results.json, results.md and the PNG go.
  """
  data: data_lib.ImageDataConfig = data_lib.ImageDataConfig()
  num_train: int = 65536
  num_probe_train: int = 500
  num_probe_test: int = 2000
  hidden: int = 32
  rep_dim: int = 16
  proj_dim: int = 16
  batch_size: int = 256
  epochs: int = 1
  learning_rate: float = 3e-3
  temperature: float = 1.0
  logit_clip_norm: float = 1.0
  naive_clip_norm: float = 1.0
  epsilons: tuple[float, ...] = (1.0, 8.0, 64.0)
  delta: float = 1e-5
  value_discretization_interval: float = 1e-3
  seed: int = 0
  chunk_size: Optional[int] = 32
  probe_steps: int = 500
  probe_l2: float = 1e-3
  probe_learning_rate: float = 0.05
  timing_reps: int = 20
  out_dir: str = "logit_dp_probe_out"

  def __post_init__(self):
    check(self.num_train >= self.batch_size >= 2,
          f"Expected num_train={self.num_train} >= batch_size="
          f"{self.batch_size} >= 2.")
    check(self.epochs >= 1, f"Expected epochs={self.epochs} >= 1.")
    check(all(e > 0 for e in self.epsilons),
          f"Expected epsilons={self.epsilons} > 0.")
    check(0 < self.delta < 1, f"Expected 0 < delta={self.delta} < 1.")
    check(self.num_probe_train >= 1 and self.num_probe_test >= 1,
          "Expected num_probe_train, num_probe_test >= 1.")

  @property
  def steps_per_epoch(self) -> int:
    return self.num_train // self.batch_size


class Encoder(nn.Module):
  """MLP: x -> relu -> representation (rep_dim) -> projection (proj_dim)."""
  hidden: int
  rep_dim: int
  proj_dim: int

  @nn.compact
  def __call__(self, x, features: bool = False):
    h = nn.relu(head_lib.Dense(self.hidden, name="dense1")(x))
    r = nn.relu(head_lib.Dense(self.rep_dim, name="dense2")(h))
    if features:
      return r
    return head_lib.Dense(self.proj_dim, name="head")(r)


def _encoder(config: ProbeConfig) -> Encoder:
  return Encoder(hidden=config.hidden, rep_dim=config.rep_dim,
                 proj_dim=config.proj_dim)


def make_embed(config: ProbeConfig) -> logit_dp.GhostEmbed:
  """embed(params, x (n, s^2)) -> (n, proj_dim) (ghost pair norms)."""
  return logit_dp.GhostEmbed(_encoder(config), lambda x: (x,))


def init_params(config: ProbeConfig, key: jax.Array) -> PyTree:
  x = jnp.zeros((1, config.data.dim))
  return jax.jit(_encoder(config).init)(key, x)["params"]


@functools.partial(jax.jit, static_argnums=0)
def _features(model: Encoder, params: PyTree, x: jax.Array) -> jax.Array:
  return model.apply({"params": params}, x, features=True)


def features(config: ProbeConfig, params: PyTree, x: np.ndarray) -> np.ndarray:
  """The frozen representation (n, rep_dim) the probe reads."""
  return np.asarray(_features(_encoder(config), params, jnp.asarray(x)),
                    np.float32)


@functools.partial(jax.jit, static_argnames=("embed", "temperature"))
def _non_private_step(params, anchors, positives, *, embed, temperature):
  return jax.value_and_grad(logit_dp.embed_and_loss, argnums=1)(
      embed, params, anchors, positives, temperature)


@functools.partial(jax.jit, static_argnames=("learning_rate", "batch_size"))
def _adam_update(params, state, grad_sum, *, learning_rate, batch_size):
  g = jax.tree.map(lambda x: x / batch_size, grad_sum)  # public n
  upd, state = optax.adam(learning_rate).update(g, state, params)
  return optax.apply_updates(params, upd), state


def make_step(config: ProbeConfig, method: str, noise_multiplier: float,
              embed: logit_dp.EmbedFn):
  """((params, anchors, positives, key) -> (gradient SUM, loss), noise std).

  DP steps of one method share one compilation across noise multipliers.
  """
  one_of("method", method, METHODS)
  if method == "non_private":
    def step(params, anchors, positives, key):
      del key
      loss, g = _non_private_step(params, anchors, positives, embed=embed,
                                  temperature=config.temperature)
      return g, loss
    return step, 0.0
  cfg = logit_dp.ContrastiveDpConfig(
      mechanism=method, noise_multiplier=noise_multiplier,
      batch_size=config.batch_size, temperature=config.temperature,
      clip_norm=(config.logit_clip_norm if method == "logit_dp"
                 else config.naive_clip_norm),
      chunk_size=config.chunk_size)
  dp_step = logit_dp.make_dp_step(embed, cfg)

  def step(params, anchors, positives, key):
    g, aux = dp_step(params, anchors, positives, key)
    return g, aux["loss"]
  return step, cfg.noise_std


def pretrain(config: ProbeConfig, method: str, noise_multiplier: float,
             images: np.ndarray, params: PyTree,
             embed: logit_dp.EmbedFn) -> tuple[PyTree, dict]:
  """Adam on (noisy) summed gradients / n; returns (params, stats).

  One shuffle per epoch, `steps_per_epoch` disjoint batches (the remainder
  is dropped), two fresh views per record per step, key folded per step.
  """
  step, std = make_step(config, method, noise_multiplier, embed)
  rng = np.random.default_rng([config.seed, 1])
  key = jax.random.key(config.seed + 7919)
  state = optax.adam(config.learning_rate).init(params)
  n, t, losses = config.batch_size, 0, []
  start = time.perf_counter()
  for _ in range(config.epochs):
    order = rng.permutation(images.shape[0])
    for b in range(config.steps_per_epoch):
      idx = order[b * n:(b + 1) * n]
      xa = data_lib.augment(config.data, images[idx], rng)
      xb = data_lib.augment(config.data, images[idx], rng)
      g, loss = step(params, jnp.asarray(xa), jnp.asarray(xb),
                     jax.random.fold_in(key, t))
      params, state = _adam_update(params, state, g,
                                   learning_rate=config.learning_rate,
                                   batch_size=n)
      losses.append(loss)
      t += 1
  tail = losses[-max(1, config.steps_per_epoch // 10):]
  return params, {"steps": t, "noise_std": float(std),
                  "final_loss": float(np.mean([float(x) for x in tail])) / n,
                  "train_seconds": time.perf_counter() - start}


@functools.partial(jax.jit, static_argnames=("classes", "steps",
                                             "learning_rate", "l2"))
def _probe_predict(xtr, ytr, xte, *, classes, steps, learning_rate, l2):
  opt = optax.adam(learning_rate)
  w = {"w": jnp.zeros((xtr.shape[1], classes)), "b": jnp.zeros(classes)}

  def loss(p):
    logits = xtr @ p["w"] + p["b"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, ytr).mean()
    return ce + l2 * jnp.sum(jnp.square(p["w"]))

  def body(carry, _):
    p, s = carry
    upd, s = opt.update(jax.grad(loss)(p), s, p)
    return (optax.apply_updates(p, upd), s), None

  (w, _), _ = jax.lax.scan(body, (w, opt.init(w)), None, length=steps)
  return jnp.argmax(xte @ w["w"] + w["b"], axis=1)


def linear_probe(config: ProbeConfig, f_train: np.ndarray,
                 y_train: np.ndarray, f_test: np.ndarray,
                 y_test: np.ndarray) -> float:
  """Test accuracy of softmax regression on standardised features."""
  mu, sd = f_train.mean(0), f_train.std(0) + 1e-6
  pred = _probe_predict(
      jnp.asarray((f_train - mu) / sd), jnp.asarray(y_train),
      jnp.asarray((f_test - mu) / sd), classes=config.data.num_classes,
      steps=config.probe_steps, learning_rate=config.probe_learning_rate,
      l2=config.probe_l2)
  return float(np.mean(np.asarray(pred) == y_test))


def step_times(config: ProbeConfig, params: PyTree, images: np.ndarray,
               noise_multiplier: float, embed: logit_dp.EmbedFn) -> dict:
  """Median wall time (ms) of one jitted step per method, interleaved."""
  rng = np.random.default_rng([config.seed, 2])
  idx = rng.permutation(images.shape[0])[:config.batch_size]
  xa = jnp.asarray(data_lib.augment(config.data, images[idx], rng))
  xb = jnp.asarray(data_lib.augment(config.data, images[idx], rng))
  steps = {m: make_step(config, m, noise_multiplier, embed)[0]
           for m in METHODS}
  key = jax.random.key(0)
  for fn in steps.values():
    jax.block_until_ready(fn(params, xa, xb, key))  # compile
  times = {m: [] for m in METHODS}
  for r in range(config.timing_reps):
    for m, fn in steps.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(params, xa, xb, jax.random.fold_in(key, r)))
      times[m].append(time.perf_counter() - t0)
  ms = {m: 1000 * float(np.median(v)) for m, v in times.items()}
  base = ms["non_private"]
  return {"ms": ms, "ratio_to_non_private": {m: v / base
                                             for m, v in ms.items()},
          "logit_dp_over_naive": ms["logit_dp"] / ms["naive"]}


def _markdown(result: dict) -> str:
  eps = result["epsilons"]
  head = ("| method | sensitivity / C | "
          + " | ".join(f"ε={e:g}" for e in eps) + " | ε=∞ |")
  lines = [head, "|" + "---|" * (len(eps) + 3)]
  by = {(r["method"], r["epsilon"]): r for r in result["runs"]}
  n = result["config"]["batch_size"]
  sens = {"non_private": "–", "naive": f"{2 * n}",
          "logit_dp": f"{result['sensitivity_over_c']['logit_dp']:.2f}"}
  for m in ("logit_dp", "naive", "non_private"):
    cells = []
    for e in eps + [math.inf]:
      r = by.get((m, e))
      cells.append("–" if r is None else f"{100 * r['probe_accuracy']:.1f}")
    lines.append(f"| {_LABELS[m]} | {sens[m]} | " + " | ".join(cells) + " |")
  for name, acc in result["references"].items():
    lines.append(f"| {name} (reference) | – | "
                 + " | ".join(["–"] * len(eps)) + f" | {100 * acc:.1f} |")
  st = result.get("step_times")
  text = "\n".join(lines) + "\n"
  text += (f"\nLinear-probe test accuracy (%), n={n} pairs per step, "
           f"{result['config']['epochs']} epoch(s), δ={result['delta']:g}, "
           f"replace-one, no amplification; σ per ε: "
           + ", ".join(f"{e:g}: {s:.3f}" for e, s in
                       zip(eps, result["noise_multipliers"])) + ".\n")
  if st:
    text += (f"Step time (ms): non-private {st['ms']['non_private']:.2f}, "
             f"naive {st['ms']['naive']:.2f}, Logit-DP "
             f"{st['ms']['logit_dp']:.2f}; Logit-DP / non-private = "
             f"{st['ratio_to_non_private']['logit_dp']:.1f}x.\n")
  return text


def _plot(result: dict, path: str) -> None:
  eps = result["epsilons"]
  fig, ax = plt.subplots(figsize=(5.5, 3.5))
  by = {(r["method"], r["epsilon"]): r for r in result["runs"]}
  x = np.arange(len(eps))
  for i, m in enumerate(("naive", "logit_dp")):
    acc = [100 * by[(m, e)]["probe_accuracy"] for e in eps]
    ax.bar(x + (i - 0.5) * 0.38, acc, width=0.38, label=_LABELS[m])
  ax.axhline(100 * by[("non_private", math.inf)]["probe_accuracy"],
             color="k", ls="--", label="non-private")
  for name, acc in result["references"].items():
    ax.axhline(100 * acc, color="gray", ls=":", lw=1)
    ax.text(len(eps) - 0.5, 100 * acc, name, fontsize=7, va="bottom",
            ha="right", color="gray")
  ax.set_xticks(x, [f"ε={e:g}" for e in eps])
  ax.set_ylabel("linear-probe accuracy (%)")
  ax.set_title(f"Contrastive pre-training, n={result['config']['batch_size']}")
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run_comparison(config: ProbeConfig) -> dict:
  """Runs the comparison; writes results.{json,md} and probe_accuracy.png.

  Returns the result dict (also in results.json): runs (method, epsilon,
  noise multiplier, noise std, probe accuracy, ...), references, step times,
  seconds, and the output paths.
  """
  start = time.perf_counter()
  os.makedirs(config.out_dir, exist_ok=True)
  rng = np.random.default_rng([config.seed, 0])
  protos = data_lib.prototypes(config.data, rng)
  train, _ = data_lib.records(config.data, protos, config.num_train, rng)
  ptr_x, ptr_y = data_lib.records(config.data, protos,
                                  config.num_probe_train, rng)
  pte_x, pte_y = data_lib.records(config.data, protos,
                                  config.num_probe_test, rng)
  ptr_x, pte_x = data_lib.flat(ptr_x), data_lib.flat(pte_x)
  init = init_params(config, jax.random.key(config.seed))
  embed = make_embed(config)

  def probe(params):
    return linear_probe(config, features(config, params, ptr_x), ptr_y,
                        features(config, params, pte_x), pte_y)

  refs = {"raw pixels": linear_probe(config, ptr_x, ptr_y, pte_x, pte_y),
          "random init": probe(init)}
  vdi = config.value_discretization_interval
  sigmas = [accounting.calibrate_noise_multiplier(
      lambda s: logit_dp.dp_event(s, config.epochs), e, config.delta,
      logit_dp.RELATION, value_discretization_interval=vdi)
            for e in config.epsilons]
  spent = {s: accounting.epsilon(logit_dp.dp_event(s, config.epochs),
                                 config.delta, logit_dp.RELATION,
                                 value_discretization_interval=vdi)
           for s in sigmas}
  plan = [("non_private", math.inf, 0.0)]
  for e, s in zip(config.epsilons, sigmas):
    plan += [("naive", e, s), ("logit_dp", e, s)]
  runs = []
  for method, eps, sigma in plan:
    params, stats = pretrain(config, method, sigma, train, init, embed)
    acc = probe(params)
    eps_spent = math.inf if method == "non_private" else spent[sigma]
    runs.append({"method": method, "epsilon": eps, "epsilon_spent": eps_spent,
                 "noise_multiplier": sigma, "probe_accuracy": acc, **stats})
    log.info("logit_dp_probe: %s eps=%s acc=%.3f (%.1fs)", method, eps, acc,
             stats["train_seconds"])
  n = config.batch_size
  result = {
      "config": dataclasses.asdict(config), "epsilons": list(config.epsilons),
      "delta": config.delta, "noise_multipliers": sigmas,
      "sensitivity_over_c": {
          "logit_dp": logit_dp.logit_dp_sensitivity(n, 1.0,
                                                    config.temperature),
          "naive": logit_dp.naive_sensitivity(n, 1.0)},
      "references": refs, "runs": runs}
  if config.timing_reps > 0:
    result["step_times"] = step_times(config, init, train,
                                      sigmas[0] if sigmas else 1.0, embed)
  result["seconds"] = time.perf_counter() - start
  paths = {"json": os.path.join(config.out_dir, "results.json"),
           "md": os.path.join(config.out_dir, "results.md"),
           "png": os.path.join(config.out_dir, "probe_accuracy.png")}
  result["paths"] = paths
  result["markdown"] = _markdown(result)
  files.write_text(paths["md"], result["markdown"])
  _plot(result, paths["png"])
  files.write_json(paths["json"], result)
  return result
