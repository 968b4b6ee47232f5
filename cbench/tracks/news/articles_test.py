"""Stages 2-3 on single records: extraction, the filters, the formatting."""

import collections
import dataclasses
import datetime

import pytest

from cbench.tracks.news import articles
from cbench.tracks.news import config as config_lib
from cbench.tracks.news import crawl
from cbench.tracks.news.crawl_test import FIXTURE

CONFIG = config_lib.NewsReleaseConfig(release_id="2026-03", crawl=(FIXTURE,),
                                      seed=1, embedder="hashing",
                                      zero_shot_model="")


def _outcomes(config=CONFIG):
  return [articles.process(r, config) for r in crawl.read_file(FIXTURE, 0)
          if isinstance(r, crawl.Page)]


def test_fixture_outcomes():
  outs = _outcomes()
  reasons = collections.Counter(
      (o.stage, o.reason) for o in outs if isinstance(o, articles.Drop))
  assert reasons == {("extract", "index_page"): 1,
                     ("window", "outside_window"): 18,
                     ("language", "other_language"): 1}
  arts = [o for o in outs if isinstance(o, articles.Article)]
  assert len(arts) == 13
  for a in arts:
    assert a.date.startswith("2026-03-") and a.date_source == "page"
    assert a.outlet.endswith(".test") and not a.outlet.startswith("www.")
    assert a.title and a.words >= CONFIG.min_words and not a.cut
    assert not a.text.startswith(a.title)  # The headline line is dropped.
    assert "Copyright" not in a.text and "Sport" not in a.text


def test_april_keeps_april():
  april = dataclasses.replace(CONFIG, release_id="2026-04")
  arts = [o for o in _outcomes(april) if isinstance(o, articles.Article)]
  assert len(arts) == 12 and all(a.date.startswith("2026-04") for a in arts)


def test_too_short_and_cut_and_no_date():
  page = crawl.Page("00000:000000001", "x.jsonl", "https://a.test/n/1",
                    "2026-03-05", article={
                        "url": "https://a.test/n/1", "date": "2026-03-05",
                        "title": "A title", "text": "word " * 50})
  assert articles.process(page, CONFIG) == articles.Drop(
      page.key, "extract", "too_short")
  long = dataclasses.replace(page, article={**page.article,
                                            "text": "The cat sat. " * 900})
  a = articles.process(long, CONFIG)
  assert a.cut and a.words == CONFIG.max_words
  assert len(a.text.split()) == CONFIG.max_words
  html = (b"<html><head><title>T</title></head><body><article><h1>Head</h1>"
          + b"<p>" + b"Plain words without any date at all here. " * 30
          + b"</p></article></body></html>")
  undated = crawl.Page("00000:000000002", "x.warc", "https://a.test/n/2",
                       None, html=html)
  assert articles.process(undated, CONFIG).reason == "no_date"
  dated = dataclasses.replace(undated, crawl_date="2026-03-09")
  a = articles.process(dated, CONFIG)
  assert a.date == "2026-03-09" and a.date_source == "capture"


@pytest.mark.parametrize("url, index", [
    ("https://www.x.test/", True), ("https://www.x.test", True),
    ("https://x.test/index.html", True), ("https://x.test/news/", False),
    ("https://x.test/news/2026/03/story", False),
    ("https://x.test/story.html", False)])
def test_index_urls(url, index):
  assert articles.is_index_url(url) is index


def test_outlets_are_registered_domains():
  assert articles.outlet_of("https://edition.cnn.com/2026/x") == "cnn.com"
  assert articles.outlet_of("https://www.bbc.co.uk/news/x") == "bbc.co.uk"
  assert articles.outlet_of("https://www.riverpost.test/a") == "riverpost.test"


def test_document_format():
  a = articles.Article(key="k", url="u", outlet="o", date="2026-03-14",
                       title="Fire in town", text="Line one.\nLine two.",
                       words=4, cut=False, date_source="page")
  assert articles.format_document(a) == (
      "Title: Fire in town\nDate: 14 March 2026\nArticle: Line one.\n"
      "Line two.")
  assert articles.long_date(datetime.date(2026, 12, 1)) == "1 December 2026"
