r"""A tiny multi-host scenario: DP-SGD steps, a private-prediction batch.

`run_scenario(workdir)` is one program that runs unchanged on one process
with 8 devices or on several processes (e.g. 2 x 4 CPU devices after
`jax.distributed.initialize`); `multihost_test` compares the two. It

1. trains a `micro` transformer for `STEPS` DP-SGD steps through the one
   training loop (`cbench.train.loop.run`): truncated-Poisson batches drawn
   by every process from the same seed, each process loading only its rows
   (`distributed.sampled_batch`), `make_dp_grad_fn` over the global mesh,
   metrics written by process 0, orbax checkpoints written collectively;
2. decodes one private-prediction batch with the SVT sampler through
   `cbench.decoding.decoder.generate` on the same mesh.

Run as a worker (what the test launches, once per process):

  XLA_FLAGS=--xla_force_host_platform_device_count=4 \
  python -m cbench.testing.multihost_worker --workdir=DIR \
      --coordinator=127.0.0.1:PORT --num_processes=2 --process_id=I

Process 0 writes ``DIR/results.npz``; the other processes write nothing but
their checkpoint shards.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import jax
from jax.experimental import multihost_utils
import numpy as np
import optax

from cbench.decoding import decoder
from cbench.io import files
from cbench.models import config as config_lib
from cbench.models import registry
from cbench.models.transformer import Transformer
from cbench.parallel import distributed
from cbench.parallel import mesh as mesh_lib
from cbench.privacy import batch_sampling
from cbench.privacy import dpsgd
from cbench.privacy import pp_accounting
from cbench.synthesis import private_samplers
from cbench.train import lm_train
from cbench.train import loop

VOCAB = 64
SEQ = 16
NUM_RECORDS = 64
BATCH = 16  # Truncated-Poisson maximum = the one public bucket.
STEPS = 3
GROUPS = 8
PRIVATE_PER_GROUP = 3
PROMPT_LEN = 6
NEW_TOKENS = 8
EOS = 3


def dataset() -> np.ndarray:
  """The private records: int32 ``[NUM_RECORDS, SEQ + 1]`` token rows."""
  return np.random.default_rng(1234).integers(
      4, VOCAB, (NUM_RECORDS, SEQ + 1), dtype=np.int32)


def prompts() -> np.ndarray:
  """``[GROUPS * (s + 1), PROMPT_LEN]`` prompts, row s of a group public."""
  return np.random.default_rng(99).integers(
      4, VOCAB, (GROUPS * (PRIVATE_PER_GROUP + 1), PROMPT_LEN),
      dtype=np.int32)


class RowLoader:
  """Reads rows of `dataset()` by index and remembers which it read."""

  def __init__(self):
    self._rows = dataset()
    self.loaded: list[np.ndarray] = []

  def __call__(self, indices: np.ndarray) -> np.ndarray:
    self.loaded.append(np.asarray(indices, np.int64))
    return self._rows[indices]


def run_scenario(workdir: str) -> dict[str, np.ndarray]:
  """Runs both parts on all devices of all processes; host results.

  Every process must call it (it contains collectives). Returns the same
  dict in every process: final parameters (``param/<path>``), decoded
  ``tokens``/``lengths``/``private_count``/``num_steps``, and
  ``loaded`` ``[processes, STEPS * rows_per_process]`` record indices each
  process read.
  """


  mesh = mesh_lib.make_mesh()
  cfg = model_config()
  model = Transformer(cfg)

  def loss(params, row):
    logits = model.apply({"params": params}, row[None, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, row[None, 1:]).mean()

  dp_cfg = dpsgd.DpSgdConfig(clip_norm=1.0, noise_multiplier=0.5,
                             expected_batch_size=float(BATCH),
                             sampler="truncated_poisson")
  sampler = batch_sampling.make_sampler("truncated_poisson", NUM_RECORDS,
                                  float(BATCH), seed=7,
                                  max_batch_size=BATCH, pad_unit=BATCH)
  dpsgd.check_plan(dp_cfg, sampler)
  dp_grad = dpsgd.make_dp_grad_fn(loss, dp_cfg, mesh)
  opt = optax.adam(1e-2)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  @functools.partial(jax.jit, donate_argnums=(0,))
  def step(state, batch, key):
    rows, pad = batch
    g, aux = dp_grad(state.params, rows, pad, key)
    updates, opt_state = opt.update(g, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return (loop.TrainState(state.step + 1, params, opt_state),
            {"noisy_grad_norm": loop.global_norm(g),
             "noise_std": aux["noise_std"]})

  loader = RowLoader()

  def batch_fn(i: int):
    b = sampler.batch(i)
    return distributed.sampled_batch(b.indices, b.is_padding, loader, mesh)

  params = registry.init_params_sharded(None, cfg, mesh, _key(jax, 0,
                                                           replicated))
  state = lm_train.init_state(params, opt, mesh)
  state = loop.run(state, step, batch_fn,
                   config=loop.LoopConfig(num_steps=STEPS, log_every=1,
                                          checkpoint_every=STEPS,
                                          name="multihost"),
                   key=_key(jax, 1, replicated), workdir=workdir)

  s = PRIVATE_PER_GROUP
  pp = pp_accounting.PrivatePredictionParams(
      batch_size=s, clip=2.0, temperature=1.0, svt_noise=0.1,
      threshold=0.3, max_private_tokens=4)
  svt = private_samplers.SvtPrivatePredictionSampler(pp, end_token_ids=(EOS,))
  res = decoder.generate(state.params, cfg, prompts(), NEW_TOKENS, svt,
                         _key(jax, 2, replicated), group_size=s + 1,
                         eos_id=EOS, mesh=mesh)

  out = {f"param/{jax.tree_util.keystr(path)}": v for path, v in
         jax.tree_util.tree_leaves_with_path(
             distributed.host_value(state.params))}
  out.update(distributed.host_value({
      "tokens": res.tokens, "lengths": res.lengths,
      "private_count": res.sampler_state.private_count,
      "num_steps": res.num_steps, "step": state.step}))
  loaded = np.concatenate(loader.loaded)
  out["loaded"] = np.asarray(multihost_utils.process_allgather(loaded)
                             ).reshape(jax.process_count(), -1)
  out["batches"] = np.stack([sampler.batch(i).indices for i in range(STEPS)])
  return {k: np.asarray(v) for k, v in out.items()}


def model_config():
  return config_lib.get_model_config("micro", VOCAB, max_len=32)


def _key(jax, seed: int, replicated):
  """A PRNG key replicated over the global mesh (one value everywhere)."""
  data = np.asarray(jax.random.key_data(jax.random.key(seed)))
  return jax.random.wrap_key_data(jax.device_put(data, replicated))


def main(argv: list[str] | None = None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--coordinator", required=True)
  ap.add_argument("--num_processes", type=int, required=True)
  ap.add_argument("--process_id", type=int, required=True)
  ap.add_argument("--init_timeout", type=int, default=60)
  args = ap.parse_args(argv)


  mesh_lib.maybe_initialize_distributed(
      True, coordinator=args.coordinator, num_processes=args.num_processes,
      process_id=args.process_id, initialization_timeout=args.init_timeout)
  results = run_scenario(args.workdir)
  if distributed.is_primary():
    with files.atomic_open(os.path.join(args.workdir, "results.npz"),
                           "wb") as f:
      np.savez(f, **results)
  distributed.sync("multihost_worker_done")
  jax.distributed.shutdown()
  return 0


if __name__ == "__main__":
  sys.exit(main())
