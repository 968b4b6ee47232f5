"""Private-prediction synthesis: aggregation, samplers, batching.

Modules (one job each):
  gumbel       high-resolution Gumbel noise and exact softmax sampling.
  aggregation  recentred clipping, clipped mean / median, InvisibleInk DClip
               and its public Top-k+ set (pure jnp).
  samplers     decoder samplers (`cbench.decoding.sampler_protocol`):
               exponential mechanism, sparse-vector private prediction,
               InvisibleInk, median, public-only.
  batching     keyed-hash fixed disjoint batches; public-centre clustering
               with DP counts.

The accounting of every sampler lives in `cbench.privacy.pp_accounting`.
"""
