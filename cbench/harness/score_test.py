"""QA answers end at any newline piece ("\\n", "\\n\\n", <0x0A>), not one id.

A scripted sampler writes known tokens through the real decoder path of
`score.answer_questions`, with a tokenizer that (like Gemma's) has a
"\\n\\n" piece.
"""

import dataclasses

import jax
import jax.numpy as jnp

from cbench.harness import score
from cbench.models import config as config_lib
from cbench.models import model_store
from cbench.models import registry
from cbench.text import prompts
from cbench.text.tokenizer_test import blank_line_tokenizer


@dataclasses.dataclass(frozen=True)
class Scripted:
  """Emits script[g][step] (then its last entry); never sets stop."""

  script: tuple

  def init_state(self, num_groups, key):
    del num_groups, key
    return jnp.int32(0)

  def next_tokens(self, logits, key, state):
    del logits, key
    script = jnp.asarray(self.script, jnp.int32)
    tokens = script[:, jnp.minimum(state, script.shape[1] - 1)]
    return tokens, jnp.zeros(tokens.shape, bool), state + 1


def _bundle(tok):
  config = config_lib.get_model_config("micro", tok.vocab_size)
  params = registry.init_params(config, jax.random.key(0))
  return model_store.ModelBundle(path="scripted", config=config,
                                 tokenizer=tok, params=params, fewshot=[],
                                 info={})


def _script(streams):
  length = max(len(ids) for ids in streams)
  rows = []
  for ids in streams:
    rows.append(tuple(ids + [ids[-1]] * (length - len(ids))))
  return tuple(rows)


def test_answers_end_at_either_newline_piece(monkeypatch):
  tok = blank_line_tokenizer()
  nl, nn = tok.newline_id, tok._sp.piece_to_id("\n\n")
  byte_nl = tok._sp.piece_to_id("<0x0A>")
  assert set(prompts.answer_stop_ids(tok)) == {nl, nn, byte_nl}
  after = tok.encode(" Q: next")
  streams = [tok.encode("caves") + [nn] + after,
             tok.encode("56 red") + [nl] + after,
             tok.encode("berries") + [byte_nl] + after,
             tok.encode("Lake Vemm") + [tok.eos_id] + after]
  sampler = Scripted(_script(streams))
  bundle = _bundle(tok)
  questions = ["Where?", "How many?", "What?", "Where else?"]
  answers = score.answer_questions(bundle, questions, batch_size=4,
                                   sampler=sampler)
  assert answers == ["caves", "56 red", "berries", "Lake Vemm"]
  # The old rule (stop at the one "\n" id, no cut) lets "\n\n" and <0x0A>
  # through: the check above would catch it.
  monkeypatch.setattr(prompts, "answer_stop_ids", lambda t: (t.newline_id,))
  monkeypatch.setattr(prompts, "cut_answer", lambda text: text)
  old = score.answer_questions(bundle, questions, batch_size=4,
                               sampler=sampler)
  assert old[0].startswith("caves\n\n") and old[2].startswith("berries\n")
  assert old[1] == "56 red" and old[3] == "Lake Vemm"


def test_cut_answer():
  assert prompts.cut_answer("Paris\n\nQ: x") == "Paris"
  assert prompts.cut_answer("Paris\nQ") == "Paris"
  assert prompts.cut_answer("no newline") == "no newline"
  assert prompts.cut_answer("\nx") == ""
