"""Stages 1-3 on Beam's DirectRunner give the records of the in-process path."""

import os
import shutil

import pytest

beam = pytest.importorskip(
    "apache_beam", reason="apache_beam is not installed (pip install "
    "-e '.[beam]'); the Beam News path is untested here")

from cbench.tracks.news import beam_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from cbench.tracks.news import build  # pylint: disable=g-import-not-at-top,wrong-import-position
from cbench.tracks.news import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from cbench.tracks.news.crawl_test import FIXTURE  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_direct_runner_equals_in_process(tmp_path):
  crawl = tmp_path / "crawl"
  crawl.mkdir()
  shutil.copy(FIXTURE, crawl / "a.warc.gz")
  data = open(FIXTURE, "rb").read()
  (crawl / "b.warc.gz").write_bytes(data[:len(data) // 3])
  config = config_lib.make_config("2026-03", str(crawl), embedder="hashing",
                                  zero_shot_model="")
  local = build.collect_local(config)
  on_beam = beam_pipeline.collect(config, "DirectRunner")
  assert on_beam == local
  assert len(local) > 37 and {o.key[:5] for o in local} == {"00000", "00001"}
  assert sorted(os.listdir(crawl)) == ["a.warc.gz", "b.warc.gz"]
