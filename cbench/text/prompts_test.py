"""Which ids end an answer and a document, for one- and multi-piece breaks."""

import pytest

from cbench._validate import CbenchError
from cbench.synthesis import private_prediction as pp
from cbench.text import prompts
from cbench.text import tokenizer as tokenizer_lib
from cbench.text.tokenizer_test import _CORPUS, blank_line_tokenizer


@pytest.fixture(scope="module")
def tiny():
  return tokenizer_lib.train_sentencepiece(_CORPUS, vocab_size=400)


def test_tiny_tokenizer_ends_documents_at_its_newline(tiny):
  nl = tiny.newline_id
  assert prompts.document_separator_ids(tiny) == [nl, nl]
  assert prompts.document_end_ids(tiny) == tiny.newline_ids
  assert prompts.answer_stop_ids(tiny) == tiny.newline_ids
  assert pp.end_token_ids(tiny) == tuple(sorted({tiny.eos_id,
                                                 *tiny.newline_ids}))
  assert pp.separator_ids(tiny) == [nl, nl]


def test_blank_line_piece_ends_documents_but_a_newline_does_not():
  tok = blank_line_tokenizer()
  nn = tok._sp.piece_to_id("\n\n")
  assert prompts.document_separator_ids(tok) == [nn]
  ends = prompts.document_end_ids(tok)
  assert ends == (nn,) and tok.newline_id not in ends
  assert tok.newline_id in prompts.answer_stop_ids(tok)
  assert pp.end_token_ids(tok) == tuple(sorted((tok.eos_id, nn)))


class _NoBlankLine:
  """Writes "\\n\\n" as a piece that also holds text (never newline-only)."""

  newline_ids = (7,)
  blank_line_ids = ()

  def encode(self, text):
    return [ord(c) for c in text.replace("\n\nThe", "\x01")]

  def decode(self, ids):
    return "".join(chr(i) for i in ids)


def test_separator_must_be_newline_only_ids():
  with pytest.raises(CbenchError, match="blank line"):
    prompts.document_separator_ids(_NoBlankLine())
