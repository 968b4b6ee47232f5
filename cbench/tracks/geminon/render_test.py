"""Rendering: provenance is in the text, styles vary, sensitive isolation."""

import collections
import re

import numpy as np
import pytest

from cbench.corpus import answers
from cbench.corpus import dedup
from cbench.tracks.geminon import qa
from cbench.tracks.geminon import render
from cbench.tracks.geminon import world as world_lib

N_PER_STYLE = 150


@pytest.fixture(scope="module")
def world():
  return world_lib.generate_world(3, {1: 4, 2: 4, 3: 4}, {1: 1, 2: 1, 3: 1},
                                  77)


@pytest.fixture(scope="module")
def docs(world):
  r = render.Renderer(world, np.random.default_rng(0))
  out = [r.render(s) for s in render.PUBLIC_STYLES for _ in range(N_PER_STYLE)]
  out += [r.render_sensitive(c) for c in world.sensitive for _ in range(3)]
  return out


def test_every_claimed_fact_is_in_the_text(world, docs):
  by_name = world.by_name()
  for d in docs:
    assert d["facts"], d
    for name, feature in d["facts"]:
      answer, aliases = qa.answer_for(by_name[name], feature)
      assert answers.answer_in_text(answer, aliases, d["text"]), (name, feature,
                                                             d["text"])


def test_intended_facts_are_all_stated(world, docs):
  """Wikis and dossiers are about one creature and are asked for all 13
  features: each one's answer must be in the TEXT (not only in the
  renderer's own list), together with the creature's name."""
  by_name = world.by_name()
  checked = 0
  for d in docs:
    if d["style"] not in ("wiki", render.SENSITIVE_STYLE):
      continue
    (name,) = {n for n, _ in d["facts"]}
    assert answers.answer_in_text(name, (), d["text"]), d["text"]
    for feature in world_lib.FEATURES:
      answer, aliases = qa.answer_for(by_name[name], feature)
      assert answers.answer_in_text(answer, aliases, d["text"]), (
          name, feature, d["text"])
    checked += 1
  assert checked >= N_PER_STYLE


def test_sensitive_creatures_only_in_dossiers(world, docs):
  sensitive = re.compile(r"\b(" + "|".join(c.name for c in world.sensitive)
                         + r")\b", re.IGNORECASE)
  sens_names = {c.name for c in world.sensitive}
  for d in docs:
    named = {n for n, _ in d["facts"]}
    if d["style"] == render.SENSITIVE_STYLE:
      assert named <= sens_names and len(named) == 1
    else:
      assert not named & sens_names
      assert not sensitive.search(d["text"]), d["text"]


def test_sensitive_renderer_refuses_public_creature(world):
  r = render.Renderer(world, np.random.default_rng(0))
  with pytest.raises(ValueError):
    r.render_sensitive(world.public[0])


def test_lengths_and_styles(docs):
  words = [len(d["text"].split()) for d in docs]
  assert min(words) >= render.MIN_WORDS and max(words) <= render.MAX_WORDS
  assert set(d["style"] for d in docs) == set(render.STYLES)


def test_real_variation(docs):
  texts = [d["text"] for d in docs]
  assert len(set(texts)) == len(texts)
  # Integers are sometimes written in words.
  assert sum(bool(re.search(r"\b(twenty|thirty|forty|fifty|sixty|seventy|"
                            r"eighty|ninety|hundred)", t)) for t in texts) > 50
  # Openings vary within each style.
  firsts = collections.defaultdict(set)
  for d in docs:
    firsts[d["style"]].add(" ".join(d["text"].split()[:2]))
  assert all(len(v) >= 3 for v in firsts.values()), firsts
  # And documents are not near-duplicates of each other.
  _, removed = dedup.dedup(texts)
  assert removed < 0.01


def test_features_are_balanced(world):
  r = render.Renderer(world, np.random.default_rng(1))
  counts = collections.Counter()
  for _ in range(600):
    for name, f in r.render("journal")["facts"]:
      counts[(name, f)] += 1
  public_facts = [(c.name, f) for c in world.public for f in world_lib.FEATURES]
  values = [counts[k] for k in public_facts]
  assert min(values) > 0.6 * np.mean(values)


def test_deterministic(world):
  a = render.Renderer(world, np.random.default_rng(5))
  b = render.Renderer(world, np.random.default_rng(5))
  assert [a.render("comparison") for _ in range(20)] == [
      b.render("comparison") for _ in range(20)]
