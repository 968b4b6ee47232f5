"""Private Evolution: the noisy vote (sensitivity, noise law, padding), the
plan, and end-to-end runs on the micro model with a crash and a resume."""

import json
import math
import os

from dp_accounting import dp_event as dpe
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from cbench._validate import CbenchError
from cbench.privacy import accounting
from cbench.privacy import ledger as ledger_lib
from cbench.corpus import release as release_lib
from cbench.models import model_store
from cbench.synthesis import api
from cbench.synthesis import private_evolution as pe
from cbench.testing import fixtures

TINY = (("iterations", 2), ("max_new_tokens", 12), ("embed_tokens", 16),
        ("decode_batch", 8), ("embed_chunk", 64), ("threshold", 0.0))


def _world(seed=0, n=40, m=6, d=8):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, d)).astype(np.float32),
          rng.normal(size=(m, d)).astype(np.float32))


def test_one_record_moves_one_count_by_one():
  priv, cand = _world()
  valid = np.ones(len(priv), bool)
  base = pe.vote_counts(priv, valid, cand)
  assert float(base.sum()) == len(priv)
  for i in range(len(priv)):                  # remove each record in turn
    drop = valid.copy()
    drop[i] = False
    diff = np.asarray(base - pe.vote_counts(priv, drop, cand))
    assert np.sum(np.abs(diff)) == 1.0 and diff.max() == 1.0
  # With the same key the noise cancels: the released difference is that
  # one count (L2 sensitivity 1, the charged Gaussian event's assumption).
  key = fixtures.stat_key(5)
  a = pe.noisy_votes(priv, valid, cand, key, jnp.float32(3.0))
  b = pe.noisy_votes(priv, np.r_[False, valid[1:]], cand, key,
                     jnp.float32(3.0))
  assert np.linalg.norm(np.asarray(a - b)) == pytest.approx(1.0, abs=1e-4)


def test_padding_rows_vote_for_nobody():
  priv, cand = _world()
  garbage = np.full((24, priv.shape[1]), 1e6, np.float32)
  padded = np.concatenate([priv, garbage])
  valid = np.arange(len(padded)) < len(priv)
  assert np.array_equal(np.asarray(pe.vote_counts(padded, valid, cand)),
                        np.asarray(pe.vote_counts(priv, valid[:len(priv)],
                                                  cand)))


@pytest.mark.stat
@pytest.mark.parametrize("scale,accept", [(1.0, True), (0.8, False),
                                          (0.0, False)])
def test_released_counts_have_the_charged_noise(scale, accept):
  """KS of (noisy - true) / σ against N(0, 1), alpha = 1e-3 both ways:
  the shipped σ passes, σ × 0.8 and a noiseless histogram are rejected."""
  priv, cand = _world(1)
  valid = np.ones(len(priv), bool)
  sigma = 2.5
  true = np.asarray(pe.vote_counts(priv, valid, cand))
  keys = jax.random.split(fixtures.stat_key(11), 4000)
  draws = jax.vmap(lambda k: pe.noisy_votes(
      priv, valid, cand, k, jnp.float32(scale * sigma)))(keys)
  z = ((np.asarray(draws) - true) / sigma).ravel()
  p = stats.kstest(z, "norm").pvalue
  assert (p > 1e-3) == accept, p


def test_draw_follows_thresholded_counts():
  rng = np.random.default_rng(fixtures.stat_seed(3))
  noisy = np.array([10.0, 1.0, -4.0, 30.0])
  idx = pe.draw_population(noisy, 2.0, 40_000, rng)
  freq = np.bincount(idx, minlength=4) / 40_000
  assert freq[1] == freq[2] == 0.0
  assert freq[3] == pytest.approx(0.75, abs=0.01)
  # All below the threshold: uniform, never a crash.
  assert set(pe.draw_population(np.zeros(3), 1.0, 300, rng)) == {0, 1, 2}


def test_plan_meets_the_target_and_refuses_the_impossible():
  cfg = api.SynthesisConfig(method=pe.METHOD, epsilon=2.0, num_docs=8,
                            options=TINY)
  p = pe.plan(cfg, 1000)
  ev = dpe.SelfComposedDpEvent(dpe.GaussianDpEvent(p.noise_multiplier), 2)
  eps = accounting.epsilon(ev, p.delta, "add_remove", "pld")
  assert 0.98 * 2.0 <= eps <= 2.0
  weaker = dpe.SelfComposedDpEvent(
      dpe.GaussianDpEvent(0.97 * p.noise_multiplier), 2)
  assert accounting.epsilon(weaker, p.delta, "add_remove", "pld") > 2.0
  assert pe.plan(api.SynthesisConfig(method=pe.METHOD, epsilon=math.inf,
                                     num_docs=8, options=TINY), 10
                 ).noise_multiplier == 0.0
  with pytest.raises(CbenchError, match="Infeasible"):
    pe.plan(api.SynthesisConfig(
        method=pe.METHOD, epsilon=1e-4, num_docs=8,
        options=TINY + (("max_noise_multiplier", 5.0),)), 1000)
  with pytest.raises(CbenchError, match="keep_fraction"):
    pe.plan(api.SynthesisConfig(method=pe.METHOD, epsilon=1.0, num_docs=8,
                                options=(("keep_fraction", 1.0),)), 10)


def _released_counts_carry_the_charged_noise(out, release_dir, base_dir,
                                            cfg):
  """Recomputes every released histogram of a finished run from the
  ledger: true votes + σ_ledger · N(0, 1) under the iteration's noise key
  (whose fingerprint the ledger recorded). True iff all match."""
  records = [json.loads(x) for x in open(api.ledger_path(out))][1:]
  bundle = model_store.load(base_dir)
  o = pe.parse_options(cfg)
  texts = [r["text"] for r in release_lib.load_release(
      release_dir).corpus("train")]
  priv = jnp.asarray(pe.embed(bundle, texts, o))
  valid = jnp.ones(len(texts), bool)
  key = jax.random.key(cfg.seed)
  work = out + ".work"
  for t, rec in enumerate(records):
    sigma = accounting.event_from_dict(rec["event"]).noise_multiplier
    vote_key = jax.random.fold_in(jax.random.fold_in(key, pe._VOTE_STREAM), t)
    assert rec["meta"]["noise_key"] == ledger_lib.key_fingerprint(
        np.asarray(jax.random.key_data(vote_key)).tobytes(), t)
    population = [json.loads(x)["text"]
                  for x in open(os.path.join(work, f"population_{t}.jsonl"))]
    true = np.asarray(pe.vote_counts(priv, valid,
                                     jnp.asarray(pe.embed(bundle, population,
                                                          o))))
    noise = np.asarray(jax.random.normal(vote_key, true.shape, jnp.float32))
    released = np.asarray(json.load(open(os.path.join(
        work, f"votes_{t}.json")))["noisy_counts"])
    if not np.allclose(released, true + sigma * noise, atol=1e-3):
      return False
  return True


def test_the_run_releases_the_noise_its_ledger_charges(
    tmp_path, demo_release_dir, micro_base_dir, monkeypatch):
  """The sampler that runs is the sampler that is accounted: a run that
  adds 0.8 σ while charging σ is caught by the check that passes the
  shipped run in `test_end_to_end_crash_and_resume`."""
  cfg = api.SynthesisConfig(method=pe.METHOD, epsilon=4.0, num_docs=8,
                            options=TINY, seed=3)
  shipped = pe.noisy_votes
  monkeypatch.setattr(pe, "noisy_votes", lambda p, v, c, k, s: shipped(
      p, v, c, k, 0.8 * s))
  bad = str(tmp_path / "bad" / "synth.jsonl")
  os.makedirs(os.path.dirname(bad))
  api.synthesize(demo_release_dir, micro_base_dir, cfg, bad)
  monkeypatch.setattr(pe, "noisy_votes", shipped)
  assert not _released_counts_carry_the_charged_noise(
      bad, demo_release_dir, micro_base_dir, cfg)


def test_end_to_end_crash_and_resume(tmp_path, demo_release_dir,
                                     micro_base_dir):
  cfg = api.SynthesisConfig(method=pe.METHOD, epsilon=4.0, num_docs=8,
                            options=TINY, seed=3)
  ref = str(tmp_path / "ref" / "synth.jsonl")
  os.makedirs(os.path.dirname(ref))
  s = api.synthesize(demo_release_dir, micro_base_dir, cfg, ref)
  assert s["num_docs"] == 8 and 0.98 * 4.0 <= s["epsilon"] <= 4.0
  info = ledger_lib.verify_file(api.ledger_path(ref))
  assert info["charges"] == 2 and info["epsilon"] == s["epsilon"]
  # Its released histograms carry exactly the noise the ledger charged.
  assert _released_counts_carry_the_charged_noise(
      ref, demo_release_dir, micro_base_dir, cfg)

  out = str(tmp_path / "crash" / "synth.jsonl")
  os.makedirs(os.path.dirname(out))

  def boom(t):
    if t == 1:
      raise RuntimeError("killed after charging iteration 1")
  with pytest.raises(RuntimeError):
    pe.run(demo_release_dir, micro_base_dir, cfg, out, after_charge=boom)
  assert not os.path.exists(out)
  s2 = api.synthesize(demo_release_dir, micro_base_dir, cfg, out)
  assert ledger_lib.verify_file(api.ledger_path(out))["charges"] == 2
  assert s2["epsilon"] == s["epsilon"]            # never charged twice
  read = lambda p: [json.loads(x)["text"] for x in open(p)]
  assert read(out) == read(ref)                   # same documents


def test_non_private_run_is_infinite_through_the_same_code(
    tmp_path, demo_release_dir, micro_base_dir):
  cfg = api.SynthesisConfig(method=pe.METHOD, epsilon=math.inf, num_docs=4,
                            options=TINY)
  s = api.synthesize(demo_release_dir, micro_base_dir, cfg,
                     str(tmp_path / "synth.jsonl"))
  assert s["epsilon"] == "inf" and s["noise_multiplier"] == 0.0
