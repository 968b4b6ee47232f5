"""Rewrites testdata/news/crawl.warc.gz, the News track's fixture crawl.

  python -m tools.make_news_fixture

Made-up news (`cbench.testing.news_crawl.write_crawl`) for March and April
2026; the bytes are a pure function of the arguments, so rerunning gives
the same file (`cbench/tracks/news/fixture_test.py` checks it is current).
"""

import json
import os
import sys

from cbench.testing import news_crawl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(ROOT, "testdata", "news", "crawl.warc.gz")
MONTHS = ("2026-03", "2026-04")


def main() -> int:
  info = news_crawl.write_crawl(PATH, MONTHS)
  print(json.dumps({"path": PATH, "pages": info["pages"],
                    "records": info["records"],
                    "events": len(info["events"])}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
