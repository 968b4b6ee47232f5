"""Stage 5: the blocked top-k link search, Leiden, and events of the fixture."""

import dataclasses

import numpy as np
import pytest

from cbench.tracks.news import articles
from cbench.tracks.news import build
from cbench.tracks.news import events
from cbench.tracks.news.articles_test import CONFIG


def _brute_force(emb, days, window, k, threshold):
  """The same links from the full similarity matrix (reference)."""
  sims = np.round((emb @ emb.T).astype(np.float64), 4)
  n = len(days)
  best = {}
  for i in range(n):
    ok = [j for j in range(n) if j != i and abs(days[i] - days[j]) <= window]
    top = sorted(ok, key=lambda j: (-sims[i, j], j))[:k]  # Stable ties.
    for j in top:
      if sims[i, j] >= threshold:
        pair = (min(i, j), max(i, j))
        best[pair] = max(best.get(pair, -2), sims[i, j])
  return sorted((i, j, float(v)) for (i, j), v in best.items())


@pytest.mark.parametrize("n, window, k, threshold", [
    (40, 2, 3, 0.1), (300, 1, 5, 0.0), (600, 3, 4, 0.2)])
def test_blocked_search_equals_brute_force(n, window, k, threshold):
  rng = np.random.default_rng(n)
  centres = rng.normal(size=(6, 16))
  emb = centres[rng.integers(6, size=n)] + 0.7 * rng.normal(size=(n, 16))
  emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
  days = np.sort(rng.integers(0, 30, size=n)).astype(np.int32)
  got = events.similarity_edges(emb, days, window, k, threshold)
  want = _brute_force(emb, days, window, k, threshold)
  assert [(i, j) for i, j, _ in got] == [(i, j) for i, j, _ in want]
  np.testing.assert_allclose([v for *_, v in got], [v for *_, v in want],
                             atol=1e-4)
  assert all(i < j and abs(days[i] - days[j]) <= window and v >= threshold
             for i, j, v in got)


def test_leiden_separates_two_cliques_deterministically():
  clique = lambda base: [(base + i, base + j, 0.9) for i in range(5)
                         for j in range(i + 1, 5)]
  edges = clique(0) + clique(5) + [(4, 5, 0.1)]
  a = events.communities(11, edges, 1.0, seed=3)
  assert a == events.communities(11, edges, 1.0, seed=3)
  assert len(set(a[:5])) == 1 and len(set(a[5:10])) == 1 and a[0] != a[5]
  assert a[10] not in a[:10]  # Isolated: alone.


def test_hashing_embeddings_are_unit_and_deterministic():
  texts = ["Fire destroys homes in Port Vel", "Fire destroys homes in Port Vel",
           "Mayor elected in Lake Tor"]
  e = events.hashing_embeddings(texts)
  np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
  assert e[0] @ e[1] == pytest.approx(1.0) and e[0] @ e[2] < 0.3
  np.testing.assert_array_equal(e, events.hashing_embeddings(texts))


def test_fixture_events_are_the_written_events():
  arts, _ = build.record_stages(build.collect_local(CONFIG), CONFIG)
  arts, _ = build.deduplicate(arts, CONFIG)
  found, stats = events.group_events(arts, CONFIG)
  assert stats["events"] == len(found) == 3
  towns = []
  for e in found:
    assert len(e.outlets) >= CONFIG.min_outlets
    titles = " ".join(arts[i].title for i in e.members)
    towns.append(titles)
    assert e.first_date <= e.last_date
  assert [e.id for e in found] == ["2026-03-e0001", "2026-03-e0002",
                                   "2026-03-e0003"]
  # A higher bar drops them all, with the counts saying why.
  strict = dataclasses.replace(CONFIG, min_outlets=6)
  none, st = events.group_events(arts, strict)
  assert not none and st["dropped_too_few_outlets"] == st["groups"] > 0
  assert articles.lede(arts[0]).startswith(arts[0].title + ". ")
