"""A deterministic sentencepiece tokenizer that keeps newlines and digits.

Special ids are fixed: ``pad_id=0``, ``unk_id=1``, ``bos_id=2``, ``eos_id=3``.
`encode` adds no BOS/EOS unless asked. Text round-trips exactly
(``decode(encode(t)) == t``) for any string: normalization is the identity,
whitespace runs are kept, ``"\\n"`` is its own piece (documents and
``"Q: ...\\nA: ..."`` prompts rely on it) and unknown characters fall back to
UTF-8 byte pieces. Numbers are split into single digits.

Newline sets: every cbench tokenizer exposes ``newline_ids`` (sorted tuple of
every id whose text contains ``"\\n"``, byte pieces included) and
``blank_line_ids`` (those whose text contains a blank line, i.e. two
newlines with only whitespace between them, e.g. Gemma's ``"\\n\\n"``).
This tokenizer has one newline piece (``newline_id``) plus the byte piece
``<0x0A>`` and no blank-line piece. `newline_sets` computes both from the
text of each id; decoding code that stops at a newline or a blank line uses
these sets (`cbench.text.prompts.answer_stop_ids` /
`document_end_ids`), never a single id.

`train_sentencepiece` is deterministic: the same texts in the same order give
a byte-identical model file (BPE, one thread, every sentence used, no
shuffling or sampling).
"""

from __future__ import annotations

import io
import os
import re
from typing import Iterable, Iterator, Sequence

import sentencepiece as spm

from cbench import _validate
from cbench._validate import CbenchError
from cbench.io import files

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
NEWLINE = "\n"
# A blank line: two newlines with only (non-newline) whitespace between.
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
# sentencepiece skips training sentences longer than this many bytes; lines
# are cut into chunks of at most this size instead.
_MAX_SENTENCE_BYTES = 1 << 14


def newline_sets(texts: Sequence[str]
                 ) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """``(newline_ids, blank_line_ids)`` of a vocabulary.

  Args:
    texts: ``texts[i]`` is the text id i contributes to a decoded string
      ("" for control/special ids).

  Returns:
    Sorted tuples: ids whose text contains ``"\\n"``, and the subset whose
    text contains a blank line (``"\\n"``, optional non-newline whitespace,
    ``"\\n"``; e.g. ``"\\n\\n"``, ``"\\r\\n\\r\\n"``, ``"\\n  \\n"``).
  """
  newline = tuple(i for i, t in enumerate(texts) if "\n" in t)
  blank = tuple(i for i in newline if _BLANK_LINE.search(texts[i]))
  return newline, blank


def sentencepiece_texts(sp: spm.SentencePieceProcessor) -> list[str]:
  """The decoded text of every piece of a sentencepiece model.

  Control and unknown pieces give ""; byte pieces ``<0xNN>`` give the
  character for ASCII bytes and "" for the others (a partial UTF-8
  sequence, never a newline); U+2581 becomes a space.
  """
  out = []
  for i in range(sp.get_piece_size()):
    piece = sp.id_to_piece(i)
    if sp.is_byte(i):
      byte = int(piece[3:-1], 16)
      piece = chr(byte) if byte < 0x80 else ""
    elif sp.is_control(i) or sp.is_unknown(i):
      piece = ""
    out.append(piece.replace("\u2581", " "))
  return out


class SentencePieceModel:
  """A `sentencepiece.SentencePieceProcessor` behind cbench's tokenizer
  interface: encode/decode, vocab_size, the serialized proto, and the sorted
  `newline_ids` / `blank_line_ids` (hashable: usable as static decoder stop
  ids). Subclasses fix and check the special ids."""

  def __init__(self, model_proto: bytes):
    self._proto = bytes(model_proto)
    self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
    self.newline_ids, self.blank_line_ids = newline_sets(
        sentencepiece_texts(self._sp))

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  @property
  def model_proto(self) -> bytes:
    return self._proto

  def encode(self, text: str, *, bos: bool = False,
             eos: bool = False) -> list[int]:
    """Token ids of `text`, optionally with BOS first and/or EOS last."""
    return self._sp.encode(text, add_bos=bos, add_eos=eos)

  def encode_batch(self, texts: Sequence[str], *, bos: bool = False,
                   eos: bool = False) -> list[list[int]]:
    return self._sp.encode(list(texts), add_bos=bos, add_eos=eos)

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids`; pad/BOS/EOS ids are dropped."""
    return self._sp.decode([int(i) for i in ids])

  def id_to_piece(self, i: int) -> str:
    return self._sp.id_to_piece(int(i))

  def save(self, path: str) -> None:
    """Writes the model file atomically."""
    with files.atomic_open(path, "wb") as f:
      f.write(self._proto)


class Tokenizer(SentencePieceModel):
  """cbench's own sentencepiece model, with fixed special ids."""

  pad_id = PAD_ID
  unk_id = UNK_ID
  bos_id = BOS_ID
  eos_id = EOS_ID

  def __init__(self, model_proto: bytes):
    super().__init__(model_proto)
    specials = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(),
                self._sp.eos_id())
    _validate.check(specials == (PAD_ID, UNK_ID, BOS_ID, EOS_ID),
                    f"Tokenizer model has special ids (pad, unk, bos, eos) = "
                    f"{specials}; expected (0, 1, 2, 3).")
    self.newline_id = self._sp.piece_to_id(NEWLINE)
    _validate.check(self.newline_id != UNK_ID,
                    "Tokenizer model has no '\\n' piece; train it with "
                    "cbench.text.tokenizer.train_sentencepiece.")

  @classmethod
  def load(cls, path: str) -> "Tokenizer":
    if not os.path.exists(path):
      raise CbenchError(f"Tokenizer model not found: {path}")
    with open(path, "rb") as f:
      proto = f.read()
    try:
      return cls(proto)
    except RuntimeError as e:  # sentencepiece's parse error
      raise CbenchError(f"{path}: not a sentencepiece model ({e}).") from e


def _training_sentences(texts: Iterable[str]) -> Iterator[str]:
  """Lines of every text (newlines are a user-defined piece), long ones cut."""
  for text in texts:
    for line in text.split(NEWLINE):
      data = line.encode("utf-8")
      while data:
        chunk = data[:_MAX_SENTENCE_BYTES]
        # Do not split a multi-byte character.
        chunk = chunk.decode("utf-8", errors="ignore").encode("utf-8")
        data = data[len(chunk):]
        yield chunk.decode("utf-8")


def train_sentencepiece(texts: Iterable[str], vocab_size: int,
                        path: str | None = None) -> Tokenizer:
  """Trains a BPE tokenizer on `texts`; writes it to `path` if given.

  Args:
    texts: training documents (any iterable; consumed once, in order).
    vocab_size: target vocabulary size, including the 4 special ids, 256 byte
      pieces and the newline piece. It is a soft limit: a small corpus yields
      fewer pieces (read `Tokenizer.vocab_size`).
    path: where to write the model file (atomically), or None.

  Returns:
    The trained tokenizer. Deterministic: same texts, same bytes.
  """
  _validate.check(vocab_size >= 300,
                  f"Expected vocab_size={vocab_size} >= 300 (4 special ids "
                  f"+ 256 byte pieces + merges).")
  sentences = _training_sentences(texts)
  first = next(sentences, None)
  _validate.check(first is not None,
                  "Cannot train a tokenizer on an empty corpus.")

  def _all():
    yield first
    yield from sentences

  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=_all(), model_writer=buf, vocab_size=vocab_size,
      model_type="bpe", num_threads=1, character_coverage=1.0,
      byte_fallback=True, split_digits=True, remove_extra_whitespaces=False,
      normalization_rule_name="identity", user_defined_symbols=[NEWLINE],
      allow_whitespace_only_pieces=True, input_sentence_size=0,
      shuffle_input_sentence=False, hard_vocab_limit=False,
      max_sentence_length=_MAX_SENTENCE_BYTES * 4,
      pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
      minloglevel=2)
  tok = Tokenizer(buf.getvalue())
  if path is not None:
    tok.save(path)
  return tok
