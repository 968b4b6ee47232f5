"""The News track: quarterly-style monthly releases of real news.

Inputs: the month (``--release=YYYY-MM``) and local crawl files
(``--crawl=PATH[,PATH...]``: WARC/ARC, saved HTML pages, or JSONL of
extracted articles); knobs of `config.NewsReleaseConfig` through
``--override``. The harness default is the packaged Gemma 3 270M with LoRA
(the tiny cbench model knows no English), documents formatted ``Title: /
Date: / Article:`` (written into the corpus) at sequence length 512, and
the few-shot exemplars shipped in the release (``qa/exemplars.jsonl``).
"""

from __future__ import annotations

from typing import Mapping, Optional

from cbench.tracks import base
from cbench.tracks.news import build
from cbench.tracks.news import config as config_lib


class NewsTrack(base.Track):
  """See the module docstring."""

  name = config_lib.TRACK
  defaults = base.HarnessDefaults(config="news", base_model="gemma3_270m",
                                  seq_len=512)

  def release_config(self, release_id: Optional[str], *,
                     crawl: Optional[str] = None, **inputs
                     ) -> config_lib.NewsReleaseConfig:
    base.unexpected_inputs(self.name, inputs, ("release", "crawl"))
    return config_lib.make_config(release_id, crawl)

  def build_release(self, config: config_lib.NewsReleaseConfig,
                    out_dir: str, overwrite: bool = False, *,
                    beam: Optional[base.BeamOptions] = None,
                    timer: Optional[base.Timer] = None) -> dict:
    return build.build_release(config, out_dir, overwrite, beam=beam,
                               timer=timer)

  def summary(self, manifest: Mapping) -> dict:
    st = manifest["stages"]
    return {
        "release": manifest["release_id"], "window": manifest["window"],
        "articles_read": st["read"]["pages"],
        "kept_per_stage": {s: st[s]["kept"] for s in
                           ("extract", "window", "language", "dedup")},
        "dropped": {s: st[s]["dropped"] for s in
                    ("extract", "window", "language", "dedup")},
        "skipped_records": st["read"]["skipped"],
        "events": st["events"]["events"],
        "groups_by_outlets": st["events"]["groups_by_outlets"],
        "questions_before_zero_shot": st["zero_shot"]["before"],
        "questions_after_zero_shot": st["zero_shot"]["after"],
        "zero_shot": {k: v for k, v in st["zero_shot"].items()
                      if k not in ("before", "after")},
        "documents": manifest["documents"]["by_split"],
        "questions": manifest["questions"],
        "support_buckets": manifest["support_buckets"],
    }


TRACK = NewsTrack()
