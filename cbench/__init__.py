"""cbench: does differentially private synthetic text carry new knowledge?

Layers, lowest first; a module imports only from its own layer or a lower
one, never from a higher one, with no import cycle (`tools/check_layering.py`,
enforced by ``tests/layering_test.py``):

  _validate, options, io → text → corpus → parallel → privacy → models →
  train → decoding → contrastive → synthesis → harness → tracks →
  curation, images, provenance → audit → leaderboard → benchmark → configs →
  testing

``experiments/`` (absl binaries), ``benchmarks/``, ``launch/`` and
``tools/`` sit above the library; the library never imports them.
"""

__version__ = "0.1.0"

# The layering above, as data (read by tools/check_layering.py).
LAYERS = (
    ("_validate", "options", "io"),
    ("text",),
    ("corpus",),
    ("parallel",),
    ("privacy",),
    ("models",),
    ("train",),
    ("decoding",),
    ("contrastive",),
    ("synthesis",),
    ("harness",),
    ("tracks",),
    ("curation", "images", "provenance"),
    ("audit",),
    ("leaderboard",),
    ("benchmark",),
    ("configs",),
    ("testing",),
)
