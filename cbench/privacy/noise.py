"""Gaussian noise for a clipped gradient sum, and the public normaliser.

The caller passes a fresh key per step (e.g. `jax.random.fold_in(key, step)`);
`add_gaussian_noise` splits it into one key per leaf, so no two leaves or
steps share noise. The std comes from the clipper's sensitivity
(`relations.noise_std`), never recomputed here. The noisy sum is divided by a
PUBLIC constant (the expected batch size), never by the realised batch size.

Float noise is not hardened against floating-point attacks (Mironov 2012);
see privacy-testing.md E2.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def add_gaussian_noise(tree: PyTree, std: float | jax.Array, key: jax.Array,
                       noise_dtype=jnp.float32) -> PyTree:
  """tree + N(0, std^2) per element, one independent key per leaf.

  Args:
    tree: a pytree of float arrays (the clipped gradient sum).
    std: noise std (same units as the leaves); 0 adds exact zeros.
    key: a JAX PRNG key used once for this tree.
    noise_dtype: dtype in which noise is drawn and added; the result is cast
      back to each leaf's dtype.
  """
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  out = []
  for x, k in zip(leaves, keys):
    z = jax.random.normal(k, x.shape, noise_dtype)
    out.append((x.astype(noise_dtype) + std * z).astype(x.dtype))
  return jax.tree.unflatten(treedef, out)


def noisy_mean(grad_sum: PyTree, key: jax.Array, std: float | jax.Array,
               normalizer: float, noise_dtype=jnp.float32) -> PyTree:
  """(grad_sum + N(0, std^2)) / normalizer, with a PUBLIC normalizer."""
  noisy = add_gaussian_noise(grad_sum, std, key, noise_dtype)
  return jax.tree.map(lambda x: (x / normalizer).astype(x.dtype), noisy)
