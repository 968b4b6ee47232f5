r"""Logit-DP and naive DP-SGD for the contrastive (InfoNCE) loss of n pairs.

Logit-DP: Kong, Munoz Medina, Ribero, "Differentially private optimization
for non-decomposable objective functions" (arXiv 2310.03104, ICLR 2025).

Setting. A batch of n pairs (x_i, y_i) (two views of record i), a shared
per-example encoder `embed(params, batch) -> (n, d)` (no batch statistics:
row i may depend only on example i), u_i = f(x_i), v_j = f(y_j) and logits
  Z_ij = cos(u_i, v_j) / tau,  so |Z_ij| <= M = 1 / tau,
  L(Z) = sum_i l_i,  l_i = -Z_ii + logsumexp_j Z_ij  (a SUM over anchors).
Row i's loss couples record i with every record of the batch, so per-example
clipping of grad l_i (the naive baseline) has a sensitivity that grows with
n. Logit-DP instead clips every per-logit gradient g_ij = grad_params Z_ij
to norm C and recombines them with the (unclipped) loss derivatives
W_ij = dL/dZ_ij = p_ij - [i = j], p_ij = softmax_j(Z_i.):
  g_bar = sum_ij W_ij min(1, C / ||g_ij||) g_ij,   output g_bar + N(0, s^2 I),
  s = noise_multiplier * sensitivity.

Sensitivity (L2 distance between the outputs on neighbouring batches; the
paper's Theorem 4.2 shape (G1 + G2 + (n - 1) L) * C, re-derived here for the
InfoNCE loss; the constants below are ours). With P_n = e^{2M} / (e^{2M} +
n - 1) >= every off-diagonal p_ik (|Z| <= M), write row i's term
  r_i = sum_j W_ij G_ij = p_ik G_ik + (1 - p_ik) Q_i - G_ii,
where G are clipped gradients and Q_i = sum_{j != k} q_ij G_ij (softmax of
row i without column k) does not depend on record k, ||Q_i|| <= C. Then:
  * replace-one (record k's pair replaced, n fixed): ||r_k|| <= 2(1 - p_kk)
    C <= 2C before and after (G1 = 2), so row k moves by <= 4C; each other
    row moves by ||p G - p' G' - (p - p') Q|| <= 2 max(p, p') C <= 2 P_n C
    (p = p_ik before, p' after), so
        Delta_logit = C (4 + 2 (n - 1) P_n)  <  C (4 + 2 e^{2M}).
  * add/remove (batches of n and n - 1): row k leaves (<= 2C), each other
    row moves by p_ik ||G_ik - Q_i|| <= 2 P_n C:
        Delta_logit = C (2 + 2 (n - 1) P_n).
(n - 1) P_n increases to e^{2M}: the bound is O(1) in n (e.g. 18.8 C at tau
= 1). Naive DP-SGD clips h_k = grad l_k to C; replacing record k changes
h_k and every other h_i (all depend on v_k): Delta_naive = 2 n C
(replace-one), (2n - 1) C (add/remove), linear in n.

Computation (what is exploited). g_ij = J_i^T a_ij + K_j^T b_ij with
a_ij = dZ_ij/du_i, b_ij = dZ_ij/dv_j and J, K the per-example embedding
Jacobians. The n^2 gradients are never stored together: the pairs are
visited by "shift" s = 0..n-1 (pairs (i, i + s mod n)); each shift is two
per-example VJPs over the batch (the forward residuals are computed once and
reused for every shift), i.e. one DP-SGD-sized per-example gradient batch
(n x P memory, `chunk_size` shifts at a time). The clipped sum itself needs
no per-pair gradient: it is one batched VJP of the embeddings with the
aggregated cotangents sum_j W_ij c_ij a_ij and sum_i W_ij c_ij b_ij. Cost:
about n per-example-gradient passes per step (the paper's n^2 norms).
The naive per-example gradients use the same cotangent trick (one
per-example VJP for the anchors, n batched VJPs for the positives).

Ghost path (`GhostEmbed`: an instrumented linen model whose trainable
modules are Dense layers on (n, din) inputs, the `ghost.py` contract without
a token axis). For a Dense layer with inputs h_i, h'_j and D_i = d u_i /
d(layer output_i) (dout x d, from d backward passes of the batch):
  ||grad_W Z_ij||^2 = |h_i|^2 |D_i a_ij|^2 + |h'_j|^2 |D'_j b_ij|^2
                      + 2 (h_i . h'_j) (D_i a_ij . D'_j b_ij),
  ||grad_b Z_ij||^2 = |D_i a_ij + D'_j b_ij|^2,
so the n^2 norms cost O(n^2 d sum_l dout_l) and no per-pair or per-example
gradient is formed (tested equal to the generic path).

Accounting. Fixed-size batches (a shuffle or any partition of the data per
epoch; each record in at most one batch per epoch), replace-one adjacency,
no amplification: `dp_event(sigma, epochs)` composes one Gaussian per epoch
(`accounting.no_amplification_event`), sigma = noise std / sensitivity. The
caller divides the noisy sum by the PUBLIC batch size n. Float noise is not
hardened (privacy-testing.md E2).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from dp_accounting import dp_event as dpe

from cbench._validate import CbenchError, check, one_of
from cbench.privacy import accounting
from cbench.privacy import noise
from cbench.privacy.per_example import global_norms
from cbench.privacy.per_example import weighted_sum

PyTree = Any
EmbedFn = Callable[[PyTree, PyTree], jax.Array]
MECHANISMS = ("logit_dp", "naive")
RELATION = "replace_one"
_EPS = 1e-12
_TINY = 1e-30
_HI = jax.lax.Precision.HIGHEST


# --------------------------------------------------------------------------
# Sensitivities (host floats).


def max_softmax_prob(n: int, logit_bound: float) -> float:
  """P_n = e^{2M} / (e^{2M} + n - 1): the largest off-diagonal p_ik."""
  check(n >= 1, f"Expected batch size n={n} >= 1.")
  return 1.0 / (1.0 + (n - 1) * math.exp(-2.0 * logit_bound))


def logit_dp_sensitivity(n: int, clip_norm: float, temperature: float,
                         relation: str = RELATION) -> float:
  """L2 sensitivity of the Logit-DP clipped sum (module docstring).

  Args:
    n: batch size (the larger one under add/remove).
    clip_norm: C, the per-logit gradient clip norm.
    temperature: tau > 0; logits are cosine / tau, so M = 1 / tau.
    relation: 'replace_one' (4 + 2 (n-1) P_n) C or 'add_remove'
      (2 + 2 (n-1) P_n) C.
  """
  one_of("relation", relation, ("replace_one", "add_remove"))
  check(temperature > 0, f"Expected temperature={temperature} > 0.")
  check(clip_norm >= 0, f"Expected clip_norm={clip_norm} >= 0.")
  p = max_softmax_prob(n, 1.0 / temperature)
  row = 4.0 if relation == "replace_one" else 2.0
  return clip_norm * (row + 2.0 * (n - 1) * p)


def naive_sensitivity(n: int, clip_norm: float,
                      relation: str = RELATION) -> float:
  """L2 sensitivity of clipped per-example InfoNCE gradients: 2nC / (2n-1)C."""
  one_of("relation", relation, ("replace_one", "add_remove"))
  check(n >= 1, f"Expected batch size n={n} >= 1.")
  check(clip_norm >= 0, f"Expected clip_norm={clip_norm} >= 0.")
  return clip_norm * (2.0 * n if relation == "replace_one" else 2.0 * n - 1)


def sensitivity(mechanism: str, n: int, clip_norm: float, temperature: float,
                relation: str = RELATION) -> float:
  """`logit_dp_sensitivity` or `naive_sensitivity` by `mechanism`."""
  one_of("mechanism", mechanism, MECHANISMS)
  if mechanism == "logit_dp":
    return logit_dp_sensitivity(n, clip_norm, temperature, relation)
  return naive_sensitivity(n, clip_norm, relation)


def dp_event(noise_multiplier: float, epochs: int) -> dpe.DpEvent:
  """Event of `epochs` passes over fixed-size batches, no amplification.

  Each record is in at most one batch per epoch; each of those steps is a
  Gaussian mechanism with std = noise_multiplier * sensitivity (replace-one).
  """
  return accounting.no_amplification_event(noise_multiplier, epochs,
                                           RELATION)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ContrastiveDpConfig:
  """Public hyper-parameters of one private contrastive step.

  Attributes:
    mechanism: 'logit_dp' (clip per-logit gradients) | 'naive' (clip
      per-example loss gradients).
    clip_norm: C > 0 (per-logit or per-example, per `mechanism`).
    noise_multiplier: sigma >= 0, noise std / sensitivity (0: no noise).
    batch_size: n, the fixed public batch size.
    temperature: tau > 0 (logits cosine / tau).
    chunk_size: shifts (logit_dp, generic embed), anchor rows (logit_dp,
      `GhostEmbed`) or loss rows (naive) per `lax.map` chunk; None: all at
      once. A memory / speed knob only.
    noise_dtype: dtype of the Gaussian noise.
  """
  mechanism: str
  clip_norm: float
  noise_multiplier: float
  batch_size: int
  temperature: float = 1.0
  chunk_size: Optional[int] = None
  noise_dtype: str = "float32"

  def __post_init__(self):
    one_of("mechanism", self.mechanism, MECHANISMS)
    check(self.clip_norm is not None and 0 < self.clip_norm < math.inf,
          f"Expected 0 < clip_norm={self.clip_norm} < inf.")
    check(self.noise_multiplier is not None and self.noise_multiplier >= 0,
          f"Expected noise_multiplier={self.noise_multiplier} >= 0.")
    check(isinstance(self.batch_size, int) and self.batch_size >= 2,
          f"Expected an integer batch_size={self.batch_size} >= 2.")
    check(self.temperature is not None and self.temperature > 0,
          f"Expected temperature={self.temperature} > 0.")
    check(self.chunk_size is None or self.chunk_size >= 1,
          f"Expected chunk_size={self.chunk_size} >= 1.")

  @property
  def sensitivity(self) -> float:
    return sensitivity(self.mechanism, self.batch_size, self.clip_norm,
                       self.temperature)

  @property
  def noise_std(self) -> float:
    """Std of the noise on the clipped SUM: sigma * sensitivity."""
    return float(self.noise_multiplier) * self.sensitivity


# --------------------------------------------------------------------------
# Logits and loss.


def cosine_logits(u: jax.Array, v: jax.Array,
                  temperature: float) -> jax.Array:
  """Z (n, m) = cos(u_i, v_j) / tau for u (n, d), v (m, d); |Z| <= 1/tau."""
  un = u / jnp.sqrt(jnp.sum(jnp.square(u), -1, keepdims=True) + _EPS)
  vn = v / jnp.sqrt(jnp.sum(jnp.square(v), -1, keepdims=True) + _EPS)
  return jnp.matmul(un, vn.T, precision=_HI) / temperature


def contrastive_loss(z: jax.Array) -> jax.Array:
  """Summed InfoNCE: sum_i logsumexp_j Z_ij - Z_ii (Z square)."""
  return jnp.sum(jax.nn.logsumexp(z, axis=1) - jnp.diagonal(z))


def logit_cotangents(u: jax.Array, v: jax.Array, temperature: float
                     ) -> tuple[jax.Array, jax.Array]:
  """(a, b), each (n, n, d): a_ij = dZ_ij/du_i, b_ij = dZ_ij/dv_j.

  With s_i = sqrt(|u_i|^2 + eps), u^_i = u_i / s_i (as in `cosine_logits`)
  and c_ij = u^_i . v^_j: a_ij = (v^_j - c_ij u^_i) / (tau s_i), and b
  symmetrically (closed form; tested against autodiff of the loss).
  """
  su = jnp.sqrt(jnp.sum(jnp.square(u), -1, keepdims=True) + _EPS)
  sv = jnp.sqrt(jnp.sum(jnp.square(v), -1, keepdims=True) + _EPS)
  un, vn = u / su, v / sv
  c = jnp.matmul(un, vn.T, precision=_HI)[..., None]
  a = (vn[None, :, :] - c * un[:, None, :]) / (temperature * su[:, None, :])
  b = (un[:, None, :] - c * vn[None, :, :]) / (temperature * sv[None, :, :])
  return a, b


def embed_and_loss(embed: EmbedFn, params: PyTree, anchors: PyTree,
                   positives: PyTree, temperature: float) -> jax.Array:
  """The summed InfoNCE loss of a batch of pairs (the non-private objective)."""
  z = cosine_logits(embed(params, anchors), embed(params, positives),
                    temperature)
  return contrastive_loss(z)


def non_private_grad_sum(embed: EmbedFn, params: PyTree, anchors: PyTree,
                         positives: PyTree, temperature: float) -> PyTree:
  """grad of the summed loss (no clipping, no noise): the reference."""
  return jax.grad(embed_and_loss, argnums=1)(embed, params, anchors,
                                             positives, temperature)


def _map(f, xs, chunk):
  """vmap of f over axis 0, or `lax.map` in chunks of `chunk` rows."""
  n = jax.tree.leaves(xs)[0].shape[0]
  if chunk is None or chunk >= n:
    return jax.vmap(f)(xs)
  return jax.lax.map(f, xs, batch_size=int(chunk))


# --------------------------------------------------------------------------
# Ghost norms for instrumented Dense-only encoders.


@dataclasses.dataclass(frozen=True, eq=False)
class GhostEmbed:
  """An `EmbedFn` over an instrumented linen model (ghost-norm pair norms).

  Every trainable module is a Dense layer (params 'kernel' (din, dout) and
  optional 'bias') applied to (n, din) inputs once per forward; it sows its
  input under 'intermediates'/'inputs' and returns
  `self.perturb('out', y)`. `model.apply(..., *model_args(batch))` returns
  (n, d) embeddings, row i depending on example i only.
  """
  model: nn.Module
  model_args: Callable[[PyTree], tuple]

  def __call__(self, params: PyTree, batch: PyTree) -> jax.Array:
    return self.model.apply({"params": params}, *self.model_args(batch))


def _dense_layers(params, path=()):
  """{path: leaf names} of the Dense modules (raises on anything else)."""
  out, leaves = {}, []
  for k, v in params.items():
    if hasattr(v, "items"):
      out.update(_dense_layers(v, path + (k,)))
    else:
      leaves.append(k)
  if leaves:
    if (not set(leaves) <= {"kernel", "bias"} or "kernel" not in leaves
        or params["kernel"].ndim != 2):
      raise CbenchError(f"GhostEmbed supports Dense layers (2-D kernel, "
                        f"bias) only; module {'/'.join(path)} has "
                        f"{sorted(leaves)}; use a plain embed function.")
    out[path] = set(leaves)
  return out


def _node(tree, path, what):
  for k in path:
    if not hasattr(tree, "items") or k not in tree:
      raise CbenchError(f"GhostEmbed: module {'/'.join(path)} has no "
                        f"{what}.")
    tree = tree[k]
  return tree


def _ghost_parts(emb: GhostEmbed, params: PyTree, batch: PyTree):
  """(u (n, d), {path: (inputs (n, din), D (n, dout, d))})."""
  args = emb.model_args(batch)
  shapes = jax.eval_shape(
      lambda p: emb.model.apply({"params": p}, *args,
                                mutable=["perturbations"])[1], params)
  perts = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                       shapes)["perturbations"]

  def f(perts):
    out, state = emb.model.apply({"params": params, "perturbations": perts},
                                 *args, mutable=["intermediates"])
    return out, state["intermediates"]

  u, vjp, inter = jax.vjp(f, perts, has_aux=True)
  if u.ndim != 2:
    raise CbenchError(f"embed must return (n, d) embeddings, got {u.shape}.")
  d = u.shape[1]
  # Row i of the cotangent e_k gives column k of D_i (rows do not mix).
  jac = jax.vmap(lambda k: vjp(jnp.broadcast_to(
      jax.nn.one_hot(k, d, dtype=u.dtype), u.shape))[0])(jnp.arange(d))
  parts = {}
  for path, names in _dense_layers(params).items():
    sown = _node(inter, path, "sown 'inputs'")
    if "inputs" not in sown or len(sown["inputs"]) != 1:
      raise CbenchError(f"GhostEmbed: module {'/'.join(path)} must sow "
                        f"'inputs' once per forward.")
    h = sown["inputs"][0]
    g = _node(jac, path, "perturbation 'out'")["out"]   # (d, n, dout)
    if h.ndim != 2 or g.ndim != 3:
      raise CbenchError(f"GhostEmbed: module {'/'.join(path)} has inputs "
                        f"{h.shape}; only (n, din) is supported.")
    parts[path] = (h.astype(jnp.float32), jnp.moveaxis(g, 0, -1), names)
  return u, parts


def _ghost_pair_norms(parts_x, parts_y, a, b,
                      chunk_size: Optional[int] = None) -> jax.Array:
  """Per-pair norms (n, n) from the layer parts and cotangents a, b.

  Row i (anchor i against every positive) at a time, `chunk_size` rows per
  `lax.map` chunk (None: all rows in one vmap).
  """
  paths = list(parts_x)

  def row(xs):
    a_i, b_i, per_layer = xs
    sq = 0.0
    for path, (hx_i, dx_i) in zip(paths, per_layer):
      hy, dy, names = parts_y[path]
      ex = jnp.matmul(a_i, dx_i.T, precision=_HI)               # D_i a_ij
      ey = jnp.einsum("jed,jd->je", dy, b_i, precision=_HI)     # D'_j b_ij
      hh = jnp.matmul(hy, hx_i, precision=_HI)
      sq = sq + (jnp.sum(jnp.square(hx_i)) * jnp.sum(jnp.square(ex), -1)
                 + jnp.sum(jnp.square(hy), -1) * jnp.sum(jnp.square(ey), -1)
                 + 2.0 * hh * jnp.sum(ex * ey, -1))
      if "bias" in names:
        sq = sq + jnp.sum(jnp.square(ex + ey), -1)
    return sq

  per_layer = [parts_x[p][:2] for p in paths]
  sq = _map(row, (a, b, per_layer), chunk_size)
  return jnp.sqrt(jnp.maximum(sq, 0.0)).astype(jnp.float32)


# --------------------------------------------------------------------------
# Per-example VJPs.


def _batch_size(batch: PyTree) -> int:
  leaves = jax.tree.leaves(batch)
  if not leaves:
    raise CbenchError("Empty batch.")
  n = leaves[0].shape[0]
  for x in leaves:
    if x.shape[:1] != (n,):
      raise CbenchError(f"Batch leaf of shape {x.shape} does not share the "
                        f"leading axis n={n}.")
  return n


def _per_example_vjp(embed: EmbedFn, params: PyTree, batch: PyTree):
  """(u (n, d), vjp) with vjp(cot (n, d)) -> per-example grads (n, ...).

  Row i of vjp(cot) is J_i^T cot_i. The forward residuals are computed once;
  every call of `vjp` reuses them.
  """
  n = _batch_size(batch)

  def one(p, x):
    return embed(p, jax.tree.map(lambda t: t[None], x))[0]

  stacked = jax.tree.map(lambda p: jnp.broadcast_to(p, (n,) + p.shape),
                         params)
  u, vjp = jax.vjp(lambda ps: jax.vmap(one)(ps, batch), stacked)
  if u.ndim != 2:
    raise CbenchError(f"embed must return (n, d) embeddings, got {u.shape}.")
  return u, lambda cot: vjp(cot.astype(u.dtype))[0]


def _row_sq_norms(tree: PyTree) -> jax.Array:
  return jnp.square(global_norms(tree))


def _shift_matrix(per_shift: jax.Array) -> jax.Array:
  """(S, n) values for pairs (i, i + s mod n) -> (n, n) matrix [i, j]."""
  n = per_shift.shape[1]
  idx = jnp.arange(n)
  # M[i, j] = per_shift[(j - i) mod n, i]
  return per_shift[(idx[None, :] - idx[:, None]) % n, idx[:, None]]


def pair_grad_norms(embed: EmbedFn, params: PyTree, anchors: PyTree,
                    positives: PyTree, temperature: float, *,
                    chunk_size: Optional[int] = None) -> jax.Array:
  """||grad_params Z_ij|| for all pairs, float32 (n, n). Private data.

  Ghost norms for a `GhostEmbed`, otherwise the shift method.
  """
  if isinstance(embed, GhostEmbed):
    u, px = _ghost_parts(embed, params, anchors)
    v, py = _ghost_parts(embed, params, positives)
    a, b = logit_cotangents(u, v, temperature)
    return _ghost_pair_norms(px, py, a, b, chunk_size)
  u, vjp_x = _per_example_vjp(embed, params, anchors)
  v, vjp_y = _per_example_vjp(embed, params, positives)
  return _pair_norms(u, v, vjp_x, vjp_y, temperature, chunk_size)


def _pair_norms(u, v, vjp_x, vjp_y, temperature, chunk_size):
  a, b = logit_cotangents(u, v, temperature)
  n = u.shape[0]
  idx = jnp.arange(n)

  def shift(s):
    j = (idx + s) % n
    gx = vjp_x(a[idx, j])                 # row i: J_i^T a_{i, i+s}
    gy = vjp_y(b[(idx - s) % n, idx])     # row j: K_j^T b_{j-s, j}
    gy = jax.tree.map(lambda t: t[j], gy)  # align row j = i + s with i
    return _row_sq_norms(jax.tree.map(jnp.add, gx, gy))

  sq = _map(shift, idx, chunk_size)       # (n shifts, n)
  return jnp.sqrt(jnp.maximum(_shift_matrix(sq), 0.0)).astype(jnp.float32)


def _clip(norms: jax.Array, clip_norm: float) -> tuple[jax.Array, jax.Array]:
  valid = jnp.isfinite(norms)
  f = jnp.minimum(1.0, clip_norm / jnp.maximum(norms, _TINY))
  return jnp.where(valid, f, 0.0), valid


def _batched_vjp(embed, params, batch, cot):
  u, vjp = jax.vjp(lambda p: embed(p, batch), params)
  return vjp(cot.astype(u.dtype))[0]


def logit_dp_grad_sum(embed: EmbedFn, params: PyTree, anchors: PyTree,
                      positives: PyTree, clip_norm: float,
                      temperature: float, *,
                      chunk_size: Optional[int] = None
                      ) -> tuple[PyTree, dict]:
  """sum_ij W_ij clip_C(grad Z_ij): the Logit-DP clipped sum (no noise).

  Args:
    embed: (params, batch) -> (n, d), per-example (no batch statistics);
      a `GhostEmbed` takes the ghost-norm path.
    params: the parameters differentiated.
    anchors, positives: pytrees with leading axis n (the two views).
    clip_norm: C per logit gradient (inf: no clipping, tests only).
    temperature: tau.
    chunk_size: shifts (generic path) or anchor rows (ghost path) per
      `lax.map` chunk; a memory / cache knob.

  Returns:
    (grad_sum like params, aux) with aux['loss'] (summed loss) and
    aux['pair_norms'] (n, n): private, never release them.
  """
  if isinstance(embed, GhostEmbed):
    u, px = _ghost_parts(embed, params, anchors)
    v, py = _ghost_parts(embed, params, positives)
    a, b = logit_cotangents(u, v, temperature)
    norms = _ghost_pair_norms(px, py, a, b, chunk_size)
  else:
    u, vjp_x = _per_example_vjp(embed, params, anchors)
    v, vjp_y = _per_example_vjp(embed, params, positives)
    norms = _pair_norms(u, v, vjp_x, vjp_y, temperature, chunk_size)
    a, b = logit_cotangents(u, v, temperature)
  z = cosine_logits(u, v, temperature)
  w = jax.grad(contrastive_loss)(z)
  f, valid = _clip(norms, clip_norm)
  coef = jnp.where(valid, w * f, 0.0)[..., None]
  a = jnp.where(valid[..., None], a, 0.0)
  b = jnp.where(valid[..., None], b, 0.0)
  a_bar = jnp.sum(coef * a, axis=1)         # (n, d), anchors' cotangents
  b_bar = jnp.sum(coef * b, axis=0)         # (n, d), positives' cotangents
  g = jax.tree.map(jnp.add, _batched_vjp(embed, params, anchors, a_bar),
                   _batched_vjp(embed, params, positives, b_bar))
  return g, {"loss": contrastive_loss(z), "pair_norms": norms}


def naive_grad_sum(embed: EmbedFn, params: PyTree, anchors: PyTree,
                   positives: PyTree, clip_norm: float, temperature: float,
                   *, chunk_size: Optional[int] = None
                   ) -> tuple[PyTree, dict]:
  """sum_k clip_C(grad l_k): per-example clipping of the coupled loss rows.

  grad l_k = J_k^T (sum_j W_kj a_kj) + sum_j K_j^T (W_kj b_kj): one
  per-example VJP for the anchors and, per row k, one batched VJP of the
  positives (`chunk_size` rows at a time). Returns (grad_sum, aux) with
  aux['loss'] and aux['norms'] (n,) (private).
  """
  u, vjp_x = _per_example_vjp(embed, params, anchors)
  v, vjp_yb = jax.vjp(lambda p: embed(p, positives), params)
  z = cosine_logits(u, v, temperature)
  w = jax.grad(contrastive_loss)(z)
  a, b = logit_cotangents(u, v, temperature)
  alpha = jnp.einsum("kj,kjd->kd", w, a, precision=_HI)
  beta = w[..., None] * b                    # beta[k, j] = dl_k / dv_j
  hx = vjp_x(alpha)
  hy = _map(lambda bk: vjp_yb(bk.astype(v.dtype))[0], beta, chunk_size)
  h = jax.tree.map(jnp.add, hx, hy)
  norms = global_norms(h)
  f, valid = _clip(norms, clip_norm)
  return weighted_sum(h, f, valid), {"loss": contrastive_loss(z),
                                     "norms": norms}


def clipped_grad_sum(embed: EmbedFn, config: ContrastiveDpConfig,
                     params: PyTree, anchors: PyTree, positives: PyTree
                     ) -> tuple[PyTree, dict]:
  """The clipped sum (no noise) of `config.mechanism`, and its aux."""
  fn = logit_dp_grad_sum if config.mechanism == "logit_dp" else naive_grad_sum
  return fn(embed, params, anchors, positives, config.clip_norm,
            config.temperature, chunk_size=config.chunk_size)


@functools.lru_cache(maxsize=64)
def jitted_kernel(embed: EmbedFn, mechanism: str, temperature: float,
                  chunk_size: Optional[int] = None,
                  noise_dtype: str = "float32") -> Callable:
  """Jitted (params, anchors, positives, key, std, clip_norm) -> (g, aux).

  g = the clipped sum of `mechanism` + N(0, std^2) per coordinate; std and
  clip_norm are traced, so one compilation serves every noise level and clip
  norm (cached per static arguments). Use `make_dp_step`, which derives std
  from a validated config.
  """
  one_of("mechanism", mechanism, MECHANISMS)
  fn = logit_dp_grad_sum if mechanism == "logit_dp" else naive_grad_sum
  dtype = jnp.dtype(noise_dtype)

  @jax.jit
  def kernel(params, anchors, positives, key, std, clip_norm):
    s, aux = fn(embed, params, anchors, positives, clip_norm, temperature,
                chunk_size=chunk_size)
    g = noise.add_gaussian_noise(s, std, key, dtype)
    return g, {"noise_std": std, "loss": aux["loss"]}
  return kernel


def make_dp_step(embed: EmbedFn, config: ContrastiveDpConfig) -> Callable:
  """step(params, anchors, positives, key) -> (noisy_sum, aux), jitted.

  noisy_sum = clipped sum + N(0, noise_std^2) per coordinate, noise_std =
  noise_multiplier * sensitivity(n = batch_size). Divide by the PUBLIC n for
  a mean. The caller passes a fresh key per step and accounts every step
  (`dp_event`). aux['noise_std'] is public; aux['loss'] is private. Configs
  that differ only in noise_multiplier or clip_norm share one compilation.
  """
  std = jnp.float32(config.noise_std)
  clip = jnp.float32(config.clip_norm)
  kernel = jitted_kernel(embed, config.mechanism, float(config.temperature),
                         config.chunk_size, config.noise_dtype)

  def step(params, anchors, positives, key):
    n = _batch_size(anchors)
    if n != config.batch_size or _batch_size(positives) != n:
      raise CbenchError(f"Batch of {n} pairs; the config's public "
                        f"batch_size is {config.batch_size}.")
    return kernel(params, anchors, positives, key, std, clip)
  return step
