"""Ledger: write-ahead charges, idempotent replay, torn tails, tampering,
binding to the run's header, epsilon recomputed from persisted events."""

import json
import math
import os
import subprocess
import sys
import textwrap

from dp_accounting import dp_event as dpe
import pytest

from cbench._validate import CbenchError
from cbench.privacy import accounting
from cbench.privacy import batch_sampling
from cbench.privacy import ledger as ledger_lib

SAMPLER = batch_sampling.PoissonSampler(1000, 0.02, seed=0)
EVENT = SAMPLER.dp_event(1.0, 1, "add_remove")


def _header(**over):
  kw = dict(relation="add_remove", sampler=SAMPLER.describe(),
            accountant="pld", delta=1e-5, config_hash="cfg-A",
            value_discretization_interval=1e-3)
  kw.update(over)
  return ledger_lib.make_header(**kw)


def test_charge_resume_and_idempotent_replay(tmp_path):
  path = str(tmp_path / "run.ledger.jsonl")
  with ledger_lib.Ledger.open(path, _header()) as led:
    for step in range(5):
      assert led.charge(step, EVENT, meta={"key": f"k{step}"})
  # "Kill" after step 4 was charged; resume replays steps 3..4 then goes on.
  with ledger_lib.Ledger.open(path, _header()) as led:
    assert led.count == 5
    assert not led.charge(3, EVENT, meta={"key": "k3"})   # replay: no-op
    assert not led.charge(4, EVENT, meta={"key": "k4"})
    with pytest.raises(CbenchError, match="different content"):
      led.charge(4, EVENT, meta={"key": "fresh-noise"})   # must use new id
    for step in range(5, 9):
      assert led.charge(step, EVENT, meta={"key": f"k{step}"})
    assert led.count == 9
    eps = led.epsilon()
  fresh = accounting.epsilon(SAMPLER.dp_event(1.0, 9, "add_remove"), 1e-5,
                             "add_remove", "pld", 1e-3)
  assert eps == pytest.approx(fresh, abs=1e-9)
  info = ledger_lib.verify_file(path)  # read-only, for reports
  assert info["epsilon"] == eps and info["charges"] == 9
  assert info["delta"] == 1e-5 and info["relation"] == "add_remove"
  assert eps > accounting.epsilon(SAMPLER.dp_event(1.0, 8, "add_remove"),
                                  1e-5, "add_remove", "pld", 1e-3)


def test_changed_config_refuses_resume(tmp_path):
  path = str(tmp_path / "l.json")
  with ledger_lib.Ledger.open(path, _header()) as led:
    led.charge(0, EVENT)
  for change in (dict(config_hash="cfg-B"), dict(relation="replace_one"),
                 dict(delta=1e-6), dict(accountant="rdp"),
                 dict(sampler=batch_sampling.PoissonSampler(1000, 0.03, 0)
                      .describe())):
    with pytest.raises(CbenchError, match="different run"):
      ledger_lib.Ledger.open(path, _header(**change))
  # Library versions may differ on resume.
  h = _header()
  h["versions"] = {"jax": "0.0.0"}
  ledger_lib.Ledger.open(path, h).close()


def _lines(path):
  with open(path, "rb") as f:
    return f.read().split(b"\n")


def test_tampering_is_detected(tmp_path):
  path = str(tmp_path / "l.json")
  with ledger_lib.Ledger.open(path, _header()) as led:
    for s in range(4):
      led.charge(s, EVENT)
  original = open(path, "rb").read()
  lines = original.split(b"\n")

  def attempt(new_lines):
    with open(path, "wb") as f:
      f.write(b"\n".join(new_lines))
    with pytest.raises(CbenchError, match="hash chain|corrupt|header"):
      ledger_lib.Ledger.open(path, _header())

  attempt(lines[:2] + lines[3:])                       # a charge dropped
  with pytest.raises(CbenchError, match="hash chain"):
    ledger_lib.verify_file(path)
  attempt([lines[0], lines[2], lines[1]] + lines[3:])  # reordered
  rec = json.loads(lines[2])
  rec["event"]["event"]["sampling_probability"] = 0.001  # cheaper event
  attempt(lines[:2] + [json.dumps(rec).encode()] + lines[3:])
  hdr = json.loads(lines[0])
  hdr["header"]["delta"] = 0.1
  attempt([json.dumps(hdr).encode()] + lines[1:])
  with open(path, "wb") as f:
    f.write(original)
  ledger_lib.Ledger.open(path, _header()).close()  # untouched file verifies


def test_torn_last_line_is_dropped(tmp_path):
  path = str(tmp_path / "l.json")
  with ledger_lib.Ledger.open(path, _header()) as led:
    led.charge(0, EVENT)
    led.charge(1, EVENT)
  with open(path, "ab") as f:
    f.write(b'{"kind": "charge", "seq": 2, "id": "2", "ev')  # crash mid-write
  with ledger_lib.Ledger.open(path, _header()) as led:
    assert led.count == 2 and not led.has(2)
    assert led.charge(2, EVENT)
  with ledger_lib.Ledger.open(path, _header()) as led:
    assert led.entry_ids == ["0", "1", "2"]


def test_single_writer_and_event_validation(tmp_path):
  path = str(tmp_path / "l.json")
  led = ledger_lib.Ledger.open(path, _header())
  with pytest.raises(CbenchError, match="another process"):
    ledger_lib.Ledger.open(path, _header())
  with pytest.raises(CbenchError):
    led.charge("x", {"class_name": "NotAnEvent"})
  led.close()
  with pytest.raises(CbenchError, match="closed"):
    led.charge(0, EVENT)


def test_generic_entries_and_nonprivate(tmp_path):
  path = str(tmp_path / "pp.json")
  header = _header(config_hash="pp", config={"clip_norm": float("inf")})
  assert header["config"] == {"clip_norm": "inf"}
  with ledger_lib.Ledger.open(path, header) as led:
    led.charge("doc:17", accounting.no_amplification_event(2.0, 1,
                                                           "add_remove"))
    led.charge("doc:18", {"class_name": "GaussianDpEvent",
                          "noise_multiplier": 2.0})
    assert led.count == 2
    assert math.isfinite(led.epsilon())
    led.charge("step:0", SAMPLER.dp_event(0.0, 1, "add_remove"))
    assert led.epsilon() == math.inf
    assert led.summary()["epsilon"] == "inf"


_CHILD = textwrap.dedent("""
    import os, sys
    from cbench.privacy import batch_sampling, ledger
    s = batch_sampling.PoissonSampler(1000, 0.02, seed=0)
    h = ledger.make_header(relation="add_remove", sampler=s.describe(),
        accountant="pld", delta=1e-5, config_hash="cfg-A",
        value_discretization_interval=1e-3)
    led = ledger.Ledger.open(sys.argv[1], h)
    ev = s.dp_event(1.0, 1, "add_remove")
    start = led.count
    for step in range(start, 1000):
      led.charge(step, ev)
      # Only now is the step's output "released".
      with open(sys.argv[2], "a") as f:
        f.write(f"{step}\\n")
        f.flush()
        os.fsync(f.fileno())
      if step == int(sys.argv[3]):
        os.kill(os.getpid(), 9)
""")


def test_sigkill_never_releases_uncharged_output(tmp_path):
  path, released = str(tmp_path / "l.json"), str(tmp_path / "released.txt")
  env = dict(os.environ, PYTHONPATH=os.getcwd())
  for kill_at in (3, 7):
    r = subprocess.run([sys.executable, "-c", _CHILD, path, released,
                        str(kill_at)], env=env, capture_output=True)
    assert r.returncode == -9, r.stderr.decode()[-2000:]
    with ledger_lib.Ledger.open(path, _header()) as led:
      steps = [int(x) for x in open(released).read().split()]
      assert led.count >= len(steps) and led.count == kill_at + 1
      assert led.entry_ids == [str(i) for i in range(led.count)]


def test_step_charge_hook(tmp_path):
  path = str(tmp_path / "h.json")
  with ledger_lib.Ledger.open(path, _header()) as led:
    hook = ledger_lib.StepChargeHook(led, EVENT, key_data=b"key-A")
    for step in (0, 1, 2, 1, 2, 3):  # a resume replays steps 1 and 2
      hook.before_step(step)
    assert led.count == 4 and led.entry_ids[-1] == "step:3"
    # A resumed run that would draw different noise for a charged step
    # (another key) is refused: the charge is bound to what it paid for.
    other = ledger_lib.StepChargeHook(led, EVENT, key_data=b"key-B")
    with pytest.raises(CbenchError, match="already charged with different"):
      other.before_step(2)
    other.before_step(4)  # A new step: charged (with its own fingerprint).
  records = [json.loads(line) for line in open(path)][1:]
  assert [r["meta"]["step"] for r in records] == [0, 1, 2, 3, 4]
  assert records[0]["meta"]["noise_key"] == ledger_lib.key_fingerprint(
      b"key-A", 0) != ledger_lib.key_fingerprint(b"key-A", 1)
  assert all(r["config_hash"] == "cfg-A" for r in records)


def test_step_charge_hook_with_a_per_step_event(tmp_path):
  """``step -> event`` (a cyclic run: the epoch's charge at its first step,
  NoOps after); a replay re-charges the same event, never twice."""
  of = lambda step: EVENT if step % 3 == 0 else dpe.NoOpDpEvent()
  with ledger_lib.Ledger.open(str(tmp_path / "h.json"), _header()) as led:
    hook = ledger_lib.StepChargeHook(led, of, key_data=b"key-A")
    for step in (0, 1, 2, 3, 4, 3, 4, 5):   # a resume replays 3 and 4
      hook.before_step(step)
    assert led.count == 6
    assert led.epsilon() == pytest.approx(accounting.epsilon(
        SAMPLER.dp_event(1.0, 2, "add_remove"), 1e-5, "add_remove", "pld",
        1e-3), abs=1e-9)


def test_a_resume_with_another_sampler_names_both_kinds(tmp_path):
  path = str(tmp_path / "l.json")
  ledger_lib.Ledger.open(path, _header()).close()
  shuffled = batch_sampling.ShuffledEpochSampler(1000, 20, seed=0)
  with pytest.raises(CbenchError) as e:
    ledger_lib.Ledger.open(path, _header(sampler=shuffled.describe()))
  assert "'sampler'" in str(e.value) and "\n" not in str(e.value)
  assert "sampler 'poisson' in the ledger, 'shuffled' requested" in str(
      e.value)
