"""Submissions: a hand-written corpus plus ledger is accepted "as declared";
a known method's ε is recomputed; every malformed part is refused by name."""

import json
import os

from dp_accounting import dp_event as dpe
import pytest

from cbench._validate import CbenchError
from cbench.corpus import release as release_lib
from cbench.io import files
from cbench.leaderboard import submission
from cbench.privacy import accounting
from cbench.privacy import ledger as ledger_lib


def write_submission(root, release_dir, *, method="my_method", epsilon=3.0,
                     sigma=2.0, steps=5, **meta_overrides):
  """A submission written by hand: JSONL, a ledger of Gaussian charges."""
  os.makedirs(root, exist_ok=True)
  release = release_lib.load_release(release_dir)
  files.write_jsonl(os.path.join(root, submission.CORPUS),
                    [{"text": f"A hand-written document number {i}."}
                     for i in range(6)])
  header = ledger_lib.make_header(relation="add_remove", sampler="none",
                                  accountant="pld", delta=1e-5,
                                  config_hash="hand", method=method)
  with ledger_lib.Ledger.open(os.path.join(root, submission.LEDGER),
                              header) as led:
    for s in range(steps):
      led.charge(f"step:{s}", dpe.GaussianDpEvent(sigma))
  meta = {"name": "hand team", "method": method, "link": "arXiv:0000.00000",
          "base_model": "none", "epsilon": epsilon, "delta": 1e-5,
          "relation": "add_remove", "tuned_on_private": False,
          "release_id": release.manifest["release_id"],
          "release_sha256": files.sha256_file(
              os.path.join(release.root, "manifest.json"))}
  meta.update(meta_overrides)
  files.write_json(os.path.join(root, submission.METADATA), meta)
  return root


def test_unknown_method_is_as_declared(tmp_path, demo_release_dir):
  root = write_submission(str(tmp_path / "s"), demo_release_dir)
  sub = submission.validate(root, release_lib.load_release(demo_release_dir))
  assert sub.status == "as declared" and sub.epsilon == 3.0
  assert sub.num_docs == 6


def test_known_method_is_recomputed_and_an_understatement_refused(
    tmp_path, demo_release_dir):
  rel = release_lib.load_release(demo_release_dir)
  eps = accounting.epsilon(dpe.ComposedDpEvent([dpe.GaussianDpEvent(2.0)] * 5),
                           1e-5, "add_remove", "pld")
  root = write_submission(str(tmp_path / "k"), demo_release_dir,
                          method="dp_finetune", epsilon=round(eps, 3) + 0.01)
  sub = submission.validate(root, rel)
  assert sub.status == "verified" and sub.epsilon == pytest.approx(eps)
  low = write_submission(str(tmp_path / "low"), demo_release_dir,
                         method="dp_finetune", epsilon=eps / 2)
  with pytest.raises(CbenchError, match="compose to"):
    submission.validate(low, rel)


def _tamper(path):
  lines = open(path).read().splitlines()
  rec = json.loads(lines[2])
  rec["event"]["noise_multiplier"] = 20.0       # claim more noise
  lines[2] = json.dumps(rec)
  open(path, "w").write("\n".join(lines) + "\n")


@pytest.mark.parametrize("breakage,needle", [
    ("tamper", "hash chain"),
    ("release_id", "not '2026q4'"),
    ("release_sha", "manifest sha256"),
    ("missing_field", "misses ['tuned_on_private']"),
    ("bad_type", "tuned_on_private='no'"),
    ("empty_text", "non-empty"),
    ("no_ledger", "Ledger not found"),
    ("bad_eps", "epsilon=-1"),
    ("relation", "relation"),
])
def test_bad_submissions_are_named(tmp_path, demo_release_dir, breakage,
                                   needle):
  rel = release_lib.load_release(demo_release_dir)
  root = write_submission(str(tmp_path / "b"), demo_release_dir)
  meta_path = os.path.join(root, submission.METADATA)
  meta = files.read_json(meta_path)
  if breakage == "tamper":
    _tamper(os.path.join(root, submission.LEDGER))
  elif breakage == "release_id":
    meta["release_id"] = "2027q1"
  elif breakage == "release_sha":
    meta["release_sha256"] = "0" * 64
  elif breakage == "missing_field":
    del meta["tuned_on_private"]
  elif breakage == "bad_type":
    meta["tuned_on_private"] = "no"
  elif breakage == "empty_text":
    with open(os.path.join(root, submission.CORPUS), "a") as f:
      f.write('{"text": "  "}\n')
  elif breakage == "no_ledger":
    os.remove(os.path.join(root, submission.LEDGER))
  elif breakage == "bad_eps":
    meta["epsilon"] = -1
  elif breakage == "relation":
    meta["relation"] = "replace_one"
  files.write_json(meta_path, meta)
  with pytest.raises(CbenchError) as e:
    submission.validate(root, rel)
  assert needle in str(e.value) and "\n" not in str(e.value)
