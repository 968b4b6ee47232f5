"""Every method's documents, ledger and ε at a fixed seed are unchanged.

The golden file `testdata/golden/synthesis_fingerprint.json` is written by
``python tools/synthesis_fingerprint.py ... --golden=F --write`` on the
test fixtures (the demo release and the micro base model). A change to the
methods' shared machinery must not change any output; a deliberate change
of a method's output rewrites the file in the same commit. Slow (about two
minutes on 2 cores) and tied to one platform's float arithmetic, so it is
not in the default suite: run it with ``make test-slow``.
"""

import os

import pytest

from cbench.io import files
from cbench.testing import fixtures
from tools import synthesis_fingerprint

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "testdata", "golden",
                      "synthesis_fingerprint.json")


@pytest.mark.slow
def test_fixed_seed_outputs_match_the_golden_file(tmp_path):
  root = str(tmp_path / "artifacts")
  got = synthesis_fingerprint.fingerprints(
      fixtures.demo_release(root), fixtures.micro_base_model(root),
      str(tmp_path / "runs"))
  want = files.read_json(GOLDEN)
  assert set(got) == set(want)
  changed = {k: (want[k], got[k]) for k in want if want[k] != got[k]}
  assert not changed, changed


def test_golden_file_covers_every_method():
  want = files.read_json(GOLDEN)
  methods = {k.split("@")[0] for k in want}
  assert methods == set(synthesis_fingerprint.api.METHODS)
