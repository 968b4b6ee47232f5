"""cluster_median with embedder=dp_tuned: a Logit-DP head on the base states.

The plan splits the target (encoder, counts, documents) and the ledger's
composed ε stays <= it; the head is charged before any of its outputs is
used; a crashed run resumes without a second charge and with the same head
and documents; infeasible targets are refused before any file. End-to-end
runs use the demo release and the micro base model with tiny shapes.
"""

import math
import os

import pytest
from dp_accounting import dp_event as dpe

from cbench._validate import CbenchError
from cbench.contrastive import head as head_lib
from cbench.privacy import accounting
from cbench.privacy import ledger as ledger_lib
from cbench.privacy import logit_dp
from cbench.synthesis import api
from cbench.synthesis import private_prediction as pp

TINY = (("batch_size", 4), ("num_batches", 3), ("prompt_tokens", 24),
        ("max_new_tokens", 12), ("groups_per_call", 2), ("num_clusters", 3),
        ("num_keep", 2), ("public_docs", 6))
N_RECORDS = 4882  # demo train size
DP_TUNED = (("embedder", "dp_tuned"),)
SMALL_HEAD = DP_TUNED + (("encoder_epochs", 1), ("encoder_hidden", 16),
                         ("encoder_dim", 8))


def _cfg(eps=10.0, extra=DP_TUNED, seed=0):
  return api.SynthesisConfig(method="cluster_median", epsilon=eps,
                             num_docs=5, options=TINY + extra, seed=seed)


def _ledger(path):
  header, records = pp.read_ledger_records(path)
  with ledger_lib.Ledger.open(path, header) as led:
    return led.epsilon(), led.entry_ids, records


def _read(path):
  with open(path, "rb") as f:
    return f.read()


# ---------------------------------------------------------------------------
# Plan


def test_plan_splits_the_target_and_composes_every_event():
  p = pp.plan(_cfg(), N_RECORDS)
  e = p.encoder
  assert e["epochs"] == 2 and e["batches_per_epoch"] == 1
  assert e["num_batches"] == math.ceil(N_RECORDS / e["batch_size"])
  assert e["sensitivity"] == pytest.approx(logit_dp.logit_dp_sensitivity(
      e["batch_size"], e["clip"], e["temperature"], "replace_one"))
  assert e["noise_std"] == pytest.approx(e["noise_multiplier"]
                                         * e["sensitivity"])
  # sigma is calibrated to the share: its ledger ε alone is (just) <= it.
  share = 0.2 * 10.0
  enc = pp._ledger_epsilon(p.encoder_event(), p.delta)
  assert 0.99 * share <= enc <= share
  looser = head_lib.dp_event(0.99 * e["noise_multiplier"], 2)
  assert pp._ledger_epsilon(looser, p.delta) > share
  # Never cheaper than the replace-one Logit-DP event it stands for (the
  # same mechanism: equal up to float rounding); the event as is would be.
  ref = accounting.epsilon(logit_dp.dp_event(e["noise_multiplier"], 2),
                           p.delta, "replace_one", "pld")
  assert accounting.epsilon(p.encoder_event(), p.delta, "add_remove",
                            "pld") >= ref * (1 - 1e-12)
  assert accounting.epsilon(logit_dp.dp_event(e["noise_multiplier"], 2),
                            p.delta, "add_remove", "pld") < 0.7 * ref
  # The whole run (encoder + counts + rounds) fits the target.
  total = pp._ledger_epsilon(p.planned_event(), p.delta)
  assert 0.99 * 10.0 <= total <= 10.0
  base = pp.plan(_cfg(extra=()), N_RECORDS)
  assert p.rho_per_document < base.rho_per_document   # documents pay less
  # Replace-one neighbours may touch two head batches per epoch.
  ro = pp.plan(_cfg(extra=DP_TUNED + (("relation", "replace_one"),)),
               N_RECORDS)
  assert ro.encoder["batches_per_epoch"] == 2
  assert ro.encoder["noise_multiplier"] > e["noise_multiplier"]
  inf = pp.plan(_cfg(math.inf), N_RECORDS)
  assert inf.encoder["noise_multiplier"] == 0.0
  assert isinstance(inf.encoder_event(), dpe.NonPrivateDpEvent)


def test_default_embedder_plan_is_unchanged_by_the_encoder_options():
  base = pp.plan(_cfg(extra=()), N_RECORDS)
  assert base.encoder is None and base.encoder_event() is None
  assert base.fixed_event() == base.counts_event()
  knobs = pp.plan(_cfg(extra=(("encoder_epsilon_share", 0.5),
                              ("encoder_epochs", 7))), N_RECORDS)
  assert knobs.encoder is None
  assert knobs.parameters == base.parameters
  assert knobs.rho_per_document == base.rho_per_document
  assert knobs.planned_event() == base.planned_event()


def test_infeasible_targets_are_refused_before_any_file(
    demo_release_dir, micro_base_dir, tmp_path):
  cases = [(10.0, (("encoder_epsilon_share", 0.95),)),
           (1e-5, ())]
  for eps, extra in cases:
    with pytest.raises(CbenchError, match="encoder_epsilon_share") as err:
      pp.plan(_cfg(eps, DP_TUNED + extra), N_RECORDS)
    assert "\n" not in str(err.value)
    with pytest.raises(CbenchError, match="encoder_epsilon_share"):
      api.check_feasible(_cfg(eps, DP_TUNED + extra), N_RECORDS)
  # The share alone is feasible with the default embedder (not used).
  pp.plan(_cfg(10.0, (("encoder_epsilon_share", 0.95),)), N_RECORDS)
  out_dir = tmp_path / "refused"
  with pytest.raises(CbenchError, match="encoder_epsilon_share"):
    api.synthesize(demo_release_dir, micro_base_dir,
                   _cfg(10.0, DP_TUNED + cases[0][1]),
                   str(out_dir / "synth.jsonl"))
  assert not out_dir.exists() or not os.listdir(out_dir)


# ---------------------------------------------------------------------------
# End to end


class _Crash(Exception):
  pass


def _crash_at(k_crash):
  def hook(k):
    if k == k_crash:
      raise _Crash()
  return hook


# About 50 s on an idle 2-core machine (twice that loaded): slow. The same
# shared encoder code's charge-first order and resume run in the default
# suite through Private Evolution (`pe_dp_tuned_test.py`).
@pytest.mark.slow
def test_encoder_is_charged_first_and_resume_never_charges_twice(
    demo_release_dir, micro_base_dir, tmp_path, monkeypatch):
  cfg = _cfg(extra=SMALL_HEAD)
  ref = str(tmp_path / "ref" / "synth.jsonl")
  # Every use of the head's output (the centres' and the records'
  # embeddings) happens after the encoder charge is on disk, and before
  # the counts are charged.
  uses = []
  real_embed = head_lib.embed

  def spy(config, params, x, chunk=256):
    ids = [r["id"] for r in pp.read_ledger_records(
        api.ledger_path(ref))[1]]
    uses.append(ids)
    return real_embed(config, params, x, chunk)
  monkeypatch.setattr(head_lib, "embed", spy)
  summary = api.synthesize(demo_release_dir, micro_base_dir, cfg, ref)
  monkeypatch.setattr(head_lib, "embed", real_embed)
  assert uses == [["encoder"], ["encoder"]]
  eps, ids, records = _ledger(api.ledger_path(ref))
  assert ids == ["encoder", "cluster_counts", "round:0", "round:1"]
  plan = pp.plan(cfg, N_RECORDS)
  assert records[0]["event"] == accounting.event_to_dict(
      plan.encoder_event())
  assert records[0]["meta"]["noise_multiplier"] == (
      plan.encoder["noise_multiplier"])
  assert eps <= 10.0 and summary["epsilon"] == pytest.approx(eps)
  assert summary["encoder"]["noise_multiplier"] == (
      plan.encoder["noise_multiplier"])
  assert summary["num_docs"] == 5
  # Crash after round 1 is charged, then resume: same head (same charge),
  # same documents as the uninterrupted run, and no charge twice.
  out = str(tmp_path / "crash" / "synth.jsonl")
  with pytest.raises(_Crash):
    pp.run(demo_release_dir, micro_base_dir, cfg, out,
           after_charge=_crash_at(1))
  assert _ledger(api.ledger_path(out))[1] == ids
  resumed = pp.run(demo_release_dir, micro_base_dir, cfg, out)
  assert resumed["resumed_rounds"] == 1
  eps2, ids2, records2 = _ledger(api.ledger_path(out))
  assert ids2 == ids and eps2 == eps
  assert records2[0]["meta"] == records[0]["meta"]   # the same head
  assert _read(out) == _read(ref)                    # deterministic
