"""The corpus of a release as a TFDS dataset in array_record format.

`export_tfds(corpus_dir, data_dir, name)` writes the dataset `name`
(`cbench_geminon` by default, `cbench_<track>` per track; version
`TFDS_VERSION`) with splits train/val/test, each record
{"id": int64, "text": str, "style": str,
 "facts": str (JSON of the record's provenance, e.g. [[creature, feature],
 ...])}, read back WITHOUT
TensorFlow by
`tfds.data_source("cbench_geminon", data_dir=data_dir, split="train")`
(records come back shuffled by TFDS and text as bytes). The files are
byte-identical across rebuilds: TFDS serialises tf.Example protos whose
feature map order is not deterministic by default, so during the export we
serialise with `deterministic=True` (a scoped patch, undone afterwards).
`dataset_info.json` holds no timestamps or paths.

tensorflow_datasets is imported lazily (about 2 s).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator, Optional

import numpy as np

from cbench.io import files

TFDS_NAME = "cbench_geminon"
TFDS_VERSION = "1.0.0"
SPLITS = ("train", "val", "test")


@contextlib.contextmanager
def _deterministic_serialization() -> Iterator[None]:
  # pylint: disable-next=g-import-not-at-top
  from tensorflow_datasets.core import example_serializer
  cls = example_serializer.ExampleSerializer
  original = cls.serialize_example

  def serialize_example(self, example):
    return self.get_tf_example(example).SerializeToString(deterministic=True)

  cls.serialize_example = serialize_example
  try:
    yield
  finally:
    cls.serialize_example = original


def _camel(name: str) -> str:
  return "".join(part.capitalize() for part in name.split("_"))


def _builder_class(name: str, description: str):
  """Defines (once per name) and returns the builder class of dataset
  `name` (TFDS registers it under the snake_case of the class name)."""
  if name in _BUILDERS:
    return _BUILDERS[name]
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A release corpus (one record = one document = privacy unit)."""
    VERSION = tfds.core.Version(TFDS_VERSION)

    # TFDS looks for a checksums file beside the builder's source through
    # `importlib_resources`, which is not installed; we download nothing.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
      return None

    # Library code does not print (TFDS prints these to stdout).
    def _log_download_bytes(self):
      pass

    def _log_download_done(self):
      pass

    def __init__(self, *, corpus_dir: Optional[str] = None, **kwargs):
      self._corpus_dir = corpus_dir
      super().__init__(**kwargs)

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self,
          description=description,
          features=tfds.features.FeaturesDict({
              "id": tfds.features.Scalar(dtype=np.int64),
              "text": tfds.features.Text(),
              "style": tfds.features.Text(),
              # JSON of [[creature, feature], ...]: nested TFDS features
              # cost ~4x more to encode than the rest of the record.
              "facts": tfds.features.Text(),
          }))

    def _split_generators(self, dl_manager):
      del dl_manager
      # TFDS cannot write an empty split (a small release may have no val
      # document); such a split is left out and counted as 0.
      paths = {s: os.path.join(self._corpus_dir, f"{s}.jsonl")
               for s in SPLITS}
      return {s: self._generate_examples(p) for s, p in paths.items()
              if os.path.getsize(p) > 0}

    def _generate_examples(self, path):
      for rec in files.iter_jsonl(path, required=("id", "text", "style",
                                                  "facts")):
        yield int(rec["id"]), {
            "id": int(rec["id"]), "text": rec["text"], "style": rec["style"],
            "facts": json.dumps(rec["facts"], separators=(",", ":"))}

  _BUILDERS[name] = type(_camel(name), (Builder,), {
      "__doc__": Builder.__doc__, "__module__": __name__})
  return _BUILDERS[name]


_BUILDERS: dict = {}
_GEMINON_DESCRIPTION = ("cbench Geminon corpus: synthetic documents about "
                        "procedurally generated creatures.")


def export_tfds(corpus_dir: str, data_dir: str, name: str = TFDS_NAME,
                description: str = _GEMINON_DESCRIPTION) -> dict:
  """Writes the TFDS dataset `name`; returns {"name", "version",
  "num_examples"}."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  builder = _builder_class(name, description)(
      corpus_dir=corpus_dir, data_dir=data_dir, file_format="array_record")
  with _deterministic_serialization():
    builder.download_and_prepare()
  downloads = os.path.join(data_dir, "downloads")
  if os.path.isdir(downloads) and not os.listdir(downloads):
    os.rmdir(downloads)  # TFDS creates it; nothing is downloaded.
  return {"name": name, "version": TFDS_VERSION,
          "num_examples": {s: int(builder.info.splits[s].num_examples)
                           if s in builder.info.splits else 0
                           for s in SPLITS}}


def data_source(data_dir: str, split: str, name: str = TFDS_NAME):
  """`tfds.data_source` of an exported corpus (random access, no TF)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds.data_source(name, data_dir=data_dir, split=split)
