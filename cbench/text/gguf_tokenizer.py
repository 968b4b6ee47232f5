"""Tokenizers of pretrained GGUF models behind cbench's tokenizer interface.

Both classes offer what `cbench.text.tokenizer.Tokenizer` offers
(``encode``, ``encode_batch``, ``decode``, ``id_to_piece``, ``vocab_size``,
``pad_id``, ``unk_id``, ``bos_id``, ``eos_id``, ``newline_id``,
``newline_ids``, ``blank_line_ids``, ``model_proto``, ``save``, ``load``)
but keep the model's own special ids. ``newline_id`` is the id of ``"\\n"``
alone; ``newline_ids`` lists every id whose text contains a newline and
``blank_line_ids`` those with a blank line (see
`cbench.text.tokenizer.newline_sets`): Gemma 3 has ``"\\n"`` (107),
``"\\n\\n"`` (108) ... 31 newlines (137) and ``<0x0A>`` (248); SmolLM2 has
129 (``"Ċ"`` is ``"\\n"`` in its byte-level alphabet; newline runs, newline
plus indentation, CRLF).

* `SentencePieceTokenizer`: any sentencepiece model (Gemma 3: pad 0, eos 1,
  bos 2, unk 3). `gemma_model_proto` rebuilds Gemma's sentencepiece model
  from GGUF metadata with the three fixes llama.cpp's converter needs undone
  (user-defined pieces get their U+2581 back, ``<unk>`` becomes UNKNOWN,
  ``<start_of_turn>``/``<end_of_turn>`` become USER_DEFINED so ``encode``
  parses them in text). Ids then equal llama.cpp's.
* `BpeTokenizer`: byte-level BPE (SmolLM2, GGUF ``tokenizer.ggml.model =
  'gpt2'``) on the `tokenizers` package: single digits, GPT-2 byte-level
  pre-tokenisation without a prefix space, CONTROL tokens as special tokens.

`encode` adds no BOS/EOS unless asked; `decode` drops special tokens.
`load_tokenizer(path)` reads any tokenizer file cbench writes (the tiny
LM's sentencepiece model with ids 0..3, another sentencepiece model, or a
`BpeTokenizer` JSON).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Iterable, Sequence

from cbench import _validate
from cbench._validate import CbenchError
from cbench.io import files
from cbench.text import tokenizer as tokenizer_lib

_BPE_FORMAT = "cbench-bpe-1"
# GGUF token types (equal to sentencepiece's ModelProto.SentencePiece.Type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


class SentencePieceTokenizer(tokenizer_lib.SentencePieceModel):
  """A sentencepiece model with its own special ids (cbench interface)."""

  def __init__(self, model_proto: bytes):
    super().__init__(model_proto)
    self.pad_id = self._sp.pad_id()
    self.unk_id = self._sp.unk_id()
    self.bos_id = self._sp.bos_id()
    self.eos_id = self._sp.eos_id()
    for name in ("pad_id", "unk_id", "bos_id", "eos_id"):
      _validate.check(getattr(self, name) >= 0,
                      f"Tokenizer model has no {name[:-3]} piece.")
    self.newline_id = self._sp.piece_to_id("\n")
    _validate.check(self.newline_id != self.unk_id,
                    "Tokenizer model has no '\\n' piece.")

  @classmethod
  def load(cls, path: str) -> "SentencePieceTokenizer":
    return cls(_read(path))


def _varint(n: int) -> bytes:
  n &= (1 << 64) - 1  # int32 negatives: 10-byte two's complement
  out = bytearray()
  while True:
    byte = n & 0x7F
    n >>= 7
    if n:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _int(field: int, value: int) -> bytes:
  return _varint(field << 3) + _varint(int(value))


def _bytes(field: int, value: bytes) -> bytes:
  return _varint((field << 3) | 2) + _varint(len(value)) + value


def _float(field: int, value: float) -> bytes:
  return _varint((field << 3) | 5) + struct.pack("<f", value)


def gemma_model_proto(tokens: Sequence[str], scores: Sequence[float],
                      types: Sequence[int], *, bos_id: int, eos_id: int,
                      unk_id: int, pad_id: int) -> bytes:
  """Serialized sentencepiece ModelProto of a GGUF 'llama'-model tokenizer.

  Written directly in protobuf wire format (field numbers of sentencepiece's
  ``sentencepiece_model.proto``), so no generated protobuf module (and its
  protobuf-runtime version pin) is needed.

  Args:
    tokens, scores, types: ``tokenizer.ggml.{tokens,scores,token_type}``.
    bos_id, eos_id, unk_id, pad_id: the GGUF special token ids.
  """
  _validate.check(len(tokens) == len(scores) == len(types),
                  f"GGUF tokenizer arrays differ in length: {len(tokens)} "
                  f"tokens, {len(scores)} scores, {len(types)} types.")
  out = []
  for i, (tok, score, typ) in enumerate(zip(tokens, scores, types)):
    typ = int(typ)
    if typ == USER_DEFINED:
      tok = tok.replace(" ", "\u2581")  # llama.cpp wrote spaces
    if i == unk_id:
      typ = UNKNOWN
    if tok in ("<start_of_turn>", "<end_of_turn>"):
      typ = USER_DEFINED
    piece = (_bytes(1, tok.encode("utf-8")) + _float(2, float(score))
             + _int(3, typ))
    out.append(_bytes(1, piece))  # ModelProto.pieces
  trainer = b"".join([
      _int(3, 2),  # model_type = BPE
      _int(4, len(tokens)),  # vocab_size
      _int(25, 1),  # split_digits
      _int(26, 1),  # allow_whitespace_only_pieces
      _int(35, 1),  # byte_fallback
      _int(40, unk_id), _int(41, bos_id), _int(42, eos_id), _int(43, pad_id),
      _bytes(45, tokens[unk_id].encode()), _bytes(46, tokens[bos_id].encode()),
      _bytes(47, tokens[eos_id].encode()), _bytes(48, tokens[pad_id].encode()),
  ])
  normalizer = b"".join([
      _bytes(1, b"identity"),  # name
      _int(3, 0),  # add_dummy_prefix
      _int(4, 0),  # remove_extra_whitespaces
      _int(5, 1),  # escape_whitespaces
  ])
  out.append(_bytes(2, trainer))
  out.append(_bytes(3, normalizer))
  return b"".join(out)


class BpeTokenizer:
  """Byte-level BPE on the `tokenizers` package (cbench interface).

  `model_proto` is a JSON document ``{"format": "cbench-bpe-1",
  "special_ids": {...}, "tokenizer": <tokenizers JSON>}``.
  """

  def __init__(self, model_proto: bytes):
    from tokenizers import Tokenizer as HfTokenizer  # pylint: disable=g-import-not-at-top
    self._proto = bytes(model_proto)
    try:
      doc = json.loads(self._proto)
    except ValueError as e:
      raise CbenchError(f"Not a {_BPE_FORMAT} tokenizer document ({e}).") from e
    _validate.check(isinstance(doc, dict) and doc.get("format") == _BPE_FORMAT,
                    f"Not a {_BPE_FORMAT} tokenizer document.")
    ids = doc["special_ids"]
    self.pad_id, self.unk_id = int(ids["pad"]), int(ids["unk"])
    self.bos_id, self.eos_id = int(ids["bos"]), int(ids["eos"])
    self._tok = HfTokenizer.from_str(json.dumps(doc["tokenizer"]))
    newline = self._tok.encode("\n", add_special_tokens=False).ids
    _validate.check(len(newline) == 1, "Tokenizer has no '\\n' token.")
    self.newline_id = newline[0]
    self.newline_ids, self.blank_line_ids = tokenizer_lib.newline_sets(
        self.token_texts())

  @classmethod
  def from_vocab(cls, tokens: Sequence[str], merges: Sequence[str],
                 types: Sequence[int], *, bos_id: int, eos_id: int,
                 unk_id: int, pad_id: int) -> "BpeTokenizer":
    """From GGUF ``tokenizer.ggml.{tokens,merges,token_type}`` (gpt2)."""
    from tokenizers import AddedToken, Tokenizer as HfTokenizer, decoders, models, pre_tokenizers  # pylint: disable=g-import-not-at-top,g-multiple-import
    vocab = {t: i for i, t in enumerate(tokens)}
    _validate.check(len(vocab) == len(tokens),
                    "GGUF tokenizer has duplicate tokens.")
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = HfTokenizer(models.BPE(vocab=vocab, merges=pairs))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types)
                            if int(ty) == CONTROL])
    doc = {"format": _BPE_FORMAT,
           "special_ids": {"pad": pad_id, "unk": unk_id, "bos": bos_id,
                           "eos": eos_id},
           "tokenizer": json.loads(tok.to_str())}
    return cls(json.dumps(doc, sort_keys=True).encode("utf-8"))

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size(with_added_tokens=True)

  def token_texts(self) -> list[str]:
    """The decoded text of every id (special tokens: "", as `decode`).

    Byte-level tokens map back through GPT-2's byte alphabet (``"Ċ"`` ->
    ``"\\n"``, ``"Ġ"`` -> ``" "``); a token holding part of a multi-byte
    character keeps only its complete characters (never a newline).
    """
    inverse = {c: b for b, c in _byte_alphabet().items()}
    added = self._tok.get_added_tokens_decoder()
    out = [""] * self.vocab_size
    for token, i in self._tok.get_vocab(with_added_tokens=True).items():
      if i in added:
        out[i] = "" if added[i].special else added[i].content
      elif all(c in inverse for c in token):
        out[i] = bytes(inverse[c] for c in token).decode("utf-8", "ignore")
      else:
        out[i] = token
    return out

  @property
  def model_proto(self) -> bytes:
    return self._proto

  def _wrap(self, ids: list[int], bos: bool, eos: bool) -> list[int]:
    return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

  def encode(self, text: str, *, bos: bool = False,
             eos: bool = False) -> list[int]:
    return self._wrap(self._tok.encode(text, add_special_tokens=False).ids,
                      bos, eos)

  def encode_batch(self, texts: Sequence[str], *, bos: bool = False,
                   eos: bool = False) -> list[list[int]]:
    out = self._tok.encode_batch(list(texts), add_special_tokens=False)
    return [self._wrap(e.ids, bos, eos) for e in out]

  def decode(self, ids: Iterable[int]) -> str:
    return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

  def id_to_piece(self, i: int) -> str:
    return self._tok.id_to_token(int(i))

  def save(self, path: str) -> None:
    with files.atomic_open(path, "wb") as f:
      f.write(self._proto)

  @classmethod
  def load(cls, path: str) -> "BpeTokenizer":
    return cls(_read(path))


def _byte_alphabet() -> dict[int, str]:
  """GPT-2's byte -> printable character map of byte-level BPE."""
  keep = (list(range(ord("!"), ord("~") + 1))
          + list(range(ord("\u00a1"), ord("\u00ac") + 1))
          + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
  out, extra = {}, 0
  for b in range(256):
    if b in keep:
      out[b] = chr(b)
    else:
      out[b] = chr(256 + extra)
      extra += 1
  return out


def _read(path: str) -> bytes:
  if not os.path.exists(path):
    raise CbenchError(f"Tokenizer model not found: {path}")
  with open(path, "rb") as f:
    return f.read()


def from_bytes(data: bytes):
  """The tokenizer a `model_proto` came from (any cbench tokenizer)."""
  if data.lstrip()[:1] == b"{":
    return BpeTokenizer(data)
  try:
    sp = SentencePieceTokenizer(data)
  except RuntimeError as e:  # sentencepiece's parse error
    raise CbenchError(f"not a sentencepiece model ({e}).") from e
  if (sp.pad_id, sp.unk_id, sp.bos_id, sp.eos_id) == (
      tokenizer_lib.PAD_ID, tokenizer_lib.UNK_ID, tokenizer_lib.BOS_ID,
      tokenizer_lib.EOS_ID):
    return tokenizer_lib.Tokenizer(data)
  return sp


def load_tokenizer(path: str):
  """Loads any tokenizer file cbench writes (see the module docstring)."""
  data = _read(path)
  try:
    return from_bytes(data)
  except CbenchError as e:
    raise CbenchError(f"{path}: {e}") from e


def tokenizer_from_gguf(fields: dict):
  """The tokenizer in GGUF metadata (``{key: value}`` of `gguf_loader`).

  'llama' (sentencepiece-style, Gemma) -> `SentencePieceTokenizer`; 'gpt2'
  (byte-level BPE, SmolLM2) -> `BpeTokenizer`. For 'gpt2' files whose BOS is
  a chat marker (SmolLM2's ``<|im_start|>``, with ``add_bos_token`` false),
  BOS and EOS become the document separator (the unknown-token id,
  ``<|endoftext|>``), so ``[bos] + text`` is a plain-LM document start.
  """
  kind = fields.get("tokenizer.ggml.model")
  tokens = fields.get("tokenizer.ggml.tokens")
  types = fields.get("tokenizer.ggml.token_type")
  _validate.check(tokens is not None and types is not None,
                  "GGUF file has no tokenizer.ggml.tokens/token_type.")
  get = lambda k, d=None: fields.get(f"tokenizer.ggml.{k}", d)
  if kind == "llama":
    return SentencePieceTokenizer(gemma_model_proto(
        tokens, get("scores"), types, bos_id=int(get("bos_token_id")),
        eos_id=int(get("eos_token_id")), unk_id=int(get("unknown_token_id")),
        pad_id=int(get("padding_token_id", 0))))
  if kind == "gpt2":
    unk = int(get("unknown_token_id", 0))
    bos, eos = int(get("bos_token_id")), int(get("eos_token_id"))
    pad = int(get("padding_token_id", eos))
    if not get("add_bos_token", False):
      bos = eos = unk
    _validate.check(pad != bos, f"GGUF tokenizer pads with its BOS id {bos}.")
    return BpeTokenizer.from_vocab(tokens, get("merges"), types, bos_id=bos,
                                   eos_id=eos, unk_id=unk, pad_id=pad)
  raise CbenchError(f"Unsupported GGUF tokenizer model {kind!r} (expected "
                    f"'llama' or 'gpt2').")
