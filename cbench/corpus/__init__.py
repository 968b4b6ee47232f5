"""The Geminon track: procedurally generated creatures, documents and QA.

Modules (one job each):
  names    -- pronounceable creature names, provably disjoint across releases.
  world    -- the creatures and their facts (`generate_world`).
  qa       -- questions, canonical answers/aliases, `answer_in_text`.
  render   -- documents in several styles, with provenance.
  dedup    -- MinHash near-duplicate removal.
  release  -- a release on disk (`build_release`, `build_public_world`,
              `load_release`).
  tfds_export -- the same corpus as an array_record TFDS dataset.

Everything is host NumPy driven by an explicit `np.random.Generator`; the same
arguments give byte-identical releases.
"""
