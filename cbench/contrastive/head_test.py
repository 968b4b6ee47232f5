"""The DP-tuned head: noise scale, its event's relation, fixed batches,
determinism. Each privacy property is also shown to catch a broken variant."""

import dataclasses
import math

import jax
import numpy as np
import pytest
from dp_accounting import dp_event as dpe
from dp_accounting import rdp
from scipy import stats

from cbench._validate import CbenchError
from cbench.contrastive import head
from cbench.privacy import accounting
from cbench.privacy import logit_dp
from cbench.testing import fixtures

DIN = 6
ALPHA = 1e-3
CFG = head.HeadConfig(hidden=8, dim=4, batch_size=8, epochs=2,
                      clip_norm=0.7, noise_multiplier=1.3, temperature=1.0,
                      learning_rate=1e-2)


def _flat(tree):
  return np.concatenate([np.ravel(np.asarray(x, np.float64))
                         for x in jax.tree.leaves(tree)])


def _data(n_records=40, seed=0):
  rng = np.random.default_rng(seed)
  base = rng.normal(size=(n_records, DIN))
  return (base + 0.2 * rng.normal(size=base.shape),
          base + 0.2 * rng.normal(size=base.shape),
          np.stack([rng.normal(size=DIN)] * 2))


def _rows(n_records, cfg, seed=0):
  """Per epoch a fresh partition of the records into full or padded rows."""
  rng = np.random.default_rng(seed)
  k = -(-n_records // cfg.batch_size)
  out = np.full((cfg.epochs, k * cfg.batch_size), -1, np.int64)
  for e in range(cfg.epochs):
    out[e, :n_records] = rng.permutation(n_records)
  return out.reshape(cfg.epochs, k, cfg.batch_size)


# ------------------------------------------------------------------- noise


@pytest.mark.stat
def test_noise_is_sigma_times_sensitivity_and_rejects_0_8():
  """The released step gradient with the clipped sum set to zero (every row
  the public pad pair with identical views: each per-logit gradient is 0)
  is N(0, (sigma Delta)^2) / n: a KS test accepts it against sigma Delta
  and rejects noise at 0.8 sigma."""
  va, vb, pad = _data()
  pad = np.stack([pad[0], pad[0]])
  params = head.init(CFG, DIN, jax.random.key(0))
  idx = np.full(CFG.batch_size, -1)
  want = CFG.noise_multiplier * logit_dp.logit_dp_sensitivity(
      CFG.batch_size, CFG.clip_norm, CFG.temperature, "replace_one")
  assert CFG.noise_std == pytest.approx(want)
  quiet = dataclasses.replace(CFG, noise_multiplier=0.0)
  g0 = _flat(head.noisy_gradient(quiet, params, va, vb, pad, idx,
                                 jax.random.key(1)))
  assert np.max(np.abs(g0)) < 1e-6             # the gradient is zero
  keys = jax.random.split(fixtures.stat_key(21), 120)

  def draws(cfg):
    out = [_flat(head.noisy_gradient(cfg, params, va, vb, pad, idx,
                                     keys[i])) for i in range(len(keys))]
    return np.ravel(out) * cfg.batch_size     # undo the public 1/n

  z = draws(CFG)
  assert z.size >= 120 * 76
  assert stats.kstest(z / want, "norm").pvalue > ALPHA
  low = draws(dataclasses.replace(CFG, noise_multiplier=0.8
                                  * CFG.noise_multiplier))
  assert stats.kstest(low / want, "norm").pvalue < ALPHA


# -------------------------------------------------------------- accounting


def test_event_in_add_remove_units_is_never_cheaper_than_replace_one():
  """The head's event, composed under the ledger's add/remove semantics,
  costs what the replace-one `logit_dp.dp_event` costs (one changed row per
  epoch): the same PLD epsilon (to float rounding) and the same RDP curve
  at every order (the ledger's RDP epsilon may differ only through its
  finer order grid); more
  when two batches per epoch change. Charging `logit_dp.dp_event` itself to
  an add/remove ledger would be cheaper (the mutant)."""
  # pylint: disable=protected-access
  delta = 1e-5
  orders = accounting._REPLACE_ORDERS
  for sigma, epochs in [(0.7, 1), (2.9, 2), (6.0, 5)]:
    ref_event = logit_dp.dp_event(sigma, epochs)
    ours_event = head.dp_event(sigma, epochs)
    ref = accounting.epsilon(ref_event, delta, "replace_one", "pld")
    ours = accounting.epsilon(ours_event, delta, "add_remove", "pld")
    assert ours >= ref * (1 - 1e-12)   # equal up to float rounding
    ref_rdp = accounting._replace_rdp(ref_event, orders)
    acc = rdp.RdpAccountant(orders=list(orders))
    acc.compose(ours_event)
    assert np.all(acc._rdp >= ref_rdp * (1 - 1e-12))
    two = accounting.epsilon(head.dp_event(sigma, epochs, 2), delta,
                             "add_remove", "pld")
    assert two > 1.2 * ref
    for accountant in ("pld", "rdp"):   # mutant: the event charged as is
      mutant = accounting.epsilon(ref_event, delta, "add_remove", accountant)
      assert mutant < 0.7 * accounting.epsilon(ours_event, delta,
                                               "add_remove", accountant)
  assert ours_event == dpe.SelfComposedDpEvent(dpe.GaussianDpEvent(6.0), 5)
  assert isinstance(head.dp_event(0.0, 3), dpe.NonPrivateDpEvent)


# ---------------------------------------------------------------- training


def test_training_is_deterministic_and_uses_the_fixed_batches():
  va, vb, pad = _data()
  cfg = dataclasses.replace(CFG, noise_multiplier=0.0)
  rows = _rows(len(va), cfg)
  p0 = head.init(cfg, DIN, jax.random.key(0))
  p1 = head.train(cfg, p0, va, vb, pad, rows, jax.random.key(1))
  p2 = head.train(cfg, p0, va, vb, pad, rows, jax.random.key(1))
  assert head.params_sha256(p1) == head.params_sha256(p2)
  assert head.params_sha256(p1) != head.params_sha256(p0)
  noisy = head.train(CFG, p0, va, vb, pad, rows, jax.random.key(1))
  other = head.train(CFG, p0, va, vb, pad, rows, jax.random.key(2))
  assert head.params_sha256(noisy) != head.params_sha256(other)
  # Without noise the summed InfoNCE loss of the records goes down.
  embed = head.make_embed(cfg)
  before = float(logit_dp.embed_and_loss(embed, p0, va, vb, 1.0))
  after = float(logit_dp.embed_and_loss(embed, p1, va, vb, 1.0))
  assert after < before
  z = head.embed(cfg, p1, va)
  assert z.shape == (len(va), cfg.dim) and z.dtype == np.float64
  np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)


def test_refusals():
  va, vb, pad = _data()
  p0 = head.init(CFG, DIN, jax.random.key(0))
  rows = _rows(len(va), CFG)
  dup = rows.copy()
  dup[0, 0, 1] = dup[0, 0, 0]
  with pytest.raises(CbenchError, match="more than one row"):
    head.train(CFG, p0, va, vb, pad, dup, jax.random.key(1))
  with pytest.raises(CbenchError, match="public batch_size is 8"):
    head.train(CFG, p0, va, vb, pad, rows[..., :4], jax.random.key(1))
  with pytest.raises(CbenchError, match="epochs"):
    head.train(CFG, p0, va, vb, pad, rows[:1], jax.random.key(1))
  with pytest.raises(CbenchError, match="batch_size"):
    head.HeadConfig(batch_size=1)
  with pytest.raises(CbenchError, match="clip_norm"):
    head.HeadConfig(clip_norm=math.inf)
