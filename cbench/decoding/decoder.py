"""The one KV-cached decoding loop, shared by QA scoring and synthesis.

`generate` decodes ``num_groups`` streams. Stream g is backed by the
``group_size`` consecutive prompt rows ``g * group_size ... + group_size - 1``
(e.g. ``s`` private prompts and one public prompt for private prediction).
All rows are prefilled at once; then a jitted `lax.while_loop` asks the
sampler (`cbench.decoding.sampler_protocol.Sampler`) for one token per group
from the rows' next-token logits ``[num_groups, group_size, vocab]`` and feeds
that token to every row of the group.

A stream ends after the step where it produced `eos_id` or one of
`stop_token_ids` (that token is not counted in ``lengths`` but is kept in
``tokens`` at index ``lengths[g]``), or where the sampler set ``stop`` (that
token *is* counted), or after `max_new_tokens`. Stop ids are a static sorted
tuple compared on device (no host round-trip), typically a set: every newline
id of a tokenizer (Gemma: ``"\\n"``, ``"\\n\\n"``, ...; see
`cbench.text.prompts.answer_stop_ids` / `document_end_ids`). The loop stops
when every stream has ended; its condition reads only the done mask, so with a
private sampler the number of steps depends on the sampler's stop flags
(released with the output anyway). The sampler is called for all groups at
every step until then, finished ones included (their tokens are discarded);
stateful samplers must tolerate these extra calls.

Randomness: the key of step i is ``fold_in(key, i)``; the sampler's
`init_state` gets ``fold_in(key, 2**32 - 1)``.

Shapes are bucketed so the number of compilations stays small: the prompt
length is left-padded up to a multiple of `prompt_bucket` and the output
buffer rounded up to a multiple of `new_tokens_bucket` (the requested
`max_new_tokens` is a traced value and does not cause recompiles).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

from cbench import _validate
from cbench.models import registry
from cbench.models.config import ModelConfig
from cbench.models.transformer import init_cache

PyTree = Any
_INIT_KEY_DATA = 0xFFFFFFFF


class DecodeResult(NamedTuple):
  """Output of `generate`.

  Attributes:
    tokens: ``[num_groups, max_new_tokens]`` int32; ``tokens[g, :lengths[g]]``
      is stream g's text, then its EOS/stop token if it ended on one, then
      ``pad_id``.
    lengths: ``[num_groups]`` int32 generated tokens, excluding an ending
      EOS/stop token.
    sampler_state: the sampler's final state.
    num_steps: int32 scalar, decoding steps run (= max over streams of
      tokens produced, including ending tokens).
  """

  tokens: jax.Array
  lengths: jax.Array
  sampler_state: PyTree
  num_steps: jax.Array


def _round_up(x: int, multiple: int) -> int:
  return -(-x // multiple) * multiple


def prepare_prompts(tokenizer, texts: Sequence[str], bucket: int = 16,
                    bos: bool = True) -> np.ndarray:
  """Left-padded ``[len(texts), P]`` int32 prompts, P a multiple of bucket.

  Args:
    tokenizer: a `cbench.text.tokenizer.Tokenizer` (``encode_batch``,
      ``pad_id``, ``bos_id``).
    texts: prompt strings.
    bucket: P is rounded up to a multiple of this.
    bos: prepend BOS to every prompt (so no prompt is empty).
  """
  _validate.check(len(texts) > 0, "Expected at least one prompt.")
  _validate.positive("bucket", bucket)
  ids = tokenizer.encode_batch(list(texts))
  if bos:
    ids = [[tokenizer.bos_id] + x for x in ids]
  width = _round_up(max(1, max(len(x) for x in ids)), bucket)
  out = np.full((len(ids), width), tokenizer.pad_id, np.int32)
  for i, x in enumerate(ids):
    if x:
      out[i, width - len(x):] = x
  return out


def decode_texts(tokenizer, result: DecodeResult) -> list[str]:
  """Stream texts ``tokens[g, :lengths[g]]`` (EOS/stop token excluded)."""
  tokens, lengths = jax.device_get((result.tokens, result.lengths))
  return [tokenizer.decode(t[:n].tolist()) for t, n in zip(tokens, lengths)]


@functools.partial(
    jax.jit, static_argnames=("config", "sampler", "group_size", "eos_id",
                              "stop_ids", "pad_id", "buf_len"))
def _generate(params, tokens, key, max_new, *, config, sampler, group_size,
              eos_id, stop_ids, pad_id, buf_len):
  n, p = tokens.shape
  g = n // group_size
  model = registry.make_model(config)  # The architecture of config.arch.
  variables = {"params": params}
  valid = jnp.cumsum((tokens != pad_id).astype(jnp.int32), axis=1) > 0
  positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0).astype(jnp.int32)
  cache = init_cache(config, n, p + buf_len)
  logits, cache = model.apply(variables, tokens, positions, cache, valid=valid,
                              last_only=True, method="extend")
  next_pos = jnp.sum(valid, axis=1).astype(jnp.int32)
  sstate = sampler.init_state(
      g, jax.random.fold_in(key, jnp.uint32(_INIT_KEY_DATA)))
  stop_arr = jnp.asarray(stop_ids if stop_ids else (-1,), jnp.int32)
  carry = (jnp.int32(0), logits, cache, next_pos, jnp.zeros((g,), jnp.bool_),
           jnp.full((g, buf_len), pad_id, jnp.int32),
           jnp.zeros((g,), jnp.int32), sstate)

  def cond(c):
    step, done = c[0], c[4]
    return (step < max_new) & ~jnp.all(done)

  def body(c):
    step, logits, cache, pos, done, out, lengths, sstate = c
    grouped = logits.reshape(g, group_size, logits.shape[-1])
    tok, stop, sstate = sampler.next_tokens(
        grouped, jax.random.fold_in(key, step), sstate)
    tok = tok.astype(jnp.int32)
    ends = (tok == eos_id) | jnp.any(tok[:, None] == stop_arr[None], axis=1)
    out = jax.lax.dynamic_update_slice(
        out, jnp.where(done, pad_id, tok)[:, None], (0, step))
    lengths = lengths + (~done & ~ends).astype(jnp.int32)
    done = done | ends | stop.astype(jnp.bool_) | (step + 1 >= max_new)
    row_tok = jnp.repeat(tok, group_size)[:, None]
    logits, cache = model.apply(variables, row_tok, pos[:, None], cache,
                                last_only=True, method="extend")
    return step + 1, logits, cache, pos + 1, done, out, lengths, sstate

  step, _, _, _, _, out, lengths, sstate = jax.lax.while_loop(
      cond, body, carry)
  return out, lengths, sstate, step


def _onto_mesh(params: PyTree, mesh: Mesh) -> PyTree:
  """Replicates onto `mesh` any parameter that lives elsewhere."""
  devices = set(mesh.devices.flat)

  def put(x):
    on_mesh = isinstance(x, jax.Array) and x.sharding.device_set == devices
    return x if on_mesh else jax.device_put(
        x, NamedSharding(mesh, PartitionSpec()))
  return jax.tree.map(put, params)


@functools.partial(jax.jit, static_argnums=1)
def _first_columns(x, n):
  # Jitted with a static bound: an eager x[:, :n] would transfer the index
  # from the host, which a transfer guard forbids.
  return x[:, :n]


def generate(params: PyTree, config: ModelConfig, prompt_tokens,
             max_new_tokens: int, sampler, key: jax.Array, *,
             group_size: int = 1, eos_id: int = 3,
             stop_token_ids: Sequence[int] = (), mesh: Mesh | None = None,
             pad_id: int = 0, prompt_bucket: int = 16,
             new_tokens_bucket: int = 32) -> DecodeResult:
  """Decodes up to `max_new_tokens` tokens for every group of prompt rows.

  Args:
    params: model parameters (possibly sharded).
    config: their `ModelConfig`.
    prompt_tokens: ``[num_groups * group_size, P]`` int32, left-padded with
      `pad_id`; every row needs at least one non-pad token (e.g. BOS). See
      `prepare_prompts`.
    max_new_tokens: most tokens generated per stream.
    sampler: a `Sampler` (frozen dataclass; static under jit).
    key: PRNG key.
    group_size: prompt rows per stream.
    eos_id: ends a stream.
    stop_token_ids: more ids that end a stream (e.g. a tokenizer's
      ``newline_ids``); order and repeats do not matter (one compiled
      program per set).
    mesh: if given, rows are sharded over its 'data' axis (replicated when
      the row count is not a multiple of it). Parameters already on the
      mesh keep their sharding; others are replicated onto it.
    pad_id: padding id of `prompt_tokens`.
    prompt_bucket: P is left-padded up to a multiple of this.
    new_tokens_bucket: the output buffer is a multiple of this.

  Returns:
    A `DecodeResult` with ``tokens [num_groups, max_new_tokens]``.

  Raises:
    CbenchError: bad shapes, an empty prompt row, or a prompt plus
      `max_new_tokens` longer than ``config.max_len``.
  """
  tokens = np.asarray(jax.device_get(prompt_tokens))
  _validate.check(tokens.ndim == 2 and tokens.shape[0] > 0,
                  f"Expected prompt_tokens [rows, length]; got shape "
                  f"{tokens.shape}.")
  _validate.positive("max_new_tokens", max_new_tokens)
  _validate.positive("group_size", group_size)
  n, p = tokens.shape
  _validate.check(n % group_size == 0,
                  f"Expected group_size={group_size} to divide the {n} "
                  f"prompt rows.")
  lengths = p - np.argmax(tokens != pad_id, axis=1)
  lengths[~np.any(tokens != pad_id, axis=1)] = 0
  _validate.check(bool(np.all(lengths > 0)),
                  f"Prompt rows {np.flatnonzero(lengths == 0).tolist()} are "
                  f"empty (all pad_id={pad_id}); prepend BOS.")
  longest = int(lengths.max())
  _validate.check(
      longest + max_new_tokens <= config.max_len,
      f"Longest prompt ({longest} tokens) + max_new_tokens={max_new_tokens} "
      f"exceeds the model's max_len={config.max_len}.")
  # Drop surplus left padding, then left-pad up to the bucket.
  width = _round_up(longest, prompt_bucket)
  tokens = np.pad(tokens[:, p - longest:], ((0, 0), (width - longest, 0)),
                  constant_values=pad_id).astype(np.int32)
  # Explicit transfers, so this works under jax_transfer_guard="disallow".
  max_new = np.int32(max_new_tokens)
  if mesh is not None:
    spec = PartitionSpec("data") if n % mesh.shape["data"] == 0 else (
        PartitionSpec())
    tokens = jax.device_put(tokens, NamedSharding(mesh, spec))
    replicated = NamedSharding(mesh, PartitionSpec())
    max_new, key = jax.device_put((max_new, key), replicated)
    params = _onto_mesh(params, mesh)
  else:
    tokens, max_new = jax.device_put((tokens, max_new))
  buf_len = _round_up(max_new_tokens, new_tokens_bucket)
  out, lens, sstate, steps = _generate(
      params, tokens, key, max_new, config=config,
      sampler=sampler, group_size=group_size, eos_id=int(eos_id),
      stop_ids=tuple(sorted({int(s) for s in stop_token_ids})),
      pad_id=int(pad_id),
      buf_len=buf_len)
  return DecodeResult(_first_columns(out, max_new_tokens), lens, sstate, steps)
