"""High-resolution Gumbel noise, so Gumbel-max samples softmax exactly.

`jax.random.gumbel` in float32 is ``-log(-log(U))`` with ``U`` on a grid of
spacing 2^-23..2^-24, so its range is about [-4.5, 16] (privacy-testing.md
D3): a token whose scaled logit sits more than ~20 below the best one's
(less with a large vocabulary, whose V-1 competitors already reach ~log V)
is *never* emitted, which breaks the support (and the ratio bound) of the
exponential mechanism.

Here the uniform is built from 128 random bits with a geometric exponent:

  U = 2^-(k+2) * (1 + (2m + 1) 2^-23),  k = leading zeros of 96 random bits,
                                         m = 22 random bits,

a uniform on (0, 1/2] rounded to relative precision 2^-22 whose smallest
value is ~2^-98. One more random bit picks the branch of an Exp(1) draw,

  E = -log1p(-U)  (E <= ln 2, probability 1/2)
  E = -log(U)     (E >  ln 2, probability 1/2),

both accurate in float32 (the small branch never forms 1 - U), and the
Gumbel is ``g = -log(E)``. The result covers [G_LO, G_HI] = [-4.22, 67.9];
a true Gumbel leaves that interval with probability < 1e-29, and the only
atom is the all-zero 96-bit exponent (probability 2^-96).

Exactness claim (documented, tested by chi^2 in the tests): Gumbel-max with
these draws samples ``softmax(x)`` exactly up to float32 rounding (relative
~1e-6 per probability) plus a truncation mass of at most ``V * 2^-95``
(`truncation_mass`). For a mechanism whose scaled logits have range at most
R, every token has probability >= e^-R / V, so the truncation changes any
token probability by a relative factor <= V^2 e^R 2^-95. `check_exact_range`
asserts this is <= 1e-9, i.e. R + 2 ln V <= ~45 (with V = 256k: R <= 20).
Float rounding of the logits themselves (Casacuberta et al., Mironov 2012)
is out of scope ("Theoretical" in jax_privacy's classification).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from cbench._validate import CbenchError

_EXP_WORDS = 3          # 96 random bits for the exponent
U_MIN_LOG2 = -(32 * _EXP_WORDS + 2)   # smallest U is ~2^-98
G_HI = -math.log(-math.log1p(-(2.0 ** U_MIN_LOG2)))   # ~67.9
G_LO = -math.log(-U_MIN_LOG2 * math.log(2.0))         # ~-4.22
# Relative error of any token probability allowed from truncation.
EXACT_REL_TOL = 1e-9


def truncation_mass(vocab_size: int) -> float:
  """Upper bound on the probability that any of V draws is truncated."""
  return float(vocab_size) * 2.0 ** (-(32 * _EXP_WORDS) + 1)


def max_exact_range(vocab_size: int) -> float:
  """Largest scaled-logit range R for which sampling is exact (see module)."""
  # V^2 e^R 2^-95 <= tol  <=>  R <= ln(tol) + 95 ln 2 - 2 ln V.
  return (math.log(EXACT_REL_TOL) + (32 * _EXP_WORDS - 1) * math.log(2.0)
          - 2.0 * math.log(vocab_size))


def check_exact_range(scaled_range: float, vocab_size: int,
                      what: str = "2*clip/temperature") -> None:
  """Raises `CbenchError` unless sampling with this range is exact.

  Args:
    scaled_range: the largest possible (max - min) of the scaled logits the
      sampler draws from, e.g. 2c/tau for a recentred clip to [-c, c].
    vocab_size: V.
    what: the expression named in the error message.
  """
  if not math.isfinite(scaled_range):
    return  # unclipped, non-private mode: nothing to protect.
  limit = max_exact_range(vocab_size)
  if scaled_range > limit:
    raise CbenchError(
        f"{what}={scaled_range:.3g} exceeds {limit:.3g}, the largest range "
        f"float32 Gumbel-max samples exactly with vocab_size={vocab_size}; "
        f"raise the temperature or lower the clip.")


def uniform_from_bits(words: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Maps ``[4, ...]`` uint32 words to (U in (0, 1/2], branch bit).

  Pure function of the bits (tested on extreme inputs).
  """
  w0, w1, w2, w3 = words[0], words[1], words[2], words[3]
  k = jnp.where(
      w0 != 0, jax.lax.clz(w0),
      jnp.where(w1 != 0, 32 + jax.lax.clz(w1), 64 + jax.lax.clz(w2)))
  mant = (w3 >> 10).astype(jnp.float32)           # 22 bits
  frac = 1.0 + (2.0 * mant + 1.0) * (2.0 ** -23)   # exact in float32
  u = jnp.ldexp(frac, -(k.astype(jnp.int32) + 2))
  branch = (w3 & 1) == 1
  return u, branch


def gumbel_from_bits(words: jax.Array) -> jax.Array:
  u, branch = uniform_from_bits(words)
  e = jnp.where(branch, -jnp.log1p(-u), -jnp.log(u))
  return -jnp.log(e)


def fine_gumbel(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Standard Gumbel draws in float32 with range [G_LO, G_HI]."""
  words = jax.random.bits(key, (4,) + tuple(shape), jnp.uint32)
  return gumbel_from_bits(words)


def sample_softmax(key: jax.Array, scaled_logits: jax.Array) -> jax.Array:
  """One draw from ``softmax(scaled_logits)`` along the last axis (int32).

  Entries equal to -inf are never drawn (a public mask). The logits are
  shifted so their maximum is 0 before the noise is added.
  """
  x = scaled_logits.astype(jnp.float32)
  x = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
  g = fine_gumbel(key, x.shape)
  return jnp.argmax(x + g, axis=-1).astype(jnp.int32)
