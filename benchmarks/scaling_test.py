"""Smoke test of benchmarks/scaling.py on tiny shapes: the sharded DP-SGD
step in 1- and 2-device subprocesses agrees (slow: the same equality is in
the default suite as privacy/dpsgd_test and parallel/multihost_test), and
the Beam row reports a byte-identical release."""

import importlib.util

import pytest

from benchmarks import scaling


@pytest.mark.slow  # Two JAX subprocesses compiling: ~1 min on 2 shared cores.
def test_dpsgd_scaling_rows_and_functional_check():
  rows = scaling.dpsgd_scaling([1, 2], model="micro", vocab_size=64,
                               batch_size=4, seq_len=8, rounds=1)
  assert [r["devices"] for r in rows] == [1, 2]
  assert [r["rows_per_device"] for r in rows] == [4, 2]
  assert all(r["finite"] and r["examples_per_s"] > 0 for r in rows)
  assert rows[1]["max_param_diff_vs_1dev"] < 1e-5


@pytest.mark.skipif(importlib.util.find_spec("apache_beam") is None,
                    reason="apache_beam is not installed (extra 'beam')")
def test_beam_throughput_row():
  rows = scaling.beam_throughput("demo", workers=1)
  assert [r["path"] for r in rows] == ["single_process", "beam_direct_1w"]
  assert all(r["byte_identical"] and r["docs_per_s"] > 0 for r in rows)
  assert rows[0]["documents"] == rows[1]["documents"] > 5000
  assert all(r["shards"] >= 3 and 0 < r["corpus_s"] <= r["wall_s"]
             for r in rows)
