"""Smoke test: the speed benchmark runs end to end on a micro model."""

import math

from benchmarks import private_prediction_speed as bench


def test_measure_runs_and_reports_a_ratio():
  out = bench.measure("svt", model="micro", vocab_size=64, batch_size=2,
                      num_docs=2, prompt_len=4, n1=3, n2=6, repeats=1)
  assert out["rows"] == 6 and out["method"] == "svt"
  # Timings this short are noise on a shared CPU; check they are numbers.
  for k in ("plain_ms_per_step", "private_ms_per_step", "ratio",
            "synthetic_tokens_per_s"):
    assert math.isfinite(out[k]) and out[k] > 0, (k, out)


def test_every_method_builds_a_sampler_that_never_stops_early():
  for method in ("svt", "exp_mech", "invisible_ink", "median", "public_only"):
    sampler = bench.make_sampler(method, 3, 20)
    assert hasattr(sampler, "next_tokens")
