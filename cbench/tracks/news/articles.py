"""Stages 2-3 on one record: extract the article, keep it if it qualifies.

`process(page, config)` is a pure function of one `crawl.Page` (so it runs
the same in this process and on Apache Beam): it returns an `Article` or a
`Drop` naming the stage and the reason.

* ``extract``: trafilatura (`bare_extraction`, precision mode, no comments,
  tables or links; dates from meta tags and the URL only, never later than
  `_MAX_DATE_DAYS` after the month) gives title, main text, date, URL and
  site; JSONL articles come extracted. Dropped: no text (``no_text``), no
  URL (``no_url``), index and home pages (``index_page``: the URL path is
  empty, ``/``, or an index file, or the page declares og:type other than
  article), no title (``no_title``), fewer than ``min_words`` words
  (``too_short``), no date in the page or the capture (``no_date``). Longer
  than ``max_words``: cut there (``Article.cut``).
* ``window``: dated outside the release month (``outside_window``).
* ``language``: py3langid's language of title + text is not
  ``config.language`` (``other_language``).

The outlet of an article is the registered domain of its URL (courlan:
``edition.cnn.com`` -> ``cnn.com``, ``www.bbc.co.uk`` -> ``bbc.co.uk``).
"""

from __future__ import annotations

import dataclasses
import datetime
import posixpath
import re
import urllib.parse
from typing import Union

import courlan
import py3langid
import trafilatura

from cbench.tracks.news import config as config_lib
from cbench.tracks.news.crawl import Page

_MAX_DATE_DAYS = 60
_INDEX_FILES = ("index.html", "index.htm", "index.php", "default.aspx",
                "home", "home.html")
_SPACE = re.compile(r"\s+")


@dataclasses.dataclass(frozen=True)
class Article:
  """An extracted article (one future corpus record).

  Attributes:
    key: the crawl record's key (orders articles deterministically).
    url, outlet, date (``YYYY-MM-DD``), title, text: what was extracted.
    words: words of `text` (after the cut).
    cut: the text was cut at ``max_words``.
    date_source: 'page' (metadata or URL), 'capture' (the WARC date) or
      'jsonl'.
  """
  key: str
  url: str
  outlet: str
  date: str
  title: str
  text: str
  words: int
  cut: bool
  date_source: str


@dataclasses.dataclass(frozen=True)
class Drop:
  key: str
  stage: str
  reason: str


def outlet_of(url: str) -> str:
  """Registered domain of `url` (lowercase), or its host as a fallback."""
  domain = courlan.extract_domain(url)
  if domain:
    return domain.lower()
  host = urllib.parse.urlsplit(url).hostname or ""
  return host.lower().removeprefix("www.")


def is_index_url(url: str) -> bool:
  """A site's home or section index rather than an article."""
  path = urllib.parse.urlsplit(url).path
  if path in ("", "/"):
    return True
  base = posixpath.basename(path.rstrip("/")) if path.endswith("/") else (
      posixpath.basename(path))
  return path.count("/") <= 2 and base.lower() in _INDEX_FILES + ("",)


def _clean(text: str) -> str:
  paragraphs = [_SPACE.sub(" ", p).strip() for p in text.split("\n")]
  return "\n".join(p for p in paragraphs if p)


def _extract(page: Page, config: config_lib.NewsReleaseConfig
             ) -> Union[tuple, Drop]:
  """(url, title, text, date, date_source) of a page, or a Drop."""
  if page.article is not None:
    a = page.article
    return a["url"], a["title"], a["text"], a["date"][:10], "jsonl"
  last = config.window[1] + datetime.timedelta(days=_MAX_DATE_DAYS)
  doc = trafilatura.bare_extraction(
      page.html, url=page.url, with_metadata=True, favor_precision=True,
      include_comments=False, include_tables=False, deduplicate=False,
      date_extraction_params={"extensive_search": False,
                              "original_date": True,
                              "max_date": last.isoformat()})
  if doc is None or not getattr(doc, "text", None):
    return Drop(page.key, "extract", "no_text")
  url = page.url or doc.url
  if not url:
    return Drop(page.key, "extract", "no_url")
  pagetype = (doc.pagetype or "").lower()
  if is_index_url(url) or pagetype not in ("", "article", "newsarticle"):
    return Drop(page.key, "extract", "index_page")
  if doc.date:
    return url, doc.title, doc.text, doc.date[:10], "page"
  return url, doc.title, doc.text, page.crawl_date, "capture"


def process(page: Page, config: config_lib.NewsReleaseConfig
            ) -> Union[Article, Drop]:
  """The article of `page`, or the stage and reason it was dropped."""
  got = _extract(page, config)
  if isinstance(got, Drop):
    return got
  url, title, text, date, date_source = got
  title = _SPACE.sub(" ", title or "").strip()
  if not title:
    return Drop(page.key, "extract", "no_title")
  text = _clean(text)
  head, _, rest = text.partition("\n")
  if head.strip() == title:  # The headline repeated as the first line.
    text = rest
  words = text.split()
  if len(words) < config.min_words:
    return Drop(page.key, "extract", "too_short")
  if not date:
    return Drop(page.key, "extract", "no_date")
  try:
    day = datetime.date.fromisoformat(date)
  except ValueError:
    return Drop(page.key, "extract", "no_date")
  first, last = config.window
  if not first <= day <= last:
    return Drop(page.key, "window", "outside_window")
  lang, _ = py3langid.classify(title + "\n" + text[:2000])
  if lang != config.language:
    return Drop(page.key, "language", "other_language")
  cut = len(words) > config.max_words
  if cut:
    text = _cut(text, config.max_words)
  return Article(key=page.key, url=url, outlet=outlet_of(url),
                 date=day.isoformat(), title=title, text=text,
                 words=min(len(words), config.max_words), cut=cut,
                 date_source=date_source)


def _cut(text: str, max_words: int) -> str:
  """The first `max_words` words, paragraphs kept."""
  out, left = [], max_words
  for paragraph in text.split("\n"):
    words = paragraph.split()
    if left <= 0:
      break
    out.append(" ".join(words[:left]))
    left -= len(words)
  return "\n".join(out)


def lede(article: Article, words: int = 60) -> str:
  """Title and the first `words` words: what events are clustered on."""
  return article.title + ". " + " ".join(article.text.split()[:words])


def format_document(article: Article) -> str:
  """The corpus text of an article (the harness trains on this)."""
  day = datetime.date.fromisoformat(article.date)
  return (f"Title: {article.title}\nDate: {long_date(day)}\n"
          f"Article: {article.text}")


MONTHS = ("January", "February", "March", "April", "May", "June", "July",
          "August", "September", "October", "November", "December")


def long_date(day: datetime.date) -> str:
  """``14 March 2026`` (English month names, whatever the locale)."""
  return f"{day.day} {MONTHS[day.month - 1]} {day.year}"
