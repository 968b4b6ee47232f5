"""Private-prediction samplers for the shared decoder.

Every class implements `cbench.decoding.sampler_protocol.Sampler`: the
decoder hands ``logits [num_groups, s + 1, V]`` (rows 0..s-1 are the
private prompts of one batch, row s the public prompt) and gets one token
per group. All randomness comes from the step key; all control flow is
`jnp.where` (no data-dependent Python branches, no `lax.cond`), so the
jaxpr of `next_tokens` has the same shape for every dataset.

Samplers and their accounting (`cbench.privacy.pp_accounting`):

* `ExpMechSampler`: every token ~ softmax(clipped_mean / tau) (the
  exponential mechanism); stops after `max_private_tokens`.
* `SvtPrivatePredictionSampler`: Amin et al. 2024 with the sparse vector
  test. Distance d = ||(1/s) sum_i softmax(z_i) - softmax(z_pub)||_1 (the
  per-row-softmax p-bar, sensitivity 1/s per row unit). d-hat = d +
  Lap(2 sigma) against theta-hat = theta + Lap(sigma): above -> private EM
  token, count += 1, theta-hat re-noised; below -> public token ~
  softmax(z_pub / tau_pub) (optionally truncated to the top-k of the PUBLIC
  logits), free. Stops when count reaches r.
* `InvisibleInkSampler`: softmax(DClip / tau) on the public Top-k+ set;
  every token private; stops after `max_tokens`.
* `MedianSampler`: softmax(lower median of clipped logits / tau); tracks the
  ex-post per-token bound (max_j down_j + max_j up_j)/tau and its sum.
* `PublicOnlySampler`: the public row alone (eps = 0).

Exact sampling: private tokens are drawn by Gumbel-max with the
high-resolution Gumbel of `cbench.privacy.gumbel`; for clipped mechanisms
(scaled range <= 2c/tau) `next_tokens` checks at trace time that the range
is within the exactly-sampled limit for the vocabulary (`check_exact_range`).
InvisibleInk's scaled logits contain the public logits (unbounded range):
tokens the public model gives probability below ~V 2^-95 are not sampled
faithfully, a data-independent tail we do not charge.

Streams and state: the decoder calls the sampler for every group at every
step, finished ones included, and ends a stream on EOS/stop ids, on the
sampler's `stop`, or at max length. The sampler keeps its own ``done`` flag
(set by its `stop` and by `end_token_ids`, which must list the decoder's
eos/stop ids) and freezes the state of finished streams, so counts and
ex-post sums cover exactly the tokens the decoder keeps.

Padding rows: `init_state(..., row_mask)` marks null rows (contribute 0; the
zero-out relation needs them). The shared decoder calls ``init_state(g,
key)`` without a mask, i.e. every private row counts; pad a short batch with
the public prompt and account it under 'add_remove' (see pp_accounting).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cbench._validate import CbenchError, check, positive
from cbench.privacy import gumbel
from cbench.privacy import pp_accounting
from cbench.synthesis import aggregation


class PrivateState(NamedTuple):
  """Per-stream state (all arrays have leading dim num_groups).

  Attributes:
    private_count: int32, private (charged) tokens emitted while live.
    threshold: float32, the current noisy SVT threshold (0 without SVT).
    done: bool, the stream has ended (sampler stop or an end token).
    steps: int32, tokens emitted while live (including the ending one).
    last_private: bool, whether the last live token was private.
    expost_epsilon: float32, median only: sum of ex-post per-token bounds.
    max_token_expost: float32, median only: largest per-token bound.
    row_mask: bool ``[num_groups, s]``: False rows are null rows.
  """

  private_count: jax.Array
  threshold: jax.Array
  done: jax.Array
  steps: jax.Array
  last_private: jax.Array
  expost_epsilon: jax.Array
  max_token_expost: jax.Array
  row_mask: jax.Array


def _init_state(num_groups: int, batch_size: int, row_mask, threshold=None
                ) -> PrivateState:
  g = num_groups
  if row_mask is None:
    row_mask = jnp.ones((g, batch_size), jnp.bool_)
  row_mask = jnp.asarray(row_mask, jnp.bool_)
  if row_mask.shape != (g, batch_size):
    raise CbenchError(f"Expected row_mask of shape {(g, batch_size)}; got "
                      f"{row_mask.shape}.")
  zf = jnp.zeros((g,), jnp.float32)
  return PrivateState(
      private_count=jnp.zeros((g,), jnp.int32),
      threshold=zf if threshold is None else threshold.astype(jnp.float32),
      done=jnp.zeros((g,), jnp.bool_), steps=jnp.zeros((g,), jnp.int32),
      last_private=jnp.zeros((g,), jnp.bool_), expost_epsilon=zf,
      max_token_expost=zf, row_mask=row_mask)


def with_row_mask(state: PrivateState, row_mask) -> PrivateState:
  """The state with a new null-row mask ``[num_groups, s]``."""
  row_mask = jnp.asarray(row_mask, jnp.bool_)
  if row_mask.shape != state.row_mask.shape:
    raise CbenchError(f"Expected row_mask of shape {state.row_mask.shape}; "
                      f"got {row_mask.shape}.")
  return state._replace(row_mask=row_mask)


def _split_rows(logits: jax.Array, batch_size: int, dtype
                ) -> tuple[jax.Array, jax.Array]:
  if logits.ndim != 3 or logits.shape[1] != batch_size + 1:
    raise CbenchError(
        f"Expected logits [num_groups, batch_size + 1 = {batch_size + 1}, "
        f"vocab] (s private rows, public row last); got {logits.shape}.")
  logits = logits.astype(dtype)
  return logits[:, :batch_size], logits[:, batch_size]


def _is_end(tokens: jax.Array, end_token_ids: tuple[int, ...]) -> jax.Array:
  if not end_token_ids:
    return jnp.zeros(tokens.shape, jnp.bool_)
  ids = jnp.asarray(end_token_ids, jnp.int32)
  return jnp.any(tokens[:, None] == ids[None, :], axis=1)


def _advance(state: PrivateState, tokens: jax.Array, private_now: jax.Array,
             stop_now: jax.Array, end_token_ids: tuple[int, ...],
             threshold: Optional[jax.Array] = None,
             token_expost: Optional[jax.Array] = None
             ) -> tuple[jax.Array, PrivateState]:
  """Updates live streams only; returns (stop, new state)."""
  live = ~state.done
  private_now = private_now & live
  count = state.private_count + private_now.astype(jnp.int32)
  steps = state.steps + live.astype(jnp.int32)
  stop = stop_now(count, steps)
  done = state.done | (live & (stop | _is_end(tokens, end_token_ids)))
  thr = state.threshold if threshold is None else jnp.where(
      live, threshold, state.threshold)
  expost, max_tok = state.expost_epsilon, state.max_token_expost
  if token_expost is not None:
    te = jnp.where(live, token_expost, 0.0)
    expost = expost + te
    max_tok = jnp.maximum(max_tok, te)
  new = state._replace(
      private_count=count, threshold=thr, done=done, steps=steps,
      last_private=jnp.where(live, private_now, state.last_private),
      expost_epsilon=expost, max_token_expost=max_tok)
  return stop, new


def sample_public(pub: jax.Array, key: jax.Array, temperature: float,
                  top_k: int = 0) -> jax.Array:
  """A token ~ softmax(pub/temperature), optionally on pub's own top-k."""
  x = pub.astype(jnp.float32) / temperature
  if 0 < top_k < x.shape[-1]:
    kth = jax.lax.top_k(x, top_k)[0][..., top_k - 1:top_k]
    x = jnp.where(x >= kth, x, -jnp.inf)
  return jax.random.categorical(key, x, axis=-1).astype(jnp.int32)


def svt_step(distance: jax.Array, noisy_threshold: jax.Array,
             count: jax.Array, live: jax.Array, key: jax.Array, *,
             threshold: float, svt_noise: float, max_private_tokens: int
             ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One sparse-vector comparison per stream (the audited primitive).

  Args:
    distance: ``[G]`` query values d (sensitivity f/s).
    noisy_threshold: ``[G]`` current theta-hat.
    count: ``[G]`` private tokens so far.
    live: ``[G]`` streams still running.
    key: PRNG key.
    threshold: theta.
    svt_noise: sigma; queries get Lap(2 sigma), thresholds Lap(sigma).
    max_private_tokens: r; a stream with count >= r never answers above.

  Returns:
    ``(above, new_noisy_threshold, new_count)``; the threshold is re-noised
    exactly where `above`.
  """
  k_q, k_t = jax.random.split(key)
  shape = distance.shape
  noisy = distance + 2.0 * svt_noise * jax.random.laplace(
      k_q, shape, jnp.float32)
  above = (noisy >= noisy_threshold) & live & (count < max_private_tokens)
  fresh = threshold + svt_noise * jax.random.laplace(k_t, shape, jnp.float32)
  return (above, jnp.where(above, fresh, noisy_threshold),
          count + above.astype(jnp.int32))


def _check_exact(clip: float, temperature: float, vocab: int,
                 factor: float = 2.0) -> None:
  gumbel.check_exact_range(factor * clip / temperature, vocab,
                           what=f"{factor:g}*clip/temperature")


@dataclasses.dataclass(frozen=True)
class ExpMechSampler:
  """Exponential mechanism on the clipped mean; every token private.

  Attributes:
    batch_size: s (group_size = s + 1; the public row is ignored).
    clip: c of the recentred clip (inf: non-private).
    temperature: tau.
    max_private_tokens: r; the stream stops after r tokens.
    relation: neighbouring relation of the charged cost (pp_accounting).
    end_token_ids: the decoder's eos/stop ids.
    dtype: compute dtype of the aggregation.
  """

  batch_size: int
  clip: float
  temperature: float
  max_private_tokens: int
  relation: str = "add_remove"
  end_token_ids: tuple[int, ...] = ()
  dtype: str = "float32"

  def __post_init__(self):
    check(self.batch_size >= 1, f"Expected batch_size={self.batch_size} >= 1.")
    positive("clip", self.clip)
    positive("temperature", self.temperature)
    check(self.max_private_tokens >= 1,
          f"Expected max_private_tokens={self.max_private_tokens} >= 1.")

  def init_state(self, num_groups: int, key: jax.Array,
                 row_mask=None) -> PrivateState:
    del key
    return _init_state(num_groups, self.batch_size, row_mask)

  def scaled_logits(self, logits: jax.Array, state: PrivateState
                    ) -> jax.Array:
    """The exact logits the private token is drawn from: mean/tau."""
    priv, _ = _split_rows(logits, self.batch_size, self.dtype)
    mean = aggregation.clipped_mean(priv, self.clip, self.batch_size,
                                    state.row_mask)
    return mean / self.temperature

  def next_tokens(self, logits, key, state):
    _check_exact(self.clip, self.temperature, logits.shape[-1])
    tokens = gumbel.sample_softmax(key, self.scaled_logits(logits, state))
    r = self.max_private_tokens
    stop, state = _advance(
        state, tokens, jnp.ones(tokens.shape, jnp.bool_),
        lambda count, steps: count >= r, self.end_token_ids)
    return tokens, stop, state


@dataclasses.dataclass(frozen=True)
class SvtPrivatePredictionSampler:
  """Amin et al. 2024: sparse-vector test between public and private tokens.

  Attributes:
    params: `PrivatePredictionParams` (s, c, tau, sigma, theta, r, tau_pub,
      relation). ``svt_noise=None`` makes every token private.
    public_top_k: truncate PUBLIC tokens to the public row's top-k (0: off).
    end_token_ids: the decoder's eos/stop ids.
    dtype: compute dtype of the aggregation.
  """

  params: pp_accounting.PrivatePredictionParams
  public_top_k: int = 0
  end_token_ids: tuple[int, ...] = ()
  dtype: str = "float32"

  def init_state(self, num_groups: int, key: jax.Array,
                 row_mask=None) -> PrivateState:
    p = self.params
    thr = None
    if p.svt_noise is not None:
      thr = p.threshold + p.svt_noise * jax.random.laplace(
          key, (num_groups,), jnp.float32)
    return _init_state(num_groups, p.batch_size, row_mask, thr)

  def scaled_logits(self, logits: jax.Array, state: PrivateState
                    ) -> jax.Array:
    """The exact logits a PRIVATE token is drawn from: mean/tau."""
    p = self.params
    priv, _ = _split_rows(logits, p.batch_size, self.dtype)
    mean = aggregation.clipped_mean(priv, p.clip, p.batch_size,
                                    state.row_mask)
    return mean / p.temperature

  def distance(self, logits: jax.Array, state: PrivateState) -> jax.Array:
    """The SVT query d per group (before noise)."""
    priv, pub = _split_rows(logits, self.params.batch_size, self.dtype)
    return aggregation.svt_distance(priv, pub, self.params.batch_size,
                                    state.row_mask)

  def next_tokens(self, logits, key, state):
    p = self.params
    _check_exact(p.clip, p.temperature, logits.shape[-1])
    _, pub = _split_rows(logits, p.batch_size, self.dtype)
    k_svt, k_em, k_pub = jax.random.split(key, 3)
    tok_priv = gumbel.sample_softmax(k_em, self.scaled_logits(logits, state))
    r = p.max_private_tokens
    if p.svt_noise is None:
      above = jnp.ones(tok_priv.shape, jnp.bool_)
      thr = None
    else:
      above, thr, _ = svt_step(
          self.distance(logits, state), state.threshold,
          state.private_count, ~state.done, k_svt, threshold=p.threshold,
          svt_noise=p.svt_noise, max_private_tokens=r)
    tok_pub = sample_public(pub, k_pub, p.public_temperature,
                            self.public_top_k)
    tokens = jnp.where(above, tok_priv, tok_pub)
    stop, state = _advance(state, tokens, above,
                           lambda count, steps: count >= r,
                           self.end_token_ids, threshold=thr)
    return tokens, stop, state


@dataclasses.dataclass(frozen=True)
class InvisibleInkSampler:
  """InvisibleInk (Vinod et al. 2025): DClip + public Top-k+ set.

  Attributes:
    batch_size: B private rows (group_size = B + 1).
    clip: C of the difference clip.
    temperature: tau.
    max_tokens: T; every token is private and the stream stops after T.
    top_k: k of Top-k+ (0: the whole vocabulary).
    relation: neighbouring relation of the charged cost (pp_accounting).
    end_token_ids: the decoder's eos/stop ids.
    dtype: compute dtype of the aggregation.
  """

  batch_size: int
  clip: float
  temperature: float
  max_tokens: int
  top_k: int = 0
  relation: str = "add_remove"
  end_token_ids: tuple[int, ...] = ()
  dtype: str = "float32"

  def __post_init__(self):
    check(self.batch_size >= 1, f"Expected batch_size={self.batch_size} >= 1.")
    positive("clip", self.clip)
    positive("temperature", self.temperature)
    check(self.max_tokens >= 1, f"Expected max_tokens={self.max_tokens} >= 1.")

  def init_state(self, num_groups: int, key: jax.Array,
                 row_mask=None) -> PrivateState:
    del key
    return _init_state(num_groups, self.batch_size, row_mask)

  def scaled_logits(self, logits: jax.Array, state: PrivateState
                    ) -> jax.Array:
    """DClip/tau on Top-k+ (from public logits only), -inf elsewhere."""
    priv, pub = _split_rows(logits, self.batch_size, self.dtype)
    phi = aggregation.dclip_mean(priv, pub, self.clip, self.batch_size,
                                 state.row_mask)
    keep = aggregation.topk_plus_mask(pub, self.top_k, self.clip,
                                      self.batch_size)
    return jnp.where(keep, phi / self.temperature, -jnp.inf)

  def next_tokens(self, logits, key, state):
    tokens = gumbel.sample_softmax(key, self.scaled_logits(logits, state))
    t = self.max_tokens
    stop, state = _advance(
        state, tokens, jnp.ones(tokens.shape, jnp.bool_),
        lambda count, steps: steps >= t, self.end_token_ids)
    return tokens, stop, state


# ---------------------------------------------------------------------------
# The median's order statistics by selection (no sort over the s axis).
#
# `aggregation.clipped_median` takes x_(k-1), x_(k), x_(k+1) from a stable
# `jnp.sort` over the s rows. `_clipped_median` returns the same bits with a
# data-oblivious selection network on integer keys: each value gets an int
# key whose order is the sort's order, ties included (the sort compares
# floats with -0 == +0 and all NaNs equal and last, then keeps row order):
#
#   negative x   ->  its total-order key (< -1)
#   x == +-0     ->  i              (row index i: ties in row order)
#   positive x   ->  bits(x) + s    (> s)
#   NaN          ->  bits(inf) + s + 1 + i
#
# Equal keys thus mean identical bits, and the key gives back the value
# (zeros and NaNs through their row). The network sorts the two halves of
# the (padded) rows into one bitonic sequence, then runs Batcher's
# half-cleaner only on the blocks that hold the wanted ranks: at s = 64,
# 1,087 elementwise int min/max against 1,344 for the full bitonic sort.
# Most of the gain is that these fuse into a few vectorised loops, where
# XLA's comparator sort over the s axis took ~40x longer on CPU.

_INT_OF_WIDTH = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}


def _order_keys(x: jax.Array):
  """``(keys [..., s, V], inf_bits, narrow int dtype)``; see above."""
  s = x.shape[-2]
  narrow = _INT_OF_WIDTH[x.dtype.itemsize]
  wide = jnp.int64 if x.dtype.itemsize == 8 else jnp.int32
  inf_bits = int(np.array(np.inf, x.dtype).view(narrow))
  b = jax.lax.bitcast_convert_type(x, narrow)
  neg = b < 0
  t = jnp.where(neg, b ^ jnp.iinfo(narrow).max, b).astype(wide)
  row = jax.lax.broadcasted_iota(wide, x.shape, x.ndim - 2)
  keys = jnp.where(x == 0, row, jnp.where(
      jnp.isnan(x), inf_bits + s + 1 + row, jnp.where(neg, t, t + s)))
  return keys, inf_bits, narrow


def _key_values(x: jax.Array, key: jax.Array, inf_bits: int, narrow
                ) -> jax.Array:
  """The values of `x` ``[..., s, V]`` with keys `key` ``[..., V]``."""
  s = x.shape[-2]
  zero = (key >= 0) & (key < s)
  nan = key > inf_bits + s
  by_row = zero | nan
  b = jnp.where(by_row, 0, jnp.where(key < 0, key, key - s)).astype(narrow)
  b = jnp.where(b < 0, b ^ jnp.iinfo(narrow).max, b)
  row = jnp.where(zero, key, jnp.where(nan, key - (inf_bits + s + 1), 0))
  # Moved as ints: a float select may quieten a NaN payload (CPU bfloat16).
  at_row = jnp.take_along_axis(
      jax.lax.bitcast_convert_type(x, narrow),
      row[..., None, :].astype(jnp.int32), axis=-2)[..., 0, :]
  return jax.lax.bitcast_convert_type(jnp.where(by_row, at_row, b), x.dtype)


def _select_ranks(keys: jax.Array, ranks: tuple[int, ...]
                  ) -> dict[int, jax.Array]:
  """``{r: r-th smallest key (0-based)}`` along axis -2 (a power of two)."""
  lead, n, v = keys.shape[:-2], keys.shape[-2], keys.shape[-1]
  # Bitonic sort of the two halves, ascending then descending: together
  # one bitonic sequence.
  size = 2
  while size < n:
    j = size // 2
    while j >= 1:
      x = keys.reshape(lead + (n // (2 * j), 2, j, v))
      a, b = x[..., 0, :, :], x[..., 1, :, :]
      lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
      desc = jnp.asarray((np.arange(n // (2 * j)) * 2 * j & size) != 0)
      desc = desc[:, None, None]
      keys = jnp.stack([jnp.where(desc, hi, lo), jnp.where(desc, lo, hi)],
                       axis=-3).reshape(keys.shape)
      j //= 2
    size *= 2
  # Half-cleaners on a bitonic block give two bitonic blocks, every key of
  # the low one <= every key of the high one; keep the blocks with a rank.
  out, blocks = {}, [(0, keys)]
  while blocks:
    start, block = blocks.pop()
    width = block.shape[-2]
    if width == 1:
      out[start] = block[..., 0, :]
      continue
    half = width // 2
    a, b = block[..., :half, :], block[..., half:, :]
    if any(start <= r < start + half for r in ranks):
      blocks.append((start, jnp.minimum(a, b)))
    if any(start + half <= r < start + width for r in ranks):
      blocks.append((start + half, jnp.maximum(a, b)))
  return {r: out[r] for r in ranks}


def _clipped_median(priv: jax.Array, clip: float,
                    row_mask: Optional[jax.Array] = None
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Bit for bit `aggregation.clipped_median`, by selection (see above)."""
  s = priv.shape[-2]
  x = aggregation.recentred_clip(priv, clip)
  if row_mask is not None:
    x = jnp.where(jnp.asarray(row_mask, jnp.bool_)[..., None], x, 0.0)
  k = (s + 1) // 2                       # 1-based lower median
  keys, inf_bits, narrow = _order_keys(x)
  n = 1 << (s - 1).bit_length()
  if n > s:                              # pad: keys above every real key
    keys = jnp.concatenate([keys, jnp.full(
        keys.shape[:-2] + (n - s, keys.shape[-1]),
        jnp.iinfo(keys.dtype).max, keys.dtype)], axis=-2)
  ranks = tuple(r for r in (k - 2, k - 1, k) if 0 <= r < s)
  val = {r: _key_values(x, key, inf_bits, narrow)
         for r, key in _select_ranks(keys, ranks).items()}
  med = val[k - 1]
  lo = val[k - 2] if k >= 2 else jnp.full_like(med, -clip)
  hi = val[k] if k < s else jnp.full_like(med, clip)
  return med, med - lo, hi - med


@dataclasses.dataclass(frozen=True)
class MedianSampler:
  """Coordinate-wise (lower) median of recentred-clipped logits.

  Attributes:
    batch_size: s private rows (group_size = s + 1; public row ignored).
    clip: c of the recentred clip.
    temperature: tau.
    max_tokens: T; the stream stops after T tokens.
    relation: reported relation (the worst case holds for all).
    end_token_ids: the decoder's eos/stop ids.
    dtype: compute dtype of the aggregation.

  The state's ``expost_epsilon`` is the data-dependent ex-post pure bound
  of the stream's realised privacy loss (see pp_accounting); it is NOT a
  DP guarantee and is reported separately from the worst case.
  """

  batch_size: int
  clip: float
  temperature: float
  max_tokens: int
  relation: str = "add_remove"
  end_token_ids: tuple[int, ...] = ()
  dtype: str = "float32"

  def __post_init__(self):
    check(self.batch_size >= 1, f"Expected batch_size={self.batch_size} >= 1.")
    positive("clip", self.clip)
    positive("temperature", self.temperature)
    check(self.max_tokens >= 1, f"Expected max_tokens={self.max_tokens} >= 1.")

  def init_state(self, num_groups: int, key: jax.Array,
                 row_mask=None) -> PrivateState:
    del key
    return _init_state(num_groups, self.batch_size, row_mask)

  def median_and_gaps(self, logits: jax.Array, state: PrivateState):
    priv, _ = _split_rows(logits, self.batch_size, self.dtype)
    return _clipped_median(priv, self.clip, state.row_mask)

  def scaled_logits(self, logits: jax.Array, state: PrivateState
                    ) -> jax.Array:
    return self.median_and_gaps(logits, state)[0] / self.temperature

  def next_tokens(self, logits, key, state):
    _check_exact(self.clip, self.temperature, logits.shape[-1])
    med, down, up = self.median_and_gaps(logits, state)
    tokens = gumbel.sample_softmax(key, med / self.temperature)
    token_expost = (jnp.max(down, axis=-1) + jnp.max(up, axis=-1)) / (
        self.temperature)
    t = self.max_tokens
    stop, state = _advance(
        state, tokens, jnp.ones(tokens.shape, jnp.bool_),
        lambda count, steps: steps >= t, self.end_token_ids,
        token_expost=token_expost)
    return tokens, stop, state


@dataclasses.dataclass(frozen=True)
class PublicOnlySampler:
  """The public row (last row of each group) alone: eps = 0.

  Attributes:
    temperature: tau_pub.
    top_k: truncation to the public row's top-k (0: off).
    end_token_ids: the decoder's eos/stop ids.
  """

  temperature: float = 1.0
  top_k: int = 0
  end_token_ids: tuple[int, ...] = ()

  def __post_init__(self):
    positive("temperature", self.temperature)

  def init_state(self, num_groups: int, key: jax.Array,
                 row_mask=None) -> PrivateState:
    del key
    width = 0 if row_mask is None else jnp.asarray(row_mask).shape[1]
    return _init_state(num_groups, width, row_mask)

  def next_tokens(self, logits, key, state):
    if logits.ndim != 3:
      raise CbenchError(f"Expected logits [groups, rows, vocab]; got "
                        f"{logits.shape}.")
    tokens = sample_public(logits[:, -1], key, self.temperature, self.top_k)
    stop, state = _advance(
        state, tokens, jnp.zeros(tokens.shape, jnp.bool_),
        lambda count, steps: jnp.zeros(count.shape, jnp.bool_),
        self.end_token_ids)
    return tokens, stop, state

