"""The Geminon track: procedurally generated creatures (`generator`).

Inputs: a release id (``2026q4``: it derives the seed and the name slot), a
size and an optional minimum support; or ``public_world=True`` for the
public world that base models are pretrained on. The harness default is the
tiny cbench model pretrained on the public world (`pretrain.pretrain_base`),
fine-tuned with the `tiny` config; documents are short (sequence length
256); few-shot exemplars come from the public world (stored with the base
model), never from a release.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping, Optional

from cbench import _validate
from cbench._validate import CbenchError
from cbench.harness.recipes import HarnessConfig
from cbench.tracks import base
from cbench.tracks.geminon import generator
from cbench.tracks.geminon import pretrain

log = logging.getLogger("cbench")


class GeminonTrack(base.Track):
  """See the module docstring."""

  name = generator.TRACK
  defaults = base.HarnessDefaults(config="tiny", base_model="", seq_len=256)

  def release_config(self, release_id: Optional[str], *,
                     size: str = "demo", min_support: Optional[int] = None,
                     public_world: bool = False, **inputs
                     ) -> generator.ReleaseConfig:
    """The release config of user input (CbenchError names a bad value)."""
    base.unexpected_inputs(self.name, inputs,
                           ("release", "size", "min_support", "public_world"))
    if public_world:
      _validate.check(release_id is None,
                      "--release must not be set with --public_world.")
      return generator.public_world_config(self.name)
    if release_id is None:
      raise CbenchError("--release is required (e.g. --release=2026q4), or "
                        "pass --public_world.")
    return generator.make_config(self.name, release_id, size, min_support)

  def build_release(self, config: generator.ReleaseConfig, out_dir: str,
                    overwrite: bool = False, *,
                    beam: Optional[base.BeamOptions] = None,
                    timer: Optional[base.Timer] = None) -> dict:
    manifest = self._build(config, out_dir, overwrite, beam)
    if timer is not None:
      timer.lap("build")
    return manifest

  def _build(self, config, out_dir, overwrite, beam) -> dict:
    public = config.release_id == generator.PUBLIC_RELEASE_ID
    if beam is None:
      if public:
        return generator.build_public_world(out_dir, overwrite,
                                            track=config.track)
      return generator.build_release(config, out_dir, overwrite)
    try:
      # Optional: needs the 'beam' extra.
      from cbench.tracks.geminon import beam_pipeline  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise CbenchError(f"--runner={beam.runner} needs Apache Beam: pip "
                        f"install -e '.[beam]' ({e}).") from e
    kw = dict(runner=beam.runner, pipeline_args=beam.pipeline_args)
    if public:
      return beam_pipeline.build_public_world(out_dir, overwrite,
                                              track=config.track, **kw)
    return beam_pipeline.build_release(config, out_dir, overwrite, **kw)

  def summary(self, manifest: Mapping) -> dict:
    """Counts, support, chance accuracy (what make_release prints)."""
    return {
        "release": manifest["release_id"], "size": manifest["size"],
        "seed": manifest["seed"],
        "creatures": {k: manifest["world"][k]
                      for k in ("creatures", "public", "sensitive")},
        "documents": manifest["documents"]["by_split"],
        "documents_by_style": manifest["documents"]["by_style"],
        "dedup_removed_fraction": manifest["dedup"]["removed_fraction"],
        "questions": manifest["questions"],
        "dropped_public_questions": manifest["dropped_public_questions"],
        "support_min_median": {
            k: None if v is None else [v["min"], v["median"]]
            for k, v in manifest["support"].items()},
        "chance_accuracy_public": manifest["chance_accuracy"]["public"],
    }

  def build_base(self, harness: HarnessConfig, workdir: str,
                 public_world_dir: Optional[str]) -> str:
    """Pretrains (or finds) the base model in ``workdir/base`` on the public
    world (built into ``workdir/public_world`` unless given)."""
    if harness.pretrain is None:
      raise CbenchError(f"The harness recipe {harness.name!r} has no "
                        f"pretraining config: give --base or a recipe that "
                        f"pretrains (e.g. --config=tiny).")
    pw = public_world_dir or os.path.join(workdir, "public_world")
    if not os.path.exists(os.path.join(pw, "manifest.json")):
      log.info("building the public world in %s", pw)
      generator.build_public_world(pw, overwrite=os.path.exists(pw))
    out = os.path.join(workdir, "base")
    pretrain.pretrain_base(pw, out, harness.pretrain)
    return out


TRACK = GeminonTrack()
