"""The standardized fine-tune: any JSONL of {"text"} records, fixed recipe.

The base model's tokenizer, config and few-shot exemplars are copied into the
fine-tuned model directory, so it is a complete model directory that
`score_qa` reads on its own. A LoRA recipe (``lora_rank > 0``) trains
adapters on the frozen base and saves the merged parameters, so its output
is the same kind of directory; `recipes.finetune_recipe` picks LoRA for a
pretrained base.

Provenance weights (off by default): a recipe with ``provenance_weights``
reads each record's `PROVENANCE_FIELD` (e.g. "real", "synthetic-2") and
weighs its document by the recipe's table (`text_data.document_weights`;
the loss is in `cbench.train.lm_train`). A uniform table trains exactly
the parameters of the unweighted recipe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np

from cbench._validate import CbenchError
from cbench.harness import replay as replay_lib
from cbench.harness.recipes import HarnessConfig
from cbench.io import files
from cbench.models import model_store
from cbench.parallel import mesh as mesh_lib
from cbench.train import lora
from cbench.train import text_data
from cbench.train.lm_train import TrainRecipe, train_lm

log = logging.getLogger("cbench")
# The corpus record field that names a document's provenance.
PROVENANCE_FIELD = "provenance"


def finetune(base_dir: str, corpus_path: str, workdir: str,
             recipe: TrainRecipe, *, stop_after: int | None = None) -> dict:
  """Fine-tunes the base model in `base_dir` on `corpus_path` into `workdir`.

  `base_dir` may also name a pretrained model ('gemma3_270m',
  'smollm2_135m'; see `model_store.load`); it then has no public-world rows
  to replay and the recipe's replay_fraction is ignored.

  Killed and restarted with the same arguments it resumes from its last
  checkpoint and ends with the same parameters as an uninterrupted run. A
  finished workdir is returned as is.

  With ``recipe.lora_rank > 0`` only adapters are trained (checkpoints in
  `workdir` hold adapters and optimizer state) and the merged parameters are
  saved. The recipe (LoRA fields included) is bound to the workdir, so a
  different rank is a different run.

  Raises:
    CbenchError: missing/malformed corpus, a corpus with no text, a base
      directory that is not a finished model, a ``lora_targets`` regex that
      selects no kernel of the base, or a workdir that belongs to a
      different model, corpus or recipe; with ``provenance_weights``, a
      record without a string `PROVENANCE_FIELD` or with a tag the table
      does not weigh.
  """
  # Validates before any write.
  table = recipe.weight_table
  if table is None:
    texts = text_data.read_texts(corpus_path)
  else:
    texts, tags = text_data.read_tagged_texts(corpus_path, PROVENANCE_FIELD)
    doc_weights = text_data.document_weights(tags, table)
  corpus_sha = files.sha256_file(corpus_path)
  mesh = mesh_lib.make_mesh()
  base = model_store.load(base_dir, mesh=mesh)
  if recipe.lora_rank:  # Before any write to the workdir.
    lora.target_paths(base.params, recipe.lora_targets)
  base_key = base_dir if model_store.is_pretrained(base_dir) else (
      os.path.abspath(base_dir))
  expected = {"base": base_key, "corpus": os.path.abspath(corpus_path),
              "corpus_sha256": corpus_sha, "recipe": recipe.to_dict()}
  binding_path = os.path.join(workdir, "run.json")
  if os.path.exists(binding_path):
    bound = files.read_json(binding_path)
    if bound != _json_roundtrip(expected):
      diff = sorted(k for k in expected if bound.get(k) != _json_roundtrip(expected)[k])
      raise CbenchError(f"{workdir} belongs to another fine-tuning run "
                        f"({diff} differ); use a new --workdir.")
    if model_store.is_done(workdir):
      log.info("fine-tune already finished in %s", workdir)
      return files.read_json(os.path.join(workdir, model_store.DONE))
  model_store.check_static(workdir, base.config)
  model_store.save_static(workdir, base.config, base.tokenizer, base.fewshot)
  files.write_json(binding_path, expected)

  rows = text_data.cached_rows(texts, base.tokenizer, recipe.seq_len,
                               os.path.join(workdir, "data"), "corpus")
  if table is not None:
    rows = text_data.with_weights(rows, doc_weights)
  # A pretrained base (a model name) has no public-world rows to replay.
  pretrained = model_store.is_pretrained(base_dir)
  replay = (replay_lib.load(base_dir)
            if recipe.replay_fraction and not pretrained else None)
  if recipe.replay_fraction and replay is None and not pretrained:
    raise CbenchError(f"{base_dir} has no replay.npz; the recipe mixes "
                      f"public-world rows into fine-tuning batches.")
  if replay is not None and replay.tokens.shape[1] != rows.tokens.shape[1]:
    replay = text_data.TokenRows(
        _fit_width(replay.tokens, rows.tokens.shape[1]),
        np.minimum(replay.lengths, rows.tokens.shape[1]), 0)
  params, train_info = train_lm(base.params, base.config, rows, recipe, workdir,
                                name="finetune", mesh=mesh,
                                stop_after=stop_after, replay=replay)
  if stop_after is not None and train_info["steps"] < recipe.num_steps:
    return {"stopped_at": train_info["steps"]}
  info = {**_json_roundtrip(expected), "train": train_info,
          "num_docs": rows.num_rows, "truncated_docs": rows.truncated,
          "base_info": base.info.get("pretrain_config")}
  model_store.finish(workdir, params, info)
  return info


def check_base_recipe(harness: HarnessConfig, base_dir: str) -> None:
  """Refuses a harness recipe whose pretraining is not the one that built
  the base model in `base_dir` (e.g. the `tiny` recipe on a `micro` base):
  its fine-tuning numbers were chosen for that base. Pretrained model
  names and recipes without pretraining are not checked.

  Raises:
    CbenchError naming the differing fields.
  """
  if harness.pretrain is None or model_store.is_pretrained(base_dir):
    return
  done = os.path.join(base_dir, model_store.DONE)
  stored = files.read_json(done).get("pretrain_config") if os.path.exists(
      done) else None
  want = _json_roundtrip(harness.pretrain.to_dict())
  if stored is not None and stored != want:
    diff = sorted(k for k in set(stored) | set(want)
                  if stored.get(k) != want.get(k))
    raise CbenchError(
        f"The {harness.name!r} recipe does not match the base model in "
        f"{base_dir}, which was pretrained with another recipe (fields "
        f"{diff} differ); use the config it was built with.")


def _fit_width(tokens, width):
  if tokens.shape[1] >= width:
    return tokens[:, :width]
  return np.pad(tokens, ((0, 0), (0, width - tokens.shape[1])))


def _json_roundtrip(obj):
  return json.loads(json.dumps(obj, sort_keys=True))


def corpus_fingerprint(path: str) -> str:
  return hashlib.sha256(files.sha256_file(path).encode()).hexdigest()[:16]
