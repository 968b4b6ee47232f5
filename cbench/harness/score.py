"""Standardized QA scoring: few-shot prompt, greedy decoding, exact/fuzzy match.

Prompt = public-world exemplars (stored with the base model) then
``"Q: {question}\nA:"``; greedy decoding of at most 32 tokens through the
shared KV-cached decoder, stopped at the first token whose text contains a
newline (`prompts.answer_stop_ids`: for Gemma ``"\\n"``, ``"\\n\\n"``, ...)
and cut at the first newline (`prompts.cut_answer`); scored by
`cbench.harness.qa_metrics`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Sequence

import jax

from cbench._validate import CbenchError
from cbench.corpus import release as release_lib
from cbench.decoding import decoder
from cbench.decoding import token_samplers
from cbench.harness import qa_metrics
from cbench.io import files
from cbench.models import model_store
from cbench.text import prompts

log = logging.getLogger("cbench")
MAX_NEW_TOKENS = 32


def answer_questions(bundle: model_store.ModelBundle, questions: Sequence[str],
                     *, batch_size: int = 64, mesh=None,
                     sampler=token_samplers.Greedy()) -> list[str]:
  """Completions, each up to its first newline (greedy unless `sampler`).

  The prompt is the few-shot prefix of ``bundle.fewshot`` then
  ``"Q: {question}\nA:"`` (`complete_lines` does the decoding).
  """
  prefix = prompts.few_shot_prefix(bundle.fewshot)
  return complete_lines(bundle, [prompts.question_prompt(prefix, q)
                                 for q in questions],
                        batch_size=batch_size, mesh=mesh, sampler=sampler)


def complete_lines(bundle: model_store.ModelBundle, texts: Sequence[str], *,
                   max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 64,
                   mesh=None, sampler=token_samplers.Greedy()) -> list[str]:
  """The model's continuation of each prompt, up to its first newline.

  Decoding (the shared KV-cached decoder, calls of one fixed batch shape)
  stops at EOS or at any id of `prompts.answer_stop_ids` (every id whose
  text holds a newline; the stop token is not part of the text), and the
  text is cut at its first newline (`prompts.cut_answer`), so a completion
  never spans lines.
  """
  out: list[str] = []
  tok = bundle.tokenizer
  for start in range(0, len(texts), batch_size):
    chunk = texts[start:start + batch_size]
    n = len(chunk)
    chunk = chunk + [chunk[-1]] * (batch_size - n)  # Fixed batch shape.
    prompt_tokens = decoder.prepare_prompts(tok, chunk, bucket=32)
    result = decoder.generate(
        bundle.params, bundle.config, prompt_tokens, max_new_tokens,
        sampler, jax.random.key(0), eos_id=tok.eos_id,
        stop_token_ids=prompts.answer_stop_ids(tok), mesh=mesh,
        pad_id=tok.pad_id)
    out.extend(prompts.cut_answer(t)
               for t in decoder.decode_texts(tok, result)[:n])
  return out


def score_qa(release_dir: str, model_dir: str, splits: Sequence[str],
             out_path: str | None = None, *, batch_size: int = 64) -> dict:
  """Scores a model directory on QA sets of a release.

  Args:
    release_dir: the release.
    model_dir: a finished model directory (base or fine-tuned), or a
      pretrained model name. Few-shot exemplars: the release's own
      (``qa/exemplars.jsonl``) when it ships them, else the model's
      (public-world exemplars stored with a harness base model), else the
      release's public_val questions.
    splits: QA set names, e.g. ("public_test", "sensitive_test").
    out_path: where to write the JSON result (atomically), if given.
    batch_size: decoding batch.

  Returns:
    ``{"model", "release", "splits": {name: scores}}``.
  """
  release = release_lib.load_release(release_dir)
  for s in splits:
    if s not in release.qa_names():
      raise CbenchError(f"Unknown --split={s!r}; {release_dir} has "
                        f"{release.qa_names()}.")
  bundle = model_store.load(model_dir)
  shipped = release.exemplars()
  if shipped:
    # The release ships its own exemplars (facts outside the release, e.g.
    # News: events before its month); they replace the model's.
    bundle = dataclasses.replace(bundle, fewshot=shipped)
  elif not bundle.fewshot and "public_val" in release.qa_names():
    # A pretrained model (no stored exemplars): public validation questions
    # of this release serve as the few-shot exemplars.
    bundle = dataclasses.replace(bundle, fewshot=prompts.select_exemplars(
        release.qa("public_val")))
  result = {"model": model_dir, "release": release.manifest["release_id"],
            "release_dir": release_dir, "splits": {}}
  for split in splits:
    qa = release.qa(split)
    t0 = time.monotonic()
    preds = answer_questions(bundle, [q["question"] for q in qa],
                             batch_size=batch_size, mesh=None)
    scores = qa_metrics.score_predictions(qa, preds)
    scores["seconds"] = time.monotonic() - t0
    result["splits"][split] = scores
    log.info("%s %s: exact %.3f [%.3f, %.3f] fuzzy %.3f (n=%d, %.0fs)",
             model_dir, split, scores["exact"]["mean"], scores["exact"]["low"],
             scores["exact"]["high"], scores["fuzzy"]["mean"],
             scores["num_questions"], scores["seconds"])
  if out_path:
    files.write_json(out_path, result)
  return result
