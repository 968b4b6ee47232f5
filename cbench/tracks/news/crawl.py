"""Stage 1: read crawl records from local files, never from the network.

`read_file(path, index)` yields, for every record of one crawl file, either
a `Page` (an HTML page or an already-extracted article) or a `Skip` naming
why the record was not used:

* WARC / ARC files (``.warc``, ``.warc.gz``, ``.arc``, ``.arc.gz``;
  per-record gzip as in CC-NEWS), read with warcio (ARC converted to WARC).
  Only ``response``/``resource`` records are pages; ``revisit`` records,
  other record types (request, metadata, warcinfo), non-200 responses,
  non-HTML content, records flagged ``WARC-Truncated``, empty or over-large
  payloads and payloads that fail to decode are skipped with their reason.
  A file whose gzip or WARC framing breaks after some records keeps those
  records and skips the rest as ``truncated_file``.
* Saved HTML pages (``.html``, ``.htm``): one page per file, the URL from
  the page itself (canonical link, og:url) at extraction.
* JSONL of extracted articles (``{"url", "date", "title", "text"}``): a line
  that is not such an object is skipped as ``malformed``.

A file that cannot be read at all (not gzip, not WARC, unreadable) raises
`CbenchError` naming it: that is a wrong input, not a damaged record. Keys
(``"<file index>:<record number>"``) order the records deterministically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from typing import Iterator, Optional, Union

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from cbench._validate import CbenchError
from cbench.tracks.news import config as config_lib

MAX_PAGE_BYTES = 8 << 20  # Larger payloads are not article pages.
_PAGE_TYPES = ("response", "resource")


@dataclasses.dataclass(frozen=True)
class Page:
  """One crawl record to extract.

  Attributes:
    key: ``"<file index>:<record number>"`` (zero-padded: sorts in order).
    source: the crawl file's base name.
    url: the record's URL (None for saved pages: read from the HTML).
    crawl_date: ``YYYY-MM-DD`` of the capture, if known.
    html: the page's bytes (None for JSONL articles).
    article: an already-extracted article (JSONL input), else None.
  """
  key: str
  source: str
  url: Optional[str]
  crawl_date: Optional[str]
  html: Optional[bytes] = None
  article: Optional[dict] = None


@dataclasses.dataclass(frozen=True)
class Skip:
  key: str
  reason: str


Record = Union[Page, Skip]


def _key(index: int, number: int) -> str:
  return f"{index:05d}:{number:09d}"


def read_file(path: str, index: int) -> Iterator[Record]:
  """Every record of crawl file `path` (the `index`-th file of the crawl)."""
  kind = config_lib.kind_of(path)
  if kind == "warc":
    yield from _read_warc(path, index)
  elif kind == "html":
    yield from _read_html(path, index)
  elif kind == "jsonl":
    yield from _read_jsonl(path, index)
  else:
    raise CbenchError(f"--crawl: unknown file type: {path}")


def _read_html(path: str, index: int) -> Iterator[Record]:
  with open(path, "rb") as f:
    data = f.read(MAX_PAGE_BYTES + 1)
  key = _key(index, 0)
  if not data.strip():
    yield Skip(key, "empty")
  elif len(data) > MAX_PAGE_BYTES:
    yield Skip(key, "too_large")
  else:
    yield Page(key, os.path.basename(path), None, None, html=data)


def _read_jsonl(path: str, index: int) -> Iterator[Record]:
  with open(path, "rb") as f:
    for number, line in enumerate(f):
      key = _key(index, number)
      if not line.strip():
        continue
      try:
        rec = json.loads(line)
      except (json.JSONDecodeError, UnicodeDecodeError):
        yield Skip(key, "malformed")
        continue
      if not (isinstance(rec, dict) and all(
          isinstance(rec.get(k), str) and rec.get(k)
          for k in ("url", "date", "title", "text"))):
        yield Skip(key, "malformed")
        continue
      yield Page(key, os.path.basename(path), rec["url"], rec["date"][:10],
                 article={k: rec[k] for k in ("url", "date", "title",
                                              "text")})


def _date(warc_date: Optional[str]) -> Optional[str]:
  return warc_date[:10] if warc_date and len(warc_date) >= 10 else None


def _page(record, key: str, source: str) -> Record:
  """A response/resource record as a Page, or why it is skipped."""
  headers = record.rec_headers
  if headers.get_header("WARC-Truncated"):
    return Skip(key, "truncated_record")
  http = record.http_headers
  if http is not None and record.rec_type == "response":
    status = http.get_statuscode()
    if status != "200":
      return Skip(key, "http_status")
    ctype = (http.get_header("Content-Type") or "").lower()
  else:
    ctype = (headers.get_header("Content-Type") or "").lower()
  if "html" not in ctype:
    return Skip(key, "not_html")
  try:
    data = record.content_stream().read(MAX_PAGE_BYTES + 1)
  except (zlib.error, EOFError, OSError, ValueError, ArchiveLoadFailed):
    return Skip(key, "malformed")
  if len(data) <= MAX_PAGE_BYTES and getattr(record.raw_stream, "limit", 0):
    return Skip(key, "truncated_record")  # The file ended inside it.
  if not data.strip():
    return Skip(key, "empty")
  if len(data) > MAX_PAGE_BYTES:
    return Skip(key, "too_large")
  return Page(key, source, headers.get_header("WARC-Target-URI"),
              _date(headers.get_header("WARC-Date")), html=data)


def _check_warc_start(path: str, head: bytes) -> None:
  """Raises CbenchError unless `head` starts a (gzipped) WARC or ARC file."""
  if head[:2] == b"\x1f\x8b":
    try:
      head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head)
    except zlib.error as e:
      raise CbenchError(f"--crawl: {path} is not a readable gzip file "
                        f"({e}).") from e
    if not head:
      raise CbenchError(f"--crawl: {path} is not a readable gzip file (its "
                        f"first member is cut short).")
  if not head.lstrip().startswith((b"WARC/", b"filedesc://")):
    raise CbenchError(f"--crawl: {path} is not a WARC/ARC file (it starts "
                      f"with {head[:20]!r}).")


def _read_warc(path: str, index: int) -> Iterator[Record]:
  source = os.path.basename(path)
  number = 0
  try:
    f = open(path, "rb")
  except OSError as e:
    raise CbenchError(f"--crawl: cannot read {path} ({e}).") from e
  with f:
    head = f.read(4096)
    if not head:
      return
    _check_warc_start(path, head)
    f.seek(0)
    try:
      for record in ArchiveIterator(f, arc2warc=True):
        key = _key(index, number)
        number += 1
        if record.rec_type == "revisit":
          yield Skip(key, "revisit")
        elif record.rec_type not in _PAGE_TYPES:
          yield Skip(key, "not_a_page")
        else:
          yield _page(record, key, source)
    except (ArchiveLoadFailed, zlib.error, EOFError, OSError,
            ValueError) as e:
      if number == 0:
        raise CbenchError(f"--crawl: {path} is not a readable WARC/ARC file "
                          f"({type(e).__name__}: {str(e)[:120]}).") from e
      yield Skip(_key(index, number), "truncated_file")
