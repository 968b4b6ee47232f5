"""DP fine-tuning synthesis: plan, end-to-end runs, ledger, crash + resume.

End-to-end runs use the `micro` base model and the demo release with tiny
shapes (T = 4 steps, expected batch 8 padded to 16 rows, 24-token rows,
5 documents of at most 12 tokens). epsilon = 0.1 keeps sigma large enough
for a fast PLD calibration (small sigma needs a long privacy-loss grid).
"""

import json
import math
import os

from dp_accounting import dp_event as dpe
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.corpus import release as release_lib
from cbench.models import model_store
from cbench.parallel import mesh as mesh_lib
from cbench.privacy import accounting
from cbench.privacy import ledger as ledger_lib
from cbench.synthesis import api
from cbench.synthesis import dp_finetune as dpft
from cbench.train import text_data

N_RECORDS = 4882  # demo train size (pure plan tests)
EPS = 0.1
TINY = (("steps", 4), ("batch_size", 8), ("seq_len", 24), ("pad_unit", 16),
        ("max_new_tokens", 12), ("decode_batch", 8), ("checkpoint_every", 2),
        ("log_every", 2))


def _cfg(eps=EPS, options=TINY, num_docs=5, **kw):
  return api.SynthesisConfig(method="dp_finetune", epsilon=eps,
                             num_docs=num_docs, options=options, **kw)


def _ledger_lines(path):
  with open(path) as f:
    recs = [json.loads(line) for line in f]
  return recs[0]["header"], recs[1:]


def _fresh_epsilon(path):
  """epsilon of the persisted events by a fresh accountant (not Ledger)."""
  header, charges = _ledger_lines(path)
  events = [accounting.event_from_dict(r["event"]) for r in charges]
  return accounting.epsilon(dpe.ComposedDpEvent(events), header["delta"],
                            header["relation"], "pld",
                            header["value_discretization_interval"])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, demo_release_dir, micro_base_dir):
  """One uninterrupted epsilon = 0.1 run (shared by several tests)."""
  out = str(tmp_path_factory.mktemp("dpft_full") / "synth.jsonl")
  summary = dpft.run(demo_release_dir, micro_base_dir, _cfg(), out)
  return out, summary


# ---------------------------------------------------------------------------
# Pure planning


def test_plan_spends_but_never_exceeds_the_target():
  p = dpft.plan(_cfg(), N_RECORDS)
  assert p.delta == api.default_delta(N_RECORDS) < 1.0 / N_RECORDS
  assert p.sampling_prob == 8 / N_RECORDS and p.clip_norm == 1.0
  eps = dpft.composed_epsilon(p.step_event(), p.steps, p.delta, p.relation)
  assert eps == p.planned_epsilon
  assert 0.99 * EPS <= eps <= EPS
  # The check can fail: 2% less noise overspends.
  weaker = accounting.poisson_event(p.sampling_prob,
                                    0.98 * p.noise_multiplier, 1, p.relation)
  assert dpft.composed_epsilon(weaker, p.steps, p.delta, p.relation) > EPS
  inf = dpft.plan(_cfg(eps=math.inf), N_RECORDS)
  assert inf.noise_multiplier == 0.0 and math.isinf(inf.clip_norm)


def test_large_epsilon_plans_with_the_coarser_discretization():
  # eps = 500: the PLD interval is accounting.discretization_interval(500)
  # (5e-3), used to calibrate, to check the plan and in the ledger header.
  # (300 steps of batch 64 keep sigma, hence the PLD, moderate: ~5 s.)
  opts = tuple((k, v) for k, v in TINY if k not in ("steps", "batch_size"))
  p = dpft.plan(_cfg(eps=500.0, options=opts + (("steps", 300),
                                                 ("batch_size", 64))),
                N_RECORDS)
  vdi = accounting.discretization_interval(500.0)
  assert vdi == pytest.approx(5e-3)
  eps = dpft.composed_epsilon(p.step_event(), p.steps, p.delta, p.relation,
                              vdi)
  assert eps == p.planned_epsilon and 0.99 * 500 <= eps <= 500
  sampler = p.make_sampler(0, 8)
  header = dpft.make_ledger_header(p, sampler, {"x": 1})
  assert header["value_discretization_interval"] == vdi
  # Both intervals give upper bounds; at this epsilon they agree closely.
  assert dpft.composed_epsilon(p.step_event(), p.steps, p.delta,
                               p.relation, vdi / 2) == pytest.approx(
                                   eps, rel=1e-3)


def test_options_are_validated():
  with pytest.raises(CbenchError, match="Unknown synthesis option"):
    dpft.plan(_cfg(options=(("stepz", 3),)), N_RECORDS)
  with pytest.raises(CbenchError, match="clipping=vmap"):
    dpft.plan(_cfg(options=(("trainable", "lora"), ("clipping", "ghost"))),
              N_RECORDS)
  with pytest.raises(CbenchError, match="batch_size"):
    dpft.plan(_cfg(options=(("batch_size", 10),)), 5)
  with pytest.raises(CbenchError, match="temperature"):
    dpft.plan(_cfg(options=(("temperature", 0.0),)), N_RECORDS)


def test_unreachable_epsilon_raises_before_any_file(tmp_path,
                                                    demo_release_dir):
  cfg = _cfg(eps=1e-3, options=TINY + (("max_noise_multiplier", 2.0),))
  with pytest.raises(CbenchError, match="Infeasible.*max_noise_multiplier"):
    api.check_feasible(cfg, N_RECORDS)
  out = tmp_path / "out" / "synth.jsonl"
  with pytest.raises(CbenchError, match="Infeasible"):
    dpft.run(demo_release_dir, "/nonexistent-base", cfg, str(out))
  assert not os.path.exists(tmp_path / "out")
  assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# End to end


def test_end_to_end_writes_docs_and_a_complete_ledger(full_run):
  out, s = full_run
  docs = [json.loads(line) for line in open(out)]
  assert len(docs) == s["num_docs"] == 5
  assert [d["id"] for d in docs] == [f"d{i:06d}" for i in range(5)]
  assert all(set(d) == {"id", "text"} and isinstance(d["text"], str)
             for d in docs)
  assert any(d["text"] for d in docs)
  ledger_file = api.ledger_path(out)
  header, charges = _ledger_lines(ledger_file)
  # Ledger == executed steps, each charged once, in order.
  assert [c["id"] for c in charges] == [f"step:{i}" for i in range(4)]
  assert s["charges"] == s["steps"] == s["executed_steps"] == 4
  # Reported epsilon: <= target, == a fresh accountant over the file.
  assert s["epsilon"] <= EPS
  # (float reassociation: 4 composed events vs one 4-fold self-composition)
  assert s["epsilon"] == pytest.approx(_fresh_epsilon(ledger_file), rel=1e-9)
  assert ledger_lib.verify_file(ledger_file)["epsilon"] == s["epsilon"]
  for key in ("relation", "sampler", "accountant", "noise_multiplier",
              "clip_norm", "sampling_prob", "steps", "delta"):
    assert key in header
  assert header["relation"] == "add_remove" and header["accountant"] == "pld"
  assert header["sampler"]["kind"] == "poisson"
  assert header["sampler"]["num_examples"] == N_RECORDS
  assert header["noise_multiplier"] == s["noise_multiplier"] > 0
  assert header["steps"] == 4 and header["clip_norm"] == 1.0
  assert header["delta"] == s["delta"] == api.default_delta(N_RECORDS)
  for key in ("method", "epsilon", "delta", "num_docs",
              "noise_multiplier", "steps", "expected_batch_size",
              "clip_norm", "seconds"):
    assert key in s
  assert s["method"] == "dp_finetune" and "expost_epsilon" not in s
  # Every charge is bound to its step and to its step's noise key.
  fingerprints = [c["meta"]["noise_key"] for c in charges]
  assert [c["meta"]["step"] for c in charges] == list(range(4))
  assert len(set(fingerprints)) == 4
  metrics = [json.loads(line) for line in
             open(os.path.join(s["workdir"], "metrics.jsonl"))]
  assert [m["step"] for m in metrics] == [2, 4]
  assert all(math.isfinite(m["noisy_grad_norm"]) for m in metrics)


def test_crash_then_resume_equals_uninterrupted(tmp_path, full_run,
                                                demo_release_dir,
                                                micro_base_dir):
  _, ref = full_run
  out = str(tmp_path / "synth.jsonl")
  ledger_file = api.ledger_path(out)
  # Crash after 3 steps: checkpoint at 2, step 2 charged but lost.
  stopped = dpft.run(demo_release_dir, micro_base_dir, _cfg(), out,
                     stop_after=3)
  assert stopped == {"stopped_at": 3, "charges": 3}
  assert not os.path.exists(out)
  resumed = dpft.run(demo_release_dir, micro_base_dir, _cfg(), out)
  assert resumed["executed_steps"] == 2            # replayed step 2, ran 3
  assert resumed["params_sha256"] == ref["params_sha256"]
  _, charges = _ledger_lines(ledger_file)
  assert [c["id"] for c in charges] == [f"step:{i}" for i in range(4)]
  assert resumed["epsilon"] == ref["epsilon"]
  with open(out) as a, open(ref["out"]) as b:
    assert a.read() == b.read()
  # A finished run re-run with the same flags charges nothing new.
  again = dpft.run(demo_release_dir, micro_base_dir, _cfg(), out)
  assert again["executed_steps"] == 0 and again["charges"] == 4


def test_forgotten_charges_are_refused(tmp_path, demo_release_dir,
                                       micro_base_dir):
  out = str(tmp_path / "synth.jsonl")
  dpft.run(demo_release_dir, micro_base_dir, _cfg(), out, stop_after=2)
  os.remove(api.ledger_path(out))    # a checkpoint now outlives its charges
  with pytest.raises(CbenchError, match="forgotten"):
    dpft.run(demo_release_dir, micro_base_dir, _cfg(), out)
  other = _cfg(options=TINY + (("learning_rate", 5e-4),))
  with pytest.raises(CbenchError, match="different run"):
    dpft.run(demo_release_dir, micro_base_dir, other, out)


def test_epsilon_inf_is_the_nonprivate_run_through_the_same_path(
    tmp_path, demo_release_dir, micro_base_dir):
  out = str(tmp_path / "synth.jsonl")
  s = dpft.run(demo_release_dir, micro_base_dir, _cfg(eps=math.inf), out)
  assert s["noise_multiplier"] == 0.0 and s["clip_norm"] == "inf"
  assert s["epsilon"] == "inf" and s["target_epsilon"] == "inf"
  header, charges = _ledger_lines(api.ledger_path(out))
  assert header["noise_multiplier"] == 0.0 and header["clip_norm"] == "inf"
  assert len(charges) == 4 and math.isinf(_fresh_epsilon(api.ledger_path(out)))
  assert len(open(out).readlines()) == 5


# ---------------------------------------------------------------------------
# Low-rank adapters


def test_lora_adapters_start_at_the_base_and_stay_low_rank(micro_base_dir):
  base = jax.device_get(model_store.load(micro_base_dir).params)
  lora = dpft.init_lora(base, dpft.Options().lora_targets, 2,
                        jax.random.key(0))
  targets = dpft.lora_targets(base, dpft.Options().lora_targets)
  assert ("blocks_0", "attn", "o", "kernel") in targets
  assert not any(p[0] in ("embed", "final_norm") for p in targets)
  merged = dpft.merge_lora({**base, **lora}, 8.0)
  flat_b, flat_m = dpft._flatten(base), dpft._flatten(merged)
  assert set(flat_b) == set(flat_m)
  for path in flat_b:
    np.testing.assert_array_equal(flat_b[path], flat_m[path])
  # Non-zero B: only target kernels move, by a rank-<=2 update.
  rng = np.random.default_rng(0)
  lora = jax.tree.map(lambda x: rng.standard_normal(x.shape), lora)
  flat_m = dpft._flatten(dpft.merge_lora({**base, **lora}, 8.0))
  for path in flat_b:
    diff = np.asarray(flat_m[path], np.float64) - flat_b[path]
    if path in targets:
      k = dpft._n_in(path)
      mat = diff.reshape(int(np.prod(diff.shape[:k])), -1)
      assert np.linalg.matrix_rank(mat, tol=1e-3) == 2
    else:
      assert not diff.any()


def _finetune(path, release_dir, base_dir, eps, opts, tag):
  """(base bundle, `finetune` result) on one device, fresh ledger."""
  p = dpft.plan(_cfg(eps=eps, options=opts), N_RECORDS)
  mesh = mesh_lib.make_mesh(devices=jax.devices()[:1])
  bundle = model_store.load(base_dir, mesh=mesh)
  texts = [r["text"] for r in
           release_lib.load_release(release_dir).corpus("train")]
  rows = text_data.tokenize_rows(texts, bundle.tokenizer, 24)
  header = dpft.make_ledger_header(p, p.make_sampler(0, 16), {"test": tag})
  with ledger_lib.Ledger.open(str(path / f"{tag}.json"), header) as led:
    params = jax.tree.map(jnp.copy, bundle.params)   # the step donates
    res = dpft.finetune(params, bundle.config, rows, p,
                        str(path / f"work-{tag}"), led, seed=0, mesh=mesh)
    assert led.count == p.steps == res.executed
  return bundle, res


@pytest.mark.slow  # the ghost step compiles slowly on CPU (~4 min loaded)
def test_ghost_clipping_run_matches_vmap(tmp_path, demo_release_dir,
                                         micro_base_dir):
  opts = TINY + (("steps", 2),)
  bundle, vm = _finetune(tmp_path, demo_release_dir, micro_base_dir, EPS,
                         opts, "vmap")
  _, gh = _finetune(tmp_path, demo_release_dir, micro_base_dir, EPS,
                    opts + (("clipping", "ghost"),), "ghost")
  base = dpft._flatten(jax.device_get(bundle.params))
  a, b = dpft._flatten(jax.device_get(vm.params)), dpft._flatten(
      jax.device_get(gh.params))
  worst = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
  moved = max(float(np.max(np.abs(a[k] - base[k]))) for k in a)
  assert worst < 1e-5 and moved > 5e-4, (worst, moved)


def test_lora_finetune_moves_only_adapted_kernels(tmp_path, demo_release_dir,
                                                  micro_base_dir):
  opts = TINY + (("trainable", "lora"), ("lora_rank", 2),
                 ("learning_rate", 1e-2))
  bundle, res = _finetune(tmp_path, demo_release_dir, micro_base_dir,
                          math.inf, opts, "lora")
  p = dpft.plan(_cfg(eps=math.inf, options=opts), N_RECORDS)
  base = dpft._flatten(jax.device_get(bundle.params))
  got = dpft._flatten(jax.device_get(res.params))
  targets = set(dpft.lora_targets(bundle.params, p.options.lora_targets))
  moved = {k for k in base if not np.array_equal(base[k], got[k])}
  assert moved and moved <= targets
