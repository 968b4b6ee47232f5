"""fact_coverage on hand-made texts over the demo release's QA facts."""

import pytest

from cbench.corpus import answers
from cbench.corpus import release as release_lib
from cbench.tracks.geminon import fact_metrics


@pytest.fixture(scope="module")
def release(demo_release_dir):
  return release_lib.load_release(demo_release_dir)


def _pick(release, sets, feature):
  facts = fact_metrics.release_facts(release, sets)
  return facts, next((c, a, al) for (c, f), (a, al) in sorted(facts.items())
                     if f == feature)


def test_name_and_answer_reproduce_a_fact(release):
  pub, (name, answer, _) = _pick(release, fact_metrics.PUBLIC_SETS, "ability")
  sens, (s_name, s_answer, _) = _pick(release, fact_metrics.SENSITIVE_SETS,
                                      "move")
  texts = [f"{name} is known for the ability {answer}.",
           f"Field notes: {s_name.upper()} uses {s_answer.lower()} often."]
  got = fact_metrics.fact_coverage(release, texts)
  assert got["public_facts"] == len(pub) > 0
  assert got["sensitive_facts"] == len(sens) > 0
  assert got["public_reproduced"] == 1
  assert got["sensitive_reproduced"] == 1
  assert got["fraction_public_facts"] == pytest.approx(1 / len(pub))
  assert got["fraction_sensitive_facts"] == pytest.approx(1 / len(sens))
  # The directory form gives the same answer.
  assert fact_metrics.fact_coverage(release.root, texts) == got


def test_answer_without_name_or_name_without_answer_do_not_count(release):
  facts, (name, answer, _) = _pick(release, fact_metrics.PUBLIC_SETS, "move")
  other = next(c for (c, _) in facts if c != name)
  texts = [f"{other} once met a creature whose move was {answer}.",
           f"{name} is a creature.",
           f"{name}{answer.replace(' ', '')}x"]      # no word boundaries
  found = fact_metrics.reproduced_facts(facts, texts)
  assert (name, "move") not in found
  # Broken variant: answer alone (no name) would have counted the first text.
  assert any(answers.answer_in_text(answer, (), t)
             for t in texts)


def test_aliases_count_and_empty_input(release):
  facts = fact_metrics.release_facts(release, fact_metrics.PUBLIC_SETS)
  (name, feature), (answer, aliases) = next(
      (k, v) for k, v in sorted(facts.items()) if v[1])
  text = f"About {name}: {aliases[0]}."
  assert (name, feature) in fact_metrics.reproduced_facts(facts, [text])
  empty = fact_metrics.fact_coverage(release, [])
  assert empty["fraction_public_facts"] == 0.0
  assert empty["public_reproduced"] == 0
