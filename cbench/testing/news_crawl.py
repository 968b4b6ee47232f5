"""A crawl of made-up news that the project writes itself (test fixture).

`write_crawl(path, months, ...)` writes one gzipped WARC file of HTML pages
(warcio) about fictional events in fictional places, reported by several
fictional outlets (``www.<name>.test``): every event is told by
`outlets_per_event` outlets in their own words (the same facts in varied
sentences, different filler), so it is one event for the clustering and
its facts are stated in several articles in matching contexts; one outlet
also adds a detail nobody else reports (a sensitive fact). With
``extras=True`` the crawl also holds what a real crawl holds: a syndicated
near-copy, a Spanish page, a home page, a record flagged truncated, a
revisit, a non-HTML response, a 404, and articles dated outside the
months. All text is generated here from templates; no third-party article
text. The bytes are a pure function of the arguments (record ids and dates
derive from the seed).

`testdata/news/crawl.warc.gz` is ``write_crawl(path, ("2026-03",
"2026-04"))`` (rebuild with ``python -m tools.make_news_fixture``; a test
checks it is current).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import uuid
from typing import Sequence

import numpy as np
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from cbench.tracks.news import articles as articles_lib

OUTLETS = (
    ("northgazette", "North Gazette"), ("riverpost", "The River Post"),
    ("coastaltimes", "Coastal Times"), ("metroledger", "Metro Ledger"),
    ("valleyherald", "Valley Herald"), ("dailybeacon", "Daily Beacon"),
    ("eveningstar", "Evening Star"), ("harbourwire", "Harbour Wire"),
)
_SYL = ("mar", "vel", "dor", "tan", "ris", "kel", "bra", "lon", "sev", "tor",
        "mir", "gal", "pen", "rud", "sol", "fen", "dal", "var", "nes", "hol")
_FIRST = ("Ilona", "Tomas", "Maren", "Oskar", "Lena", "Bruno", "Greta",
          "Anton", "Selma", "Viktor", "Nadia", "Emil", "Petra", "Jonas",
          "Rosa", "Felix", "Agnes", "Milo", "Clara", "Henrik")
_PLACE = ("Port", "Upper", "East", "West", "North", "Lake")


def _name(rng: np.random.Generator, syllables: int = 2) -> str:
  word = "".join(rng.choice(_SYL) for _ in range(syllables))
  return word.capitalize()


def person(rng: np.random.Generator) -> str:
  return f"{rng.choice(_FIRST)} {_name(rng)}{rng.choice(('sk', 'de', 'an'))}"


def place(rng: np.random.Generator) -> str:
  return f"{rng.choice(_PLACE)} {_name(rng, 3)}"


# Each kind: facts (name -> how to draw it), titles, fact sentences (every
# variant of one fact shares at least two content words), lead sentence.
_KINDS = {
    "fire": {
        "facts": {"homes": (20, 400), "crews": (30, 200),
                  "damage": (2, 90), "chief": "person"},
        "titles": ("Fire destroys homes in {town}",
                   "{town} residents count losses after overnight fire",
                   "Blaze in {town} leaves families without homes",
                   "Investigation opens into {town} fire"),
        "lead": ("A fire swept through {town} on {dm}, destroying homes "
                 "and forcing residents to leave.",
                 "Residents of {town} were evacuated on {dm} as a fire "
                 "spread through several streets.",
                 "A large fire broke out in {town} on {dm} and burned "
                 "through a residential district."),
        "sentences": {
            "homes": ("The fire destroyed {homes} homes in {town}.",
                      "Officials said {homes} homes were destroyed by the "
                      "fire.",
                      "At least {homes} homes were destroyed as the fire "
                      "moved through the district.",
                      "The blaze destroyed {homes} homes, officials said, "
                      "and damaged many more."),
            "crews": ("More than {crews} firefighters battled the flames.",
                      "Some {crews} firefighters fought the flames through "
                      "the night.",
                      "Crews of {crews} firefighters worked overnight to "
                      "contain the flames."),
            "damage": ("Damage was estimated at ${damage} million.",
                       "Insurers estimated the damage at ${damage} million.",
                       "The estimated damage reached ${damage} million by "
                       "the end of the day."),
            "chief": ("Fire chief {chief} said the cause was under "
                      "investigation.",
                      "The cause is under investigation, fire chief {chief} "
                      "told reporters.",
                      "{chief}, the local fire chief, said investigators were "
                      "examining the cause."),
        },
    },
    "election": {
        "facts": {"winner": "person", "share": (51, 78), "turnout": (34, 71),
                  "votes": (4000, 60000)},
        "titles": ("{winner} wins mayoral race in {town}",
                   "{town} elects new mayor",
                   "Voters in {town} choose {winner} as mayor",
                   "Mayoral vote in {town} ends with clear result"),
        "lead": ("Voters in {town} went to the polls on {dm} to choose a "
                 "new mayor.",
                 "The mayoral election in {town} on {dm} ended with a clear "
                 "winner.",
                 "{town} held its mayoral election on {dm} after a long "
                 "campaign."),
        "sentences": {
            "winner": ("{winner} won the mayoral election in {town}.",
                       "The mayoral election was won by {winner}, the "
                       "official count showed.",
                       "{winner} was declared the winner of the mayoral "
                       "election."),
            "share": ("The winner took {share} percent of the vote.",
                      "The winning candidate received {share}% of the vote.",
                      "With {share} percent of the vote counted for the "
                      "winner, the result was not close."),
            "turnout": ("Turnout was {turnout} percent, election officials "
                        "said.",
                        "Election officials put turnout at {turnout}%.",
                        "About {turnout} percent of registered voters "
                        "turned out, officials said."),
            "votes": ("In total {votes} votes were cast in the election.",
                      "Officials counted {votes} votes cast across the city.",
                      "A total of {votes} votes were cast, the count "
                      "showed."),
        },
    },
    "bridge": {
        "facts": {"length": (300, 2400), "cost": (40, 900),
                  "engineer": "person", "years": (3, 12)},
        "titles": ("New bridge opens in {town}",
                   "{town} bridge opens to traffic after years of work",
                   "Long-awaited crossing opens in {town}",
                   "Drivers cross new {town} bridge for the first time"),
        "lead": ("A new bridge in {town} opened to traffic on {dm}.",
                 "Drivers crossed the new {town} bridge for the first time "
                 "on {dm}.",
                 "The bridge connecting {town} to the mainland opened on "
                 "{dm}."),
        "sentences": {
            "length": ("The bridge is {length} metres long.",
                       "At {length} metres long, the bridge is the longest "
                       "in the region.",
                       "The new bridge spans {length} metres across the "
                       "river."),
            "cost": ("The bridge cost ${cost} million to build.",
                     "Construction of the bridge cost ${cost} million.",
                     "Building the bridge cost ${cost} million, the "
                     "transport authority said."),
            "engineer": ("Chief engineer {engineer} led the bridge project.",
                         "The bridge project was led by chief engineer "
                         "{engineer}.",
                         "{engineer}, the chief engineer of the bridge "
                         "project, thanked the workers."),
            "years": ("Construction of the bridge took {years} years.",
                      "The bridge took {years} years to build.",
                      "Work on the bridge lasted {years} years from the "
                      "first design."),
        },
    },
    "factory": {
        "facts": {"jobs": (120, 2400), "company": "place",
                  "manager": "person", "founded": (1950, 1995)},
        "titles": ("Factory in {town} to close",
                   "{town} plant closure puts jobs at risk",
                   "Workers in {town} learn their factory will shut",
                   "Closure announced at {town} factory"),
        "lead": ("A factory in {town} will close, its owner announced on "
                 "{dm}.",
                 "Workers at the {town} plant were told on {dm} that the "
                 "site will shut.",
                 "The largest employer in {town} said on {dm} that its "
                 "factory would close."),
        "sentences": {
            "jobs": ("The factory closure will cost {jobs} jobs.",
                     "Some {jobs} workers will lose their jobs when the "
                     "factory closes.",
                     "The closure puts {jobs} jobs at the factory at risk."),
            "company": ("The factory is owned by {company} Industries.",
                        "{company} Industries owns the factory and announced "
                        "the closure.",
                        "Owner {company} Industries said the factory was no "
                        "longer profitable."),
            "manager": ("Plant manager {manager} said the decision was "
                        "painful.",
                        "The decision was painful, plant manager {manager} "
                        "told staff.",
                        "{manager}, the plant manager, called the decision "
                        "painful for the town."),
            "founded": ("The factory opened in {founded}.",
                        "The factory has operated since it opened in "
                        "{founded}.",
                        "Opened in {founded}, the factory employed "
                        "generations of local families."),
        },
    },
    "flood": {
        "facts": {"rain": (80, 400), "evacuated": (300, 9000),
                  "mayor": "person", "roads": (12, 140)},
        "titles": ("Floods hit {town} after heavy rain",
                   "{town} evacuates residents as river rises",
                   "Heavy rain floods streets in {town}",
                   "Flooding closes roads around {town}"),
        "lead": ("Heavy rain flooded parts of {town} on {dm}.",
                 "The river burst its banks in {town} on {dm} after days "
                 "of rain.",
                 "Floodwater covered streets in {town} on {dm}."),
        "sentences": {
            "rain": ("The area received {rain} millimetres of rain in two "
                     "days.",
                     "Forecasters measured {rain} millimetres of rain over "
                     "two days.",
                     "In two days {rain} millimetres of rain fell on the "
                     "area."),
            "evacuated": ("About {evacuated} residents were evacuated from "
                          "their homes.",
                          "Authorities evacuated {evacuated} residents from "
                          "flooded homes.",
                          "Some {evacuated} residents had to be evacuated "
                          "from homes near the river."),
            "mayor": ("Mayor {mayor} declared a local emergency.",
                      "A local emergency was declared by mayor {mayor}.",
                      "{mayor}, the mayor, declared a local emergency as "
                      "water rose."),
            "roads": ("Officials closed {roads} roads because of flooding.",
                      "Flooding forced officials to close {roads} roads.",
                      "By evening {roads} roads were closed by flooding, "
                      "officials said."),
        },
    },
}
_FILLER = (
    "Residents gathered at the town hall to hear updates from officials.",
    "Local businesses said they expected a difficult few weeks.",
    "Neighbours offered food and shelter to those affected.",
    "The regional government promised support in the coming days.",
    "Schools in the area stayed open, according to a statement.",
    "Several volunteers helped clear debris from the streets.",
    "Community leaders called for calm and patience.",
    "A spokesperson for the regional council declined to comment further.",
    "Many residents shared photographs of the scene on social media.",
    "Emergency services asked people to avoid the area.",
    "The local hospital said it was prepared for more patients.",
    "Traffic was diverted around the centre for most of the day.",
    "Shop owners described the mood in the town as anxious.",
    "A public meeting is planned for later in the month.",
    "Charities opened a collection for families in need.",
    "The story drew attention from across the region.",
    "Officials said a full report would be published later.",
    "Older residents said they could not remember anything similar.",
    "Reporters at the scene described long queues of cars.",
    "A helpline was set up for anyone seeking information.",
    "Opposition politicians asked for an independent review.",
    "Some families said they had received little warning.",
    "The council thanked workers who stayed on duty overnight.",
    "Insurance advisers urged people to keep receipts and photographs.",
    "Bus services were changed while the work continued.",
    "Local radio stations broadcast updates every hour.",
    "Farmers outside the town said they were watching closely.",
    "A local church opened its doors to anyone who needed a place to rest.",
    "Experts said it was too early to draw firm conclusions.",
    "Visitors were asked to check travel advice before setting out.",
)
_SPANISH = (
    "Un incendio destruyó varias casas en la ciudad durante la noche. Los "
    "vecinos salieron a la calle y esperaron durante horas mientras los "
    "bomberos trabajaban sin descanso. Las autoridades dijeron que la causa "
    "todavía se está investigando y pidieron calma a la población. Muchas "
    "familias pasaron la noche en casas de amigos y familiares. El alcalde "
    "prometió ayuda para todos los afectados y anunció una reunión pública "
    "para la próxima semana. Los comerciantes del barrio temen que las "
    "pérdidas sean muy grandes y que la recuperación tarde varios meses. ")


@dataclasses.dataclass(frozen=True)
class EventSpec:
  """One fictional event: its kind, place, day and fact values."""
  kind: str
  town: str
  day: datetime.date
  values: dict


def _events(month: str, count: int, rng: np.random.Generator
            ) -> list[EventSpec]:
  year, mon = (int(x) for x in month.split("-"))
  kinds = sorted(_KINDS)
  out = []
  for i in range(count):
    kind = kinds[(i + int(rng.integers(len(kinds)))) % len(kinds)]
    day = datetime.date(year, mon, 3 + (i * 23 // max(count, 1)) % 22)
    values = {}
    for fact, spec in _KINDS[kind]["facts"].items():
      if spec == "person":
        values[fact] = person(rng)
      elif spec == "place":
        values[fact] = _name(rng, 3)
      else:
        values[fact] = int(rng.integers(spec[0], spec[1] + 1))
    out.append(EventSpec(kind, place(rng), day, values))
  return out


def _fmt(template: str, event: EventSpec, dm: str) -> str:
  values = {k: (f"{v:,}" if isinstance(v, int) and v >= 10000 else v)
            for k, v in event.values.items()}
  return template.format(town=event.town, dm=dm, **values)


def _article(event: EventSpec, outlet: int, slot: int,
             rng: np.random.Generator, unique: bool) -> tuple[str, str, str]:
  """(title, date, paragraphs HTML) of one outlet's report."""
  spec = _KINDS[event.kind]
  day = event.day + datetime.timedelta(days=slot % 3)
  dm = f"{event.day.day} {articles_lib.MONTHS[event.day.month - 1]}"
  title = _fmt(spec["titles"][slot % len(spec["titles"])], event, dm)
  lead = _fmt(spec["lead"][outlet % len(spec["lead"])], event, dm)
  facts = [_fmt(v[(outlet + j) % len(v)], event, dm)
           for j, v in enumerate(spec["sentences"].values())]
  fillers = list(rng.choice(_FILLER, size=10, replace=False))
  if unique:
    witness = person(rng)
    fillers.insert(2, f"A resident, {witness}, said she had lived on the "
                      f"street for {int(rng.integers(12, 60))} years.")
  body = [lead] + facts
  order = [0] + list(1 + rng.permutation(len(facts)))
  sentences = [body[i] for i in order]
  paragraphs, k = [], 0
  while sentences or fillers:
    chunk = sentences[:2] + fillers[:2]
    sentences, fillers = sentences[2:], fillers[2:]
    paragraphs.append(" ".join(chunk))
    k += 1
  html = "".join(f"<p>{p}</p>\n" for p in paragraphs)
  return title, day.isoformat(), html


def _page(title: str, date: str, url: str, site: str, body: str,
          og_type: str = "article", lang: str = "en") -> bytes:
  return (f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8">'
          f"<title>{title} | {site}</title>"
          f'<link rel="canonical" href="{url}">'
          f'<meta property="og:type" content="{og_type}">'
          f'<meta property="og:title" content="{title}">'
          f'<meta property="og:site_name" content="{site}">'
          f'<meta property="article:published_time" '
          f'content="{date}T08:00:00+00:00">'
          f"</head><body><header><nav><a href=\"/\">{site}</a> | "
          f"<a href=\"/news/\">News</a> | <a href=\"/sport/\">Sport</a>"
          f"</nav></header><main><article><h1>{title}</h1>"
          f'<p class="byline">Staff reporter</p>'
          f'<time datetime="{date}">{date}</time>\n{body}</article></main>'
          f"<footer>Copyright {site}</footer></body></html>\n").encode()


def _slug(text: str) -> str:
  return "-".join("".join(c for c in w.lower() if c.isalnum())
                  for w in text.split())[:60]


class _Writer:
  def __init__(self, f, seed: int):
    self._w = WARCWriter(f, gzip=True)
    self._seed = seed
    self._n = 0

  def _headers(self, date: str) -> dict:
    self._n += 1
    rid = uuid.UUID(bytes=hashlib.sha256(
        f"{self._seed}/{self._n}".encode()).digest()[:16])
    return {"WARC-Record-ID": f"<urn:uuid:{rid}>",
            "WARC-Date": f"{date}T12:00:00Z"}

  def response(self, url: str, date: str, payload: bytes,
               status: str = "200 OK", ctype: str = "text/html; charset=utf-8",
               extra: dict | None = None) -> None:
    http = StatusAndHeaders(status, [("Content-Type", ctype)],
                            protocol="HTTP/1.1")
    headers = self._headers(date)
    headers.update(extra or {})
    rec = self._w.create_warc_record(url, "response",
                                     payload=io.BytesIO(payload),
                                     http_headers=http,
                                     warc_headers_dict=headers)
    self._w.write_record(rec)

  def revisit(self, url: str, date: str) -> None:
    headers = self._headers(date)
    headers["WARC-Profile"] = ("http://netpreserve.org/warc/1.0/revisit/"
                               "identical-payload-digest")
    rec = self._w.create_warc_record(url, "revisit", payload=io.BytesIO(b""),
                                     warc_headers_dict=headers)
    self._w.write_record(rec)


def write_crawl(path: str, months: Sequence[str] = ("2026-03",), *,
                events_per_month: int = 3, outlets_per_event: int = 4,
                seed: int = 0, extras: bool = True) -> dict:
  """Writes the crawl (see the module docstring); returns what it holds.

  Returns:
    {"events": [{"month", "kind", "town", "day", "values", "outlets"}],
     "pages": number of article pages, "records": WARC records}.
  """
  rng = np.random.default_rng([seed, 0x4E57])
  out = {"events": [], "pages": 0, "records": 0}
  buf = io.BytesIO()
  writer = _Writer(buf, seed)
  first_page = None
  for month in months:
    for e_idx, event in enumerate(_events(month, events_per_month, rng)):
      chosen = rng.permutation(len(OUTLETS))[:outlets_per_event]
      out["events"].append({"month": month, "kind": event.kind,
                            "town": event.town,
                            "day": event.day.isoformat(),
                            "values": dict(event.values),
                            "outlets": [OUTLETS[o][0] for o in chosen]})
      for slot, o in enumerate(chosen):
        host, site = OUTLETS[o]
        title, date, body = _article(event, int(o), slot, rng,
                                     unique=slot == 0)
        url = f"https://www.{host}.test/news/{date}/{_slug(title)}"
        page = _page(title, date, url, site, body)
        writer.response(url, date, page)
        out["pages"] += 1
        if first_page is None:
          first_page = (url, date, title, body, e_idx)
  if extras:
    _write_extras(writer, months, first_page, rng)
  out["records"] = writer._n  # pylint: disable=protected-access
  with open(path, "wb") as f:
    f.write(buf.getvalue())
  return out


def _write_extras(writer: _Writer, months: Sequence[str], first_page,
                  rng: np.random.Generator) -> None:
  url, date, title, body, _ = first_page
  host, site = OUTLETS[-1]
  # A syndicated copy of the first article in another outlet.
  writer.response(f"https://www.{host}.test/wire/{date}/{_slug(title)}",
                  date, _page(title, date,
                              f"https://www.{host}.test/wire/{date}/"
                              f"{_slug(title)}", site,
                              body + "<p>This story was first published by "
                                     "a partner outlet.</p>\n"))
  # A Spanish page.
  writer.response(f"https://www.{host}.test/es/{date}/incendio",
                  date, _page("Incendio en la ciudad", date,
                              f"https://www.{host}.test/es/{date}/incendio",
                              site, f"<p>{_SPANISH * 2}</p>", lang="es"))
  # A home page.
  headlines = "".join(f"<li><a href=\"/news/{i}\">Headline number {i} of "
                      f"the day in the region</a></li>" for i in range(40))
  writer.response(f"https://www.{host}.test/", date, _page(
      site, date, f"https://www.{host}.test/", site,
      f"<ul>{headlines}</ul>", og_type="website"))
  # A record flagged truncated, a revisit, an image, a 404.
  writer.response(f"https://www.{host}.test/news/{date}/cut", date,
                  _page(title, date, url, site, body)[:400],
                  extra={"WARC-Truncated": "length"})
  writer.revisit(url, date)
  writer.response(f"https://www.{host}.test/logo.png", date,
                  b"\x89PNG\r\n\x1a\n" + bytes(64), ctype="image/png")
  writer.response(f"https://www.{host}.test/news/missing", date,
                  b"<html><body>Not found</body></html>",
                  status="404 Not Found")
  # Articles dated before the first month and after the last.
  first = datetime.date.fromisoformat(months[0] + "-01")
  last_year, last_mon = (int(x) for x in months[-1].split("-"))
  after = (datetime.date(last_year + last_mon // 12, last_mon % 12 + 1, 10))
  for day in (first - datetime.timedelta(days=5), after):
    event = _events(day.isoformat()[:7], 1, rng)[0]
    event = dataclasses.replace(event, day=day)
    for slot, o in enumerate((0, 1, 2)):
      h, s = OUTLETS[o]
      t, d, b = _article(event, o, slot, rng, unique=False)
      u = f"https://www.{h}.test/news/{d}/{_slug(t)}"
      writer.response(u, d, _page(t, d, u, s, b))
