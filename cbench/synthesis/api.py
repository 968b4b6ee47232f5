"""One entry point for every synthesis method: config, checks, dispatch.

    cfg = SynthesisConfig(method="private_prediction", epsilon=10.0,
                          num_docs=200)
    summary = synthesize(release_dir, base_dir, cfg, "synth.jsonl")

Every method reads the release's *train* corpus (the private data), writes
``synth.jsonl`` (``{"id", "text", ...}``) and ``synth.ledger.jsonl`` (the
privacy ledger, written ahead of every released document or checkpoint), and
returns a JSON-able summary with at least ``method, epsilon, delta,
num_docs``. Nothing data-dependent is released: a method's ex-post
diagnostics (cluster_median's ex-post ε) stay in a curator-only file beside
the output (``synth.curator_only.jsonl``) that the benchmark never
publishes.

`check_request` validates a request (method, ε, δ, document count) before any
compute, and `check_feasible` adds the method's own feasibility check (an ε
its parameter rule cannot reach), so a benchmark grid fails fast on an
impossible cell.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from typing import Any, Callable

from cbench import _validate
from cbench._validate import CbenchError
from cbench.synthesis import common

# method name -> "module:function" implementing
#   run(release_dir, base_dir, config, out_path) -> summary dict
_METHODS = {
    "public_only": "cbench.synthesis.private_prediction:run",
    "private_prediction": "cbench.synthesis.private_prediction:run",
    "invisible_ink": "cbench.synthesis.private_prediction:run",
    "cluster_median": "cbench.synthesis.private_prediction:run",
    "dp_finetune": "cbench.synthesis.dp_finetune:run",
    "private_evolution": "cbench.synthesis.private_evolution:run",
}
METHODS = tuple(_METHODS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SynthesisConfig:
  """A synthesis request.

  Attributes:
    method: one of `METHODS`.
    epsilon: target ε (> 0, or inf for the non-private run of the same code
      path; `public_only` has ε = 0 whatever is asked).
    delta: target δ; None = the method's default, below 1/n for n private
      records (the summary prints the value used).
    num_docs: synthetic documents to write.
    seed: randomness of the run (sampling, batching); not a secret here.
    options: method-specific overrides as ``((name, value), ...)``.
  """
  method: str
  epsilon: float
  delta: float | None = None
  num_docs: int = 100
  seed: int = 0
  options: tuple[tuple[str, Any], ...] = ()

  def option(self, name: str, default: Any) -> Any:
    return dict(self.options).get(name, default)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["epsilon"] = "inf" if math.isinf(self.epsilon) else self.epsilon
    return d


def default_delta(num_records: int) -> float:
  """δ = 1 / (10 n): below 1/n for n private records."""
  return 1.0 / (10.0 * max(num_records, 1))


def check_epsilon(epsilon: float) -> None:
  """The one rule for a target ε (requests and benchmark grids alike):
  a number > 0, or inf for the non-private run of the same code path."""
  _validate.check(
      isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool)
      and not math.isnan(epsilon) and epsilon > 0,
      f"Expected epsilon={epsilon} > 0 (use inf for the non-private "
      f"baseline).")


def check_request(config: SynthesisConfig) -> None:
  """Raises CbenchError naming the problem; no compute, no IO."""
  _validate.one_of("method", config.method, METHODS)
  check_epsilon(config.epsilon)
  if config.delta is not None:
    _validate.check(0 < config.delta < 1,
                    f"Expected 0 < delta={config.delta} < 1.")
  _validate.check(isinstance(config.num_docs, int) and config.num_docs > 0,
                  f"Expected num_docs={config.num_docs} > 0.")


def check_feasible(config: SynthesisConfig, num_records: int) -> None:
  """Raises CbenchError if `config` cannot run on `num_records` records.

  Validates the request, then calls the method module's module-level
  ``check_feasible(config, num_records)`` if it has one (e.g. an ε the
  method's parameter rule cannot reach). No model, no IO, no compute
  beyond the accounting.
  """
  check_request(config)
  module = _METHODS[config.method].split(":")[0]
  try:
    mod = importlib.import_module(module)
  except ModuleNotFoundError as e:
    raise CbenchError(f"method={config.method} is not available ({e}).")
  fn = getattr(mod, "check_feasible", None)
  if fn is not None:
    fn(config, num_records)


def method_module(method: str):
  """The module implementing `method` (its `Options`, `plan`, `run`)."""
  _validate.one_of("method", method, METHODS)
  return importlib.import_module(_METHODS[method].split(":")[0])


def describe_methods() -> dict[str, list[tuple[str, Any]]]:
  """method -> [(option, default), ...] for every registered method."""
  out = {}
  for m in METHODS:
    opts = getattr(method_module(m), "Options")
    out[m] = [(f.name, f.default) for f in dataclasses.fields(opts)]
  return out


def _resolve(method: str) -> Callable[..., dict]:
  module, fn = _METHODS[method].split(":")
  return getattr(importlib.import_module(module), fn)


def synthesize(release_dir: str, base_dir: str, config: SynthesisConfig,
               out_path: str) -> dict:
  """Runs `config.method`; see the module docstring for the outputs."""
  check_request(config)
  _validate.check(out_path.endswith(".jsonl"),
                  f"Expected --out={out_path} to end in .jsonl.")
  if not os.path.isdir(release_dir):
    raise CbenchError(f"Release directory not found: {release_dir}")
  return _resolve(config.method)(release_dir, base_dir, config, out_path)


ledger_path = common.ledger_path
