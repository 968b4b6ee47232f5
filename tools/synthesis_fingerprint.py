r"""Fingerprints every synthesis method's output at a fixed seed.

  python tools/synthesis_fingerprint.py --workdir=W \
      [--golden=testdata/golden/synthesis_fingerprint.json [--write]] \
      [--release=DIR --base=BASE]

Without ``--release``/``--base`` it builds the test fixtures (the demo
release and the micro base model, `cbench.testing.fixtures`) in W, as the
test does.

Runs each method of `api.METHODS` (small options, num_docs=4, ε ∈ {10,
inf}) and prints, per run, the sha256 of its documents, of its ledger's
charge entries (ids and events; not the header's config hash, which
changes whenever an option is added) and its ε. With ``--golden`` it compares against
that file (exit status 1 on a difference) or writes it with ``--write``.
A refactor of the methods' shared machinery must leave every fingerprint
unchanged (`tests/synthesis_fingerprint_test.py`, marked slow). Like the
test suite it runs on 8 fake CPU devices.
"""

import argparse
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# The test suite's platform (conftest.py): 8 fake CPU devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from cbench.io import files  # pylint: disable=wrong-import-position
from cbench.synthesis import api  # pylint: disable=wrong-import-position
from cbench.testing import fixtures  # pylint: disable=wrong-import-position

# Options that keep each method to seconds on the micro base model.
SMALL = {
    "dp_finetune": (("steps", 4), ("batch_size", 8.0), ("seq_len", 64),
                    ("max_new_tokens", 24), ("decode_batch", 4),
                    ("checkpoint_every", 2)),
    "private_evolution": (("iterations", 2), ("max_new_tokens", 24),
                          ("embed_tokens", 32), ("decode_batch", 4)),
}
PP_SMALL = (("max_new_tokens", 12), ("prompt_tokens", 32),
            ("prefix_tokens", 8))
EPSILONS = (10.0, float("inf"))
NUM_DOCS = 4


def _sha(text: str) -> str:
  return hashlib.sha256(text.encode()).hexdigest()


def _options(method: str):
  return SMALL.get(method, PP_SMALL)


def fingerprints(release: str, base: str, workdir: str) -> dict:
  """{"method@eps": {"docs", "ledger", "epsilon"}} for every method."""
  out = {}
  for method in api.METHODS:
    for eps in EPSILONS:
      name = f"{method}@{eps:g}"
      path = os.path.join(workdir, f"{method}_{eps:g}", "synth.jsonl")
      os.makedirs(os.path.dirname(path), exist_ok=True)
      config = api.SynthesisConfig(method=method, epsilon=eps,
                                   num_docs=NUM_DOCS, seed=3,
                                   options=_options(method))
      summary = api.synthesize(release, base, config, path)
      docs = [r["text"] for r in files.iter_jsonl(path)]
      records = list(files.iter_jsonl(api.ledger_path(path)))
      # Charges only: the header's config hash changes whenever an option
      # is added (a schema change that leaves outputs alone), so it is not
      # part of the fingerprint.
      entries = [{k: r.get(k) for k in ("id", "event")} for r in records[1:]]
      out[name] = {
          "docs": _sha(json.dumps(docs)),
          "ledger": _sha(json.dumps(entries, sort_keys=True)),
          "epsilon": str(summary["epsilon"]),
      }
  return out


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--release")
  parser.add_argument("--base")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--golden")
  parser.add_argument("--write", action="store_true")
  args = parser.parse_args()
  artifacts = os.path.join(args.workdir, "artifacts")
  release = args.release or fixtures.demo_release(artifacts)
  base = args.base or fixtures.micro_base_model(artifacts)
  got = fingerprints(release, base, os.path.join(args.workdir, "runs"))
  print(json.dumps(got, indent=1, sort_keys=True))
  if not args.golden:
    return 0
  if args.write:
    files.write_json(args.golden, got)
    return 0
  want = files.read_json(args.golden)
  bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
  if bad:
    print("changed: " + ", ".join(bad), file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
