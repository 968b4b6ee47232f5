"""Copy-world document pairs: fresh creatures, shared within a pair."""

import collections

import numpy as np

from cbench.text import prompts
from cbench.tracks.geminon import pretrain


def _names(num_docs, seed):
  _, docs = pretrain.copy_world_documents(num_docs,
                                          np.random.default_rng(seed))
  return sorted({c for _, creatures, _ in docs for c in creatures})


def test_copy_world_pairs_share_a_fresh_creature():
  pairs = pretrain.copy_world_pairs(60, seed=3)
  assert len(pairs) == 60
  assert pairs == pretrain.copy_world_pairs(60, seed=3)  # Deterministic.
  assert pairs != pretrain.copy_world_pairs(60, seed=4)
  names = _names(120, [3, 0xC0])
  assert len(names) >= 20
  mentions = collections.Counter()
  for pair in pairs:
    first, second = pair.split(prompts.DOCUMENT_SEPARATOR)
    shared = {n for n in names if n in first and n in second}
    assert shared, pair  # Both halves name a common creature.
    mentions.update(n for n in names if n in pair)
  # Fresh creatures: each appears in a few pairs only, so memorising the
  # pairs cannot replace copying from the first document.
  assert max(mentions.values()) <= 12, mentions.most_common(3)


def test_copy_world_pairs_skip_excluded_names():
  names = _names(80, [3, 0xC0])
  banned = frozenset(names[::2])
  kept = pretrain.copy_world_pairs(40, seed=3, exclude_names=banned)
  assert kept
  assert not any(n in p for p in kept for n in banned)


def test_no_pairs_requested():
  assert pretrain.copy_world_pairs(0, seed=0) == []


def test_copy_world_reading_asks_what_the_document_states():
  texts = pretrain.copy_world_reading(30, seed=5)
  assert texts and texts == pretrain.copy_world_reading(30, seed=5)
  stated = 0
  for text in texts:
    assert prompts.DOCUMENT_SEPARATOR not in text
    doc, qa = text.split(prompts.SEPARATOR, 1)
    lines = qa.split("\n")
    assert len(lines) % 2 == 0 and 2 <= len(lines) <= 12
    for q, a in zip(lines[::2], lines[1::2]):
      assert q.startswith("Q: ") and a.startswith("A: ")
      assert q.rstrip("?").split()[-1] in doc  # Asks about a named creature.
      stated += a[3:] in doc
  # Most answers appear verbatim (the rest are numbers written in words or
  # types written in another order).
  assert stated >= 0.6 * sum(t.count("\nA: ") for t in texts)


def _qa_lines(texts):
  for text in texts:
    for q, a in zip(text.split("\n")[::2], text.split("\n")[1::2]):
      if q.startswith("Q: ") and a.startswith("A: "):
        yield q[3:], a[3:]


def _practice(**kw):
  return pretrain.practice_texts("demo", qa_repeats=2, seed=7, **kw)


def test_practice_texts_ask_about_their_own_documents():
  texts = _practice()
  assert texts == _practice()
  assert texts != pretrain.practice_texts("demo", qa_repeats=2, seed=8)
  docs = [t for t in texts if not t.startswith("Q: ")]
  pairs = list(_qa_lines(t for t in texts if t.startswith("Q: ")))
  # A demo-size release of fresh creatures: ~5,400 documents, questions
  # about its 30 public creatures (not the 6 sensitive ones, which only
  # lab dossiers describe), each named by many documents.
  assert 5000 <= len(docs) <= 5500
  creatures = {q.rstrip("?").split()[-1] for q, _ in pairs}
  assert len(creatures) == 30
  for name in creatures:
    assert sum(name in d for d in docs) >= 50, name
  # Each (creature, feature) is asked qa_repeats times, always with one
  # answer; most answers appear verbatim in the documents.
  counts = collections.Counter(pairs)
  assert set(counts.values()) == {2}
  assert len({q for q, _ in pairs}) == len(counts) >= 30 * 12
  all_docs = "\n".join(docs)
  verbatim = sum(a in all_docs for _, a in counts)
  assert verbatim >= 0.8 * len(counts), (verbatim, len(counts))


def test_practice_texts_skip_excluded_names():
  texts = _practice()
  names = sorted({q.rstrip("?").split()[-1] for q, _ in _qa_lines(texts)})
  banned = frozenset(names[:2])
  kept = _practice(exclude_names=banned)
  assert len(kept) < len(texts)
  assert not any(n in t for t in kept for n in banned)
