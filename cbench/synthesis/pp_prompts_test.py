"""Prompts of private prediction: the public header (option public_prefix).

Pure tests use a stub tokenizer; the end-to-end test runs the `micro` base
on the demo release (tiny shapes) and records the rows given to the decoder.
"""

import pytest

from cbench._validate import CbenchError
from cbench.models import model_store
from cbench.synthesis import api
from cbench.synthesis import private_prediction as pp

BOS, PAD, SEP = 2, 0, [9, 9]


class _Tok:
  """Stub tokenizer: one id per character (ord % 50 + 10)."""
  bos_id, pad_id = BOS, PAD

  def encode(self, text):
    return [ord(ch) % 50 + 10 for ch in text]


def test_without_prefix_prompts_are_unchanged():
  tok = _Tok()
  assert pp.prefix_ids(tok, "", SEP) == []
  assert pp.public_prompt(tok) == pp.public_prompt(tok, []) == [BOS]
  assert pp.record_prompt([5, 6, 7, 8], tok, 3, SEP) == [BOS, 5, 6, 7, 9, 9]
  plan = pp.plan(api.SynthesisConfig(
      method="private_prediction", epsilon=10.0, num_docs=4,
      options=(("prompt_tokens", 24),)), 4882)
  assert plan.options.public_prefix == ""
  assert pp.prompt_width(plan) == pp.prompt_width(plan, 0) == 32


def test_prefix_starts_every_row_and_widens_the_prompt():
  tok = _Tok()
  pre = pp.prefix_ids(tok, "ab", SEP)
  assert pre == [tok.encode("a")[0], tok.encode("b")[0], 9, 9]
  pub = pp.public_prompt(tok, pre)
  assert pub == [BOS, *pre]
  rec = pp.record_prompt([5, 6, 7, 8], tok, 3, SEP, pre)
  assert rec == [*pub, 5, 6, 7, 9, 9]      # header, record, blank line
  plan = pp.plan(api.SynthesisConfig(
      method="private_prediction", epsilon=10.0, num_docs=4,
      options=(("prompt_tokens", 24), ("public_prefix", "ab"))), 4882)
  assert plan.options.public_prefix == "ab"
  assert plan.to_dict()["options"]["public_prefix"] == "ab"  # ledger-bound
  assert pp.prompt_width(plan, len(pre)) >= 24 + 3 + len(pre)
  assert pp.prompt_width(plan, 30) == 64


def test_too_long_prefix_is_named():
  with pytest.raises(CbenchError, match="public_prefix.*prefix_tokens=4"):
    pp.prefix_ids(_Tok(), "abcde", SEP, max_tokens=4)
  with pytest.raises(CbenchError, match="prefix_tokens"):
    pp.plan(api.SynthesisConfig(
        method="private_prediction", epsilon=10.0, num_docs=4,
        options=(("prefix_tokens", 0),)), 4882)


@pytest.mark.parametrize("prefix", ["", "Creature notes."])
def test_decoder_rows_carry_the_header(prefix, demo_release_dir,
                                       micro_base_dir, tmp_path,
                                       monkeypatch):
  seen = []
  real = pp.decoder.generate

  def spy(params, config, prompt_tokens, *args, **kw):
    seen.append((prompt_tokens.copy(), kw["group_size"], kw["pad_id"]))
    return real(params, config, prompt_tokens, *args, **kw)
  monkeypatch.setattr(pp.decoder, "generate", spy)
  opts = (("batch_size", 3), ("num_batches", 2), ("prompt_tokens", 16),
          ("max_new_tokens", 6), ("groups_per_call", 2),
          ("public_prefix", prefix))
  cfg = api.SynthesisConfig(method="private_prediction", epsilon=100.0,
                            num_docs=2, options=opts)
  out = str(tmp_path / "synth.jsonl")
  summary = api.synthesize(demo_release_dir, micro_base_dir, cfg, out)
  assert summary["num_docs"] == 2
  tok = model_store.load(micro_base_dir).tokenizer
  sep = pp.separator_ids(tok)
  pre = pp.prefix_ids(tok, prefix, sep)
  assert bool(pre) == bool(prefix)
  public = pp.public_prompt(tok, pre)
  assert len(seen) == 1
  rows, group, pad = seen[0]
  assert group == 4 and rows.shape[0] == 8
  unpadded = [[int(x) for x in r[(r != pad).argmax():]] for r in rows]
  for g in range(2):
    grp = unpadded[g * group:(g + 1) * group]
    assert grp[-1] == public                       # the public row
    for r in grp[:-1]:                             # private rows
      assert r[:len(public)] == public and r[-len(sep):] == sep
      assert len(r) > len(public) + len(sep)       # a record in between
  header, _ = pp.read_ledger_records(api.ledger_path(out))
  assert header["config"]["plan"]["options"]["public_prefix"] == prefix
