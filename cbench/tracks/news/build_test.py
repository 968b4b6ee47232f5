"""A News release end to end on the fixture crawl: layout, counts, supports,
byte-reproducibility, two months, the zero-shot filter and bad input."""

import dataclasses
import filecmp
import gzip
import os
import shutil

import pytest

from cbench._validate import CbenchError
from cbench.corpus import answers
from cbench.corpus import release as release_lib
from cbench.tracks import registry
from cbench.tracks.news import build
from cbench.tracks.news import config as config_lib
from cbench.tracks.news import exemplars
from cbench.tracks.news import zero_shot
from cbench.tracks.news.crawl_test import FIXTURE


def _config(month="2026-03", crawl=FIXTURE, **kw):
  kw = {"embedder": "hashing", "zero_shot_model": "", **kw}
  return config_lib.make_config(month, crawl, **kw)


@pytest.fixture(scope="module")
def march(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("news") / "2026-03")
  build.build_release(_config(), out)
  return release_lib.load_release(out)


def test_layout_loads_like_any_release(march):
  march.verify()
  m = march.manifest
  assert m["track"] == "news" and m["release_id"] == "2026-03"
  assert m["window"] == {"first_day": "2026-03-01",
                         "last_day": "2026-03-31"}
  assert set(march.qa_names()) == set(answers.QA_SETS)
  assert [e["answer"] for e in march.exemplars()] == [
      e["answer"] for e in exemplars.EXEMPLARS]
  docs = [d for s in release_lib.SPLITS for d in march.corpus(s)]
  assert len(docs) == m["documents"]["total"] == 11
  for d in docs:
    assert d["text"].startswith("Title: ") and "\nDate: " in d["text"]
    assert "\nArticle: " in d["text"] and d["style"] == "news"
  assert m["tfds"]["name"] == "cbench_news"
  assert m["tfds"]["num_examples"] == m["documents"]["by_split"]
  assert os.path.exists(os.path.join(march.root, "README.md"))


def test_stage_counts(march):
  st = march.manifest["stages"]
  assert st["read"] == {"files": 1, "records": 37, "pages": 33, "skipped": {
      "http_status": 1, "not_html": 1, "revisit": 1, "truncated_record": 1}}
  assert st["extract"]["dropped"] == {"index_page": 1}
  assert st["window"]["dropped"] == {"outside_window": 18}
  assert st["language"]["dropped"] == {"other_language": 1}
  assert st["dedup"]["dropped"] == {"near_duplicate": 1}
  assert st["events"]["events"] == 3
  assert st["zero_shot"]["before"] == st["zero_shot"]["after"] > 10


def test_public_answers_occur_in_their_supports(march):
  texts = {d["id"]: d["text"] for d in march.corpus("train")}
  public = march.qa("public_val") + march.qa("public_test")
  assert len(public) >= 10
  for q in public:
    assert len(q["supports"]) >= 3 and q["outlets"] >= 2
    hits = sum(answers.answer_in_text(q["answer"], q["aliases"], texts[s])
               for s in q["supports"])
    assert hits == len(q["supports"]), q
    assert q["question"].startswith("On ") and "___" in q["question"]
  events_val = {q["event"] for q in march.qa("public_val")}
  events_test = {q["event"] for q in march.qa("public_test")}
  assert events_val and events_test and not events_val & events_test
  sensitive = march.qa("sensitive_val") + march.qa("sensitive_test")
  assert sensitive and all(q["outlets"] == 1 for q in sensitive)


def test_same_crawl_same_bytes_and_beam_free_rebuild(march, tmp_path):
  again = str(tmp_path / "again")
  build.build_release(_config(), again)
  cmp = filecmp.dircmp(march.root, again)
  assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
  for name in ("manifest.json", "corpus/train.jsonl", "qa/public_val.jsonl",
               "README.md"):
    assert filecmp.cmp(os.path.join(march.root, name),
                       os.path.join(again, name), shallow=False)


def test_two_months_share_no_event_or_article(march, tmp_path):
  april = str(tmp_path / "2026-04")
  build.build_release(_config("2026-04"), april)
  april = release_lib.load_release(april)
  urls = lambda r: {d["url"] for s in release_lib.SPLITS for d in r.corpus(s)}
  events = lambda r: {q["event"] for n in r.qa_names() for q in r.qa(n)}
  assert not urls(march) & urls(april)
  assert not events(march) & events(april)
  assert all(e.startswith("2026-04-") for e in events(april))


def test_zero_shot_filter_drops_what_the_model_answers(monkeypatch):
  questions = [{"question": f"q{i}", "answer": str(i), "aliases": []}
               for i in range(5)]
  calls = []

  def fake(qs, model, shots):
    calls.append((len(qs), model, len(shots)))
    return [int(q["answer"]) % 2 == 0 for q in qs]
  monkeypatch.setattr(zero_shot, "answered", fake)
  kept, stats = zero_shot.filter_questions(questions, "m", exemplars.EXEMPLARS)
  assert [q["answer"] for q in kept] == ["1", "3"]
  assert stats == {"model": "m", "asked": 5, "dropped": 3}
  assert calls == [(5, "m", 3)]
  kept, stats = zero_shot.filter_questions(questions, "", ())
  assert kept == questions and stats["model"] is None


def test_zero_shot_filter_with_a_real_model(micro_base_dir, tmp_path,
                                            monkeypatch):
  # The micro model's 512 positions hold a question but not three shots.
  monkeypatch.setattr(build.exemplars_lib, "EXEMPLARS", ())
  out = str(tmp_path / "r")
  manifest = build.build_release(_config(zero_shot_model=micro_base_dir), out)
  z = manifest["stages"]["zero_shot"]
  assert z["model"] == micro_base_dir and z["asked"] == z["before"] > 10
  assert z["after"] == z["before"] - z["dropped"]
  assert sum(manifest["questions"].values()) == z["after"]


def _bad(tmp_path, name, content):
  path = tmp_path / name
  path.write_bytes(content)
  return str(path)


def test_bad_input_is_named_and_nothing_is_written(tmp_path):
  out = tmp_path / "out"
  cases = [
      (_config(crawl=_bad(tmp_path, "empty.warc", b"")), "holds no record"),
      (_config(crawl=_bad(tmp_path, "x.jsonl", b'{"url": 1}\n')),
       "no HTML page or article"),
      (_config("2026-06"), "No article of --crawl is dated in 2026-06"),
      (_config(language="de"), "No article in language 'de'"),
      (_config(min_outlets=6), "No event in 2026-03 is reported by 6 "
                               "outlets \\(largest group: 4"),
  ]
  for config, message in cases:
    with pytest.raises(CbenchError, match=message):
      build.build_release(config, str(out))
  with pytest.raises(CbenchError, match="not a readable gzip"):
    cfg = _config(crawl=_bad(tmp_path, "bad.warc.gz",
                             b"\x1f\x8b\x08\x00broken"))
    build.build_release(cfg, str(out))
  assert sorted(os.listdir(tmp_path)) == sorted(
      ["empty.warc", "x.jsonl", "bad.warc.gz"])  # No output, no temporaries.
  out.mkdir()
  (out / "mine.txt").write_text("keep me")
  with pytest.raises(CbenchError, match="already exists"):
    build.build_release(_config(), str(out))
  with pytest.raises(CbenchError, match="is not a cbench release"):
    build.build_release(_config(), str(out), overwrite=True)
  assert os.listdir(out) == ["mine.txt"]


def test_missing_models_fail_before_any_stage(tmp_path, monkeypatch):
  monkeypatch.setattr(build.minilm, "available", lambda: False)
  monkeypatch.setattr(build.gguf_loader, "available", lambda name: False)
  monkeypatch.setattr(build, "collect", lambda *a: pytest.fail("ran"))
  out = str(tmp_path / "r")
  with pytest.raises(CbenchError, match="embedder='minilm' needs .*"
                                        "--override=embedder=hashing"):
    build.build_release(_config(embedder="minilm"), out)
  with pytest.raises(CbenchError, match="zero_shot_model='gemma3_270m' is "
                                        "not installed"):
    build.build_release(_config(zero_shot_model="gemma3_270m"), out)
  assert not os.path.exists(out)


def test_a_damaged_copy_of_the_crawl_still_builds(tmp_path):
  data = open(FIXTURE, "rb").read()
  members = gzip.decompress(data)
  assert members.count(b"WARC/1.") == 37
  cut = tmp_path / "cut.warc.gz"
  cut.write_bytes(data[:int(len(data) * 0.6)])
  d = tmp_path / "crawl"
  d.mkdir()
  shutil.copy(FIXTURE, d / "full.warc.gz")
  shutil.copy(cut, d / "cut.warc.gz")
  manifest = build.build_release(_config(crawl=str(d)), str(tmp_path / "r"))
  st = manifest["stages"]
  assert st["read"]["files"] == 2
  assert st["read"]["skipped"].get("truncated_record", 0) >= 2
  assert st["dedup"]["dropped"]["near_duplicate"] >= 12  # The copies.


def test_the_track_is_registered_with_its_defaults():
  track = registry.get("news")
  assert track.defaults.base_model == "gemma3_270m"
  assert track.defaults.config == "news"
  with pytest.raises(CbenchError, match="--crawl is required"):
    track.release_config("2026-03")
  with pytest.raises(CbenchError, match="--size does not apply"):
    track.release_config("2026-03", crawl=FIXTURE, size="demo")
  with pytest.raises(CbenchError, match="Unknown --track"):
    registry.get("sports")
  with pytest.raises(CbenchError, match="min_outlets"):
    dataclasses.replace(_config(), min_outlets=0)
