"""The release layout shared by every track.

Modules (one job each):
  release      layout, splits, seeds, hashes, atomic build, the reader.
  answers      QA record fields, the answer matcher, number word forms.
  dedup        MinHash near-duplicate removal.
  tfds_export  the corpus as an array_record TFDS dataset.
  beam         Apache Beam runner plumbing (the 'beam' extra).
"""
