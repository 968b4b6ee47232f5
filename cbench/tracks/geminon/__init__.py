"""The Geminon track: procedurally generated creatures, documents and QA.

Modules (one job each):
  names      pronounceable creature names, provably disjoint across releases.
  world      the creatures and their facts (`generate_world`).
  qa         questions, canonical answers and aliases.
  render     documents in several styles, with provenance.
  generator  a release on disk (`build_release`, `build_public_world`).
  beam_pipeline  the corpus stage on Apache Beam (same bytes).
  pretrain   the base model pretrained on the public world.
  fact_metrics   which release facts a (synthetic) corpus states.
  track      the `Track` plug-in.

Everything is host NumPy driven by an explicit `np.random.Generator`; the same
arguments give byte-identical releases.
"""
