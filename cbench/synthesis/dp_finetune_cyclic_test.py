"""DP fine-tuning with option sampler=cyclic: the batches that run are the
batches accounted, each epoch is charged before any of its batches is
used, a crash mid-epoch and a resume charge nothing twice and lose no
record, and the gradients carry the noise the ledger charges (mutants that
charge an epoch late or add 0.8 x the noise fail the same checks).

A tiny world on one device: `kill_resume_worker`'s 64 random token rows and
1-layer random model; b = 6 records per batch padded to 8 rows, K = 11
steps per epoch (the last batch holds 4 records), T = 22 steps = 2 epochs,
checkpoints every 6 steps.
"""

import dataclasses
import json
import math

from dp_accounting import dp_event as dpe
import jax
import numpy as np
import pytest
from scipy import stats

from cbench._validate import CbenchError
from cbench.models import registry
from cbench.parallel import mesh as mesh_lib
from cbench.privacy import accounting
from cbench.privacy import dpsgd
from cbench.privacy import ledger as ledger_lib
from cbench.synthesis import api
from cbench.synthesis import common
from cbench.synthesis import dp_finetune as dpft
from cbench.testing import fixtures
from cbench.testing import kill_resume_worker as world

N, B, K, T = world.NUM_RECORDS, 6, 11, 22
EPS = 2.0
ALPHA = 1e-3
OPTS = (("sampler", "cyclic"), ("relation", "replace_one"), ("steps", T),
        ("batch_size", B), ("seq_len", world.SEQ), ("pad_unit", 8),
        ("checkpoint_every", 6), ("log_every", 1), ("learning_rate", 1e-2))


def _cfg(eps=EPS, options=OPTS):
  return api.SynthesisConfig(method=dpft.METHOD, epsilon=eps, num_docs=1,
                             options=options, seed=fixtures.stat_seed(7))


def _plan():
  return dpft.plan(_cfg(), N)


def _train(path, *, stop_after=None):
  """Runs (or resumes) `finetune` in `path`; returns what it saw.

  Returns:
    {"batches": [(step, real indices, rows)] as drawn, "paid": {step:
    ledger epsilon when the step's batch was drawn} at each epoch's first
    and last step, "norms": {step: noisy gradient norm}, "params",
    "executed", "num_params"}.
  """
  p, seed = _plan(), _cfg().seed
  mesh = mesh_lib.make_mesh(devices=jax.devices()[:1])
  params = registry.init_params_sharded(None, world.model_config(), mesh,
                                        jax.random.key(0))
  sampler = p.make_sampler(seed, dpft.pad_unit(p.options, mesh))
  header = dpft.make_ledger_header(p, sampler, {"test": "cyclic"})
  seen = {"batches": [], "paid": {}, "norms": {}}
  with ledger_lib.Ledger.open(str(path / "ledger.jsonl"), header) as led:

    def on_batch(step, b):
      assert led.has(f"step:{step}")      # charged before its batch is drawn
      seen["batches"].append((step, b.indices[~b.is_padding].tolist(),
                              len(b.indices)))
      if step % K in (0, K - 1):
        seen["paid"][step] = led.epsilon()

    class _Norms:
      def after_step(self, step, metrics):
        seen["norms"][step] = metrics["noisy_grad_norm"]

    res = dpft.finetune(params, world.model_config(), world.rows(), p,
                        str(path / "work"), led, seed=seed, mesh=mesh,
                        hooks=(_Norms(),), stop_after=stop_after,
                        on_batch=on_batch)
  seen.update(params=jax.device_get(res.params), executed=res.executed,
              num_params=sum(x.size for x in jax.tree.leaves(res.params)))
  return seen


def _ledger(path, name="ledger.jsonl"):
  with open(path / name) as f:
    records = [json.loads(line) for line in f]
  return records[0]["header"], records[1:]


def _by_step(batches):
  """{step: real indices}; a replayed step must draw what it drew before."""
  out = {}
  for step, idx, _ in batches:
    assert out.setdefault(step, idx) == idx, step
  return out


def _epoch_counts(by_step):
  """[epoch, record] -> how many of the epoch's steps drew the record."""
  counts = np.zeros((-(-(max(by_step) + 1) // K), N), np.int64)
  for step, idx in by_step.items():
    np.add.at(counts[step // K], idx, 1)
  return counts


def _charged_before_use(seen, p):
  """True iff when each epoch's first (and last) batch was drawn the ledger
  already held the all-iterates epsilon of every step up to it."""
  cfg = p.cyclic_config()
  return all(paid >= cfg.epsilon(p.delta, steps=t + 1)
             for t, paid in seen["paid"].items())


def _noise_pvalues(seen, path):
  """(lower, upper) p-values of S = sum_t (B |g_t| / std)^2, std = the
  ledger's charged sigma x C. Given the past, B g_t = s_t + N(0, std^2 I_P)
  with |s_t| <= b C (b clipped rows), so B^2 |g_t|^2 / std^2 is noncentral
  chi2(P, lam_t <= (b C / std)^2): S is stochastically above chi2(T P)
  (lower tail: too LITTLE noise, the privacy failure) and below
  ncx2(T P, T (b C / std)^2) (upper tail)."""
  header, charges = _ledger(path)
  sigmas = {accounting.event_from_dict(c["event"]).event.noise_multiplier
            for c in charges if c["event"]["class_name"] != "NoOpDpEvent"}
  assert len(sigmas) == 1
  std = sigmas.pop() * header["clip_norm"]   # dp_accounting: std / C
  norm = header["expected_batch_size"]
  s = sum((norm * g / std) ** 2 for g in seen["norms"].values())
  dof = len(seen["norms"]) * seen["num_params"]
  lam = len(seen["norms"]) * (B * header["clip_norm"] / std) ** 2
  return stats.chi2.cdf(s, dof), stats.ncx2.sf(s, dof, lam)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  path = tmp_path_factory.mktemp("cyclic_full")
  return path, _train(path)


# ---------------------------------------------------------------------------
# Plan


def test_plan_calibrates_on_the_cyclic_event():
  p = _plan()
  cfg = p.cyclic_config()
  assert (cfg.steps_per_epoch, cfg.epochs, cfg.batch_size) == (K, 2, B)
  assert cfg.relation == "replace_one" and cfg.shuffle
  assert p.sampling_prob is None and p.expected_batch_size == B
  assert p.planned_epsilon == cfg.epsilon(p.delta)
  assert 0.99 * EPS <= p.planned_epsilon <= EPS
  # The check can fail: 2% less noise overspends.
  weaker = dataclasses.replace(cfg,
                               noise_multiplier=0.98 * cfg.noise_multiplier)
  assert weaker.epsilon(p.delta) > EPS
  dp = p.dp_config()
  assert dp.sampler == "cyclic" and dp.expected_batch_size == B
  assert dp.noise_std == 2 * p.noise_multiplier          # replace_one: 2C
  zero = dpft.plan(_cfg(options=OPTS + (("relation", "zero_out"),)), N)
  assert zero.dp_config().relation == "add_remove"       # zero_out: C
  assert zero.dp_config().noise_std == zero.noise_multiplier
  assert zero.cyclic_config().accounting_relation == "add_remove"
  inf = dpft.plan(_cfg(eps=math.inf), N)
  assert inf.noise_multiplier == 0.0 and math.isinf(inf.clip_norm)
  assert math.isinf(inf.cyclic_config().epsilon(p.delta))


@pytest.mark.parametrize("bad,match", [
    (("relation", "add_remove"),
     r"^Option relation='add_remove' is not supported with option "
     r"sampler='cyclic'; expected one of \['replace_one', 'zero_out'\]\.$"),
    (("batch_size", 6.5), "integer option batch_size"),
    (("sampler", "shuffled"),
     r"option sampler='shuffled'; expected one of \['poisson', 'cyclic'\]"),
])
def test_bad_requests_are_refused_at_plan_time(bad, match):
  with pytest.raises(CbenchError, match=match) as e:
    dpft.plan(_cfg(options=OPTS + (bad,)), N)
  assert "\n" not in str(e.value)


def test_infeasible_target_is_refused_before_any_file(tmp_path,
                                                      demo_release_dir):
  cfg = _cfg(eps=1e-3, options=OPTS + (("max_noise_multiplier", 2.0),))
  with pytest.raises(CbenchError, match="Infeasible.*sampler=cyclic"):
    api.check_feasible(cfg, N)
  out = tmp_path / "out" / "synth.jsonl"
  with pytest.raises(CbenchError, match="Infeasible"):
    dpft.run(demo_release_dir, "/nonexistent-base", cfg, str(out))
  assert list(tmp_path.iterdir()) == []


def test_a_resume_with_another_sampler_is_refused(tmp_path):
  cyc = _plan()
  poisson = dpft.plan(_cfg(eps=math.inf, options=OPTS[1:]), N)  # no search
  path = str(tmp_path / "ledger.jsonl")
  binding = {"test": "mismatch"}
  ledger_lib.Ledger.open(path, dpft.make_ledger_header(
      cyc, cyc.make_sampler(0, 8), binding)).close()
  with pytest.raises(CbenchError, match="different run") as e:
    ledger_lib.Ledger.open(path, dpft.make_ledger_header(
        poisson, poisson.make_sampler(0, 8), binding))
  msg = str(e.value)
  assert "'sampler'" in msg and "\n" not in msg
  assert "sampler 'cyclic' in the ledger, 'poisson' requested" in msg


def test_poisson_plans_keep_their_config_hash():
  """The option is absent from a Poisson plan's dict, so ledgers and work
  directories of Poisson runs from before it still resume (the hash was
  computed before the option existed)."""
  p = dpft.plan(_cfg(eps=math.inf, options=OPTS[1:]), N)
  assert "sampler" not in p.to_dict()["options"]
  assert common.config_hash(p.to_dict()) == (
      "2c54941e83543f1a0e09b3a4e95f42c342ef1e528330ac4bf3bfa992459d7328")
  assert _plan().to_dict()["options"]["sampler"] == "cyclic"


# ---------------------------------------------------------------------------
# The run


def test_batches_cover_every_record_once_per_epoch(full_run):
  _, seen = full_run
  assert seen["executed"] == T
  assert [s for s, _, _ in seen["batches"]] == list(range(T))
  assert {rows for _, _, rows in seen["batches"]} == {8}    # one shape
  assert [len(i) for _, i, _ in seen["batches"]] == ([B] * (K - 1) + [4]) * 2
  by_step = _by_step(seen["batches"])
  np.testing.assert_array_equal(_epoch_counts(by_step), 1)
  assert all(by_step[t] == by_step[t + K] for t in range(K))   # cyclic


def test_ledger_events_compose_to_the_cyclic_event(full_run):
  path, _ = full_run
  p = _plan()
  cfg = p.cyclic_config()
  header, charges = _ledger(path)
  assert header["sampler"] == cfg.sampler(0, 8).describe()
  assert header["cyclic"]["relation"] == "replace_one"
  assert header["relation"] == "replace_one" and header["sampling_prob"] is None
  assert [c["id"] for c in charges] == [f"step:{t}" for t in range(T)]
  events = [accounting.event_from_dict(c["event"]) for c in charges]
  epoch = cfg.dp_event(K)
  assert [t for t, e in enumerate(events) if e == epoch] == [0, K]
  assert all(e == dpe.NoOpDpEvent() for t, e in enumerate(events)
             if t % K)
  # Every prefix holds exactly the all-iterates event of its steps.
  for t in range(T + 1):
    assert sum(e == epoch for e in events[:t]) == math.ceil(t / K)
  eps = ledger_lib.verify_file(str(path / "ledger.jsonl"))["epsilon"]
  assert eps == cfg.epsilon(p.delta) == p.planned_epsilon <= EPS


def test_each_epoch_is_charged_before_its_first_batch(full_run, tmp_path,
                                                      monkeypatch):
  _, seen = full_run
  p = _plan()
  assert sorted(seen["paid"]) == [0, K - 1, K, 2 * K - 1]
  one, two = (p.cyclic_config().epsilon(p.delta, steps=s) for s in (1, K + 1))
  assert seen["paid"][0] == seen["paid"][K - 1] == one < two
  assert seen["paid"][K] == two       # epoch 2 paid before its first batch
  assert _charged_before_use(seen, p)
  # Mutant: each epoch charged at its LAST step (same total, too late).
  real = dpft.Plan.step_event
  monkeypatch.setattr(dpft.Plan, "step_event",
                      lambda self, step=0: real(self, step + 1))
  late = _train(tmp_path, stop_after=K + 1)
  assert not _charged_before_use(late, p)


def test_crash_mid_epoch_then_resume(tmp_path, full_run):
  """Stopped after 14 steps (epoch 2 begun, checkpoint at 12): epoch 2 is
  already paid in full; the resume replays 12 and 13, charges nothing twice,
  draws the same batches and ends bitwise where the uninterrupted run did."""
  ref_path, ref = full_run
  p = _plan()
  first = _train(tmp_path, stop_after=K + 3)
  _, charges = _ledger(tmp_path)
  assert [c["id"] for c in charges] == [f"step:{t}" for t in range(K + 3)]
  stopped = ledger_lib.verify_file(str(tmp_path / "ledger.jsonl"))["epsilon"]
  assert stopped == p.cyclic_config().epsilon(p.delta)        # both epochs
  resumed = _train(tmp_path)
  assert resumed["executed"] == T - 12
  assert [s for s, _, _ in resumed["batches"]] == list(range(12, T))
  _, charges = _ledger(tmp_path)
  assert [c["id"] for c in charges] == [f"step:{t}" for t in range(T)]
  assert sum(c["event"]["class_name"] != "NoOpDpEvent" for c in charges) == 2
  assert [c["event"] for c in charges] == [
      c["event"] for c in _ledger(ref_path)[1]]
  assert ledger_lib.verify_file(str(tmp_path / "ledger.jsonl"))[
      "epsilon"] == stopped
  by_step = _by_step(first["batches"] + resumed["batches"])
  assert by_step == _by_step(ref["batches"])
  np.testing.assert_array_equal(_epoch_counts(by_step), 1)   # none lost
  for a, b in zip(jax.tree.leaves(resumed["params"]),
                  jax.tree.leaves(ref["params"])):
    np.testing.assert_array_equal(a, b)


@pytest.mark.stat
def test_gradients_carry_the_charged_noise(full_run, tmp_path, monkeypatch):
  """alpha = 1e-3 each tail: the shipped run passes; a step that adds 0.8 x
  the noise the ledger charges is rejected (lower tail)."""
  path, seen = full_run
  assert len(seen["norms"]) == T
  low, high = _noise_pvalues(seen, path)
  assert low > ALPHA and high > ALPHA, (low, high)
  real = dpft.Plan.dp_config
  monkeypatch.setattr(dpft.Plan, "dp_config", lambda self: dpsgd.DpSgdConfig(
      **{**real(self).to_dict(),
         "noise_multiplier": 0.8 * real(self).noise_multiplier}))
  weak = _train(tmp_path, stop_after=K)
  low, _ = _noise_pvalues(weak, tmp_path)
  assert low < ALPHA, low


@pytest.mark.slow  # the micro base model end to end (~1 min on 2 cores)
def test_run_end_to_end_on_the_demo_release(tmp_path, demo_release_dir,
                                            micro_base_dir):
  """`run` with sampler=cyclic (zero_out; 4 steps of a K = 814-step epoch,
  paid in full at step 0), then a rerun with sampler=poisson is refused."""
  opts = (("sampler", "cyclic"), ("relation", "zero_out"), ("steps", 4),
          ("batch_size", 6), ("seq_len", 24), ("pad_unit", 16),
          ("max_new_tokens", 12), ("decode_batch", 8),
          ("checkpoint_every", 2), ("log_every", 2))
  cfg = _cfg(eps=1.0, options=opts)
  out = str(tmp_path / "synth.jsonl")
  s = dpft.run(demo_release_dir, micro_base_dir, cfg, out)
  header, charges = _ledger(tmp_path, "synth.ledger.jsonl")
  cyc = dpft.plan(cfg, header["sampler"]["num_examples"]).cyclic_config()
  assert (cyc.steps_per_epoch, cyc.epochs) == (814, 1)
  assert s["sampler"] == "cyclic" and s["relation"] == "zero_out"
  assert s["epsilon"] == cyc.epsilon(s["delta"]) <= 1.0
  assert s["sampling_prob"] is None and s["charges"] == 4
  assert header["relation"] == "add_remove"          # zero_out's accountant
  assert header["cyclic"]["relation"] == "zero_out"
  assert header["sampler"]["kind"] == "cyclic"
  assert [c["event"]["class_name"] for c in charges] == [
      "SelfComposedDpEvent"] + ["NoOpDpEvent"] * 3
  assert len(open(out).readlines()) == 1
  poisson = _cfg(eps=1.0, options=(("relation", "replace_one"),) + opts[2:])
  with pytest.raises(CbenchError, match="sampler 'cyclic' in the ledger, "
                     "'poisson' requested"):
    dpft.run(demo_release_dir, micro_base_dir, poisson, out)
