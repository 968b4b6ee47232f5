"""testdata/news/crawl.warc.gz is what `tools.make_news_fixture` writes."""

import filecmp
import json

from cbench.testing import news_crawl
from cbench.tracks.news.crawl_test import FIXTURE
from tools import make_news_fixture


def test_committed_fixture_is_current(tmp_path):
  path = str(tmp_path / "crawl.warc.gz")
  info = news_crawl.write_crawl(path, make_news_fixture.MONTHS)
  assert filecmp.cmp(path, FIXTURE, shallow=False), (
      "run python -m tools.make_news_fixture")
  assert info["pages"] == 24 and len(info["events"]) == 6
  assert all(len(e["outlets"]) == 4 for e in info["events"])
  json.dumps(info)  # What the tool prints.
