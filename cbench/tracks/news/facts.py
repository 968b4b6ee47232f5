"""Stage 6: facts that several articles of an event state, as questions.

The offline, extractive path (no LLM). A documented rule set finds candidate
answers in every sentence of an event's articles (`mentions`):

* ``date``: a day and month ("14 March", "March 14th", optionally with a
  year); answer "14 March", aliases "March 14", "14 March 2026", ...
* ``number``: a number of at least 10, or any number with a currency sign,
  a decimal part or a multiplier (percent, %, thousand, million, billion,
  trillion); not a year (1900-2099 alone), not part of a date, a time or a
  longer token. Aliases: the other spellings seen, with or without
  thousands separators, "%" / "percent", the number in words (< 10,000).
* ``name``: 2-4 capitalised words (a person, place or organisation; "of",
  "de", "van", ... allowed inside), not starting a sentence with a
  capitalised stop word, without month or weekday names.

A mention's *context* is the set of content words of its sentence
(`events.content_words`, minus the answer's own words). Two mentions of the
same answer (same normalised form) *match* when their contexts share at
least ``min_shared_context`` words. For every answer of an event the anchor
is the mention that matches mentions in the most articles (then outlets,
then the earliest); those articles are the fact's supports. A fact is
*public* when at least ``min_fact_articles`` articles from
``min_fact_outlets`` outlets state it in matching contexts (the
``max_facts_per_event`` best supported are kept), and a *sensitive*
candidate when its answer appears in the event only in one outlet or in at
most two articles (up to ``sensitive_per_event`` per event, chosen by a
keyed hash of the release seed); the release keeps a sensitive fact only if
no more than two articles of the whole slice, or only one outlet, state its
answer anywhere (`stated_by`). A date answer equal to its report's own date
is never asked (the question's date would give it away).

The question is a cloze of the anchor sentence, anchored to the absolute
date of the report:

  On 14 March 2026, a news report titled "..." said: "The blaze destroyed
  ___ homes before crews contained it." What number fills the blank?

(the title is left out when it states the answer; the sentence is cut to
`MAX_CLOZE_WORDS` words around the blank).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import re
from typing import Optional, Sequence

from cbench.corpus import answers
from cbench.tracks.news import articles as articles_lib
from cbench.tracks.news import config as config_lib
from cbench.tracks.news import events as events_lib

MAX_CLOZE_WORDS = 40
MIN_CLOZE_WORDS = 6
KINDS = ("number", "date", "name")
_MONTH = "|".join(articles_lib.MONTHS)
_MONTH_RE = re.compile(rf"\b(?:{_MONTH})\b")
_DATE = re.compile(
    rf"(?<![\w-])(?:(?P<d1>[0-3]?\d)(?:st|nd|rd|th)?\s+(?P<m1>{_MONTH})"
    rf"|(?P<m2>{_MONTH})\s+(?P<d2>[0-3]?\d)(?:st|nd|rd|th)?(?!\d))"
    rf"(?:,?\s+(?P<y>(?:19|20)\d\d))?(?![\w-])")
_NUMBER = re.compile(
    r"(?<![\w.,:/-])(?P<cur>[$£€])?(?P<int>\d{1,3}(?:,\d{3})+|\d+)"
    r"(?:\.(?P<dec>\d+))?"
    r"(?:\s?(?P<mult>percent|per cent|%|thousand|million|billion|trillion))?"
    r"(?![\w,.:/-]\d|[\w-])")
_CAP = r"[A-Z][a-z]+(?:[-'][A-Za-z][a-z]+)?"
_NAME = re.compile(
    rf"(?<![\w-]){_CAP}(?:\s+(?:(?:of|de|del|da|van|von|al|bin|la|le)\s+)?"
    rf"{_CAP}){{1,3}}(?![\w-])")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
             "Saturday", "Sunday")
_BOUNDARY = re.compile(r"[.!?][\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr no gov sen rep gen col lt sgt inc corp co "
    "ltd vs u.s u.k e.g i.e jan feb mar apr jun jul aug sep sept oct nov "
    "dec".split())
_LEAD_WORDS = frozenset(
    "The A An In On At As By For From It Its This That These Those He She "
    "They We But And Or If When While After Before Since During Under Over "
    "Mr Mrs Ms Dr Prof Sir".split())
_BLANK = "___"


@dataclasses.dataclass(frozen=True)
class Mention:
  """One candidate answer in one sentence of one article."""
  article: int      # index into the article list
  sentence: int
  start: int        # character span in the sentence
  end: int
  kind: str
  norm: str         # what two mentions must share to be the same answer
  surface: str
  context: frozenset


@dataclasses.dataclass(frozen=True)
class Fact:
  """A kept fact of an event and the question that asks for it."""
  id: str
  event: str
  kind: str
  answer: str
  aliases: tuple[str, ...]
  question: str
  sentence: str              # the anchor sentence (answer included)
  date: str                  # the anchor article's date
  supports: tuple[int, ...]  # article indices, ascending
  outlets: tuple[str, ...]
  sensitive: bool


def sentences(text: str) -> list[str]:
  """Sentences of a text: paragraphs, then '.', '!' or '?' (optionally
  followed by a quote or bracket) before a capital or a digit, except after
  a common abbreviation ("Mr.", "U.S.", "Jan.")."""
  out = []
  for paragraph in text.split("\n"):
    start = 0
    for m in _BOUNDARY.finditer(paragraph):
      words = paragraph[start:m.start()].split()
      last = words[-1].lower().rstrip(".") if words else ""
      if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
        continue
      out.append(paragraph[start:m.end()].strip())
      start = m.end()
    out.append(paragraph[start:].strip())
  return [s for s in out if s]


def _date_norm(m: re.Match) -> tuple[str, str]:
  day = int(m.group("d1") or m.group("d2"))
  month = m.group("m1") or m.group("m2")
  return f"{day} {month}", m.group(0)


def _number_norm(m: re.Match) -> Optional[tuple[str, str]]:
  digits = m.group("int").replace(",", "")
  cur, dec, mult = m.group("cur") or "", m.group("dec"), m.group("mult")
  value = int(digits)
  if not (cur or dec or mult):
    if value < 10 or (1900 <= value <= 2099 and len(digits) == 4):
      return None
  mult = {"%": "percent", "per cent": "percent"}.get(mult, mult)
  norm = cur + digits + (f".{dec}" if dec else "") + (f" {mult}" if mult
                                                      else "")
  return norm, m.group(0)


def spans(sentence: str) -> list[tuple[int, int, str, str, str]]:
  """``(start, end, kind, norm, surface)`` of every candidate answer."""
  taken: list[tuple[int, int]] = []
  out = []

  def free(a, b):
    return all(b <= x or a >= y for x, y in taken)

  for m in _DATE.finditer(sentence):
    norm, surface = _date_norm(m)
    if 1 <= int(norm.split()[0]) <= 31:
      taken.append(m.span())
      out.append((m.start(), m.end(), "date", norm, surface))
  for m in _NUMBER.finditer(sentence):
    got = _number_norm(m)
    if got and free(*m.span()):
      taken.append(m.span())
      out.append((m.start(), m.end(), "number", got[0], got[1]))
  for m in _NAME.finditer(sentence):
    words = m.group(0).split()
    start = m.start()
    while words and words[0] in _LEAD_WORDS:
      start += len(words[0]) + 1
      words = words[1:]
    if len(words) < 2 or any(w in _WEEKDAYS or _MONTH_RE.fullmatch(w)
                             for w in words):
      continue
    end = start + len(" ".join(words))
    if sentence[start:end] != " ".join(words) or not free(start, end):
      continue
    surface = sentence[start:end]
    taken.append((start, end))
    out.append((start, end, "name", surface.lower(), surface))
  return sorted(out)


def mentions(arts: Sequence[articles_lib.Article], members: Sequence[int]
             ) -> list[Mention]:
  """Every candidate answer in the articles `members` (see the module doc)."""
  out = []
  for a in members:
    for s, sentence in enumerate(sentences(arts[a].text)):
      words = set(events_lib.content_words(sentence))
      for start, end, kind, norm, surface in spans(sentence):
        own = set(events_lib.content_words(surface))
        out.append(Mention(a, s, start, end, kind, norm, surface,
                           frozenset(words - own)))
  return out


def aliases_of(kind: str, norm: str, surfaces: Sequence[str],
               answer: str) -> tuple[str, ...]:
  """Accepted spellings of an answer other than `answer` itself."""
  forms = list(surfaces)
  if kind == "date":
    day, month = norm.split()
    forms += [f"{day} {month}", f"{month} {day}"]
    years = {m.group("y") for s in surfaces
             for m in [_DATE.fullmatch(s)] if m and m.group("y")}
    for y in sorted(years):
      forms += [f"{day} {month} {y}", f"{month} {day}, {y}"]
  elif kind == "number":
    m = re.fullmatch(r"([$£€]?)(\d+)((?:\.\d+)?)((?: \w+)?)", norm)
    if m:
      cur, digits, dec, mult = m.groups()
      grouped = f"{int(digits):,}"
      for d in (digits, grouped):
        forms.append(f"{cur}{d}{dec}{mult}")
        if mult == " percent":
          forms.append(f"{cur}{d}{dec}%")
      if not (cur or dec or mult) and int(digits) < 10000:
        forms += answers.number_aliases(int(digits))
  out = []
  for f in forms:
    if f and f != answer and f not in out:
      out.append(f)
  return tuple(out)


def _matches(anchor: Mention, group: Sequence[Mention], k: int
             ) -> list[Mention]:
  return [m for m in group if len(anchor.context & m.context) >= k]


def _cloze(sentence: str, start: int, end: int) -> Optional[str]:
  """The sentence with [start, end) blanked, cut to `MAX_CLOZE_WORDS` words
  around the blank; None when fewer than `MIN_CLOZE_WORDS` words remain."""
  words = (sentence[:start] + _BLANK + sentence[end:]).split()
  at = next(i for i, w in enumerate(words) if _BLANK in w)
  if len(words) - 1 < MIN_CLOZE_WORDS:
    return None
  lo = max(0, min(at - MAX_CLOZE_WORDS // 2, len(words) - MAX_CLOZE_WORDS))
  cut = words[lo:lo + MAX_CLOZE_WORDS]
  text = ("... " if lo else "") + " ".join(cut) + (
      " ..." if lo + MAX_CLOZE_WORDS < len(words) else "")
  return text.replace('"', "'")


def question_text(art: articles_lib.Article, cloze: str, kind: str,
                  answer: str, aliases: Sequence[str]) -> str:
  """The question of a fact (see the module docstring)."""
  day = articles_lib.long_date(datetime.date.fromisoformat(art.date))
  title = art.title.replace('"', "'")
  if answers.answer_in_text(answer, aliases, title):
    lead = f"On {day}, a news report said"
  else:
    lead = f'On {day}, a news report titled "{title}" said'
  return f'{lead}: "{cloze}" What {kind} fills the blank?'


def _same_day(norm: str, date: str) -> bool:
  """Whether a date answer ("14 March") is the day of `date` (ISO)."""
  day = datetime.date.fromisoformat(date)
  return norm == f"{day.day} {articles_lib.MONTHS[day.month - 1]}"


def stated_by(fact: Fact, arts: Sequence[articles_lib.Article]
              ) -> tuple[int, int]:
  """(articles, outlets) of `arts` whose text holds the fact's answer (or
  an alias) anywhere, in any context."""
  match = answers.answer_matcher(fact.answer, fact.aliases)
  hits = [a for a in arts if match(a.text)]
  return len(hits), len({a.outlet for a in hits})


def _rank(seed: int, key: str) -> bytes:
  return hashlib.blake2b(f"{seed}/{key}".encode(), digest_size=8).digest()


def event_facts(arts: Sequence[articles_lib.Article],
                event: events_lib.Event,
                config: config_lib.NewsReleaseConfig) -> tuple[list[Fact],
                                                               dict]:
  """Public and sensitive facts of one event, and counts."""
  found = mentions(arts, event.members)
  groups: dict[tuple[str, str], list[Mention]] = collections.defaultdict(list)
  for m in found:
    groups[(m.kind, m.norm)].append(m)
  texts = {a: sentences(arts[a].text) for a in event.members}
  public, sensitive = [], []
  for (kind, norm), group in sorted(groups.items()):
    in_articles = {m.article for m in group}
    in_outlets = {arts[a].outlet for a in in_articles}
    best = None
    for anchor in group:
      if kind == "date" and _same_day(norm, arts[anchor.article].date):
        continue  # The question's own date would give the answer away.
      matched = _matches(anchor, group, config.min_shared_context)
      support = sorted({m.article for m in matched})
      outlets = sorted({arts[a].outlet for a in support})
      key = (-len(support), -len(outlets), arts[anchor.article].date,
             arts[anchor.article].key, anchor.sentence, anchor.start)
      if best is None or key < best[0]:
        best = (key, anchor, support, outlets, matched)
    if best is None:
      continue
    _, anchor, support, outlets, matched = best
    is_public = (len(support) >= config.min_fact_articles
                 and len(outlets) >= config.min_fact_outlets)
    is_sensitive = len(in_outlets) == 1 or len(in_articles) <= 2
    if not (is_public or is_sensitive):
      continue
    cloze = _cloze(texts[anchor.article][anchor.sentence], anchor.start,
                   anchor.end)
    if cloze is None:
      continue
    surfaces = collections.Counter(m.surface for m in matched)
    answer = sorted(surfaces, key=lambda s: (-surfaces[s], s))[0]
    aliases = aliases_of(kind, norm, sorted(surfaces), answer)
    if answers.answer_in_text(answer, aliases, cloze):
      continue  # The cloze would give the answer away.
    item = (kind, norm, anchor, tuple(support), tuple(outlets), answer,
            aliases, cloze)
    (public if is_public else sensitive).append(item)
  public.sort(key=lambda it: (-len(it[3]), -len(it[4]),
                              KINDS.index(it[0]), it[1]))
  public = public[:config.max_facts_per_event]
  sensitive.sort(key=lambda it: _rank(config.seed, f"{event.id}/{it[1]}"))
  sensitive = sensitive[:config.sensitive_per_event]
  facts = []
  for n, (kind, norm, anchor, support, outlets, answer, aliases, cloze) in (
      enumerate(public + sensitive, 1)):
    art = arts[anchor.article]
    facts.append(Fact(
        id=f"{event.id}-q{n:02d}", event=event.id, kind=kind, answer=answer,
        aliases=aliases,
        question=question_text(art, cloze, kind, answer, aliases),
        sentence=texts[anchor.article][anchor.sentence], date=art.date, supports=support, outlets=outlets,
        sensitive=n > len(public)))
  stats = {"mentions": len(found), "answers": len(groups),
           "public": len(public), "sensitive": len(sensitive)}
  return facts, stats
