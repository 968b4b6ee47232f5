"""The results store: idempotent appends, refused damage, schema version."""

import json

import pytest

from cbench._validate import CbenchError
from cbench.leaderboard import store


def _rec(method="dp_finetune", eps=10.0, release="2026q4", seed=0, mean=0.3):
  row = {"method": method, "epsilon": eps,
         "public_test_exact": {"mean": mean, "low": 0.1, "high": 0.5}}
  return store.make_record(row, track="geminon", release_id=release,
                           release_sha256="ab", release_root="/r", seed=seed,
                           source="benchmark", epsilon_status="verified")


def test_append_is_idempotent_and_keyed(tmp_path):
  path = str(tmp_path / "s.jsonl")
  assert store.append(path, [_rec(), _rec(method="public_only", eps=0.0)]) == 2
  # The same run again replaces its record; another ε or seed adds one.
  assert store.append(path, [_rec(mean=0.4)]) == 2
  recs = store.read(path)
  assert [r["row"]["public_test_exact"]["mean"] for r in recs
          if r["method"] == "dp_finetune"] == [0.4]
  assert store.append(path, [_rec(eps=float("inf")), _rec(seed=1)]) == 4
  assert {r["epsilon"] for r in store.read(path)} == {10.0, 0.0, "inf"}


def test_damaged_or_foreign_store_is_refused_untouched(tmp_path):
  path = tmp_path / "s.jsonl"
  store.append(str(path), [_rec()])
  good = path.read_text()
  path.write_text(good + "{not json\n")
  before = path.read_bytes()
  with pytest.raises(CbenchError, match="not a JSON line"):
    store.append(str(path), [_rec(seed=2)])
  assert path.read_bytes() == before
  rec = json.loads(good)
  rec["schema"] = 99
  path.write_text(json.dumps(rec) + "\n")
  with pytest.raises(CbenchError, match="schema 99"):
    store.read(str(path))


def test_records_must_come_from_make_record(tmp_path):
  bad = dict(_rec(), method="other")            # key no longer matches
  with pytest.raises(CbenchError, match="make_record"):
    store.append(str(tmp_path / "s.jsonl"), [bad])
  with pytest.raises(CbenchError, match="epsilon status"):
    store.make_record({"method": "m"}, track="t", release_id="r",
                      release_sha256="x", release_root="/", seed=0,
                      source="benchmark", epsilon_status="trust me")
