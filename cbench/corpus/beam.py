"""Apache Beam plumbing shared by the tracks' pipelines.

`RUNNERS` a release may be built with, `check_runner`, `runner` (the runner
object to pass to `beam.Pipeline`) and `parse_pipeline_args` (the
``--beam_options`` string). Importing this module needs nothing; `runner`
needs the 'beam' extra (apache-beam).
"""

from __future__ import annotations

import shlex
from typing import Optional

from cbench import _validate

RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")


def check_runner(runner: str) -> None:
  _validate.one_of("--runner", runner, RUNNERS)


def runner(name: str):
  """The runner object; None lets Beam resolve `name` from the options.

  DirectRunner: Beam's in-process FnApiRunner, which is what DirectRunner
  runs a batch pipeline on after first trying the Prism runner (Beam >=
  2.6x), a Go binary it downloads at run time; we skip that attempt.
  ``--direct_num_workers`` / ``--direct_running_mode`` still apply.
  """
  if name == "DirectRunner":
    # Optional heavy dependency (the 'beam' extra).
    from apache_beam.runners.portability.fn_api_runner import fn_runner  # pylint: disable=g-import-not-at-top
    return fn_runner.FnApiRunner()
  return None


def parse_pipeline_args(text: Optional[str]) -> list[str]:
  """``--beam_options`` string -> argument list (shell quoting rules)."""
  try:
    return shlex.split(text or "")
  except ValueError as e:
    raise _validate.CbenchError(f"--beam_options: {e}") from e
