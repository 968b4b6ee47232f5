"""What every cbench binary shares: logging, named errors, distributed start.

`run(main)` wraps `absl.app.run`: library progress lines (the "cbench"
logger) go to stderr, orbax/absl chatter is kept at WARNING, multi-host JAX
starts when `CBENCH_DISTRIBUTED=1`, and a `CbenchError` (bad flag, malformed
file, impossible budget) prints one line naming the problem and exits 1.
`define_config_flags` gives a binary ``--config`` (a standard run of
`cbench.configs` or a .py file with ``get_config()``) and ``--override``.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Callable

from absl import app
from absl import flags
from absl import logging as absl_logging
import numpy as np

from cbench import configs
from cbench._validate import CbenchError
from cbench.benchmark import runner
from cbench.parallel import mesh


def setup_logging() -> None:
  absl_logging.set_verbosity(absl_logging.WARNING)
  log = logging.getLogger("cbench")
  if not any(getattr(h, "_cbench", False) for h in log.handlers):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler._cbench = True  # pylint: disable=protected-access
    log.addHandler(handler)
  log.setLevel(logging.INFO)
  log.propagate = False


def model_or_dir(dir_flag: str, directory: str | None, model: str, *,
                 required: bool = True) -> str | None:
  """What `--model` / `--<dir_flag>` select: a pretrained name or a directory.

  ``--model=tiny`` keeps the directory; a pretrained name replaces it.

  Raises:
    CbenchError: both given; neither given (when `required`).
  """
  if model != "tiny":
    if directory:
      raise CbenchError(f"Give --{dir_flag} or --model={model}, not both.")
    return model
  if required and not directory:
    raise CbenchError(f"--{dir_flag} is required (or --model=<pretrained>).")
  return directory


class ConfigFlags:
  """``--config`` and ``--override`` of one binary (`define_config_flags`)."""

  def __init__(self, default: str | None):
    self._config = flags.DEFINE_string(
        "config", default,
        f"The run's config: one of {list(configs.NAMES)} (cbench/configs/, "
        f"each file's docstring gives its command and expected result) or a "
        f"path to a .py file with get_config()"
        + ("." if default else "; default: the one the release's track "
           "declares."))
    self._override = flags.DEFINE_multi_string(
        "override", [],
        "FIELD=VALUE: change one field of the config (a dotted path, e.g. "
        "harness.finetune.num_steps=100); repeatable.")

  def load(self, default: str | None = None):
    """The config (--config, else `default`) with every --override applied
    (CbenchError if bad)."""
    return configs.load(self._config.value or default, self._override.value)

  def benchmark(self, track_default: str):
    """The loaded config's `BenchmarkConfig` (a demo config wraps one);
    `track_default` names the config when --config is absent.

    Raises:
      CbenchError: the config is not a benchmark config.
    """
    config = self.load(track_default)
    config = getattr(config, "benchmark", config)
    if not isinstance(config, runner.BenchmarkConfig):
      raise CbenchError(f"--config gives a {type(config).__name__}, not a "
                        f"benchmark config.")
    return config

  def harness(self):
    """The harness recipe of the loaded config."""
    return configs.harness_config(self.load())


def parse_seed(text: str, flag: str) -> int:
  """An integer seed, or 'random' for a fresh one (printed to stderr so a
  run with a surprising result can be repeated)."""
  if text == "random":
    seed = int(np.random.SeedSequence().entropy % 2**31)
    logging.getLogger("cbench").info("%s=random: using %d", flag, seed)
    return seed
  try:
    return int(text)
  except ValueError as e:
    raise CbenchError(f"{flag}={text!r} is not an integer or 'random'.") from e


def parse_epsilon(text: str | None) -> float:
  """--epsilon: a number > 0, or inf."""
  if text is None:
    raise CbenchError("--epsilon is required (a number > 0, or inf).")
  try:
    value = float(text)
  except ValueError as e:
    raise CbenchError(f"--epsilon={text!r} is not a number (or inf).") from e
  if math.isnan(value) or value <= 0:
    raise CbenchError(f"--epsilon={text} must be > 0 (or inf).")
  return value


def _typed_option(text: str):
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  if text.lower() in ("true", "false"):
    return text.lower() == "true"
  return text


def parse_method_options(items: list[str]) -> tuple:
  """--option=NAME=VALUE items -> ((name, int|float|bool|str), ...)."""
  out = []
  for item in items:
    name, sep, value = item.partition("=")
    if not sep or not name:
      raise CbenchError(f"--option={item!r} must be NAME=VALUE.")
    out.append((name.strip(), _typed_option(value.strip())))
  return tuple(out)


def define_config_flags(default: str | None = "tiny") -> ConfigFlags:
  return ConfigFlags(default)


def run(main: Callable[[list[str]], None]) -> None:
  def wrapped(argv):
    setup_logging()
    mesh.maybe_initialize_distributed()
    try:
      main(argv)
    except CbenchError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)
  app.run(wrapped)
