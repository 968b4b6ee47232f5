"""The standard runs, one config file each (big_vision style).

Each module's ``get_config()`` returns a frozen config; its docstring gives
the command and the result to expect. Binaries take ``--config=NAME`` (a
name below) or ``--config=path/to/file.py`` (any file with a
``get_config()``), then ``--override=FIELD=VALUE`` (repeatable, dotted
paths into the config, values parsed by `cbench.options`).

  micro        unit tests: seconds, not accuracy.
  demo         `make demo`: the whole grid on the `mini` release, ~14 min
               on 2 CPU cores.
  tiny         the CPU harness recipe and benchmark grid (the default).
  accelerator  the full benchmark recipe for one accelerator host.
  news         the News track: Gemma 3 270M with LoRA.

`harness_config(config)` is the harness part of any of them (what
``pretrain_base`` and ``train`` use).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Sequence

from cbench import options
from cbench._validate import CbenchError
from cbench.configs import accelerator
from cbench.configs import demo
from cbench.configs import micro
from cbench.configs import news
from cbench.configs import tiny
from cbench.harness.recipes import HarnessConfig

_CONFIGS = {"micro": micro, "demo": demo, "tiny": tiny,
            "accelerator": accelerator, "news": news}
NAMES = tuple(_CONFIGS)


def _from_file(path: str) -> Any:
  if not os.path.exists(path):
    raise CbenchError(f"--config={path}: no such file (or give one of "
                      f"{list(NAMES)}).")
  spec = importlib.util.spec_from_file_location("cbench_user_config", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # A user's file: report any failure in one line.
    raise CbenchError(f"--config={path} failed to load: "
                      f"{type(e).__name__}: {e}") from e
  if not callable(getattr(module, "get_config", None)):
    raise CbenchError(f"--config={path} defines no get_config().")
  return module.get_config()


def load(name_or_path: str, overrides: Sequence[str] = ()) -> Any:
  """The config named `name_or_path` (or read from that .py file), with
  `overrides` (``"a.b=value"``) applied in order.

  Raises:
    CbenchError: an unknown name, a missing or broken file, a bad override.
  """
  if name_or_path in _CONFIGS:
    config = _CONFIGS[name_or_path].get_config()
  elif name_or_path.endswith(".py"):
    config = _from_file(name_or_path)
  else:
    raise CbenchError(f"Unknown --config={name_or_path!r}; expected one of "
                      f"{list(NAMES)} or a path to a .py file with "
                      f"get_config().")
  return options.apply_overrides(config, overrides)


def harness_config(config: Any) -> HarnessConfig:
  """The `HarnessConfig` of a loaded config (its ``harness`` attribute)."""
  harness = getattr(config, "harness", config)
  if not isinstance(harness, HarnessConfig):
    raise CbenchError(f"The config ({type(config).__name__}) has no harness "
                      f"recipe.")
  return harness
