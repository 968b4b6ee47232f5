"""A track: the plug-in that turns its own inputs into a release.

Every track writes the shared release layout (`cbench.corpus.release`), so
the harness, synthesis and the benchmark runner take any track's release the
same way. What differs between tracks is declared here, once per track:

* `release_config(release_id, **inputs)`: the track's frozen release config
  from user input (one-line `CbenchError` naming a bad value); fields can be
  changed with ``make_release --override=FIELD=VALUE``.
* `build_release(config, out_dir, overwrite, beam=..., timer=...)`: writes
  the release atomically and returns its manifest; `beam` (a
  `BeamOptions`) runs the track's per-record stages on Apache Beam with the
  same output; `timer` (a `Timer`) records wall seconds per stage.
* `summary(manifest)`: what ``make_release`` prints.
* `defaults`: what the track declares for the harness on its releases (the
  standard config, its base model, sequence length; document formatting and
  few-shot exemplars are written into the release itself).
* `build_base(harness, workdir, public_world_dir)`: the base model the
  benchmark fine-tunes when none is given (a model directory or a
  pretrained model name).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Optional, Sequence

from cbench._validate import CbenchError
from cbench.corpus import beam as beam_lib
from cbench.harness.recipes import HarnessConfig


@dataclasses.dataclass(frozen=True)
class HarnessDefaults:
  """What a track declares for the harness.

  Attributes:
    config: the standard config (`cbench.configs` name) for its releases.
    base_model: a pretrained model name the harness fine-tunes, or "" when
      the track builds its own base model (`Track.build_base`).
    seq_len: training sequence length (tokens) of its documents.
  """
  config: str
  base_model: str
  seq_len: int


@dataclasses.dataclass(frozen=True)
class BeamOptions:
  """Run the per-record stages on Apache Beam: runner name and options."""
  runner: str = "DirectRunner"
  pipeline_args: tuple[str, ...] = ()

  def __post_init__(self):
    beam_lib.check_runner(self.runner)

  @classmethod
  def from_flags(cls, runner: Optional[str], beam_options: Optional[str]
                 ) -> Optional["BeamOptions"]:
    """None without `runner` (CbenchError if options are given anyway)."""
    if runner is None:
      if beam_options:
        raise CbenchError("--beam_options needs --runner.")
      return None
    return cls(runner, tuple(beam_lib.parse_pipeline_args(beam_options)))


class Timer:
  """Wall seconds per stage (what make_release prints; never written into
  a release, whose bytes must not depend on the machine)."""

  def __init__(self):
    self.seconds: dict[str, float] = {}
    self._t = time.perf_counter()

  def lap(self, stage: str) -> None:
    now = time.perf_counter()
    self.seconds[stage] = round(now - self._t, 3)
    self._t = now


class Track:
  """Base class of a track; see the module docstring for the contract."""

  name: str = ""
  defaults: HarnessDefaults

  def release_config(self, release_id: Optional[str], **inputs) -> Any:
    raise NotImplementedError

  def build_release(self, config: Any, out_dir: str, overwrite: bool = False,
                    *, beam: Optional[BeamOptions] = None,
                    timer: Optional[Timer] = None) -> dict:
    raise NotImplementedError

  def summary(self, manifest: Mapping) -> dict:
    raise NotImplementedError

  def build_base(self, harness: HarnessConfig, workdir: str,
                 public_world_dir: Optional[str]) -> str:
    if self.defaults.base_model:
      return self.defaults.base_model
    raise CbenchError(f"The {self.name} track builds no base model; give "
                      f"--base.")


def unexpected_inputs(track: str, inputs: Mapping[str, Any],
                      takes: Sequence[str]) -> None:
  """Raises CbenchError naming an input (a make_release flag) that `track`
  does not take, e.g. ``--crawl`` for Geminon; `takes` are the flags it
  does take (for the message)."""
  bad = sorted(k for k, v in inputs.items() if v not in (None, False, ()))
  if bad:
    raise CbenchError(f"--{bad[0]} does not apply to --track={track} (it "
                      f"takes {', '.join('--' + t for t in takes)}).")
