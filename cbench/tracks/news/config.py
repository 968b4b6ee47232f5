"""What determines a News release: its month, its crawl files, its knobs.

`make_config(release_id="2026-03", crawl="PATH[,PATH...]")` validates user
input into a frozen `NewsReleaseConfig`; every knob has a documented default
and can be changed with ``make_release --override=FIELD=VALUE``. `--crawl`
is a comma-separated list of files, directories (searched recursively) or
glob patterns; `crawl_files` resolves it to a sorted list of files whose
type is known from the name (`KINDS`). Nothing is fetched from the network.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import glob
import os
import re

from cbench import _validate
from cbench._validate import CbenchError
from cbench.corpus import release as release_lib

TRACK = "news"
PIPELINE_VERSION = "news-1.0"
# File name suffix -> kind of crawl file.
KINDS = (
    (".warc.gz", "warc"), (".warc", "warc"), (".arc.gz", "warc"),
    (".arc", "warc"), (".html", "html"), (".htm", "html"),
    (".jsonl", "jsonl"),
)
_RELEASE_ID = re.compile(r"^(\d{4})-(\d{2})$")
EMBEDDERS = ("minilm", "hashing")
# Default link threshold per embedder (cosine of title + lede): MiniLM
# puts reports of one story at 0.5-0.9; hashed word features at 0.15-0.6
# with unrelated stories below 0.15 (measured on the fixture crawl).
DEFAULT_SIMILARITY = {"minilm": 0.5, "hashing": 0.2}
SLICES = ("events", "all")


@dataclasses.dataclass(frozen=True, kw_only=True)
class NewsReleaseConfig:
  """A News release (see the module docstring).

  Attributes:
    release_id: the month, ``YYYY-MM``; articles dated outside it are
      dropped.
    crawl: the crawl files (resolved, sorted absolute paths).
    seed: `release.derive_seed("news", release_id)`.
    min_words: shorter extracted texts are not articles (dropped).
    max_words: longer ones are cut to this many words (counted).
    language: the language kept (py3langid code).
    dedup_threshold: MinHash Jaccard above which a later article is a
      near-duplicate (syndicated copy) of an earlier one (fixed at the
      project's `dedup.THRESHOLD`, 5-word shingles).
    embedder: 'minilm' (all-MiniLM-L6-v2, the 'models' extra) or 'hashing'
      (hashed word unigrams and bigrams, TF-IDF weighted; no model).
    window_days: articles further apart than this are never linked.
    similarity: cosine similarity of title + lede embeddings above which
      two articles are linked (None: `DEFAULT_SIMILARITY` of the embedder).
    neighbours: links kept per article (its most similar ones).
    shared_entities: proper names two linked articles' ledes must share
      (0: any).
    resolution: Leiden resolution (RBConfiguration; higher = smaller
      events).
    min_outlets: events reported by fewer distinct outlets are dropped.
    max_event_days: events spanning more days are dropped (topic drift).
    min_fact_articles / min_fact_outlets: a public fact must be stated in
      that many articles from that many outlets (in a matching context).
    min_shared_context: content words two mentions' sentences must share
      to be the same fact.
    max_facts_per_event: public facts kept per event (most supported).
    sensitive_per_event: facts stated by one outlet in at most two articles
      kept per event as sensitive questions (0: none).
    min_support: public questions need this many train supports.
    question_writer / answer_checker: the optional LLM path (`llm`): a
      model directory or pretrained name that rewrites cloze questions as
      natural questions / checks that a support states the answer; ""
      (the default) is the offline extractive path.
    zero_shot_model: a model directory or pretrained name that answers
      every question closed-book first; questions it gets right are
      dropped ("" skips the filter and says so in the manifest).
    slice: 'events' (articles of kept events; the default) or 'all'
      (every article that passed the filters).
  """
  release_id: str
  crawl: tuple[str, ...]
  seed: int
  min_words: int = 80
  max_words: int = 2000
  language: str = "en"
  dedup_threshold: float = 0.8
  embedder: str = "minilm"
  window_days: int = 3
  similarity: float | None = None
  neighbours: int = 10
  shared_entities: int = 1
  resolution: float = 1.0
  min_outlets: int = 3
  max_event_days: int = 7
  min_fact_articles: int = 3
  min_fact_outlets: int = 2
  min_shared_context: int = 2
  max_facts_per_event: int = 12
  sensitive_per_event: int = 2
  min_support: int = 3
  question_writer: str = ""
  answer_checker: str = ""
  zero_shot_model: str = "gemma3_270m"
  slice: str = "events"
  pipeline_version: str = PIPELINE_VERSION

  def __post_init__(self):
    month_window(self.release_id)
    for name in ("min_words", "max_words", "window_days", "neighbours",
                 "min_outlets", "max_event_days", "min_fact_articles",
                 "min_fact_outlets", "min_shared_context",
                 "max_facts_per_event", "min_support"):
      _validate.positive(name, getattr(self, name))
    _validate.non_negative("sensitive_per_event", self.sensitive_per_event)
    _validate.check(self.min_words < self.max_words,
                    f"Expected min_words={self.min_words} < "
                    f"max_words={self.max_words}.")
    _validate.check(0 < self.dedup_threshold <= 1,
                    f"Expected 0 < dedup_threshold={self.dedup_threshold} "
                    f"<= 1.")
    _validate.check(self.similarity is None or -1 <= self.similarity < 1,
                    f"Expected -1 <= similarity={self.similarity} < 1.")
    _validate.check(self.resolution > 0,
                    f"Expected resolution={self.resolution} > 0.")
    _validate.one_of("embedder", self.embedder, EMBEDDERS)
    _validate.one_of("slice", self.slice, SLICES)

  @property
  def link_similarity(self) -> float:
    """The link threshold in effect (see `similarity`)."""
    if self.similarity is None:
      return DEFAULT_SIMILARITY[self.embedder]
    return self.similarity

  @property
  def window(self) -> tuple[datetime.date, datetime.date]:
    return month_window(self.release_id)

  def manifest_fields(self) -> dict:
    """The knobs as written to the manifest (crawl files by name only:
    moving the crawl does not change the release)."""
    out = dataclasses.asdict(self)
    out["crawl"] = [os.path.basename(p) for p in self.crawl]
    out["similarity"] = self.link_similarity
    return out


def month_window(release_id: str) -> tuple[datetime.date, datetime.date]:
  """First and last day of the month ``YYYY-MM``.

  Raises:
    CbenchError naming --release when it is not a month.
  """
  m = _RELEASE_ID.match(release_id or "")
  if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1990:
    raise CbenchError(f"--release={release_id!r}: a News release id is a "
                      f"month, YYYY-MM (e.g. 2026-03).")
  year, month = int(m.group(1)), int(m.group(2))
  last = calendar.monthrange(year, month)[1]
  return datetime.date(year, month, 1), datetime.date(year, month, last)


def kind_of(path: str) -> str | None:
  """'warc', 'html' or 'jsonl' from the file name, or None."""
  lower = path.lower()
  for suffix, kind in KINDS:
    if lower.endswith(suffix):
      return kind
  return None


def crawl_files(spec: str) -> tuple[str, ...]:
  """The crawl files `spec` names (see the module docstring), sorted.

  Raises:
    CbenchError: an empty spec, a part that matches nothing, or a named
      file of unknown type.
  """
  parts = [p.strip() for p in (spec or "").split(",") if p.strip()]
  if not parts:
    raise CbenchError("--crawl is required for --track=news (a file, a "
                      "directory or a glob of WARC/ARC, HTML or JSONL "
                      "files).")
  out = set()
  for part in parts:
    if os.path.isdir(part):
      found = [os.path.join(d, f) for d, _, fs in os.walk(part)
               for f in fs if kind_of(f)]
    elif os.path.isfile(part):
      if kind_of(part) is None:
        raise CbenchError(f"--crawl={part}: unknown file type (expected "
                          f"{sorted({s for s, _ in KINDS})}).")
      found = [part]
    else:
      found = [p for p in glob.glob(part, recursive=True)
               if os.path.isfile(p) and kind_of(p)]
    if not found:
      raise CbenchError(f"--crawl={part} matches no crawl file.")
    out.update(os.path.abspath(p) for p in found)
  return tuple(sorted(out))


def make_config(release_id: str, crawl: str, **overrides) -> NewsReleaseConfig:
  """Validated config of a News release (CbenchError names a bad input)."""
  month_window(release_id)
  files = crawl_files(crawl)
  try:
    return NewsReleaseConfig(release_id=release_id, crawl=files,
                             seed=release_lib.derive_seed(TRACK, release_id),
                             **overrides)
  except TypeError as e:
    raise CbenchError(f"Unknown News release option: {e}.") from e
