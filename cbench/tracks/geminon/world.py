"""The Geminon world: procedurally generated creatures and their facts.

A world is a set of evolution lines of 1, 2 and 3 stages. Each creature has a
classification ("<Word> Geminon"), one or two types from `TYPES`, an ability,
six base stats and their total, weight (lbs, one decimal), height (m, two
decimals) and a signature move with a short description. Later stages inherit
type1, keep or change type2 (type2 probabilities per stage follow the
reference curation: [0.2, 0.4, 0.8] / [0.2, 0.8] / [0.5], change prob 0.2)
and grow stats, weight and height by bounded ratios.

Categorical values are dealt from shuffled decks (each value reused at most
`ceil(n / K)` times), so a majority guess is right for about 1/K of the
creatures (`chance_accuracy`). A fixed number of whole lines per length is
*sensitive*: those creatures are rendered only in the sensitive style.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Mapping, Optional, Sequence

import numpy as np

from cbench._validate import CbenchError
from cbench.tracks.geminon import names as names_lib

TYPES = ("Normal", "Fire", "Water", "Grass", "Electric", "Ice", "Fighting",
         "Poison", "Ground", "Flying", "Psychic", "Bug", "Rock", "Ghost",
         "Dragon", "Dark", "Steel", "Fairy")

# The 13 QA features, in their fixed order.
FEATURES = ("classification", "types", "ability", "hp", "attack", "defense",
            "special_attack", "special_defense", "speed", "base_stat_total",
            "weight", "height", "move")
STATS = ("hp", "attack", "defense", "special_attack", "special_defense",
         "speed")

# type2 probability per stage, by line length (reference curation).
TYPE2_PROB = {1: (0.5,), 2: (0.2, 0.8), 3: (0.2, 0.4, 0.8)}
TYPE2_CHANGE_PROB = 0.2
# Stage-0 base stat total range, by line length.
_BST_RANGE = {1: (380, 600), 2: (250, 400), 3: (200, 330)}
STAT_CAP = 255
# Evolution growth: per-stage mean ratio in [1.2, 1.6]; per-stat ratio
# mean + N(0, 0.12), clipped to [1.0, 2.0].
_RATIO_MEAN = (1.2, 1.6)
_RATIO_STD = 0.12
_RATIO_CLIP = (1.0, 2.0)

CLASSIFICATION_WORDS = tuple(sorted(set("""
Abyss Acorn Aether Amber Anchor Anvil Arbor Arc Ash Aurora Avalanche Axle
Badger Bark Basalt Beacon Beetle Bellows Blaze Bloom Bog Bolt Boulder Bramble
Breeze Bristle Brook Bubble Burrow Cactus Canopy Canyon Carapace Cascade
Cavern Cinder Clamp Claw Cliff Cloud Clover Cobalt Comet Coral Crag Crater
Crest Crystal Current Cyclone Dagger Dawn Delta Drift Drizzle Drum Dune Dusk
Dust Echo Eclipse Eddy Ember Fang Feather Fern Flare Flint Flurry Fog Forge
Fossil Frost Fungus Gale Garnet Geyser Glacier Glade Gleam Glimmer Glow Gorge
Granite Grotto Gust Hail Harbor Harvest Haze Hearth Hedge Hollow Horizon Horn
Husk Iceberg Ink Iris Ivy Jade Jasper Jet Kelp Kiln Lagoon Lantern Lava Leaf
Ledge Lichen Lightning Lily Lodestone Loom Lotus Lullaby Lumen Magma Mallet
Mantle Marsh Meadow Mesa Meteor Mica Mirage Mist Monsoon Moon Moss Mud Nebula
Needle Nettle Nimbus Nova Oasis Obsidian Onyx Orbit Orchid Ore Pebble Petal
Pine Plume Pollen Prism Pulse Quake Quartz Quill Rain Rampart Rapids Reed Reef
Ridge Ripple Rootlet Rune Rust Sable Sage Sand Sapling Scale Scarab Shade
Shard Shell Shroud Silt Slate Sleet Smoke Snare Snow Solstice Spark Spire
Spore Spring Sprout Squall Static Steam Stone Storm Stream Summit Sun Surge
Swamp Talon Tempest Thicket Thistle Thorn Thunder Tide Timber Torch Torrent
Tremor Tundra Twig Twilight Umber Vapor Veil Vine Volt Vortex Wave Whirl
Wick Willow Wisp Zephyr
""".split())))

_ABILITY_FIRST = tuple(sorted(set("""
Iron Swift Silent Keen Static Frozen Molten Hollow Bright Shadow Stone Thorn
Storm Tidal Ember Gilded Feral Ancient Lucky Mirror Phantom Rapid Sturdy Vivid
Wild Arcane Blazing Calm Crystal Dusky Echoing Fickle Gentle Grim Hardy
Hidden Inner Lunar Misty Nimble Primal Quiet Radiant Rough Solar Spiked
Sticky Tangled Venom Warding Wary Zealous Verdant Sunken Clever Restless
""".split())))
_ABILITY_SECOND = tuple(sorted(set("""
Veil Guard Skin Pulse Focus Body Aura Heart Scales Grip Instinct Resolve Mind
Shell Charge Bloom Fang Sense Spirit Armor Current Step Temper Hide Wings Roots
Coat Nerve Glow Drift Will Stance Eyes Breath Core Pride Rhythm Echo Harmony
Crown Mantle Sight Tempo Grace Spark Shroud Resonance Reflex Cloak Vigor
""".split())))
_MOVE_FIRST = tuple(sorted(set("""
Ashen Blazing Boulder Crashing Crimson Cyclone Dazzling Drowning Echo Feral
Frost Gale Glacial Howling Hydro Jagged Lunar Magma Meteor Mystic Nether
Onyx Piercing Prism Quaking Razor Rending Roaring Rust Searing Shadow Shatter
Shimmer Silver Sonic Spiral Static Stellar Sting Storm Sunlit Thorn Thunder
Tidal Twin Venom Verdant Void Whirling Wild Zenith Spectral Rolling Sparking
""".split())))
_MOVE_SECOND = tuple(sorted(set("""
Barrage Beam Bite Blast Bloom Bolt Burst Cannon Charge Claw Crash Crush Cutter
Dance Dive Drain Drill Edge Fang Flare Fist Flash Gale Grip Hammer Howl Kick
Lance Lash Nova Pounce Pulse Punch Rain Rend Roar Rush Salvo Slam Slash Spike
Spin Spiral Stomp Storm Strike Surge Swipe Tackle Torrent Veil Volley Wave
Whip Wing
""".split())))
_MOVE_NOUNS = ("burst", "wave", "strike", "blast", "volley", "pulse", "flurry",
               "lunge", "barrage", "torrent", "spiral", "shockwave")
_MOVE_VERBS = ("crashes into", "engulfs", "sweeps over", "rips through",
               "slams into", "washes over", "spirals around", "cuts across")
_MOVE_EFFECTS = (
    "and may leave the target confused", "and may lower the target's Defense",
    "and often strikes first", "with a high chance of a critical hit",
    "and may leave the target paralyzed",
    "and restores a little of the user's HP",
    "and may make the target flinch", "and raises the user's Speed",
    "and may burn the target", "and may freeze the target solid",
    "and lowers the target's accuracy", "and hits harder if the user is hurt",
    "and cannot miss", "and may poison the target",
    "and sharply raises the user's Attack", "but leaves the user tired",
)
_MOVE_ADJS = ("searing", "crushing", "dazzling", "freezing", "howling",
              "silent", "crackling", "shimmering", "violent", "swirling",
              "piercing", "relentless")


@dataclasses.dataclass(frozen=True)
class Creature:
  """One Geminon. Weight in lbs (one decimal), height in metres (two)."""
  name: str
  classification: str
  type1: str
  type2: Optional[str]
  ability: str
  hp: int
  attack: int
  defense: int
  special_attack: int
  special_defense: int
  speed: int
  base_stat_total: int
  weight_lbs: float
  height_m: float
  evolution_line: tuple[str, ...]
  stage: int
  line_id: int
  move_name: str
  move_description: str
  sensitive: bool

  @property
  def types(self) -> tuple[str, ...]:
    return (self.type1,) if self.type2 is None else (self.type1, self.type2)

  def stat(self, name: str) -> int:
    return int(getattr(self, name))


@dataclasses.dataclass(frozen=True)
class World:
  """All creatures of a world, ordered by line then stage."""
  creatures: tuple[Creature, ...]
  seed: int
  name_slot: int

  @property
  def public(self) -> tuple[Creature, ...]:
    return tuple(c for c in self.creatures if not c.sensitive)

  @property
  def sensitive(self) -> tuple[Creature, ...]:
    return tuple(c for c in self.creatures if c.sensitive)

  @property
  def lines(self) -> tuple[tuple[Creature, ...], ...]:
    by_line = collections.defaultdict(list)
    for c in self.creatures:
      by_line[c.line_id].append(c)
    return tuple(tuple(sorted(v, key=lambda c: c.stage))
                 for _, v in sorted(by_line.items()))

  def by_name(self) -> dict[str, Creature]:
    return {c.name: c for c in self.creatures}


class _Deck:
  """Deals values from repeated shuffled permutations (balanced reuse)."""

  def __init__(self, values: Sequence, rng: np.random.Generator):
    self._values = list(values)
    self._rng = rng
    self._order: list[int] = []

  def draw(self):
    if not self._order:
      self._order = list(self._rng.permutation(len(self._values)))
    return self._values[self._order.pop()]


def _vocabulary() -> frozenset[str]:
  words = set(t.lower() for t in TYPES)
  for lst in (CLASSIFICATION_WORDS, _ABILITY_FIRST, _ABILITY_SECOND,
              _MOVE_FIRST, _MOVE_SECOND):
    words.update(w.lower() for w in lst)
  return frozenset(words)


def _split_stats(rng: np.random.Generator, total: int) -> list[int]:
  shares = rng.dirichlet(np.full(6, 6.0))
  return [int(max(10, round(total * s))) for s in shares]


def _grow(rng: np.random.Generator, stats: list[int]) -> list[int]:
  mean = rng.uniform(*_RATIO_MEAN)
  ratios = np.clip(mean + rng.normal(0.0, _RATIO_STD, size=6), *_RATIO_CLIP)
  return [int(min(STAT_CAP, round(s * r))) for s, r in zip(stats, ratios)]


def generate_world(seed: int,
                   lines_per_length: Mapping[int, int],
                   sensitive_lines_per_length: Mapping[int, int],
                   name_slot: int) -> World:
  """Generates a world deterministically from `seed`.

  Args:
    seed: seeds the `np.random.Generator` that draws everything.
    lines_per_length: {1: n1, 2: n2, 3: n3} evolution lines per length.
    sensitive_lines_per_length: how many of those lines (per length) are
      sensitive; chosen at random among the lines of that length.
    name_slot: the world's name slot (`names.release_slot` or
      `names.PUBLIC_SLOT`); all names satisfy `names.name_slot(n) == slot`.

  Returns:
    The `World`, creatures ordered by line id then stage.
  """
  for length in lines_per_length:
    if length not in (1, 2, 3):
      raise CbenchError(f"lines_per_length: unknown line length {length}.")
  for length, k in sensitive_lines_per_length.items():
    if not 0 <= k <= lines_per_length.get(length, 0):
      raise CbenchError(
          f"sensitive_lines_per_length[{length}]={k} exceeds the "
          f"{lines_per_length.get(length, 0)} lines of that length.")
  rng = np.random.default_rng(seed)
  lengths = [length for length in (1, 2, 3)
             for _ in range(lines_per_length.get(length, 0))]
  sensitive_line = []
  for length in (1, 2, 3):
    n = lines_per_length.get(length, 0)
    chosen = set(rng.choice(n, size=sensitive_lines_per_length.get(length, 0),
                            replace=False).tolist()) if n else set()
    sensitive_line += [i in chosen for i in range(n)]
  order = rng.permutation(len(lengths))  # Interleave line lengths.
  lengths = [lengths[i] for i in order]
  sensitive_line = [sensitive_line[i] for i in order]
  n_creatures = sum(lengths)

  all_names = names_lib.generate_names(rng, n_creatures, name_slot,
                                       forbidden=_vocabulary())
  class_deck = _Deck(CLASSIFICATION_WORDS, rng)
  ability_deck = _Deck([f"{a} {b}" for a, b in
                        itertools.product(_ABILITY_FIRST, _ABILITY_SECOND)],
                       rng)
  move_deck = _Deck([f"{a} {b}" for a, b in
                     itertools.product(_MOVE_FIRST, _MOVE_SECOND)], rng)
  type_deck = _Deck(TYPES, rng)

  creatures = []
  name_iter = iter(all_names)
  for line_id, (length, sens) in enumerate(zip(lengths, sensitive_line)):
    line_names = tuple(next(name_iter) for _ in range(length))
    type1 = type_deck.draw()
    type2 = None
    stats = _split_stats(rng, int(rng.integers(*_BST_RANGE[length])))
    weight = float(np.exp(rng.normal(np.log(30.0), 1.0)))
    height = float(np.exp(rng.normal(np.log(0.6), 0.45)))
    for stage in range(length):
      p = TYPE2_PROB[length][stage]
      if stage == 0:
        if rng.random() < p:
          type2 = _other_type(rng, type1)
      else:
        stats = _grow(rng, stats)
        weight *= rng.uniform(1.3, 3.0)
        height *= rng.uniform(1.2, 1.9)
        if type2 is None:
          prev = TYPE2_PROB[length][stage - 1]
          if rng.random() < (p - prev) / (1.0 - prev):
            type2 = _other_type(rng, type1)
        elif rng.random() < TYPE2_CHANGE_PROB:
          type2 = _other_type(rng, type1, avoid=type2)
      move = move_deck.draw()
      creatures.append(Creature(
          name=line_names[stage],
          classification=f"{class_deck.draw()} Geminon",
          type1=type1, type2=type2, ability=ability_deck.draw(),
          hp=stats[0], attack=stats[1], defense=stats[2],
          special_attack=stats[3], special_defense=stats[4], speed=stats[5],
          base_stat_total=int(sum(stats)),
          weight_lbs=max(0.2, round(weight, 1)),
          height_m=max(0.1, round(height, 2)),
          evolution_line=line_names, stage=stage, line_id=line_id,
          move_name=move, move_description=_move_description(rng, type1),
          sensitive=bool(sens)))
  return World(creatures=tuple(creatures), seed=int(seed),
               name_slot=int(name_slot))


def _other_type(rng: np.random.Generator, type1: str,
                avoid: Optional[str] = None) -> str:
  choices = [t for t in TYPES if t != type1 and t != avoid]
  return choices[int(rng.integers(len(choices)))]


def _move_description(rng: np.random.Generator, type1: str) -> str:
  def pick(xs):
    return xs[int(rng.integers(len(xs)))]
  return (f"A {pick(_MOVE_ADJS)} {type1.lower()} {pick(_MOVE_NOUNS)} that "
          f"{pick(_MOVE_VERBS)} the target {pick(_MOVE_EFFECTS)}.")


def feature_value(c: Creature, feature: str) -> str:
  """A hashable canonical value of `feature` (for chance accuracy)."""
  if feature == "classification":
    return c.classification
  if feature == "types":
    return " and ".join(c.types)
  if feature == "ability":
    return c.ability
  if feature == "move":
    return c.move_name
  if feature == "weight":
    return f"{c.weight_lbs:.1f}"
  if feature == "height":
    return f"{c.height_m:.2f}"
  if feature in STATS or feature == "base_stat_total":
    return str(c.stat(feature))
  raise CbenchError(f"Unknown feature {feature!r}; expected one of "
                    f"{list(FEATURES)}.")


def chance_accuracy(world: World,
                    creatures: Optional[Sequence[Creature]] = None
                    ) -> dict[str, float]:
  """Accuracy of always answering the most common value, per feature.

  Args:
    world: the world.
    creatures: the creatures asked about (default: all of the world).

  Returns:
    {feature: max_v count(v) / n} in `FEATURES` order.
  """
  pool = list(world.creatures if creatures is None else creatures)
  if not pool:
    return {f: 0.0 for f in FEATURES}
  out = {}
  for f in FEATURES:
    counts = collections.Counter(feature_value(c, f) for c in pool)
    out[f] = max(counts.values()) / len(pool)
  return out
