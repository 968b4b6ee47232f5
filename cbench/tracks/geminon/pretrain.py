"""Base-model pretraining on the public world (never on a release).

The base model learns the documents' language and the Q/A answer format from
the public world's documents plus Q/A blocks about public-world creatures, so
it can answer in the scoring format but knows none of a release's facts.
"""

from __future__ import annotations

import json
import logging
import os
import re

import jax
import numpy as np

from cbench._validate import CbenchError
from cbench.corpus import release as release_lib
from cbench.harness import replay
from cbench.harness.recipes import PretrainConfig
from cbench.io import files
from cbench.models import config as config_lib
from cbench.models import model_store
from cbench.models import registry
from cbench.parallel import mesh as mesh_lib
from cbench.text import prompts
from cbench.text import tokenizer as tokenizer_lib
from cbench.tracks.geminon import generator as geminon
from cbench.tracks.geminon import names as names_lib
from cbench.tracks.geminon import qa as qa_lib
from cbench.tracks.geminon import render as render_lib
from cbench.tracks.geminon import world as world_lib
from cbench.train import text_data
from cbench.train.lm_train import train_lm

log = logging.getLogger("cbench")


# Bumped when the pretraining data changes for an unchanged config, so a
# base model built from older data is never mistaken for a current one.
PRETRAIN_DATA_VERSION = 3
# Document styles of the copy world (same mix as the public world).
_COPY_STYLES = geminon.SIZES["demo"].style_mix
_WORD = re.compile(r"\w+")


def copy_world_documents(num_docs: int, rng: np.random.Generator,
                         exclude_names: frozenset[str] = frozenset()
                         ) -> tuple[world_lib.World, list[tuple]]:
  """A fresh copy world and up to `num_docs` (text, names, facts) of it.

  ~4 documents per creature (comparisons name two creatures, the rest one);
  documents mentioning a word of `exclude_names` are dropped.
  """
  lines = max(1, -(-num_docs // 24))
  world = world_lib.generate_world(
      int(rng.integers(2**63)), lines_per_length={1: lines, 2: lines, 3: lines},
      sensitive_lines_per_length={1: 0, 2: 0, 3: 0},
      name_slot=names_lib.PUBLIC_SLOT)
  renderer = render_lib.Renderer(world, rng)
  styles = [s for s, _ in _COPY_STYLES]
  probs = np.array([p for _, p in _COPY_STYLES])
  docs = []
  for style in rng.choice(len(styles), size=num_docs, p=probs / probs.sum()):
    doc = renderer.render(styles[style])
    creatures = sorted({f[0] for f in doc["facts"]})
    words = set(_WORD.findall(doc["text"]))
    if creatures and not exclude_names.intersection(words):
      docs.append((doc["text"], creatures,
                   frozenset(tuple(f) for f in doc["facts"])))
  return world, docs


def copy_world_reading(num_texts: int, seed: int,
                       exclude_names: frozenset[str] = frozenset(),
                       pairs_per_block: int = 6) -> list[str]:
  """``doc + "\n" + Q/A pairs`` about facts the document states.

  Fresh copy-world creatures (see `copy_world_pairs`), so the answers can
  only be read from the document: teaches the base model to pick the
  feature a question asks for (not just any fact of the creature), the
  skill that answering about facts learned in fine-tuning also needs.
  """
  if num_texts <= 0:
    return []
  rng = np.random.default_rng([seed, 0xCA])
  world, docs = copy_world_documents(num_texts, rng, exclude_names)
  by_name = world.by_name()
  out = []
  for text, _, facts in docs:
    chosen = sorted(facts)
    chosen = [chosen[k] for k in rng.permutation(len(chosen))[:pairs_per_block]]
    qa = prompts.SEPARATOR.join(
        prompts.qa_pair(qa_lib.question_for(name, feature),
                        qa_lib.answer_for(by_name[name], feature)[0])
        for name, feature in chosen)
    # One newline, not the blank line that `copy_world_pairs` (and private
    # prediction's record prompts) put between two documents.
    out.append(text + prompts.SEPARATOR + qa)
  return out


def copy_world_pairs(num_pairs: int, seed: int,
                     exclude_names: frozenset[str] = frozenset()
                     ) -> list[str]:
  """``doc_a + "\n\n" + doc_b``: two documents about one FRESH creature.

  Teaches the base model, on public data only, the in-context ability that
  private prediction relies on (it prompts with a private record followed
  by a blank line): a document that follows another one after a blank line
  is about the same creatures and restates their facts. The creatures come
  from a throw-away "copy world" (public name slot, its own seed) with so
  many creatures that each appears in only a few pairs: their facts cannot
  be memorised, only copied from the first document. Names of
  `exclude_names` (the public world's) are skipped.
  """
  if num_pairs <= 0:
    return []
  rng = np.random.default_rng([seed, 0xC0])
  _, docs = copy_world_documents(2 * num_pairs, rng, exclude_names)
  by_creature: dict[str, list[int]] = {}
  for i, (_, creatures, _) in enumerate(docs):
    for c in creatures:
      by_creature.setdefault(c, []).append(i)
  out = []
  for i in rng.permutation(len(docs)):
    text, creatures, facts = docs[i]
    pool = by_creature[creatures[rng.integers(len(creatures))]]
    # Of a few candidates, the one restating most of the first one's facts.
    cands = [int(k) for k in rng.choice(pool, size=min(4, len(pool)),
                                        replace=False) if k != i]
    if cands:
      j = max(cands, key=lambda k: len(facts & docs[k][2]))
      out.append(text + prompts.DOCUMENT_SEPARATOR + docs[j][0])
    if len(out) == num_pairs:
      break
  return out


def practice_texts(size: str, qa_repeats: int, seed: int,
                   exclude_names: frozenset[str] = frozenset(),
                   pairs_per_block: int = 6) -> list[str]:
  """Corpus of a fresh PRACTICE world plus Q/A blocks about its creatures.

  The fine-tuning recipe mixes these rows into every batch (the replay
  rows), and the base model never trains on them. Fine-tuning therefore
  learns two worlds at once: the corpus's creatures, from documents only,
  and the practice creatures, from documents and questions. Answering the
  practice questions forces facts read in documents to be stored so that a
  question can retrieve them, which carries over to the corpus's creatures
  ("mixed training"; without it a fine-tuned tiny model answers stat
  questions with any fact of the creature).

  The practice world is a release of size `size` made by the release
  generator itself (same styles, coverage and lab dossiers), but with
  public-slot names and its own seed, so nothing about any release is in
  it. Questions cover every stated feature of its non-sensitive creatures,
  like a release's public QA. Documents naming a word of `exclude_names`
  (the public world's creatures) are dropped.

  Args:
    size: a `release.SIZES` name ('demo': 36 creatures, ~5,400 documents).
    qa_repeats: reshuffled passes over the questions.
    seed: the practice world's seed.
    exclude_names: names whose documents are dropped.
    pairs_per_block: Q/A pairs per block.
  """
  config = geminon.ReleaseConfig(
      track="geminon", release_id="practice", size=size,
      seed=int(np.random.default_rng([seed, 0x9A]).integers(2**63)),
      min_support=0)
  world = geminon.make_world(config, name_slot=names_lib.PUBLIC_SLOT)
  docs = [doc for shard in range(geminon.num_shards(config, world))
          for doc in geminon.generate_shard(config, world, shard)]
  docs = [d for d in docs
          if not exclude_names.intersection(_WORD.findall(d["text"]))]
  by_name = world.by_name()
  stated = sorted({(name, feature) for d in docs for name, feature in d["facts"]
                   if feature in world_lib.FEATURES
                   and not by_name[name].sensitive})
  qa = [qa_lib.question_record(by_name[name], feature, ())
        for name, feature in stated]
  blocks = prompts.qa_blocks(qa, pairs_per_block=pairs_per_block, seed=seed,
                             repeats=qa_repeats)
  return [d["text"] for d in docs] + blocks


def _public_names(records) -> frozenset[str]:
  """Creature names of public-world corpus records (their `facts`)."""
  return frozenset(f[0] for d in records for f in d["facts"])


def pretraining_texts(world: release_lib.Release, config: PretrainConfig
                      ) -> tuple[list[str], list[dict], frozenset[str]]:
  """Public-world documents, copy-world texts and Q/A blocks; the QA
  records; the public world's creature names (`_public_names`).

  ``config.pair_fraction * len(documents)`` pairs (`copy_world_pairs`) and
  ``config.reading_fraction * len(documents)`` reading texts
  (`copy_world_reading`).
  """
  records = list(world.corpus("train"))
  docs = [d["text"] for d in records]
  public_names = _public_names(records)
  docs += copy_world_pairs(int(config.pair_fraction * len(records)),
                           config.train.seed, public_names)
  docs += copy_world_reading(int(config.reading_fraction * len(records)),
                             config.train.seed, public_names,
                             config.qa_pairs_per_block)
  names = world.qa_names()
  if "public_train" not in names:
    raise CbenchError(f"{world.root} is not a public world (no "
                      f"qa/public_train.jsonl); build it with "
                      f"make_release --public_world.")
  qa = world.qa("public_train")
  blocks = prompts.qa_blocks(qa, pairs_per_block=config.qa_pairs_per_block,
                             seed=config.train.seed,
                             repeats=config.qa_repeats)
  return docs + blocks, qa, public_names


def pretrain_base(public_world_dir: str, workdir: str,
                  config: PretrainConfig) -> dict:
  """Trains (or finds cached) the base model in `workdir`.

  Deterministic for a given public world and config. Re-running on a finished
  workdir does nothing and returns its info; an unfinished one resumes.

  Returns:
    The DONE.json info: config, data sha256, parameter count, timings.
  """
  world = release_lib.load_release(public_world_dir)
  expected = {"pretrain_config": config.to_dict(),
              "pretrain_data_version": PRETRAIN_DATA_VERSION,
              "public_world_sha256": world.manifest["files"]}
  done_path = os.path.join(workdir, model_store.DONE)
  if os.path.exists(done_path):
    info = files.read_json(done_path)
    if {k: info.get(k) for k in expected} != files_roundtrip(expected):
      raise CbenchError(f"{workdir} holds a base model built from a different "
                        f"public world or config; use a new --workdir.")
    log.info("base model already trained in %s; nothing to do", workdir)
    return info

  texts, qa, public_names = pretraining_texts(world, config)
  tok_path = os.path.join(workdir, "tokenizer.model")
  if os.path.exists(tok_path):
    tokenizer = tokenizer_lib.Tokenizer.load(tok_path)
  else:
    tokenizer = tokenizer_lib.train_sentencepiece(texts, config.vocab_size)
  model_cfg = config_lib.get_model_config(
      config.model, tokenizer.vocab_size, **dict(config.model_overrides))
  model_store.check_static(workdir, model_cfg)
  fewshot = prompts.select_exemplars(qa, config.num_shots, seed=config.train.seed)
  model_store.save_static(workdir, model_cfg, tokenizer, fewshot)

  rows = text_data.cached_rows(texts, tokenizer, config.train.seq_len,
                               os.path.join(workdir, "data"), "public")
  if config.practice_size:
    practice = practice_texts(
        config.practice_size, config.practice_qa_repeats,
        config.train.seed + 1,
        public_names, config.qa_pairs_per_block)
    replay.save(workdir, text_data.cached_rows(
        practice, tokenizer, config.train.seq_len,
        os.path.join(workdir, "data"), "practice"))
  else:
    replay.save(workdir, rows)
  mesh = mesh_lib.make_mesh()
  params = registry.init_params_sharded(None, model_cfg, mesh,
                                     jax.random.key(config.train.seed))
  params, train_info = train_lm(params, model_cfg, rows, config.train,
                                workdir, name="pretrain", mesh=mesh)
  info = {**files_roundtrip(expected), "train": train_info,
          "num_params": registry.param_count(params),
          "num_rows": rows.num_rows, "truncated_rows": rows.truncated,
          "vocab_size": tokenizer.vocab_size}
  model_store.finish(workdir, params, info)
  return info


def files_roundtrip(obj):
  """JSON round trip, so cached-info comparisons see JSON types."""
  return json.loads(json.dumps(obj, sort_keys=True))
