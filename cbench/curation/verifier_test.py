"""The fact checker and the γ-noisy weak labeler, on a `mini` release.

The checker must find no wrong claim in the real corpus and catch altered
values and swapped names; the labeler's measured flip rate must equal its
γ (and be told apart from a γ 0.03 off).
"""

import os
import re

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.corpus import release as release_lib
from cbench.curation import verifier
from cbench.testing import fixtures
from cbench.tracks.geminon import generator as geminon


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  path = os.path.join(str(tmp_path_factory.mktemp("curation")), "mini")
  geminon.build_release(geminon.make_config("geminon", "2026q4", "mini"),
                        path)
  return release_lib.load_release(path)


@pytest.fixture(scope="module")
def checker(release):
  return verifier.FactChecker(release)


@pytest.fixture(scope="module")
def train_texts(release):
  return [r["text"] for r in release.corpus("train")]


def _fact(checker, feature):
  (creature, _), (answer, aliases) = next(
      (k, v) for k, v in sorted(checker.public_facts.items())
      if k[1] == feature)
  return creature, answer, aliases


def _swap(checker, text, rng):
  """`text` with its first named creature renamed to an unnamed one."""
  named = checker.named(text)
  other = rng.choice([c for c in checker.creatures if c not in named])
  return re.sub(rf"\b{re.escape(named[0])}\b", other, text)


def test_the_real_corpus_has_claims_and_none_is_wrong(checker, train_texts):
  checks = checker.check_all(train_texts)
  assert all(c.correct for c in checks)
  assert sum(len(c.wrong) for c in checks) == 0
  claims = sum(len(c.claims) for c in checks)
  facts = sum(len(c.facts) for c in checks)
  assert claims > 0.6 * facts  # Most stated facts are read as claims.
  features = {f for c in checks for f, _ in c.claims}
  assert len(features) == 13, features
  stats = verifier.corpus_stats(checker, train_texts)
  assert stats["wrong_share"] == 0.0 and stats["correct_docs"] == 1.0
  assert stats["fact_coverage"] == 1.0


def test_swapped_names_make_wrong_claims(checker, train_texts):
  rng = np.random.default_rng(0)
  swapped = [_swap(checker, t, rng) for t in train_texts[:200]]
  stats = verifier.corpus_stats(checker, swapped)
  assert stats["wrong_share"] > 0.4, stats
  assert stats["correct_docs"] < 0.15, stats


def test_a_changed_stat_is_a_wrong_claim_and_the_true_one_is_not(checker):
  creature, answer, _ = _fact(checker, "hp")
  good = checker.check(f"{creature} has {answer} HP.")
  assert good.correct and good.claims == (("hp", answer),)
  bad_value = str(int(answer) + 1)
  bad = checker.check(f"{creature} has {bad_value} HP.")
  assert not bad.correct and bad.wrong == (("hp", bad_value),)
  words = checker.check(f"Its HP is one thousand. {creature} is here.")
  assert words.wrong == (("hp", "one thousand"),)
  # No cue, no claim: the checker is weak on purpose.
  silent = checker.check(f"{creature} was seen {bad_value} times.")
  assert silent.claims == () and not silent.wrong


def test_categorical_claims(checker):
  creature, ability, _ = _fact(checker, "ability")
  _, move, _ = _fact(checker, "move")
  other_move = next(v[0] for k, v in sorted(checker.facts.items())
                    if k[1] == "move" and k[0] != creature
                    and v[0] != move)
  text = (f"{creature} possesses the {ability} ability. Its signature move "
          f"is {other_move}. A searing psychic blast.")
  got = checker.check(text)
  assert ("ability", ability) in got.claims
  assert ("move", other_move) in got.wrong
  assert not any(f == "types" for f, _ in got.claims)  # 'psychic' is lower
  unknown = checker.check(f"{creature} is the Zzyzx Geminon.")
  assert unknown.wrong == (("classification", "Zzyzx Geminon"),)


def test_claims_about_no_known_creature_are_wrong(checker):
  got = checker.check("Blorptang has 55 Speed and weighs 10.5 lbs.")
  assert got.creatures == () and len(got.wrong) == 2 and not got.correct


@pytest.mark.parametrize("gamma", [0.5, 0.7, -0.1, float("nan"), "0.1"])
def test_a_labeler_without_an_edge_is_refused(checker, gamma):
  with pytest.raises(CbenchError, match="gamma"):
    verifier.WeakLabeler(checker, gamma, np.random.default_rng(0))


def test_measured_flip_rate_equals_gamma(checker, train_texts):
  rng = np.random.default_rng(fixtures.stat_seed(11))
  texts = train_texts[:60] + [_swap(checker, t, rng)
                              for t in train_texts[60:120]]
  gamma = 0.15
  labeler = verifier.WeakLabeler(checker, gamma,
                                 np.random.default_rng(fixtures.stat_seed(12)))
  assert labeler.beta == pytest.approx(0.7)
  truth = labeler.truth(texts)
  assert 0.3 < truth.mean() < 0.7  # Both verdicts occur.
  n_rep = 400
  flips = np.concatenate([labeler.flip(truth) != truth
                          for _ in range(n_rep)])
  n = flips.size
  sd = np.sqrt(gamma * (1 - gamma) / n)
  measured = flips.mean()
  assert abs(measured - gamma) < 4 * sd, (measured, gamma)
  for wrong in (gamma - 0.03, gamma + 0.03):  # The test can tell them apart.
    assert abs(measured - wrong) > 4 * sd, (measured, wrong)
  # Flips are independent of the truth: same rate on both verdicts.
  both = np.tile(truth, n_rep)
  for v in (True, False):
    sub = flips[both == v]
    assert abs(sub.mean() - gamma) < 4 * np.sqrt(gamma * (1 - gamma)
                                                 / sub.size)


def test_a_noiseless_labeler_is_the_checker(checker, train_texts):
  texts = train_texts[:5] + ["Blorptang has 55 Speed."]
  labeler = verifier.WeakLabeler(checker, 0.0, np.random.default_rng(0))
  np.testing.assert_array_equal(labeler.label(texts),
                                [True] * 5 + [False])


def test_a_news_release_is_refused(tmp_path):
  class _Fake:
    track = "news"
    root = str(tmp_path)
  with pytest.raises(CbenchError, match="Geminon"):
    verifier.FactChecker(_Fake())
