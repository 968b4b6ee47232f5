"""Stage 1: crawl records of every kind, damaged input counted or named."""

import collections
import gzip
import json
import os
import shutil

import pytest

from cbench._validate import CbenchError
from cbench.tracks.news import config as config_lib
from cbench.tracks.news import crawl

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "..",
                       "testdata", "news", "crawl.warc.gz")


def _kinds(records):
  return collections.Counter(
      "page" if isinstance(r, crawl.Page) else r.reason for r in records)


def test_fixture_records_and_their_reasons():
  records = list(crawl.read_file(FIXTURE, 0))
  assert _kinds(records) == {"page": 33, "revisit": 1, "not_html": 1,
                             "http_status": 1, "truncated_record": 1}
  keys = [r.key for r in records]
  assert keys == sorted(keys) and len(set(keys)) == len(keys)
  page = next(r for r in records if isinstance(r, crawl.Page))
  assert page.url.startswith("https://www.") and page.crawl_date
  assert page.html.startswith(b"<!DOCTYPE html>")


def test_a_gzip_cut_midway_keeps_the_records_before_it(tmp_path):
  data = open(FIXTURE, "rb").read()
  cut = tmp_path / "cut.warc.gz"
  cut.write_bytes(data[:len(data) // 2])
  records = list(crawl.read_file(str(cut), 3))
  kinds = _kinds(records)
  # The record the file ends inside is never passed on as a page.
  assert kinds["truncated_record"] + kinds["truncated_file"] == 1
  assert 5 < kinds["page"] < 33
  for r in records:
    if isinstance(r, crawl.Page):
      assert r.html.rstrip().endswith(b"</html>")
  assert all(r.key.startswith("00003:") for r in records)


# Named ids, and a fixed gzip mtime: pytest-xdist workers must collect the
# same test ids (a timestamp in an id made collection differ across a
# second boundary).
@pytest.mark.parametrize("content", [
    b"not a warc at all" * 10, gzip.compress(b"plain text, no WARC", mtime=0),
    b"\x1f\x8b\x08\x00garbage after a gzip magic number"],
    ids=["not_warc", "gzip_of_text", "gzip_magic_then_garbage"])
def test_an_unreadable_file_is_named(tmp_path, content):
  bad = tmp_path / "broken.warc.gz"
  bad.write_bytes(content)
  with pytest.raises(CbenchError, match="broken.warc.gz"):
    list(crawl.read_file(str(bad), 0))


def test_an_empty_warc_holds_no_record(tmp_path):
  empty = tmp_path / "empty.warc"
  empty.write_bytes(b"")
  assert list(crawl.read_file(str(empty), 0)) == []


def test_jsonl_articles_and_malformed_lines(tmp_path):
  path = tmp_path / "a.jsonl"
  good = {"url": "https://x.test/a", "date": "2026-03-02T10:00:00",
          "title": "T", "text": "words " * 100}
  path.write_text("\n".join([json.dumps(good), "{not json",
                             json.dumps({"url": "u"}), "",
                             json.dumps({**good, "title": 3})]) + "\n")
  records = list(crawl.read_file(str(path), 1))
  assert _kinds(records) == {"page": 1, "malformed": 3}
  page = records[0]
  assert page.article["title"] == "T" and page.crawl_date == "2026-03-02"


def test_saved_html_pages(tmp_path):
  (tmp_path / "a.html").write_bytes(b"<html><body><p>x</p></body></html>")
  (tmp_path / "b.htm").write_bytes(b"   ")
  recs = [r for i, p in enumerate(sorted(tmp_path.iterdir()))
          for r in crawl.read_file(str(p), i)]
  assert _kinds(recs) == {"page": 1, "empty": 1}
  assert recs[0].url is None


def test_crawl_spec_resolution(tmp_path):
  d = tmp_path / "d"
  (d / "sub").mkdir(parents=True)
  shutil.copy(FIXTURE, d / "sub" / "x.warc.gz")
  (d / "notes.txt").write_text("ignored")
  (d / "p.html").write_text("<html></html>")
  files = config_lib.crawl_files(f"{d},{tmp_path}/d/*.html")
  assert [os.path.basename(f) for f in files] == ["p.html", "x.warc.gz"]
  with pytest.raises(CbenchError, match="--crawl is required"):
    config_lib.crawl_files("")
  with pytest.raises(CbenchError, match="matches no crawl file"):
    config_lib.crawl_files(str(tmp_path / "nothing*"))
  with pytest.raises(CbenchError, match="unknown file type"):
    config_lib.crawl_files(str(d / "notes.txt"))


@pytest.mark.parametrize("release", ["2026q1", "2026-13", "26-03", ""])
def test_release_id_is_a_month(release):
  with pytest.raises(CbenchError, match="YYYY-MM"):
    config_lib.month_window(release)
