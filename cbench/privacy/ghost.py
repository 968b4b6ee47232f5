"""Ghost-norm / book-keeping clipping for instrumented flax linen models.

Contract with the model (as in `cbench.models.transformer`): every op that
owns parameters is a module that sows its input under 'intermediates' and
passes its output through `self.perturb`. Per module (a params node holding
array leaves), with `a` the sown input and `g` = dLoss/d(output):

  kernel     (Projection/Dense) sow 'inputs', perturb 'out'; y = a . W
             contracting a's trailing axes with W's leading axes. Optional
             'bias' (grad sum_t g_t).
  scale      (RMSNorm/LayerNorm) sow 'inputs' = the tensor that multiplies
             the scale (the normalised x), perturb 'out'; grad sum_t a_t*g_t.
             Optional 'bias' (grad sum_t g_t).
  embedding  lookup: sow 'inputs' = int ids, perturb 'out' = E[ids];
             optional tied head: sow 'attend_inputs' = h, perturb
             'attend_out' = h . E^T. The gradient is lookup + attend.

Each module must run once per forward (sown tuples of length 1). Any
trainable parameter not covered raises `CbenchError` (use method='vmap').

Algorithm (one forward + one backward w.r.t. the zero perturbations only,
which yields every layer's output grads without weight grads):
  1. per-example squared norms, layer by layer:
     Dense  ||sum_t a_t g_t^T||^2 = <A A^T, G G^T> (ghost, cost T^2(din+dout))
            or by materialising the per-example (din x dout) grad, whichever
            is cheaper for the layer;
     lookup sum_{t,s} [id_t = id_s] <g_t, g_s>;
     attend like Dense (h, g_logits); tied cross term
            2 sum_{t,s} g_logits[s, id_t] <g_t, h_s>;
     scale  ||sum_t a_t * g_t||^2.
  2. clip factors c_i = min(1, C / ||grad_i||), 0 for padding / non-finite.
  3. the clipped sum, either
     'bookkeeping': sum_i c_i (per-layer grad of example i) from the stored
                    a and g (no second backward; rows of invalid examples are
                    zeroed with `where` before contracting), or
     'backward':    a second backward pass of sum_i stop_grad(c_i) loss_i,
                    with invalid rows replaced by a valid row (so NaN never
                    enters) and weight c = 0.

Memory: O(B T^2) Gram matrices (or one layer's per-example grad at a time)
instead of B copies of all parameters.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from cbench._validate import CbenchError
from cbench.privacy.params import combine_params
from cbench.privacy.per_example import clip_factors, varying_axes

PyTree = Any
_HI = jax.lax.Precision.HIGHEST
_F32 = jnp.float32


@dataclasses.dataclass(frozen=True, eq=False)
class GhostLoss:
  """A per-example loss over an instrumented linen model.

  Attributes:
    model: the linen module.
    model_args: batch -> positional args of `model.__call__` (batched).
    loss_from_outputs: (model outputs, batch) -> per-example losses (B,).
      Row i may depend only on row i of the batch.

  Calling it as `loss(params, example)` (one example, no batch axis) gives
  the same per-example loss, so a GhostLoss also works with method='vmap'.
  """
  model: nn.Module
  model_args: Callable[[PyTree], tuple]
  loss_from_outputs: Callable[[Any, PyTree], jax.Array]

  def __call__(self, params: PyTree, example: PyTree) -> jax.Array:
    batch = jax.tree.map(lambda x: x[None], example)
    out = self.model.apply({"params": params}, *self.model_args(batch))
    return self.loss_from_outputs(out, batch)[0]

  def batched(self, params: PyTree, batch: PyTree) -> jax.Array:
    """Per-example losses (B,) of a batch (no instrumentation)."""
    out = self.model.apply({"params": params}, *self.model_args(batch))
    return self.loss_from_outputs(out, batch)


def _walk(tree: Mapping, prefix: tuple = ()) -> dict[tuple, dict]:
  """{module path: {name: leaf}} for nodes holding non-dict values."""
  out: dict[tuple, dict] = {}
  leaves = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_walk(v, prefix + (str(k),)))
    else:
      leaves[str(k)] = v
  if leaves:
    out[prefix] = leaves
  return out


def _get(tree: Mapping, path: tuple) -> Optional[Mapping]:
  node = tree
  for k in path:
    if not isinstance(node, Mapping) or k not in node:
      return None
    node = node[k]
  return node


def _sown(inter: Optional[Mapping], name: str, path: tuple) -> jax.Array:
  if inter is None or name not in inter:
    raise CbenchError(f"Ghost clipping: module {'/'.join(path)} did not sow "
                      f"'{name}' under 'intermediates'.")
  vals = inter[name]
  if len(vals) != 1:
    raise CbenchError(f"Ghost clipping: module {'/'.join(path)} ran "
                      f"{len(vals)} times; each module must run once.")
  return vals[0]


def _pgrad(pg: Optional[Mapping], name: str, path: tuple) -> jax.Array:
  if pg is None or name not in pg:
    raise CbenchError(f"Ghost clipping: module {'/'.join(path)} has no "
                      f"perturbation '{name}'.")
  return pg[name]


def _rows(x: jax.Array, valid: jax.Array) -> jax.Array:
  """x with the rows of invalid examples set to exactly 0."""
  mask = valid.reshape((-1,) + (1,) * (x.ndim - 1))
  return jnp.where(mask, x, jnp.zeros((), x.dtype))


def _as_btd(a: jax.Array, g: jax.Array, kernel_shape: tuple
            ) -> tuple[jax.Array, jax.Array]:
  """(A (B, T, din), G (B, T, dout)) for y = a . W contracting n_in axes."""
  k = len(kernel_shape)
  n_in2 = a.ndim - g.ndim + k
  if n_in2 % 2 or not 0 < n_in2 // 2 < k:
    raise CbenchError(f"Ghost clipping: input {a.shape}, output {g.shape} "
                      f"and kernel {kernel_shape} do not match y = a . W.")
  n_in = n_in2 // 2
  if (tuple(a.shape[a.ndim - n_in:]) != tuple(kernel_shape[:n_in])
      or tuple(g.shape[g.ndim - (k - n_in):]) != tuple(kernel_shape[n_in:])):
    raise CbenchError(f"Ghost clipping: input {a.shape} / output {g.shape} "
                      f"do not match kernel {kernel_shape}.")
  b = a.shape[0]
  din = math.prod(kernel_shape[:n_in])
  dout = math.prod(kernel_shape[n_in:])
  return a.reshape(b, -1, din), g.reshape(b, -1, dout)


def _outer_sq_norms(a: jax.Array, g: jax.Array) -> jax.Array:
  """Per-example ||sum_t a_t g_t^T||_F^2 for a (B,T,din), g (B,T,dout)."""
  t, din, dout = a.shape[1], a.shape[2], g.shape[2]
  a, g = a.astype(_F32), g.astype(_F32)
  if t * (din + dout) < din * dout:   # ghost: <A A^T, G G^T>
    aa = jnp.einsum("btd,bsd->bts", a, a, precision=_HI)
    gg = jnp.einsum("bte,bse->bts", g, g, precision=_HI)
    return jnp.sum(aa * gg, axis=(1, 2))
  w = jnp.einsum("btd,bte->bde", a, g, precision=_HI)  # materialise
  return jnp.sum(jnp.square(w), axis=(1, 2))


def _weighted_outer(a: jax.Array, g: jax.Array, c: jax.Array) -> jax.Array:
  """sum_i c_i sum_t a_it g_it^T  -> (din, dout), float32."""
  return jnp.einsum("btd,bte,b->de", a.astype(_F32), g.astype(_F32), c,
                    precision=_HI)


def _sum_tokens(x: jax.Array) -> jax.Array:
  """(B, ..., d) -> (B, d) summing the middle axes."""
  return x.reshape(x.shape[0], -1, x.shape[-1]).astype(_F32).sum(1)


class _Layer:
  """Per-module ghost rule: squared norms (B,) and the weighted grad sum."""

  def __init__(self, path, names, inter, pg, leaves):
    self.path, self.names, self.inter, self.pg = path, names, inter, pg
    self.leaves = leaves  # full (trainable + frozen) param leaves

  def sq_norms(self) -> jax.Array:
    raise NotImplementedError

  def grads(self, c: jax.Array, valid: jax.Array) -> dict:
    raise NotImplementedError


class _Dense(_Layer):

  def _ag(self):
    a = _sown(self.inter, "inputs", self.path)
    g = _pgrad(self.pg, "out", self.path)
    return a, g

  def sq_norms(self):
    a, g = self._ag()
    total = 0.0
    if "kernel" in self.names:
      total = total + _outer_sq_norms(*_as_btd(a, g,
                                               self.leaves["kernel"].shape))
    if "bias" in self.names:
      total = total + jnp.sum(jnp.square(_sum_tokens(g)), axis=1)
    return total

  def grads(self, c, valid):
    a, g = self._ag()
    a, g = _rows(a, valid), _rows(g, valid)
    out = {}
    if "kernel" in self.names:
      shape = self.leaves["kernel"].shape
      out["kernel"] = _weighted_outer(*_as_btd(a, g, shape), c).reshape(shape)
    if "bias" in self.names:
      out["bias"] = jnp.einsum("bd,b->d", _sum_tokens(g), c, precision=_HI)
    return out


class _Scale(_Dense):

  def sq_norms(self):
    a, g = self._ag()
    total = 0.0
    if "scale" in self.names:
      total = total + jnp.sum(jnp.square(_sum_tokens(a.astype(_F32) * g)), 1)
    if "bias" in self.names:
      total = total + jnp.sum(jnp.square(_sum_tokens(g)), axis=1)
    return total

  def grads(self, c, valid):
    a, g = self._ag()
    a, g = _rows(a, valid), _rows(g, valid)
    out = {}
    if "scale" in self.names:
      out["scale"] = jnp.einsum("bd,b->d", _sum_tokens(a.astype(_F32) * g), c,
                                precision=_HI)
    if "bias" in self.names:
      out["bias"] = jnp.einsum("bd,b->d", _sum_tokens(g), c, precision=_HI)
    return out


class _Embedding(_Layer):

  def _parts(self):
    ids = _sown(self.inter, "inputs", self.path)
    g = _pgrad(self.pg, "out", self.path)
    b = ids.shape[0]
    v = self.leaves["embedding"].shape[0]
    ids = ids.reshape(b, -1)
    ids = jnp.where(ids < 0, ids + v, ids)  # numpy-style negative indices
    g = g.reshape(b, ids.shape[1], -1)
    attend = None
    if self.inter is not None and "attend_inputs" in self.inter:
      h = _sown(self.inter, "attend_inputs", self.path)
      gl = _pgrad(self.pg, "attend_out", self.path)
      attend = (h.reshape(b, -1, h.shape[-1]), gl.reshape(b, -1, gl.shape[-1]))
    return ids, g, attend

  def sq_norms(self):
    ids, g, attend = self._parts()
    g32 = g.astype(_F32)
    same = (ids[:, :, None] == ids[:, None, :]).astype(_F32)
    gg = jnp.einsum("btd,bsd->bts", g32, g32, precision=_HI)
    total = jnp.sum(same * gg, axis=(1, 2))
    if attend is not None:
      h, gl = attend
      total = total + _outer_sq_norms(gl, h)   # (V x d) = sum_s gl_s h_s^T
      # Cross term 2 <sum_t e_{id_t} g_t^T, sum_s gl_s h_s^T>.
      v = gl.shape[-1]
      idx = jnp.broadcast_to(jnp.clip(ids, 0, v - 1)[:, None, :],
                             (ids.shape[0], gl.shape[1], ids.shape[1]))
      gl_at = jnp.take_along_axis(gl, idx, axis=2).astype(_F32)  # (B, S, T)
      gh = jnp.einsum("btd,bsd->bts", g32, h.astype(_F32), precision=_HI)
      total = total + 2.0 * jnp.einsum("bst,bts->b", gl_at, gh,
                                       precision=_HI)
    return total

  def grads(self, c, valid):
    ids, g, attend = self._parts()
    shape = self.leaves["embedding"].shape
    gw = _rows(g, valid).astype(_F32) * c[:, None, None]
    emb = jnp.zeros(shape, _F32).at[ids.reshape(-1)].add(
        gw.reshape(-1, shape[1]), mode="drop")
    if attend is not None:
      h, gl = attend
      emb = emb + _weighted_outer(_rows(gl, valid), _rows(h, valid), c)
    return {"embedding": emb}


_RULES = (("embedding", _Embedding), ("kernel", _Dense), ("scale", _Scale))


def _layers(full: Mapping, trainable: Mapping, inter: Mapping,
            pgrads: Mapping) -> list[_Layer]:
  layers = []
  for path, train_leaves in _walk(trainable).items():
    leaves = _get(full, path)
    rule = next((r for key, r in _RULES if key in leaves), None)
    names = set(train_leaves)
    allowed = ({"embedding"} if rule is not None and issubclass(
        rule, _Embedding) else {"kernel", "scale", "bias"})
    if rule is None or not names <= allowed:
      raise CbenchError(
          f"Ghost clipping does not support parameters {sorted(names)} of "
          f"module {'/'.join(path)}; use clipping method='vmap'.")
    layers.append(rule(path, names, _get(inter, path), _get(pgrads, path),
                       leaves))
  return layers


def _set(tree: dict, path: tuple, values: dict) -> None:
  node = tree
  for k in path:
    node = node.setdefault(k, {})
  node.update(values)


def _like(params: PyTree, grads: Mapping) -> PyTree:
  """`grads` (nested dicts) in the container types and dtypes of `params`."""
  def pick(path, p):
    node = grads
    for k in path:
      node = node[str(getattr(k, "key", k))]
    return node.astype(p.dtype)
  return jax.tree_util.tree_map_with_path(pick, params)


def ghost_sq_norms(loss: GhostLoss, params: PyTree, batch: PyTree,
                   frozen: Optional[PyTree] = None):
  """(per-example squared norms (B,), layers, per-example losses)."""
  full = combine_params(params, frozen)
  args = loss.model_args(batch)
  perts_shape = jax.eval_shape(
      lambda p: loss.model.apply({"params": p}, *args,
                                 mutable=["perturbations"])[1], full)
  perts = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                       perts_shape)["perturbations"]
  # Inside shard_map the zero perturbations would be device-invariant and
  # their gradients silently psum-ed across devices: make them vary like the
  # batch (the same pitfall as replicated params).
  axes = varying_axes(batch)
  if axes:
    perts = jax.lax.pcast(perts, axes, to="varying")

  def f(perts):
    out, state = loss.model.apply({"params": full, "perturbations": perts},
                                  *args, mutable=["intermediates"])
    losses = loss.loss_from_outputs(out, batch)
    return jnp.sum(losses), (state["intermediates"], losses)

  pgrads, (inter, losses) = jax.grad(f, has_aux=True)(perts)
  layers = _layers(full, params, inter, pgrads)
  sq = sum(layer.sq_norms() for layer in layers)
  return sq, layers, losses


def ghost_clipped_grad_sum(loss: GhostLoss, params: PyTree, batch: PyTree,
                           is_padding: jax.Array, clip_norm: float, *,
                           frozen: Optional[PyTree] = None,
                           reduce: str = "bookkeeping"
                           ) -> tuple[PyTree, jax.Array]:
  """Clipped per-example gradient sum by ghost norms; see module docstring.

  Returns (grad_sum like params, per-example norms (B,) float32).
  """
  sq, layers, _ = ghost_sq_norms(loss, params, batch, frozen)
  norms = jnp.sqrt(jnp.maximum(sq, 0.0))
  c, valid = clip_factors(norms, is_padding, clip_norm)
  if reduce == "bookkeeping":
    grads: dict = {}
    for layer in layers:
      _set(grads, layer.path, layer.grads(c, valid))
    return _like(params, grads), norms
  if reduce != "backward":
    raise CbenchError(f"Unknown ghost reduce={reduce!r}.")
  # Replace invalid rows by the first valid row (weight 0), so no NaN/inf
  # from garbage rows can enter the batched backward pass.
  any_valid = jnp.any(valid)
  first = jnp.argmax(valid)
  safe = jax.tree.map(
      lambda x: jnp.where(valid.reshape((-1,) + (1,) * (x.ndim - 1)), x,
                          x[first][None]), batch)
  c = jax.lax.stop_gradient(c)

  def weighted(p):
    return jnp.sum(c * loss.batched(combine_params(p, frozen), safe))
  g = jax.grad(weighted)(params)
  g = jax.tree.map(lambda x: jnp.where(any_valid, x, jnp.zeros_like(x)), g)
  return g, norms
