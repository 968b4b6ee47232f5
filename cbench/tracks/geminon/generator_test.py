"""End-to-end release checks on `demo` (built once per module)."""

import collections
import filecmp
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.corpus import answers
from cbench.corpus import dedup
from cbench.corpus import release
from cbench.corpus import tfds_export
from cbench.tracks.geminon import generator as geminon
from cbench.tracks.geminon import names
from cbench.tracks.geminon import render

RELEASE = "2026q4"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("releases")
  config = geminon.make_config("geminon", RELEASE, "demo")
  paths = {"a": str(root / "a"), "a2": str(root / "a2"),
           "b": str(root / "b"), "pub": str(root / "pub")}
  geminon.build_release(config, paths["a"])
  geminon.build_release(config, paths["a2"])
  geminon.build_release(geminon.make_config("geminon", "2026q3", "demo"),
                        paths["b"])
  geminon.build_public_world(paths["pub"])
  return {k: release.load_release(v) for k, v in paths.items()}


def _docs(rel, splits=release.SPLITS):
  return [d for s in splits for d in rel.corpus(s)]


def _creatures(rel):
  return {r["creature"] for name in rel.qa_names() for r in rel.qa(name)}


def _tree(root):
  out = []
  for dirpath, _, filenames in os.walk(root):
    out += [os.path.relpath(os.path.join(dirpath, f), root)
            for f in filenames]
  return sorted(out)


def test_byte_identical_rebuild(built):
  a, a2 = built["a"].root, built["a2"].root
  files = _tree(a)
  assert files == _tree(a2)
  assert any(f.endswith("array_record-00000-of-00001") for f in files)
  _, mismatch, errors = filecmp.cmpfiles(a, a2, files, shallow=False)
  assert not mismatch and not errors


def test_manifest_hashes_every_file(built):
  rel = built["a"]
  assert set(rel.manifest["files"]) == set(_tree(rel.root)) - {
      "manifest.json"}
  rel.verify()
  with open(rel.corpus_path("val"), "a", encoding="utf-8") as f:
    f.write("\n")
  try:
    with pytest.raises(CbenchError, match="corpus/val.jsonl"):
      rel.verify()
  finally:
    with open(rel.corpus_path("val"), "rb+") as f:
      f.seek(-1, os.SEEK_END)
      f.truncate()
  rel.verify()


def test_manifest_contents(built):
  m = built["a"].manifest
  assert m["track"] == "geminon" and m["release_id"] == RELEASE
  assert m["seed"] == release.derive_seed("geminon", RELEASE)
  assert m["generator_version"] == geminon.GENERATOR_VERSION
  assert m["documents"]["total"] >= 5000
  by_split = m["documents"]["by_split"]
  assert by_split == {s: sum(1 for _ in built["a"].corpus(s))
                      for s in release.SPLITS}
  assert abs(by_split["train"] / m["documents"]["total"] - 0.9) < 0.01
  for name, n in m["questions"].items():
    assert n == len(built["a"].qa(name))
  assert set(m["chance_accuracy"]["public"]) == set(
      geminon.world_lib.FEATURES)
  assert 0 <= m["dedup"]["removed_fraction"] < 0.05
  with open(os.path.join(built["a"].root, "README.md")) as f:
    readme = f.read()
  for needle in ("Intended use", "Licence", "How to cite", RELEASE,
                 "sensitive"):
    assert needle in readme


def test_different_releases_share_no_creature_name(built):
  a, b = _creatures(built["a"]), _creatures(built["b"])
  assert a and b and not a & b
  slot_a = names.release_slot(RELEASE)
  assert all(names.name_slot(n) == slot_a for n in a)


def test_no_release_name_occurs_in_public_world(built):
  pub = _creatures(built["pub"])
  assert len(pub) == 60
  rel_names = _creatures(built["a"]) | _creatures(built["b"])
  assert not pub & rel_names
  pattern = re.compile(r"\b(" + "|".join(sorted(rel_names)) + r")\b",
                       re.IGNORECASE)
  for d in _docs(built["pub"]):
    assert not pattern.search(d["text"]), d["text"]


def test_every_claimed_fact_is_in_its_text(built):
  stated = {}
  for name in built["a"].qa_names():
    for r in built["a"].qa(name):
      stated[(r["creature"], r["feature"])] = (r["answer"], r["aliases"])
  n = 0
  for d in _docs(built["a"]):
    for creature, feature in d["facts"]:
      answer, aliases = stated[(creature, feature)]
      assert answers.answer_in_text(answer, aliases, d["text"])
      n += 1
  assert n > 20000


def test_every_answer_is_in_each_support_document(built):
  rel = built["a"]
  train = {d["id"]: d for d in rel.corpus("train")}
  other = {d["id"] for s in ("val", "test") for d in rel.corpus(s)}
  for name in rel.qa_names():
    for r in rel.qa(name):
      assert r["supports"] == sorted(set(r["supports"]))
      for doc_id in r["supports"]:
        assert doc_id not in other  # Train documents only.
        d = train[doc_id]
        assert [r["creature"], r["feature"]] in d["facts"]
        assert answers.answer_in_text(r["answer"], r["aliases"], d["text"])
        assert r["creature"] in d["text"]


def test_sensitive_creatures_never_appear_in_public_styles(built):
  rel = built["a"]
  sens = {r["creature"] for s in ("sensitive_val", "sensitive_test")
          for r in rel.qa(s)}
  assert len(sens) == 6
  pattern = re.compile(r"\b(" + "|".join(sorted(sens)) + r")\b",
                       re.IGNORECASE)
  styles = collections.Counter()
  for d in _docs(rel):
    styles[d["style"]] += 1
    mentions = {c for c, _ in d["facts"]} & sens
    if d["style"] == render.SENSITIVE_STYLE:
      assert len(mentions) == 1
    else:
      assert not mentions and not pattern.search(d["text"]), d["text"]
  assert set(styles) == set(render.STYLES)
  assert styles[render.SENSITIVE_STYLE] == 6 * 4


def test_public_support_and_sensitive_support(built):
  rel = built["a"]
  m = rel.manifest
  for s in ("public_val", "public_test"):
    recs = rel.qa(s)
    assert recs and all(len(r["supports"]) >= m["min_support"] for r in recs)
  sens = rel.qa("sensitive_val") + rel.qa("sensitive_test")
  assert len(sens) == 6 * 13
  assert max(len(r["supports"]) for r in sens) <= 4


def test_val_test_partition_per_creature(built):
  rel = built["a"]
  for prefix in ("public", "sensitive"):
    val = collections.defaultdict(set)
    test = collections.defaultdict(set)
    for r in rel.qa(f"{prefix}_val"):
      val[r["creature"]].add(r["feature"])
    for r in rel.qa(f"{prefix}_test"):
      test[r["creature"]].add(r["feature"])
    assert set(val) == set(test)
    for c in val:
      assert not val[c] & test[c]
      assert len(val[c] | test[c]) == 13  # Nothing dropped at demo.
      assert abs(len(val[c]) - len(test[c])) == 1


def test_public_world_layout(built):
  pub = built["pub"]
  m = pub.manifest
  assert 5500 <= m["documents"]["total"] <= 6500
  train_qa = pub.qa("public_train")
  assert len(train_qa) == 60 * 13
  assert {r["id"] for r in pub.qa("public_val") + pub.qa("public_test")} == {
      r["id"] for r in train_qa}
  assert m["world"]["name_slot"] == names.PUBLIC_SLOT


def test_tfds_reads_back_same_number_of_records(built):
  rel = built["a"]
  for split in release.SPLITS:
    src = rel.tfds_source(split)
    n = rel.manifest["documents"]["by_split"][split]
    assert len(src) == n
  src = rel.tfds_source("val")
  by_id = {d["id"]: d for d in rel.corpus("val")}
  rec = src[0]
  d = by_id[int(rec["id"])]
  assert rec["text"].decode() == d["text"]
  assert json.loads(rec["facts"]) == d["facts"]


def test_tfds_reads_without_cbench_or_tensorflow(built):
  code = ("import sys, tensorflow_datasets as tfds\n"
          "assert 'tensorflow' not in sys.modules\n"
          f"src = tfds.data_source('{tfds_export.TFDS_NAME}', "
          f"data_dir={built['a'].tfds_dir!r}, split='train')\n"
          "assert not any(m.startswith('cbench') for m in sys.modules)\n"
          "print(len(src))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True)
  assert int(out.stdout.strip().splitlines()[-1]) == (
      built["a"].manifest["documents"]["by_split"]["train"])


def test_existing_dir_is_refused_and_failures_keep_it(built, tmp_path,
                                                      monkeypatch):
  config = geminon.make_config("geminon", RELEASE, "demo")
  with pytest.raises(CbenchError, match="already exists.*--overwrite"):
    geminon.build_release(config, built["a"].root)
  out = str(tmp_path / "r")
  shutil.copytree(built["a"].root, out)
  before = sorted(os.listdir(out))

  def boom(*args, **kwargs):
    raise RuntimeError("simulated failure")
  monkeypatch.setattr(release.tfds_export, "export_tfds", boom)
  with pytest.raises(RuntimeError, match="simulated"):
    geminon.build_release(config, out, overwrite=True)
  assert sorted(os.listdir(out)) == before
  release.load_release(out).verify()  # The old release is intact.
  assert sorted(os.listdir(tmp_path)) == ["r"]  # No temporary left behind.


def test_overwrite_never_deletes_what_is_not_a_release(tmp_path):
  config = geminon.make_config("geminon", RELEASE, "mini")
  mine = tmp_path / "notes"
  mine.mkdir()
  (mine / "thesis.txt").write_text("my notes")
  (tmp_path / "file.txt").write_text("a file")
  for target, why in ((mine, "is not a cbench release"),
                      (tmp_path / "file.txt", "is not a directory")):
    with pytest.raises(CbenchError, match=why):
      geminon.build_release(config, str(target), overwrite=True)
  assert (mine / "thesis.txt").read_text() == "my notes"
  assert (tmp_path / "file.txt").read_text() == "a file"
  assert sorted(os.listdir(tmp_path)) == ["file.txt", "notes"]
  empty = tmp_path / "empty"
  empty.mkdir()
  geminon.build_release(config, str(empty), overwrite=True)
  release.load_release(str(empty)).verify()


def test_overwrite_replaces(tmp_path):
  out = str(tmp_path / "r")
  geminon.build_public_world(out)
  with open(os.path.join(out, "stale.txt"), "w") as f:
    f.write("x")
  m = geminon.build_public_world(out, overwrite=True)
  assert not os.path.exists(os.path.join(out, "stale.txt"))
  assert release.load_release(out).manifest == m
  assert sorted(os.listdir(tmp_path)) == ["r"]


def test_demo_is_generated_in_several_shards(built):
  m = built["a"].manifest
  assert m["generator_version"] == "geminon-1.1"
  assert m["documents"]["shard_docs"] == geminon.SHARD_DOCS
  assert m["documents"]["shards"] >= 3
  assert m["dedup"]["generated"] == 5400 + 6 * 4
  assert (m["documents"]["total"] + m["dedup"]["removed"] ==
          m["dedup"]["generated"])
  ids = sorted(d["id"] for d in _docs(built["a"]))
  assert ids[-1] >= 2 * geminon.SHARD_DOCS  # Ids are slots, across shards.


def _corpus_bytes(rel):
  out = []
  for s in release.SPLITS:
    with open(rel.corpus_path(s), "rb") as f:
      out.append(f.read())
  return out


def test_shards_in_any_order_give_the_same_corpus(built, tmp_path):
  """The corpus rebuilt shard by shard in REVERSED order, with the removal
  rule judged on all band keys at once (as Beam does), equals the
  single-process (streaming, in order) files byte for byte."""
  config = geminon.make_config("geminon", RELEASE, "demo")
  world = geminon.make_world(config)
  n = geminon.num_shards(config, world)
  shards = {k: geminon.generate_shard(config, world, k)
            for k in reversed(range(n))}
  assert [d["id"] for k in range(n) for d in shards[k]] == list(
      range(geminon.num_slots(config, world)))
  again = geminon.generate_shard(config, world, 1)
  assert again == shards[1]  # No state carried between shards.
  assert geminon.generate_shard(config, world, 0) != shards[1]
  sigs = {k: dedup.signatures([d["text"] for d in shards[k]])
          for k in shards}
  all_sigs = np.concatenate([sigs[k] for k in range(n)])
  keys = np.concatenate([dedup.band_keys(sigs[k]).ravel() for k in shards])
  idx = np.concatenate([np.repeat([d["id"] for d in shards[k]], dedup.BANDS)
                        for k in shards])
  removed = dedup.removed_in_group(keys, idx, lambda i: all_sigs[i])
  tally = geminon.CorpusTally()
  outs = [io.StringIO() for _ in release.SPLITS]
  for k in range(n):
    gone = np.isin([d["id"] for d in shards[k]], removed)
    geminon.write_documents(shards[k], gone, config.seed, outs, tally)
  assert [o.getvalue().encode() for o in outs] == _corpus_bytes(built["a"])
  supports, stats = tally.result(len(all_sigs), removed.size)
  by_split = built["a"].manifest["documents"]["by_split_style"]
  assert stats["by_split_style"] == by_split
  pub = built["a"].qa("public_val")[0]
  assert list(supports[(pub["creature"], pub["feature"])]) == pub["supports"]
  with pytest.raises(ValueError, match="shard"):
    geminon.generate_shard(config, world, n)


def test_splits_are_exact_per_block_seeded_and_per_id():
  ids = np.arange(4000)
  a = release.assign_splits(7, ids)
  blocks = a.reshape(-1, 20)
  assert (np.sort(blocks, axis=1) == np.array([0] * 18 + [1, 2])).all()
  # A pure function of (seed, id): any subset, any order.
  sub = np.random.default_rng(0).permutation(ids)[:333]
  np.testing.assert_array_equal(release.assign_splits(7, sub), a[sub])
  b = release.assign_splits(8, ids)
  assert (a != b).mean() > 0.05  # Another seed, other splits.
  assert release.assign_splits(7, []).size == 0


@pytest.mark.parametrize("kwargs,flag", [
    (dict(track="geminon", release_id="2026q5", size="demo"), "--release"),
    (dict(track="geminon", release_id="26q4", size="demo"), "--release"),
    (dict(track="geminon", release_id="2026q4", size="tiny"), "--size"),
    (dict(track="pokemon", release_id="2026q4", size="demo"), "--track"),
    (dict(track="news", release_id="2026q4", size="demo"),
     "Unknown --track='news'; expected one of ['geminon']"),
    (dict(track="geminon", release_id="2026q4", size="demo", min_support=-1),
     "--min_support"),
])
def test_bad_config_names_the_flag(kwargs, flag):
  with pytest.raises(CbenchError, match=re.escape(flag)):
    geminon.make_config(**kwargs)


def test_load_release_errors(tmp_path):
  with pytest.raises(CbenchError, match="manifest.json"):
    release.load_release(str(tmp_path))


def test_seed_is_derived_from_release_id():
  a = geminon.make_config("geminon", "2026q4", "demo")
  b = geminon.make_config("geminon", "2026q4", "small")
  c = geminon.make_config("geminon", "2027q1", "demo")
  assert a.seed == b.seed != c.seed
  assert 0 <= a.seed < 2**63


@pytest.mark.slow
def test_small_release_supports(tmp_path):
  config = geminon.make_config("geminon", RELEASE, "small")
  start = time.perf_counter()
  m = geminon.build_release(config, str(tmp_path / "small"))
  wall = time.perf_counter() - start
  print(f"small: {m['documents']['total']} documents in {wall:.1f} s, "
        f"{m['documents']['shards']} shards, support "
        f"{ {k: (v['min'], v['median']) for k, v in m['support'].items()} }")
  rel = release.load_release(str(tmp_path / "small"))
  assert 195_000 <= m["documents"]["total"] <= 205_000
  assert m["world"] == dict(m["world"], creatures=600, public=480,
                            sensitive=120)
  for s in ("public_val", "public_test"):
    counts = [len(r["supports"]) for r in rel.qa(s)]
    assert min(counts) >= 100, (s, min(counts))
  assert m["dropped_public_questions"] == 0
  assert m["questions"]["public_val"] + m["questions"]["public_test"] == 6240
  sens = [len(r["supports"]) for s in ("sensitive_val", "sensitive_test")
          for r in rel.qa(s)]
  assert len(sens) == 1560 and max(sens) <= 4
