"""Tests for the sentencepiece tokenizer: determinism and exact round-trips."""

import io
import os

import pytest
import sentencepiece as spm

from cbench._validate import CbenchError
from cbench.text import tokenizer as tokenizer_lib

_CORPUS = [
    "The creature Zorblat lives in 1234 caves near Lake Vemm.\n"
    "It eats 56 red berries every day.",
    "Q: Where does Zorblat live?\nA: caves\n\nQ: What does it eat?\nA: berries",
    "  indented line\twith a tab\n\n\nthree newlines, then digits 9081726354.",
] * 20

_ROUND_TRIP = [
    "Q: How many legs does a Zorblat have?\nA: 12",
    "\nleading newline and trailing one\n",
    "  two leading spaces,  double spaces, trailing space ",
    "digits 0123456789 and 3.14159 and -42",
    "unicode: café, naïve, 🐉, 日本語",
    "tabs\tand\r\nwindows newlines",
    "",
]


@pytest.fixture(scope="module")
def tok():
  return tokenizer_lib.train_sentencepiece(_CORPUS, vocab_size=400)


def test_training_is_deterministic_byte_identical(tmp_path):
  a, b = str(tmp_path / "a.model"), str(tmp_path / "b.model")
  tokenizer_lib.train_sentencepiece(iter(_CORPUS), 400, a)
  tokenizer_lib.train_sentencepiece(list(_CORPUS), 400, b)
  with open(a, "rb") as fa, open(b, "rb") as fb:
    assert fa.read() == fb.read()
  # A different corpus gives a different model (the check can fail).
  c = str(tmp_path / "c.model")
  tokenizer_lib.train_sentencepiece(_CORPUS[::-1] + ["zebra quokka"] * 9,
                                    400, c)
  with open(a, "rb") as fa, open(c, "rb") as fc:
    assert fa.read() != fc.read()


@pytest.mark.parametrize("text", _ROUND_TRIP)
def test_round_trip_exact(tok, text):
  assert tok.decode(tok.encode(text)) == text


def test_special_ids_and_newline_piece(tok):
  assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
  ids = tok.encode("Q: x\nA: y", bos=True, eos=True)
  assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
  assert ids.count(tok.newline_id) == 1
  assert tok.decode(ids) == "Q: x\nA: y"  # specials decode to nothing
  assert tok.vocab_size <= 400


def test_digits_are_split(tok):
  pieces = [tok.id_to_piece(i) for i in tok.encode("year 2024")]
  digits = [p.lstrip("\u2581") for p in pieces if any(c.isdigit() for c in p)]
  assert digits == ["2", "0", "2", "4"]


def test_encode_batch_matches_encode(tok):
  assert tok.encode_batch(_ROUND_TRIP) == [tok.encode(t) for t in _ROUND_TRIP]


def test_save_load(tok, tmp_path):
  path = str(tmp_path / "sub" / "tok.model")
  tok.save(path)
  loaded = tokenizer_lib.Tokenizer.load(path)
  assert loaded.model_proto == tok.model_proto
  assert loaded.encode(_ROUND_TRIP[0]) == tok.encode(_ROUND_TRIP[0])
  assert os.listdir(tmp_path / "sub") == ["tok.model"]  # no temp files left


def test_errors(tmp_path):
  with pytest.raises(CbenchError, match="not found"):
    tokenizer_lib.Tokenizer.load(str(tmp_path / "missing.model"))
  bad = tmp_path / "bad.model"
  bad.write_bytes(b"not a model")
  with pytest.raises(CbenchError, match="bad.model"):
    tokenizer_lib.Tokenizer.load(str(bad))
  with pytest.raises(CbenchError, match="empty corpus"):
    tokenizer_lib.train_sentencepiece(["", "\n"], 400)
  with pytest.raises(CbenchError, match="vocab_size"):
    tokenizer_lib.train_sentencepiece(_CORPUS, 100)


def blank_line_tokenizer() -> tokenizer_lib.Tokenizer:
  """A small cbench tokenizer that, like Gemma's, has a "\\n\\n" piece.

  Shared by the decoder, scorer and prompt tests (ids 0..3 special).
  """
  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(_CORPUS), model_writer=buf, vocab_size=330,
      model_type="bpe", num_threads=1, character_coverage=1.0,
      byte_fallback=True, split_digits=True, remove_extra_whitespaces=False,
      normalization_rule_name="identity",
      user_defined_symbols=["\n\n", "\n"], allow_whitespace_only_pieces=True,
      hard_vocab_limit=False, pad_id=0, unk_id=1, bos_id=2, eos_id=3,
      minloglevel=2)
  return tokenizer_lib.Tokenizer(buf.getvalue())


def test_newline_sets_of_the_tiny_tokenizer(tok):
  byte_nl = tok._sp.piece_to_id("<0x0A>")
  assert tok.newline_ids == tuple(sorted((tok.newline_id, byte_nl)))
  assert tok.blank_line_ids == ()
  # Exhaustive: exactly the ids whose decoded text has a newline.
  assert tok.newline_ids == tuple(i for i in range(tok.vocab_size)
                                  if "\n" in tok.decode([i]))
  assert tok.decode([byte_nl]) == "\n"


def test_newline_sets_with_a_blank_line_piece():
  t = blank_line_tokenizer()
  nn = t._sp.piece_to_id("\n\n")
  assert nn not in (t.unk_id, t.newline_id)
  assert t.encode("a\n\nb").count(nn) == 1  # the longest piece wins
  assert nn in t.newline_ids and t.newline_id in t.newline_ids
  assert t.blank_line_ids == (nn,)
  assert t.newline_ids == tuple(i for i in range(t.vocab_size)
                                if "\n" in t.decode([i]))


def test_newline_sets_rule():
  texts = ["", "a", "\n", "\n\n", "x\n", "\n \t\n", "\r\n\r\n", "a\nb\nc",
           "\n   ", " \n\n", "\u2028"]
  newline, blank = tokenizer_lib.newline_sets(texts)
  assert newline == (2, 3, 4, 5, 6, 7, 8, 9)
  assert blank == (3, 5, 6, 9)   # "a\nb\nc" has two newlines, no blank line
