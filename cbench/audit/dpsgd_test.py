"""One-run audit of the shipped DP fine-tune: below the ledger's epsilon when
the run is right, above it when the run is broken (noise / 4, no clipping).

The micro base model on the demo release (4,882 records) with 512 probes and
64 input canaries; 40 steps at expected batch 256 (q = 0.047, each canary
sampled ~1.9 times). The claimed epsilon is 2 (fixed seeds; the coins are the
auditor's generator). `pytest --seed=random` reruns with fresh seeds.
"""

import math
import os

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.audit import dpsgd as audit_lib
from cbench.privacy import canaries
from cbench.privacy import clipping
from cbench.privacy import dpsgd
from cbench.synthesis import api
from cbench.synthesis import dp_finetune
from cbench.testing import fixtures

EPS = 2.0
OPTIONS = (("steps", 40), ("batch_size", 256.0), ("seq_len", 24),
           ("pad_unit", 64), ("learning_rate", 1e-3), ("checkpoint_every", 20),
           ("log_every", 20), ("max_new_tokens", 8), ("decode_batch", 8))


def _seed() -> int:
  return fixtures.stat_seed()


def _request(eps=EPS, seed=0):
  return api.SynthesisConfig(method="dp_finetune", epsilon=eps, num_docs=1,
                             options=OPTIONS, seed=seed)


def _audit(seed):
  return audit_lib.OneRunConfig(num_probes=512, num_inputs=64,
                                input_tokens=16, seed=seed)


def _run(tmp_path, release, base, name, seed):
  return audit_lib.run_one_run_audit(release, base, _request(seed=seed),
                                     _audit(seed), str(tmp_path / name))


@pytest.fixture(scope="module")
def correct_run(tmp_path_factory, demo_release_dir, micro_base_dir):
  root = tmp_path_factory.mktemp("audit_ok")
  return root, _run(root, demo_release_dir, micro_base_dir, "ok", _seed())


def test_correct_run_stays_below_the_ledger_epsilon(correct_run):
  tmp_path, s = correct_run
  assert 0.9 * EPS <= s["epsilon"] <= EPS
  assert s["audit_delta"] == s["delta"] and s["audit_epsilon"] == s["epsilon"]
  for name, b in s["bounds"].items():
    assert b["epsilon_lb"] <= s["epsilon"], (name, b)
    assert b["ceiling"] > s["epsilon"], (name, b)   # the audit could see it
  with np.load(tmp_path / "ok" / "scores.npz") as z:
    assert z["coins_probe_max"].shape == (512,)
  audit_lib.check_not_broken(s)
  assert os.path.exists(tmp_path / "ok" / audit_lib.SUMMARY)


@pytest.mark.slow
def test_killed_audit_resumes_to_the_same_scores(
    tmp_path, correct_run, demo_release_dir, micro_base_dir):
  ok_dir, ok = correct_run
  w = str(tmp_path / "resumed")
  stopped = audit_lib.run_one_run_audit(
      demo_release_dir, micro_base_dir, _request(seed=_seed()),
      _audit(_seed()), w, stop_after=25)
  assert stopped["stopped_at"] == 25
  s = audit_lib.run_one_run_audit(demo_release_dir, micro_base_dir,
                                  _request(seed=_seed()), _audit(_seed()), w)
  assert s["bounds"] == ok["bounds"] and s["epsilon"] == ok["epsilon"]
  with np.load(os.path.join(w, "scores.npz")) as a, np.load(
      ok_dir / "ok" / "scores.npz") as b:
    for k in a.files:
      np.testing.assert_array_equal(a[k], b[k])


def test_quarter_noise_is_caught(tmp_path, monkeypatch, demo_release_dir,
                                 micro_base_dir):
  real = dp_finetune.Plan.dp_config

  def quarter(self):
    cfg = real(self)
    return dpsgd.DpSgdConfig(**{**cfg.to_dict(),
                                "noise_multiplier": cfg.noise_multiplier / 4})
  monkeypatch.setattr(dp_finetune.Plan, "dp_config", quarter)
  s = _run(tmp_path, demo_release_dir, micro_base_dir, "noise", _seed())
  assert audit_lib.max_bound(s) > s["epsilon"], s["bounds"]
  with pytest.raises(CbenchError, match="not as private as accounted"):
    audit_lib.check_not_broken(s)


def test_missing_clipping_is_caught(tmp_path, monkeypatch, demo_release_dir,
                                    micro_base_dir):
  real = clipping.clipped_grad_sum

  def unclipped(loss_fn, params, batch, is_padding, clip_norm, *a, **kw):
    del clip_norm
    return real(loss_fn, params, batch, is_padding, math.inf, *a, **kw)
  monkeypatch.setattr(clipping, "clipped_grad_sum", unclipped)
  dp_finetune._step_fn.cache_clear()   # same config: drop the clipped step
  try:
    s = _run(tmp_path, demo_release_dir, micro_base_dir, "noclip", _seed())
  finally:
    dp_finetune._step_fn.cache_clear()
  assert s["bounds"]["probe_max"]["epsilon_lb"] > s["epsilon"], s["bounds"]


def test_layout_keeps_public_shapes_independent_of_the_coins():
  a = audit_lib.draw_canaries(_audit(1), 512, 4, 1, 2, 0, 24)
  b = audit_lib.draw_canaries(_audit(2), 512, 4, 1, 2, 0, 24)
  assert not np.array_equal(a.probe_in, b.probe_in)
  la, lb = audit_lib.layout(10, a, 10.0), audit_lib.layout(10, b, 10.0)
  assert la.kinds.shape == lb.kinds.shape == (10 + 64 + 512,)
  assert np.all(la.kinds[:10] == canaries.KIND_REAL)
  probes = la.kinds[10 + 64:]
  assert np.array_equal(probes == canaries.KIND_PROBE, a.probe_in)
  assert set(np.unique(probes)) <= {canaries.KIND_OUT, canaries.KIND_PROBE}


def test_bad_audit_requests_are_named(tmp_path, demo_release_dir,
                                      micro_base_dir):
  with pytest.raises(CbenchError, match="num_probes"):
    audit_lib.OneRunConfig(num_probes=1)
  with pytest.raises(CbenchError, match="clipping=vmap"):
    audit_lib.run_one_run_audit(
        demo_release_dir, micro_base_dir,
        api.SynthesisConfig(method="dp_finetune", epsilon=EPS, num_docs=1,
                            options=OPTIONS + (("clipping", "ghost"),)),
        _audit(0), str(tmp_path / "g"))
  with pytest.raises(CbenchError, match="runs method"):
    audit_lib.run_one_run_audit(
        demo_release_dir, micro_base_dir,
        api.SynthesisConfig(method="public_only", epsilon=EPS, num_docs=1),
        _audit(0), str(tmp_path / "p"))
  assert not os.path.exists(tmp_path / "g")
