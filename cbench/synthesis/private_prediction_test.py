"""The private-prediction pipeline: plan, end-to-end runs, commit/resume.

End-to-end runs use the `micro` base model and the demo release with tiny
shapes (s = 4, 3 batches, 5 documents = 2 rounds, 12 new tokens).
"""

import json
import math
import os

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.privacy import ledger as ledger_lib
from cbench.privacy import pp_accounting as ppa
from cbench.synthesis import api
from cbench.synthesis import batching
from cbench.synthesis import private_prediction as pp

TINY = (("batch_size", 4), ("num_batches", 3), ("prompt_tokens", 24),
        ("max_new_tokens", 12), ("groups_per_call", 2), ("num_clusters", 3),
        ("num_keep", 2), ("public_docs", 6))
N_RECORDS = 4882  # demo train size (only used by pure plan tests)


def _cfg(method, eps, num_docs=5, options=TINY, **kw):
  if method == "public_only":
    options = (("max_new_tokens", 12), ("groups_per_call", 2))
  return api.SynthesisConfig(method=method, epsilon=eps, num_docs=num_docs,
                             options=options, **kw)


def _read(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _ledger_epsilon(path):
  header, _ = pp.read_ledger_records(path)
  with ledger_lib.Ledger.open(path, header) as led:
    return led.epsilon(), led.entry_ids


# ---------------------------------------------------------------------------
# Pure planning


@pytest.mark.parametrize("method", ["private_prediction", "invisible_ink",
                                    "cluster_median"])
@pytest.mark.parametrize("eps", [1.0, 10.0, 100.0])
@pytest.mark.parametrize("num_docs", [50, 400])
def test_planned_ledger_epsilon_never_exceeds_target(method, eps, num_docs):
  opts = (("batch_size", 64),)
  try:
    plan = pp.plan(_cfg(method, eps, num_docs, opts), N_RECORDS)
  except CbenchError as e:
    assert method == "private_prediction" and "Infeasible" in str(e)
    return
  assert plan.rounds == math.ceil(num_docs / math.ceil(N_RECORDS / 64))
  got = pp._ledger_epsilon(plan.planned_event(), plan.delta)
  assert got <= eps
  if method != "private_prediction":   # (its r and tau are capped)
    assert got >= 0.99 * eps          # the rule spends (almost) all of it
  # Charging one event per DOCUMENT instead of per round would overspend.
  per_doc = ppa.zcdp_event(plan.rho_per_document * plan.num_batches
                           * plan.rounds)
  if plan.num_batches > 1:
    assert pp._ledger_epsilon(per_doc, plan.delta) > eps


@pytest.mark.parametrize("method", ["invisible_ink", "cluster_median"])
def test_replace_one_pays_for_every_batch_a_replacement_changes(method):
  # Keyed-hash batching: replacing record x by x' (its own id) changes x's
  # batch AND x''s batch; a round's charge must cover both.
  ids = [f"r{i}" for i in range(200)]
  key = b"k" * 32
  def members(record_ids):
    rows = batching.keyed_hash_batches(record_ids, key, 16, 13).rows
    return [{record_ids[i] for i in row if i >= 0} for row in rows]

  before = members(ids)
  changed = []
  for new in (f"new{j}" for j in range(50)):
    after = members(ids[1:] + [new])
    changed.append(sum(a != b for a, b in zip(before, after)))
  worst = max(changed)
  assert worst == 2
  opts = (("batch_size", 64), ("relation", "replace_one"))
  plan = pp.plan(_cfg(method, 10.0, 400, opts), N_RECORDS)
  assert plan.batches_per_neighbour >= worst
  assert plan.round_event() == ppa.zcdp_event(worst * plan.rho_per_document)
  assert pp._ledger_epsilon(plan.planned_event(), plan.delta) <= 10.0
  # Charging one batch per round (the old rule) would claim less than the
  # mechanism spends on a replacement: the same documents, half the rho.
  one_batch = ppa.zcdp_event(plan.rho_per_document * plan.rounds)
  assert (pp._ledger_epsilon(one_batch, plan.delta)
          < pp._ledger_epsilon(plan.planned_event(), plan.delta))
  add = pp.plan(_cfg(method, 10.0, 400, (("batch_size", 64),)), N_RECORDS)
  assert add.batches_per_neighbour == 1


def test_auto_batch_size_rule_and_infeasible_epsilon():
  """`auto` picks the smallest s of the grid whose r (private tokens per
  document) reaches min_private_tokens: every smaller s gives fewer (or is
  infeasible), and at least one smaller s is a real plan, so the rule is
  exercised, not vacuous."""
  plan10 = pp.plan(_cfg("private_prediction", 10.0, 64, ()), N_RECORDS)
  assert plan10.options.batch_size == "auto"
  r10 = plan10.parameters["max_private_tokens"]
  assert r10 >= plan10.options.min_private_tokens
  grid = plan10.options.batch_size_grid
  smaller = [s for s in grid if s < plan10.batch_size]
  assert smaller, "the grid's smallest s already qualifies: nothing checked"
  fewer = 0
  for s in smaller:
    try:
      p = pp.plan(_cfg("private_prediction", 10.0, 64, (("batch_size", s),)),
                  N_RECORDS)
    except CbenchError as e:
      assert "Infeasible" in str(e)
      continue
    assert p.parameters["max_private_tokens"] < (
        plan10.options.min_private_tokens)
    fewer += 1
  assert fewer >= 1
  # The chosen s is the plan a user gets by asking for it.
  fixed = pp.plan(_cfg("private_prediction", 10.0, 64,
                       (("batch_size", plan10.batch_size),)), N_RECORDS)
  assert fixed.parameters == plan10.parameters
  with pytest.raises(CbenchError, match="Infeasible"):
    pp.plan(_cfg("private_prediction", 0.01, 64, (("batch_size", 8),)),
            N_RECORDS)
  with pytest.raises(CbenchError, match="Infeasible"):
    api.check_feasible(_cfg("private_prediction", 0.01, 64,
                            (("batch_size", 8),)), N_RECORDS)
  api.check_feasible(_cfg("private_prediction", 10.0, 64, ()), N_RECORDS)


def test_infinite_epsilon_and_public_only_plans():
  p = pp.plan(_cfg("private_prediction", math.inf), N_RECORDS)
  assert math.isinf(p.parameters["clip"]) and p.parameters["svt_noise"] is None
  assert math.isinf(pp._ledger_epsilon(p.planned_event(), p.delta))
  q = pp.plan(_cfg("public_only", math.inf, 5), N_RECORDS)
  assert q.batch_size == 0 and q.group_size == 1 and q.rounds == 3
  assert pp._ledger_epsilon(q.planned_event(), q.delta) == 0.0
  c = pp.plan(_cfg("cluster_median", math.inf), N_RECORDS)
  assert math.isinf(c.counts_laplace_scale)


def test_bad_options_are_named():
  with pytest.raises(CbenchError, match="Unknown synthesis option 'bogus'"):
    pp.plan(_cfg("invisible_ink", 1.0, options=(("bogus", 1),)), N_RECORDS)
  with pytest.raises(CbenchError, match="zero_out"):
    pp.plan(_cfg("private_prediction", 10.0,
                 options=(("relation", "zero_out"),)), N_RECORDS)
  zero = pp.plan(_cfg("invisible_ink", 10.0,
                      options=(("relation", "zero_out"), ("batch_size", 8))),
                 N_RECORDS)
  add = pp.plan(_cfg("invisible_ink", 10.0, options=(("batch_size", 8),)),
                N_RECORDS)
  assert zero.parameters["clip"] == pytest.approx(2 * add.parameters["clip"])
  with pytest.raises(CbenchError, match="batch_size=auto"):
    pp.plan(_cfg("invisible_ink", 10.0, options=(("batch_size", "auto"),)),
            N_RECORDS)
  with pytest.raises(CbenchError, match="num_keep"):
    pp.plan(_cfg("cluster_median", 10.0, options=(("num_batches", 2),)),
            N_RECORDS)


def test_allocate_and_clustered_batches_partition():
  assert pp.allocate_batches(10, np.array([5.0, 0.0, 95.0])).tolist() == [
      1, 1, 8]
  assert pp.allocate_batches(3, np.array([-4.0, -1.0, 0.0])).sum() == 3
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(200, 4))
  centres = emb[:5]
  noisy = np.array([60.0, 10.0, 50.0, 40.0, 40.0])
  b = pp.clustered_batches(emb, list(range(200)), centres, noisy, 3, 12,
                           key=b"k" * 16, batch_size=8)
  assert b.num_batches == 12
  batching.check_partition(b, 200)
  assert set(b.cluster_of_batch.tolist()) == {0, 2, 3}
  # Removing one record changes at most one batch.
  b2 = pp.clustered_batches(emb[1:], list(range(1, 200)), centres, noisy, 3,
                            12, key=b"k" * 16, batch_size=8)
  rows1 = [set(r[r >= 0].tolist()) - {0} for r in b.rows]
  rows2 = [set((r[r >= 0] + 1).tolist()) for r in b2.rows]
  assert sum(x != y for x, y in zip(rows1, rows2)) <= 1


# ---------------------------------------------------------------------------
# End to end


@pytest.mark.parametrize("method,eps", [
    ("private_prediction", 100.0), ("private_prediction", math.inf),
    ("invisible_ink", 10.0), ("cluster_median", 10.0),
    ("public_only", math.inf)])
def test_end_to_end_outputs_and_ledger_agree(method, eps, demo_release_dir,
                                            micro_base_dir, tmp_path):
  out = str(tmp_path / "synth.jsonl")
  cfg = _cfg(method, eps)
  summary = api.synthesize(demo_release_dir, micro_base_dir, cfg, out)
  docs = _read(out)
  plan = pp.plan(cfg, N_RECORDS)
  assert len(docs) == summary["num_docs"] == 5
  assert [d["id"] for d in docs] == sorted({d["id"] for d in docs})
  for k in range(plan.rounds):       # one document per batch per round
    batches = [d["batch"] for d in docs if d["round"] == k]
    assert len(batches) == len(set(batches)) == plan.docs_in_round(k)
  assert all(0 <= d["private_tokens"] <= d["tokens"] <= 12 for d in docs)
  ledger_file = api.ledger_path(out)
  eps_ledger, ids = _ledger_epsilon(ledger_file)
  assert [i for i in ids if i.startswith("round:")] == [
      f"round:{k}" for k in range(plan.rounds)]
  totals = pp.ledger_totals(ledger_file)
  assert totals["private_tokens"] == sum(d["private_tokens"] for d in docs)
  assert totals["tokens"] == sum(d["tokens"] for d in docs)
  assert totals["documents"] == 5
  reported = summary["epsilon"]
  if method == "public_only":
    assert eps_ledger == 0.0 == reported
    assert totals["private_tokens"] == 0
  elif math.isinf(eps):
    assert math.isinf(eps_ledger) and reported == "inf"
    assert all(d["private_tokens"] == d["tokens"] for d in docs)
  else:
    assert eps_ledger <= eps and reported == pytest.approx(eps_ledger)
  if method == "private_prediction" and not math.isinf(eps):
    r = summary["parameters"]["max_private_tokens"]
    assert all(d["private_tokens"] <= r for d in docs)
  # Nothing data-dependent is released: no document, ledger entry or
  # summary carries an ex-post value; cluster_median's stays curator-only.
  released = [json.dumps(summary)] + [json.dumps(d) for d in docs] + [
      line for line in open(ledger_file, encoding="utf-8")]
  assert not any("expost" in text for text in released)
  curator = pp.curator_path(out)
  if method == "cluster_median":
    assert "cluster_counts" in ids
    rows = _read(curator)
    assert [r["id"] for r in rows] == [d["id"] for d in docs]
    expost = pp.curator_expost(out, 1.0 / (0.1 * eps))
    assert isinstance(expost, float) and expost >= 1.0 / (0.1 * eps) - 1e-9
  else:
    assert not os.path.exists(curator)
  frac = summary["private_token_fraction"]
  assert frac == pytest.approx(totals["private_tokens"] / totals["tokens"])
  # A second call finds every round written: nothing regenerated or charged.
  again = api.synthesize(demo_release_dir, micro_base_dir, cfg, out)
  assert again["resumed_rounds"] == plan.rounds and _read(out) == docs
  assert _ledger_epsilon(ledger_file)[1] == ids


class _Crash(Exception):
  pass


def _crash_at(k_crash):
  def hook(k):
    if k == k_crash:
      raise _Crash()
  return hook


def test_kill_between_charge_and_write_resumes_exactly(
    demo_release_dir, micro_base_dir, tmp_path):
  cfg = _cfg("private_prediction", 100.0)
  ref = str(tmp_path / "ref" / "synth.jsonl")
  pp.run(demo_release_dir, micro_base_dir, cfg, ref)
  out = str(tmp_path / "crash" / "synth.jsonl")
  with pytest.raises(_Crash):
    pp.run(demo_release_dir, micro_base_dir, cfg, out,
           after_charge=_crash_at(1))
  led = api.ledger_path(out)
  _, ids = _ledger_epsilon(led)
  assert ids == ["round:0", "round:1"]          # charged ahead ...
  assert {d["round"] for d in _read(out)} == {0}   # ... of the write
  with open(out, "a") as f:                     # plus a torn trailing line
    f.write('{"id": "r00001-d0')
  summary = pp.run(demo_release_dir, micro_base_dir, cfg, out)
  assert summary["resumed_rounds"] == 1
  with open(out, "rb") as f, open(ref, "rb") as g:
    assert f.read() == g.read()                 # no document lost or altered
  eps_resumed, ids = _ledger_epsilon(led)
  eps_ref, ref_ids = _ledger_epsilon(api.ledger_path(ref))
  assert ids == ref_ids == ["round:0", "round:1"]   # none charged twice
  assert eps_resumed == eps_ref <= 100.0
  assert pp.ledger_totals(led) == pp.ledger_totals(api.ledger_path(ref))


def test_replay_with_different_output_pays_again(
    demo_release_dir, micro_base_dir, tmp_path, monkeypatch):
  cfg = _cfg("private_prediction", 100.0)
  out = str(tmp_path / "synth.jsonl")
  with pytest.raises(_Crash):
    pp.run(demo_release_dir, micro_base_dir, cfg, out,
           after_charge=_crash_at(1))
  eps_before, _ = _ledger_epsilon(api.ledger_path(out))
  real = pp._generate_round

  def fresh_noise(ctx, k):   # a replay that is NOT deterministic
    docs = real(ctx, k)
    for d in docs:
      d["text"] += "!"
    return docs
  monkeypatch.setattr(pp, "_generate_round", fresh_noise)
  pp.run(demo_release_dir, micro_base_dir, cfg, out)
  eps_after, ids = _ledger_epsilon(api.ledger_path(out))
  assert ids == ["round:0", "round:1", "round:1/replay:1"]
  assert eps_after > eps_before
  written = [d for d in _read(out) if d["round"] == 1]
  assert all(d["text"].endswith("!") for d in written)


def test_refusals_before_any_file(demo_release_dir, micro_base_dir, tmp_path):
  out_dir = tmp_path / "imp"
  with pytest.raises(CbenchError, match="Infeasible"):
    api.synthesize(demo_release_dir, micro_base_dir,
                   _cfg("private_prediction", 0.01), str(out_dir / "s.jsonl"))
  assert not out_dir.exists() or not os.listdir(out_dir)
  # Documents without a ledger are never extended.
  orphan = tmp_path / "orphan.jsonl"
  orphan.write_text('{"id": "r00000-d00000"}\n')
  with pytest.raises(CbenchError, match="without its ledger"):
    pp.run(demo_release_dir, micro_base_dir, _cfg("public_only", math.inf),
           str(orphan))
  # Another run's output (same ledger header is impossible; a foreign file
  # under a fresh ledger) is refused by the plan check.
  plan = pp.plan(_cfg("public_only", math.inf), N_RECORDS)
  foreign = tmp_path / "foreign.jsonl"
  foreign.write_text('{"id": "x", "round": 0, "batch": 0}\n')
  with pytest.raises(CbenchError, match="does not match"):
    pp.scan_output(str(foreign), plan, np.arange(plan.num_batches))


def test_expost_total_formula():
  docs = [(0, 0.5), (1, 2.0), (0, 1.0)]
  assert pp.expost_total(docs, 1.0) == pytest.approx(1.0 + 2.0)
  assert pp.expost_total([(0, 0.5), (0, 2.0), (1, 2.0)], 0.0) == 2.5
  assert pp.expost_total(docs, "inf") == "inf"
