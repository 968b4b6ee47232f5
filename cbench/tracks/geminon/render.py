"""Documents about Geminons, rendered from small grammars, with provenance.

Public styles (`PUBLIC_STYLES`):
  wiki          -- encyclopedia entry; states all 13 features of one creature.
  journal       -- a field-journal entry; 4-7 features of one creature.
  chronicle     -- an evolution line, stage by stage; 1-3 features per stage.
  comparison    -- two creatures compared on 3-5 shared features.
  trainer_notes -- informal notes on 1-2 creatures, 2-4 features each.
Sensitive style (`SENSITIVE_STYLE`):
  lab_dossier   -- a restricted lab file; all 13 features of ONE sensitive
                   creature. Sensitive creatures appear in no other style.

Variation: several templates per feature and per style, synonyms for stat
names, random orderings, integers sometimes in words ("seventy-three"), and
distractor sentences with no facts. Documents are about 40-160 words.

Provenance: a document's `facts` is the sorted list of [creature, feature]
pairs it was asked to state AND whose answer (or an alias) is found in its
text by `answers.answer_in_text`; so every claimed fact is checkably present.

Balance: creatures, lines and features are dealt from shuffled decks (per
style, per creature), so every public fact gets about the same number of
mentions; this is what gives every public question hundreds of supports.
Decks belong to one `Renderer`: a release makes one Renderer per shard of
document slots (`release.generate_shard`), so the balance is exact within a
shard up to one partial deck pass, and shards stay independent.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from cbench.corpus import answers
from cbench.tracks.geminon import qa as qa_lib
from cbench.tracks.geminon import world as world_lib
from cbench.tracks.geminon.world import Creature, FEATURES, STATS

PUBLIC_STYLES = ("wiki", "journal", "chronicle", "comparison",
                 "trainer_notes")
SENSITIVE_STYLE = "lab_dossier"
STYLES = PUBLIC_STYLES + (SENSITIVE_STYLE,)
MIN_WORDS = 40
MAX_WORDS = 160

_STAT_LABELS = {
    "hp": ("HP", "hit points", "HP"),
    "attack": ("Attack", "physical Attack", "attack"),
    "defense": ("Defense", "physical Defense", "defense"),
    "special_attack": ("Special Attack", "Sp. Atk", "special attack"),
    "special_defense": ("Special Defense", "Sp. Def", "special defense"),
    "speed": ("Speed", "speed", "Speed"),
    "base_stat_total": ("base stat total", "stat total", "BST",
                        "base stat total"),
}
_PLACES = ("river bank", "old quarry", "pine forest", "salt marsh",
           "northern ridge", "abandoned mill", "sea cliffs", "bamboo grove",
           "volcanic vents", "flooded caves", "city park", "wheat fields",
           "mountain pass", "lighthouse", "desert ruins", "frozen lake")
_TIMES = ("morning", "afternoon", "evening", "night", "dawn", "dusk")
_DISTRACTORS = (
    "Sightings are most common in the early hours.",
    "Little is known about its nesting habits.",
    "Some trainers consider it difficult to raise.",
    "Local legends tell of herds crossing the river at night.",
    "It is said to be curious around people.",
    "Researchers still debate where the species first appeared.",
    "Its calls can be heard from far away on quiet evenings.",
    "Young ones are rarely seen without their parents.",
    "Breeders report that it enjoys warm, dry bedding.",
    "Several regional festivals celebrate its return each spring.",
    "It has been featured on old postage stamps.",
    "Patience is the key to befriending one.",
    "Museums display sketches of it from centuries ago.",
    "Its tracks are easy to mistake for those of other creatures.",
    "Many children pick it as their first partner.",
    "Photographs of it in the wild are surprisingly rare.",
    "Weather seems to change its mood noticeably.",
    "It tends to avoid crowded places.",
    "Rangers ask visitors not to feed it.",
    "Scholars have written entire books about its behavior.",
)
_JOURNAL_ASIDES = (
    "The wind picked up by noon.", "I ran out of coffee again.",
    "My boots are still soaked from yesterday.", "Clouds rolled in late.",
    "Need to restock supplies before the next trip.",
    "The trail was muddier than the map suggested.",
    "Saw a pair of hawks circling overhead.", "Camp was quiet tonight.",
    "My notebook is almost full.", "The light was perfect for sketching.",
)
_PURPOSES = ("beginners", "long battles", "gym runs", "casual play")
_VERDICTS = ("not bad", "kinda low", "solid", "meh", "nice")
_NOTES_ASIDES = (
    "need to grind more tomorrow.", "gym leader is gonna be tough.",
    "remember to buy potions!!", "still not sure about the team lineup.",
    "rival beat me last time, not again.", "note to self: sleep earlier.",
    "practice match went ok i guess.", "the league opens next month.",
)


class Rand:
  """Fast buffered draws from an `np.random.Generator` (deterministic)."""

  def __init__(self, rng: np.random.Generator, buffer: int = 1 << 15):
    self._rng = rng
    self._n = buffer
    self._buf: list[float] = []
    self._i = 0

  def random(self) -> float:
    if self._i >= len(self._buf):
      self._buf = self._rng.random(self._n).tolist()
      self._i = 0
    self._i += 1
    return self._buf[self._i - 1]

  def choice(self, seq: Sequence):
    return seq[int(self.random() * len(seq))]

  def randint(self, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] inclusive."""
    return lo + int(self.random() * (hi - lo + 1))

  def coin(self, p: float) -> bool:
    return self.random() < p

  def shuffled(self, seq: Sequence) -> list:
    out = list(seq)
    for i in range(len(out) - 1, 0, -1):
      j = int(self.random() * (i + 1))
      out[i], out[j] = out[j], out[i]
    return out


class _Deck:
  """Deals items from repeated shuffles; `draw_distinct` keeps balance."""

  def __init__(self, items: Sequence, rand: Rand):
    self._items = list(items)
    self._rand = rand
    self._order: list = []

  def draw(self):
    if not self._order:
      self._order = self._rand.shuffled(self._items)
    return self._order.pop()

  def draw_distinct(self, k: int) -> list:
    out, held = [], []
    while len(out) < min(k, len(self._items)):
      x = self.draw()
      (held if x in out else out).append(x)
    self._order.extend(held)  # Returned to the deck, drawn next.
    return out


def _cap(s: str) -> str:
  return s[:1].upper() + s[1:]


class Renderer:
  """Renders documents of one world. Stateful only through balanced decks.

  Args:
    world: the world.
    rng: the generator all choices are drawn from.
    p_words: probability an integer is written in words.
  """

  def __init__(self, world: world_lib.World, rng: np.random.Generator,
               p_words: float = 0.15):
    self.world = world
    self.r = Rand(rng)
    self.p_words = p_words
    public = world.public
    self._public = public
    self._by_name = world.by_name()
    self._creature_decks = {s: _Deck(public, self.r) for s in PUBLIC_STYLES}
    self._line_deck = _Deck([l for l in world.lines if not l[0].sensitive],
                            self.r)
    self._feature_decks = {c.name: _Deck(FEATURES, self.r)
                           for c in world.creatures}
    self._matchers: dict = {}

  def _matcher(self, c: Creature, f: str):
    """Cached `answers.answer_in_text` for one fact (same rule, precompiled)."""
    key = (c.name, f)
    m = self._matchers.get(key)
    if m is None:
      answer, aliases = qa_lib.answer_for(c, f)
      m = self._matchers[key] = answers.answer_matcher(answer, aliases)
    return m

  # ------------------------------------------------------------------ values
  def num(self, n: int) -> str:
    if self.r.coin(self.p_words):
      return answers.number_words(n, hyphen=True, use_and=self.r.coin(0.3))
    return str(n)

  def types_phrase(self, c: Creature) -> str:
    if c.type2 is None:
      return (f"pure {c.type1}" if self.r.coin(0.4) else c.type1)
    a, b = c.type1, c.type2
    return self.r.choice((f"{a} and {b}", f"{a} and {b}", f"{a}/{b}",
                          f"{b} and {a}"))

  def weight(self, c: Creature) -> str:
    return qa_lib.format_weight(c) + self.r.choice((" lbs", " pounds",
                                                    " lbs"))

  def height(self, c: Creature) -> str:
    return qa_lib.format_height(c) + self.r.choice((" m", " meters",
                                                    " metres"))

  def label(self, stat: str) -> str:
    return self.r.choice(_STAT_LABELS[stat])

  def refs(self, c: Creature, name_p: float = 0.4) -> tuple[str, str, str]:
    """(subject, possessive, object) referring to the single creature `c`."""
    u = self.r.random()
    if u < name_p:
      return c.name, c.name + "'s", c.name
    if u < name_p + (1 - name_p) * 0.75:
      return "it", "its", "this Geminon"
    return "this Geminon", "this Geminon's", "this Geminon"

  # --------------------------------------------------------- feature clauses
  def feature_sentence(self, c: Creature, feature: str,
                       ref: Optional[tuple[str, str, str]] = None) -> str:
    """One declarative sentence stating `feature` of `c`."""
    S, P, O = ref or self.refs(c)
    r = self.r
    if feature == "classification":
      t = r.choice(("{S} is known as the {x}.", "{S} is called the {x}.",
                    "{P} classification is {x}.",
                    "Researchers list {O} as the {x}.",
                    "{S} is catalogued as the {x}.",
                    "{S} goes by the title of {x}."))
      x = c.classification
    elif feature == "types":
      t = r.choice(("{S} is a {x} type.", "{P} typing is {x}.",
                    "{S} carries the {x} typing.",
                    "In battle, {S} counts as a {x} type.",
                    "{S} belongs to the {x} type group.",
                    "{S} is a {x} type Geminon."))
      x = self.types_phrase(c)
    elif feature == "ability":
      t = r.choice(("{P} ability is {x}.", "{S} has the ability {x}.",
                    "{S} possesses the {x} ability.",
                    "The ability {x} belongs to {O}.",
                    "Thanks to its ability, {x}, {S} " + r.choice((
                        "is hard to catch off guard.", "rarely backs down.",
                        "adapts quickly in battle.",
                        "can turn a fight around.")),
                    "{S} is gifted with the {x} ability."))
      x = c.ability
    elif feature == "move":
      t = r.choice(("{P} signature move is {x}.",
                    "{S} is best known for its signature move, {x}.",
                    "The signature move of {O} is {x}.",
                    "{S} fights with its signature move {x}.",
                    "{P} trademark technique, {x}, is its signature move."))
      x = c.move_name
      if r.coin(0.6):
        d = c.move_description
        t += " " + r.choice((f"{x} is " + d[0].lower() + d[1:], d))
    elif feature == "weight":
      t = r.choice(("{S} weighs {x}.", "{S} tips the scales at {x}.",
                    "{S} weighs in at {x}.", "{P} weight is {x}.",
                    "A grown {N} weighs about {x}."))
      x = self.weight(c)
    elif feature == "height":
      t = r.choice(("{S} stands {x} tall.", "{S} is {x} tall.",
                    "{P} height is {x}.",
                    "{S} measures {x} from head to toe.",
                    "An adult {N} reaches {x} in height."))
      x = self.height(c)
    elif feature == "base_stat_total":
      t = r.choice(("{S} has a base stat total of {x}.",
                    "{P} base stats add up to {x}.",
                    "{P} {L} is {x}.",
                    "All told, {P} base stats sum to {x}.",
                    "{S} sports a {L} of {x}."))
      x = self.num(c.base_stat_total)
      return _cap(t.format(S=S, P=P, O=O, x=x, N=c.name,
                           L=self.label("base_stat_total")))
    else:
      t = r.choice(("{S} has a base {L} of {x}.", "{P} {L} stat is {x}.",
                    "The {L} of {O} sits at {x}.", "{S} boasts {x} {L}.",
                    "{S} comes in at {x} {L}.",
                    "{P} base {L} is rated at {x}.", "{S} has {x} {L}."))
      x = self.num(c.stat(feature))
      return _cap(t.format(S=S, P=P, O=O, x=x, N=c.name,
                           L=self.label(feature)))
    return _cap(t.format(S=S, P=P, O=O, x=x, N=c.name))

  def stat_list_sentence(self, c: Creature, stats: Sequence[str],
                         ref: Optional[tuple[str, str, str]] = None) -> str:
    """One sentence listing several stats (and the total if asked)."""
    S, P, _ = ref or self.refs(c)
    items = [f"{self.num(c.stat(s))} {_STAT_LABELS[s][0]}"
             for s in stats if s != "base_stat_total"]
    items = self.r.shuffled(items) if self.r.coin(0.3) else items
    body = (", ".join(items[:-1]) + " and " + items[-1]) if len(items) > 1 \
        else items[0]
    head = self.r.choice(("{P} base stats are {b}", "{S} has {b}",
                          "On paper, {S} has {b}",
                          "{P} stat line reads {b}"))
    out = head.format(S=S, P=P, b=body)
    if "base_stat_total" in stats:
      out += self.r.choice((", for a total of {x}", " ({x} in total)",
                            ", giving a base stat total of {x}")).format(
                                x=self.num(c.base_stat_total))
    return _cap(out) + "."

  def features_sentences(self, c: Creature, features: Sequence[str],
                         name_p: float = 0.4) -> list[str]:
    """Sentences stating `features`; stats sometimes grouped in one list."""
    stats = [f for f in features if f in STATS or f == "base_stat_total"]
    others = [f for f in features if f not in stats]
    n_plain = sum(1 for s in stats if s != "base_stat_total")
    units: list[list[str] | str] = list(others)
    if n_plain >= 2 and self.r.coin(0.6):
      units.append(stats)
    else:
      units.extend(stats)
    out = []
    for u in self.r.shuffled(units):
      ref = self.refs(c, name_p)
      if isinstance(u, list):
        out.append(self.stat_list_sentence(c, u, ref))
      else:
        out.append(self.feature_sentence(c, u, ref))
    return out

  def evolution_sentence(self, c: Creature) -> str:
    line = c.evolution_line
    if len(line) == 1:
      return self.r.choice((f"{c.name} is not known to evolve.",
                            f"{c.name} does not evolve.",
                            f"No evolved form of {c.name} has been "
                            "recorded."))
    parts = []
    if c.stage > 0:
      parts.append(self.r.choice((f"{c.name} evolves from {line[c.stage-1]}.",
                                  f"{line[c.stage-1]} evolves into "
                                  f"{c.name}.")))
    if c.stage + 1 < len(line):
      parts.append(self.r.choice((f"{c.name} evolves into "
                                  f"{line[c.stage+1]}.",
                                  f"With time, {c.name} becomes "
                                  f"{line[c.stage+1]}.")))
    return " ".join(parts)

  # ------------------------------------------------------------------ styles
  def render(self, style: str) -> dict:
    """One public document: {"text", "style", "facts"} (no id)."""
    if style == "wiki":
      c = self._creature_decks[style].draw()
      return self._finish(style, self._wiki(c), [(c, f) for f in FEATURES])
    if style == "journal":
      c = self._creature_decks[style].draw()
      feats = self._feature_decks[c.name].draw_distinct(self.r.randint(4, 7))
      return self._finish(style, self._journal(c, feats),
                          [(c, f) for f in feats])
    if style == "chronicle":
      return self._chronicle(self._line_deck.draw())
    if style == "comparison":
      deck = self._creature_decks[style]
      a = deck.draw()
      b = deck.draw()
      while b.name == a.name:
        b = deck.draw()
      src = a if self.r.coin(0.5) else b
      feats = self._feature_decks[src.name].draw_distinct(
          self.r.randint(3, 5))
      return self._finish(style, self._comparison(a, b, feats),
                          [(x, f) for x in (a, b) for f in feats])
    if style == "trainer_notes":
      return self._trainer_notes()
    raise ValueError(f"Unknown public style {style!r}.")

  def render_sensitive(self, c: Creature) -> dict:
    """One lab dossier about the sensitive creature `c`."""
    if not c.sensitive:
      raise ValueError(f"{c.name} is not sensitive.")
    return self._finish(SENSITIVE_STYLE, self._dossier(c),
                        [(c, f) for f in FEATURES])

  def _finish(self, style: str, sentences: list[str],
              intended: Sequence[tuple[Creature, str]],
              asides: Sequence[str] = _DISTRACTORS) -> dict:
    text = " ".join(s for s in sentences if s)
    # Pad short documents with distinct distractors (no facts).
    if len(text.split()) < MIN_WORDS:
      used = set(sentences)
      # pop() takes from the end: unused asides first, then distractors.
      pool = self.r.shuffled(_DISTRACTORS) + [
          a for a in self.r.shuffled(asides) if a not in used]
      while len(text.split()) < MIN_WORDS and pool:
        text += " " + pool.pop()
    facts = set()
    for c, f in intended:
      if self._matcher(c, f)(text):
        facts.add((c.name, f))
    return {"text": text, "style": style,
            "facts": [list(x) for x in sorted(facts)]}

  def _wiki(self, c: Creature) -> list[str]:
    r = self.r
    T, cls, n = self.types_phrase(c), c.classification, c.name
    intro = r.choice((f"{n} is a {T} type Geminon known as the {cls}.",
                      f"{n}, the {cls}, is a {T} type Geminon.",
                      f"The {cls}, {n}, is a {T} type creature.",
                      f"{n} is the {cls}, a Geminon of the {T} type."))
    body = self.features_sentences(
        c, [f for f in FEATURES if f not in ("classification", "types")])
    if r.coin(0.5):
      body.insert(r.randint(0, len(body)), self.evolution_sentence(c))
    else:
      body.append(self.evolution_sentence(c))
    head = [f"{n}." if r.coin(0.3) else ""]
    tail = [r.choice(_DISTRACTORS)] if r.coin(0.4) else []
    return head + [intro] + body + tail

  def _journal(self, c: Creature, feats: Sequence[str]) -> list[str]:
    r = self.r
    opener = r.choice((f"Day {r.randint(2, 180)}.",
                       f"Field journal, entry {r.randint(2, 400)}.",
                       f"Journal, {r.choice(_TIMES)} of day "
                       f"{r.randint(2, 90)}.", ""))
    sighting = r.choice((
        f"Spotted a {c.name} near the {r.choice(_PLACES)} this "
        f"{r.choice(_TIMES)}.",
        f"Came across a wild {c.name} by the {r.choice(_PLACES)}.",
        f"Finally saw {c.name} up close today, near the "
        f"{r.choice(_PLACES)}.",
        f"A {c.name} wandered into camp at {r.choice(_TIMES)}."))
    body = []
    for s in self.features_sentences(c, feats, name_p=0.3):
      if r.coin(0.3):
        prefix = r.choice(("My guide confirms it: ", "According to my notes, ",
                           "I double-checked, and ", "Noted: "))
        s = prefix + (s if s.startswith(c.name) else s[0].lower() + s[1:])
      body.append(s)
    asides = [r.choice(_JOURNAL_ASIDES)] if r.coin(0.7) else []
    return [opener, sighting] + body + asides + (
        [r.choice(("More tomorrow.", "Heading back now.", ""))])

  def _chronicle(self, line: tuple[Creature, ...]) -> dict:
    r = self.r
    first = line[0]
    out = [r.choice((f"The {first.name} line.",
                     f"A chronicle of the {first.name} family.",
                     f"The story of {first.name} and its evolutions.",
                     f"Evolution notes: the {first.name} line."))]
    intended = []
    if len(line) == 1:
      out.append(self.evolution_sentence(first))
    else:
      out.append(r.choice((f"This line has {len(line)} stages.",
                           f"The line spans {len(line)} forms.",
                           f"It is a {len(line)}-stage family.")))
    k_range = {1: (3, 5), 2: (2, 3), 3: (1, 3)}[len(line)]
    for c in line:
      feats = self._feature_decks[c.name].draw_distinct(r.randint(*k_range))
      intended += [(c, f) for f in feats]
      if c.stage == 0:
        if len(line) > 1:
          out.append(r.choice((f"It begins as {c.name}.",
                               f"The first stage is {c.name}.",
                               f"Everything starts with {c.name}.")))
      else:
        prev = line[c.stage - 1].name
        out.append(r.choice((f"{prev} evolves into {c.name}.",
                             f"Next, {prev} becomes {c.name}.",
                             f"In time, {prev} grows into {c.name}.")))
      ref = (c.name, c.name + "'s", c.name)
      out.extend(self.feature_sentence(c, f, ref) for f in r.shuffled(feats))
    if r.coin(0.3):
      out.append(r.choice(_DISTRACTORS))
    return self._finish("chronicle", out, intended)

  def _comparison(self, a: Creature, b: Creature,
                  feats: Sequence[str]) -> list[str]:
    r = self.r
    out = [r.choice((f"{a.name} vs. {b.name}.",
                     f"Comparing {a.name} and {b.name}.",
                     f"How do {a.name} and {b.name} stack up?",
                     f"Should you train {a.name} or {b.name}?",
                     f"{a.name} or {b.name}: a quick comparison."))]
    for f in r.shuffled(feats):
      out.append(self._compare_sentence(a, b, f))
    out.append(r.choice((
        f"Overall, {r.choice((a.name, b.name))} seems the better pick for "
        f"{r.choice(_PURPOSES)}.",
        "Both are worth a spot on a team.",
        "In the end it comes down to play style.",
        r.choice(_DISTRACTORS))))
    return out

  def _compare_sentence(self, a: Creature, b: Creature, f: str) -> str:
    r = self.r
    A, B = a.name, b.name
    if f in STATS or f == "base_stat_total":
      va, vb = a.stat(f), b.stat(f)
      L = self.label(f)
      rel = ("beats" if va > vb else "trails" if va < vb else "matches")
      return r.choice((
          f"{A} has {self.num(va)} {L}, while {B} has {self.num(vb)}.",
          f"In {L}, {A} ({self.num(va)}) {rel} {B} ({self.num(vb)}).",
          f"{A} posts {self.num(va)} {L} against {B}'s {self.num(vb)}.",
          f"{B} has {self.num(vb)} {L}; {A} has {self.num(va)}."))
    if f == "types":
      return r.choice((
          f"{A} is a {self.types_phrase(a)} type, whereas {B} is a "
          f"{self.types_phrase(b)} type.",
          f"Typing: {A} is {self.types_phrase(a)} and {B} is "
          f"{self.types_phrase(b)}."))
    if f == "classification":
      return r.choice((
          f"{A} is the {a.classification}, while {B} is the "
          f"{b.classification}.",
          f"One is the {a.classification} ({A}), the other the "
          f"{b.classification} ({B})."))
    if f == "ability":
      return r.choice((
          f"{A} relies on the ability {a.ability}, while {B} has "
          f"{b.ability}.",
          f"Ability-wise, {A} brings {a.ability} and {B} brings "
          f"{b.ability}."))
    if f == "weight":
      return r.choice((
          f"{A} weighs {self.weight(a)} compared with {B}'s "
          f"{self.weight(b)}.",
          f"On the scale, {A} shows {self.weight(a)} and {B} "
          f"{self.weight(b)}."))
    if f == "height":
      return r.choice((
          f"{A} stands {self.height(a)} tall; {B} reaches "
          f"{self.height(b)}.",
          f"Height: {A} is {self.height(a)}, {B} is {self.height(b)}."))
    if f == "move":
      return r.choice((
          f"{A}'s signature move is {a.move_name}, and {B} answers with "
          f"{b.move_name}.",
          f"Signature moves: {a.move_name} for {A}, {b.move_name} for "
          f"{B}."))
    raise ValueError(f"Unknown feature {f!r}.")

  def _trainer_notes(self) -> dict:
    r = self.r
    deck = self._creature_decks["trainer_notes"]
    who = [deck.draw()]
    if r.coin(0.4):
      other = deck.draw()
      if other.name != who[0].name:
        who.append(other)
    out = [r.choice(("training log.", "notes to self:", "gym prep notes.",
                     "quick notes after today's session.",
                     "team planning, round two."))]
    intended = []
    for c in who:
      feats = self._feature_decks[c.name].draw_distinct(r.randint(2, 4))
      intended += [(c, f) for f in feats]
      out.append(r.choice((f"ok so {c.name}:", f"{c.name} -",
                           f"about my {c.name}:",
                           f"re: {c.name}.")))
      for f in r.shuffled(feats):
        out.append(self._note_line(c, f))
    out.append(r.choice(_NOTES_ASIDES))
    return self._finish("trainer_notes", out, intended,
                        asides=_NOTES_ASIDES)

  def _note_line(self, c: Creature, f: str) -> str:
    r = self.r
    if f in STATS or f == "base_stat_total":
      L = self.label(f)
      v = self.num(c.stat(f))
      return r.choice((f"{L} {v}, {r.choice(_VERDICTS)}.",
                       f"its {L} is {v}.", f"{v} {L} (checked twice).",
                       f"{L}: {v}."))
    if f == "types":
      return r.choice((f"typing is {self.types_phrase(c)}.",
                       f"it's a {self.types_phrase(c)} type, plan around "
                       "that."))
    if f == "classification":
      return r.choice((f"the dex calls it the {c.classification}.",
                       f"classified as the {c.classification}, lol."))
    if f == "ability":
      return r.choice((f"ability is {c.ability}, super handy.",
                       f"has {c.ability} as its ability."))
    if f == "weight":
      return r.choice((f"weighs {self.weight(c)}, heavy boi.",
                       f"weight {self.weight(c)}."))
    if f == "height":
      return r.choice((f"stands {self.height(c)} tall.",
                       f"height {self.height(c)}, taller than me lol."))
    if f == "move":
      return r.choice((f"signature move is {c.move_name}!!",
                       f"{c.move_name} is its signature move, spam it."))
    raise ValueError(f"Unknown feature {f!r}.")

  def _dossier(self, c: Creature) -> list[str]:
    r = self.r
    code = f"{r.choice(('GX', 'LAB', 'R', 'S'))}-{r.randint(100, 9999)}"
    out = [r.choice((f"LAB DOSSIER {code} (restricted).",
                     f"Restricted file {code}.",
                     f"Confidential lab record {code}.")),
           r.choice((f"Subject: {c.name}.", f"Specimen: {c.name}.",
                     f"Subject name: {c.name}."))]
    fields = []
    for f in FEATURES:
      if r.coin(0.5):
        fields.append(self._dossier_field(c, f))
      else:
        fields.append(self.feature_sentence(c, f, ("the subject",
                                                   "the subject's",
                                                   "the subject")))
    out.extend(r.shuffled(fields))
    out.append(r.choice(("Access is limited to authorised staff.",
                         "Do not distribute outside the lab.",
                         "Handler notes: calm under observation.",
                         "Further tests are scheduled.")))
    return out

  def _dossier_field(self, c: Creature, f: str) -> str:
    if f == "classification":
      return f"Classification: {c.classification}."
    if f == "types":
      return f"Typing: {self.types_phrase(c)}."
    if f == "ability":
      return f"Ability: {c.ability}."
    if f == "move":
      return f"Signature move: {c.move_name}. {c.move_description}"
    if f == "weight":
      return f"Mass: {self.weight(c)}."
    if f == "height":
      return f"Height: {self.height(c)}."
    return f"{_cap(_STAT_LABELS[f][0])}: {self.num(c.stat(f))}."
