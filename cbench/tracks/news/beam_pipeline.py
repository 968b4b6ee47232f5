"""Stages 1-3 of a News release (read, extract, language) on Apache Beam.

The pipeline maps every crawl file to the outcomes of its records
(`crawl.read_file` then `articles.process`: pure functions of one record),
writes them as JSON lines into a fresh temporary directory (`scratch`
chooses its parent: on a cluster, a path every worker and this process
see), and this process reads them back sorted by record key and deletes
the directory: the same list as `build.collect_local`, so the same
release. Files are the unit of parallelism (a CC-NEWS month is
hundreds of WARC files); DirectRunner runs them in worker processes
(``--direct_num_workers``), other runners on a cluster.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import tempfile
from typing import Iterator, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from cbench.corpus import beam as beam_lib
from cbench.tracks.news import articles as articles_lib
from cbench.tracks.news import config as config_lib
from cbench.tracks.news import crawl as crawl_lib

_TYPES = {"article": articles_lib.Article, "drop": articles_lib.Drop,
          "skip": crawl_lib.Skip}


def _encode(outcome) -> str:
  kind = {articles_lib.Article: "article", articles_lib.Drop: "drop",
          crawl_lib.Skip: "skip"}[type(outcome)]
  return json.dumps({"type": kind, **dataclasses.asdict(outcome)},
                    sort_keys=True, ensure_ascii=False)


def _decode(line: str):
  rec = json.loads(line)
  return _TYPES[rec.pop("type")](**rec)


def process_file(item: tuple[int, str],
                 config: config_lib.NewsReleaseConfig) -> Iterator[str]:
  """Encoded outcomes of every record of one crawl file."""
  index, path = item
  for record in crawl_lib.read_file(path, index):
    yield _encode(record if isinstance(record, crawl_lib.Skip)
                  else articles_lib.process(record, config))


def collect(config: config_lib.NewsReleaseConfig, runner: str = "DirectRunner",
            pipeline_args: Sequence[str] = (),
            scratch: Optional[str] = None) -> list:
  """Every record's outcome, sorted by key (see the module docstring)."""
  beam_lib.check_runner(runner)
  tmp = tempfile.mkdtemp(prefix="cbench-news-beam-", dir=scratch)
  try:
    options = PipelineOptions(list(pipeline_args), runner=runner)
    with beam.Pipeline(runner=beam_lib.runner(runner), options=options) as p:
      _ = (p
           | "Files" >> beam.Create(list(enumerate(config.crawl)))
           | "Reshuffle" >> beam.Reshuffle()
           | "Process" >> beam.FlatMap(process_file, config)
           | "Write" >> beam.io.WriteToText(os.path.join(tmp, "outcomes"),
                                            file_name_suffix=".jsonl"))
    out = []
    for path in sorted(glob.glob(os.path.join(tmp, "outcomes*.jsonl"))):
      with open(path, encoding="utf-8") as f:
        out.extend(_decode(line) for line in f if line.strip())
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return sorted(out, key=lambda o: o.key)
