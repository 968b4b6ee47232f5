"""Private Evolution with embedder=dp_tuned: a Logit-DP head on the base states.

The plan gives the head its share of the target and calibrates the votes'
σ on the ledger's composition of head + T votes (so the run's ledger ε is
<= the target); an infeasible share is refused in one line before any
file; the head is charged before any of its outputs is used, candidates go
through the same head, and a crashed or repeated run never charges twice.
The default embedder's plan and binding are the ones it had before the
option existed. End-to-end runs use the demo release and the micro base
model with tiny shapes.
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dp_accounting import dp_event as dpe

from cbench._validate import CbenchError
from cbench.contrastive import head as head_lib
from cbench.models import model_store
from cbench.privacy import accounting
from cbench.privacy import ledger as ledger_lib
from cbench.synthesis import api
from cbench.synthesis import common
from cbench.synthesis import dp_encoder
from cbench.synthesis import private_evolution as pe

TINY = (("iterations", 2), ("max_new_tokens", 12), ("embed_tokens", 8),
        ("decode_batch", 8), ("embed_chunk", 128), ("threshold", 0.0))
N_RECORDS = 4882  # demo train size
DP_TUNED = (("embedder", "dp_tuned"),)
SMALL_HEAD = DP_TUNED + (("encoder_epochs", 1), ("encoder_hidden", 16),
                         ("encoder_dim", 8))
EPS = 1.0   # PLD calibration is fastest at small ε (large σ)
BASE_SIGMA = 5.045373024644047   # the base embedder's vote σ at EPS


def _cfg(eps=EPS, extra=SMALL_HEAD, num_docs=8):
  return api.SynthesisConfig(method=pe.METHOD, epsilon=eps, num_docs=num_docs,
                             options=TINY + extra, seed=3)


def _ledger_eps(p, event):
  return accounting.epsilon(event, p.delta, "add_remove", pe.ACCOUNTANT,
                            accounting.discretization_interval(EPS))


def _records(out):
  with open(api.ledger_path(out)) as f:
    return [json.loads(x) for x in f][1:]


# ---------------------------------------------------------------------------
# Plan


def test_plan_splits_the_target_and_the_ledger_composes_within_it(tmp_path):
  p = pe.plan(_cfg(), N_RECORDS)
  e = p.encoder
  assert e["epochs"] == 1 and e["batches_per_epoch"] == 1
  assert e["num_batches"] == math.ceil(N_RECORDS / e["batch_size"])
  # The head's σ is calibrated to its share: ledger ε alone (just) <= it.
  share = 0.2 * EPS
  assert 0.99 * share <= _ledger_eps(p, p.encoder_event()) <= share
  assert _ledger_eps(p, head_lib.dp_event(0.99 * e["noise_multiplier"],
                                          1)) > share
  # The votes pay for the head: more noise than without it.
  assert p.noise_multiplier > BASE_SIGMA
  # A real ledger holding the head and T votes reports the planned ε,
  # which is (just) within the target; a vote σ 1% lower would exceed it.
  header = ledger_lib.make_header(
      relation="add_remove", sampler="none", accountant=pe.ACCOUNTANT,
      delta=p.delta, config_hash="test",
      value_discretization_interval=accounting.discretization_interval(EPS))
  with ledger_lib.Ledger.open(str(tmp_path / "l.jsonl"), header) as led:
    led.charge(dp_encoder.ENCODER_ENTRY, p.encoder_event())
    for t in range(2):
      led.charge(f"iteration:{t}", p.iteration_event())
    assert led.epsilon() == p.planned_epsilon
  assert 0.98 * EPS <= p.planned_epsilon <= EPS
  assert p.planned_epsilon == _ledger_eps(p, p.planned_event())
  looser = dpe.ComposedDpEvent([
      p.encoder_event(), dpe.SelfComposedDpEvent(
          dpe.GaussianDpEvent(0.99 * p.noise_multiplier), 2)])
  assert _ledger_eps(p, looser) > EPS
  inf = pe.plan(_cfg(math.inf), N_RECORDS)
  assert inf.noise_multiplier == 0.0 and inf.encoder["noise_multiplier"] == 0
  assert isinstance(inf.encoder_event(), dpe.NonPrivateDpEvent)


def test_default_embedder_plan_and_binding_are_unchanged():
  base = pe.plan(_cfg(extra=()), N_RECORDS)
  assert base.encoder is None and base.encoder_event() is None
  # The plan (and its hash, which the ledger header binds) it had before
  # the embedder option existed.
  assert base.noise_multiplier == BASE_SIGMA
  assert base.planned_epsilon == 0.999811357272397
  d = base.to_dict()
  assert common.config_hash(d) == (
      "58448841f4a78d7a34d1a14ec3d31fed4ce0448a73805b2bace3127493eceebe")
  assert "encoder" not in d
  assert sorted(d["options"]) == sorted(
      ("iterations", "threshold", "keep_fraction", "max_new_tokens",
       "temperature", "embed_tokens", "decode_batch", "embed_chunk",
       "max_noise_multiplier", "calibration_seconds", "public_prefix"))
  # The head's knobs do nothing (and bind nothing) with the base embedder.
  knobs = pe.plan(_cfg(extra=(("encoder_epsilon_share", 0.9),
                              ("encoder_epochs", 7))), N_RECORDS)
  assert knobs.to_dict() == d
  assert common.config_hash(knobs.to_dict()) == common.config_hash(d)


def test_infeasible_split_is_refused_in_one_line_before_any_file(
    demo_release_dir, micro_base_dir, tmp_path):
  cap = (("max_noise_multiplier", 8.0),)
  pe.plan(_cfg(extra=cap), N_RECORDS)     # feasible without the head
  cases = [(EPS, SMALL_HEAD + cap + (("encoder_epsilon_share", 0.9),)),
           (1e-5, SMALL_HEAD)]
  for eps, extra in cases:
    with pytest.raises(CbenchError, match="encoder_epsilon_share") as err:
      pe.plan(_cfg(eps, extra), N_RECORDS)
    assert "\n" not in str(err.value)
  out_dir = tmp_path / "refused"
  with pytest.raises(CbenchError, match="encoder_epsilon_share"):
    api.synthesize(demo_release_dir, micro_base_dir, _cfg(*cases[1]),
                   str(out_dir / "synth.jsonl"))
  assert not out_dir.exists() or not os.listdir(out_dir)
  with pytest.raises(CbenchError, match="embedder"):
    pe.plan(_cfg(extra=(("embedder", "minilm"),)), N_RECORDS)


# ---------------------------------------------------------------------------
# End to end


class _Crash(Exception):
  pass


def test_encoder_is_charged_first_and_resume_never_charges_twice(
    demo_release_dir, micro_base_dir, tmp_path, monkeypatch):
  cfg = _cfg()
  out = str(tmp_path / "run" / "synth.jsonl")
  os.makedirs(os.path.dirname(out))
  # Every use of the head (the records' and the candidates' embeddings)
  # and every vote sees the encoder charge on disk, and all use one head.
  uses, votes = [], []
  real_embed, real_votes = head_lib.embed, pe.noisy_votes

  def embed_spy(config, params, x, chunk=256):
    uses.append(([r["id"] for r in _records(out)],
                 head_lib.params_sha256(params), len(x)))
    return real_embed(config, params, x, chunk)

  def votes_spy(priv, valid, cand, key, sigma):
    votes.append(([r["id"] for r in _records(out)], priv.shape, cand.shape))
    return real_votes(priv, valid, cand, key, sigma)
  monkeypatch.setattr(head_lib, "embed", embed_spy)
  monkeypatch.setattr(pe, "noisy_votes", votes_spy)

  def boom(t):
    if t == 1:
      raise _Crash()
  # Killed after iteration 1 is charged, before its counts are used.
  with pytest.raises(_Crash):
    pe.run(demo_release_dir, micro_base_dir, cfg, out, after_charge=boom)
  assert not os.path.exists(out)
  records = _records(out)
  assert [r["id"] for r in records] == ["encoder", "iteration:0",
                                        "iteration:1"]
  head_sha = records[0]["meta"]["params_sha256"]
  # The records first, then each iteration's 8 candidates: all by the
  # charged head, all after its charge.
  assert [(u[0][:1], u[1], u[2]) for u in uses] == [
      (["encoder"], head_sha, N_RECORDS)] + [(["encoder"], head_sha, 8)] * 2
  assert [v[0] for v in votes] == [["encoder"], ["encoder", "iteration:0"]]
  assert all(v[1][1] == v[2][1] == 8 for v in votes)   # encoder_dim
  with open(api.ledger_path(out)) as f:
    header = json.loads(f.readline())["header"]
  plan = header["config"]["plan"]               # the run's bound plan
  assert header["embedder"] == "dp_tuned"
  assert records[0]["event"] == accounting.event_to_dict(
      dp_encoder.encoder_event(plan["encoder"]))
  assert records[0]["meta"]["noise_multiplier"] == (
      plan["encoder"]["noise_multiplier"])
  # Resume: the head is retrained from the seed (the same head, so the
  # same charge, a no-op), the run completes, and nothing is charged twice.
  uses.clear()
  summary = api.synthesize(demo_release_dir, micro_base_dir, cfg, out)
  assert [u[1] for u in uses] == [head_sha] * 2    # records, iteration 1
  assert _records(out) == records
  info = ledger_lib.verify_file(api.ledger_path(out))
  assert info["charges"] == 3
  assert info["epsilon"] == summary["epsilon"] == plan["planned_epsilon"]
  assert summary["epsilon"] <= EPS and summary["num_docs"] == 8
  assert summary["encoder"] == plan["encoder"]
  # The released histograms are the head's votes plus the charged noise.
  for t in range(2):
    with open(os.path.join(out + ".work", f"votes_{t}.json")) as f:
      counts = json.load(f)["noisy_counts"]
    assert len(counts) == 8
    assert abs(sum(counts) - N_RECORDS) < 6 * math.sqrt(8) * (
        plan["noise_multiplier"])


def test_embed_goes_through_the_charged_head(micro_base_dir):
  """With dp_tuned, texts (private or candidates) are embedded by the head
  on the base states (unit norm, d = encoder_dim); never without it."""
  bundle = model_store.load(micro_base_dir)
  o = pe.parse_options(_cfg())
  texts = ["a b c d e f", "the tiny creature sleeps", "x y z"]
  base = pe.embed(bundle, texts, pe.parse_options(_cfg(extra=())))
  with pytest.raises(CbenchError, match="charged head"):
    pe.embed(bundle, texts, o)
  cfg = head_lib.HeadConfig(hidden=16, dim=8)
  params = head_lib.init(cfg, base.shape[1], jax.random.key(0))
  tuned = pe.embed(bundle, texts, o, dp_encoder.TunedHead(cfg, params))
  assert tuned.dtype == np.float32 and tuned.shape == (3, 8)
  np.testing.assert_allclose(np.linalg.norm(tuned, axis=1), 1.0, atol=1e-5)
  np.testing.assert_allclose(
      tuned, head_lib.embed(cfg, params, base).astype(np.float32))
  counts = pe.vote_counts(jnp.asarray(tuned), jnp.ones(3, bool),
                          jnp.asarray(tuned))
  assert np.asarray(counts).tolist() == [1.0, 1.0, 1.0]
