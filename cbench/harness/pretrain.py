"""Base-model pretraining on the public world (never on a release).

The base model learns the documents' language and the Q/A answer format from
the public world's documents plus Q/A blocks about public-world creatures, so
it can answer in the scoring format but knows none of a release's facts.
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np

from cbench._validate import CbenchError
from cbench.corpus import release as release_lib
from cbench.harness import model_store
from cbench.harness import prompts
from cbench.harness.lm_train import train_lm
from cbench.harness.recipes import PretrainConfig
from cbench.io import files
from cbench.models import config as config_lib
from cbench.parallel import mesh as mesh_lib
from cbench.parallel import rules
from cbench.text import tokenizer as tokenizer_lib
from cbench.train import text_data

log = logging.getLogger("cbench")


def document_pairs(docs: list[dict], fraction: float, seed: int) -> list[str]:
  """``doc_a + "\n\n" + doc_b`` for pairs of documents sharing a creature.

  Teaches the base model, on public data only, that a document that follows
  another one after a blank line is about the same creatures and repeats
  their facts: the in-context ability private prediction relies on (it
  prompts with a private record followed by a blank line).
  """
  rng = np.random.default_rng(seed)
  by_creature: dict[str, list[int]] = {}
  for i, d in enumerate(docs):
    for creature in sorted({f[0] for f in d["facts"]}):
      by_creature.setdefault(creature, []).append(i)
  out = []
  for i in rng.permutation(len(docs))[:int(fraction * len(docs))]:
    creatures = sorted({f[0] for f in docs[i]["facts"]})
    if not creatures:
      continue
    pool = by_creature[creatures[rng.integers(len(creatures))]]
    j = pool[rng.integers(len(pool))]
    if j != i:
      out.append(docs[i]["text"] + prompts.DOCUMENT_SEPARATOR + docs[j]["text"])
  return out


def pretraining_texts(world: release_lib.Release, config: PretrainConfig
                      ) -> tuple[list[str], list[dict]]:
  """Public-world documents, document pairs and Q/A blocks; the QA records."""
  records = list(world.corpus("train"))
  docs = [d["text"] for d in records]
  docs += document_pairs(records, config.pair_fraction, config.train.seed)
  names = world.qa_names()
  if "public_train" not in names:
    raise CbenchError(f"{world.root} is not a public world (no "
                      f"qa/public_train.jsonl); build it with "
                      f"make_release --public_world.")
  qa = world.qa("public_train")
  blocks = prompts.qa_blocks(qa, pairs_per_block=config.qa_pairs_per_block,
                             seed=config.train.seed,
                             repeats=config.qa_repeats)
  return docs + blocks, qa


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
              "public_world_sha256": world.manifest["files"]}
  done_path = os.path.join(workdir, model_store.DONE)
  if os.path.exists(done_path):
    info = files.read_json(done_path)
    if {k: info.get(k) for k in expected} != files_roundtrip(expected):
      raise CbenchError(f"{workdir} holds a base model built from a different "
                        f"public world or config; use a new --workdir.")
    log.info("base model already trained in %s; nothing to do", workdir)
    return info

  texts, qa = pretraining_texts(world, config)
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
  model_store.save_replay(workdir, rows)
  mesh = mesh_lib.make_mesh()
  params = rules.init_params_sharded(None, model_cfg, mesh,
                                     jax.random.key(config.train.seed))
  params, train_info = train_lm(params, model_cfg, rows, config.train,
                                workdir, name="pretrain", mesh=mesh)
  info = {**files_roundtrip(expected), "train": train_info,
          "num_params": rules.param_count(params),
          "num_rows": rows.num_rows, "truncated_rows": rows.truncated,
          "vocab_size": tokenizer.vocab_size}
  model_store.finish(workdir, params, info)
  return info


def files_roundtrip(obj):
  """JSON round trip, so cached-info comparisons see JSON types."""
  import json  # pylint: disable=g-import-not-at-top
  return json.loads(json.dumps(obj, sort_keys=True))
