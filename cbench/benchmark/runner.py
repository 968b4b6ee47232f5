"""The benchmark runner: method × ε grid -> synthesize -> fine-tune -> score.

    run_benchmark(BenchmarkConfig(harness=..., release_dir=...,
                                  methods=(...), epsilons=(1, 10, inf)),
                  workdir)

The standard configs (`cbench.configs`: micro, demo, tiny, accelerator)
give the harness recipe and a grid; binaries fill in the directories.

Workdir layout::

  W/public_world/, W/base/         built once (skipped when given)
  W/cells/<cell>/cell.json         the cell's request and key (sha256)
  W/cells/<cell>/synth.jsonl       synthetic corpus (+ synth.ledger.jsonl)
  W/cells/<cell>/model/            the standard fine-tune on it
  W/cells/<cell>/scores.json       QA scores
  W/cells/<cell>/row.json          the result row; written last = cell done
  W/results.jsonl, W/results.md, W/accuracy_vs_epsilon.png, W/report.html

A cell is reused when its ``row.json`` carries the same key; a changed
config changes the key of exactly the cells it touches, which are then
recomputed from scratch. An interrupted run resumes at the first unfinished
cell (inside it, synthesis and fine-tuning resume from their own ledgers and
checkpoints). Everything a request can get wrong (unknown method, ε a method
cannot reach, a synthetic file without "text") is checked before any compute.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from typing import Any, Mapping, Sequence

import dp_accounting
import jax

import cbench
from cbench import _validate
from cbench._validate import CbenchError
from cbench.audit import exposure
from cbench.benchmark import report
from cbench.corpus import release as release_lib
from cbench.harness import finetune
from cbench.harness import recipes
from cbench.harness import score
from cbench.io import files
from cbench.leaderboard import store
from cbench.models import model_store
from cbench.privacy import ledger as ledger_lib
from cbench.synthesis import api as synthesis_api
from cbench.tracks import registry as track_registry

log = logging.getLogger("cbench")
SCORE_SPLITS = ("public_test", "sensitive_test")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BenchmarkConfig:
  """A benchmark run.

  Attributes:
    release_dir: the release to evaluate on (its train corpus is private).
    methods: synthesis methods (see `cbench.synthesis.api.METHODS`).
    epsilons: target ε grid (inf = the non-private run of each method).
      `public_only` runs once at ε = 0 whatever the grid.
    num_docs: synthetic documents per cell.
    delta: target δ (None: each method's default, below 1/n).
    harness: the harness recipe (`cbench.harness.recipes.HarnessConfig`;
      the standard ones are `cbench.configs`).
    base_dir: an existing base model (default: pretrained into W/base).
    public_world_dir: an existing public world (default: built into W).
    synthetic: a researcher's own synthetic JSONL to evaluate instead of
      (or besides) the grid.
    ledger: its privacy ledger; without one the row says "ε not verified".
    reference_rows: include the base model and the real-data fine-tune.
    method_options: per-method overrides, ``((method, ((k, v), ...)), ...)``:
      the method's options, and ``num_docs`` (that method's documents per
      cell instead of `num_docs`).
    method_epsilons: per-method ε grids that replace `epsilons` for that
      method, ``((method, (eps, ...)), ...)`` (e.g. the non-private run of
      one method only: ``(("dp_finetune", (10.0, inf)),)``).
    seed: synthesis randomness.
    results_store: a results store (`leaderboard.store`, JSONL) that the
      run's rows are appended to (None: none).
    audit: canaries for an exposure audit of every synthetic cell
      (`audit.exposure`; None: no audit). Its table sits beside the
      accuracy rows in the report.
  """
  harness: recipes.HarnessConfig
  release_dir: str = ""
  methods: tuple[str, ...] = ()
  epsilons: tuple[float, ...] = ()
  num_docs: int = 200
  delta: float | None = None
  base_dir: str | None = None
  public_world_dir: str | None = None
  synthetic: str | None = None
  ledger: str | None = None
  reference_rows: bool = True
  method_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
  method_epsilons: tuple[tuple[str, tuple[float, ...]], ...] = ()
  seed: int = 0
  audit: exposure.ExposureConfig | None = None
  results_store: str | None = None

  def grid(self, method: str) -> tuple[float, ...]:
    """The ε values `method` runs at (`public_only`: once, at ε = 0)."""
    if method == "public_only":
      return (0.0,)
    return tuple(dict(self.method_epsilons).get(method, self.epsilons))


@dataclasses.dataclass(frozen=True)
class Cell:
  name: str
  method: str
  epsilon: float | None
  request: dict  # Everything the cell's result depends on (hashed).

  @property
  def key(self) -> str:
    blob = json.dumps(self.request, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _eps_name(eps: float) -> str:
  return "inf" if math.isinf(eps) else f"{eps:g}"


def synthesis_config(config: BenchmarkConfig, method: str, eps: float
                      ) -> synthesis_api.SynthesisConfig:
  """The synthesis request of cell (`method`, grid value `eps`).

  `public_only`'s grid value 0 is requested as ε = inf: the method spends
  no privacy budget whatever it is asked (see `SynthesisConfig`).
  """
  if method == "public_only":
    eps = math.inf
  options = dict(dict(config.method_options).get(method, ()))
  num_docs = options.pop("num_docs", config.num_docs)
  return synthesis_api.SynthesisConfig(
      method=method, epsilon=eps, delta=config.delta,
      num_docs=num_docs, seed=config.seed, options=tuple(options.items()))


def plan_cells(config: BenchmarkConfig, release: release_lib.Release,
               base_key: str) -> list[Cell]:
  """The cells of the run, in order (reference rows first)."""
  recipe = config.harness
  common = {"release_sha256": release.manifest["files"], "base": base_key,
            "finetune": recipe.finetune_recipe(base_key).to_dict()}
  cells = []
  if config.reference_rows:
    cells.append(Cell("base", "base", None, {**common, "kind": "base"}))
    cells.append(Cell("real", "real", math.inf, {**common, "kind": "real"}))
  for method in config.methods:
    for eps in config.grid(method):
      syn = synthesis_config(config, method, eps)
      cells.append(Cell(f"{method}-eps{_eps_name(eps)}", method, eps,
                        {**common, "kind": "synthetic", "synthesis": syn.to_dict()}))
  if config.synthetic:
    cells.append(Cell("own", "own", None, {
        **common, "kind": "own", "synthetic_sha256": files.sha256_file(config.synthetic),
        "ledger_sha256": files.sha256_file(config.ledger) if config.ledger else None}))
  return cells


def validate(config: BenchmarkConfig) -> release_lib.Release:
  """Every check that needs no compute; raises CbenchError naming the problem."""
  for m in config.methods:
    _validate.one_of("method", m, synthesis_api.METHODS)
  # Every grid value obeys the one ε rule, also where a method ignores it
  # (public_only runs once at ε = 0 whatever the grid says).
  for eps in (*config.epsilons,
              *(e for _, grid in config.method_epsilons for e in grid)):
    synthesis_api.check_epsilon(eps)
  for m, _ in config.method_epsilons:
    _validate.check(m in config.methods,
                    f"method_epsilons names {m!r}, which is not in --methods.")
  for m in config.methods:
    _validate.check(len(config.grid(m)) > 0,
                    f"Expected at least one --epsilons value for method {m}.")
  _validate.check(bool(config.release_dir), "--release is required.")
  if not os.path.isdir(config.release_dir):
    raise CbenchError(f"--release directory not found: {config.release_dir}")
  release = release_lib.load_release(config.release_dir)
  num_records = release.manifest["documents"]["by_split"]["train"]
  for m in config.methods:
    for eps in config.grid(m):
      syn = synthesis_config(config, m, eps)
      synthesis_api.check_request(syn)
      synthesis_api.check_feasible(syn, num_records)
  if config.synthetic:
    n = sum(1 for _ in files.iter_jsonl(config.synthetic, required=("text",)))
    _validate.check(n > 0, f"--synthetic={config.synthetic} has no records.")
  if config.ledger:
    _validate.check(config.synthetic is not None, "--ledger needs --synthetic.")
    _validate.check(os.path.isfile(config.ledger),
                    f"--ledger={config.ledger} is not a file.")
  _validate.check(config.methods or config.synthetic or config.reference_rows,
                  "Nothing to run: give --methods and/or --synthetic.")
  return release


def _versions() -> dict:
  return {"jax": jax.__version__, "cbench": getattr(cbench, "__version__", "0"),
          "dp_accounting": getattr(dp_accounting, "__version__", "?")}


def _row_from_scores(cell: Cell, scores: dict, base_row: dict | None, extra: dict) -> dict:
  pub = scores["splits"]["public_test"]
  sens = scores["splits"]["sensitive_test"]
  row = {"method": cell.method,
         "epsilon": cell.epsilon if cell.epsilon is None or not math.isinf(cell.epsilon) else "inf",
         "public_test_exact": pub["exact"], "public_test_fuzzy": pub["fuzzy"],
         "sensitive_test_exact": sens["exact"], "sensitive_test_fuzzy": sens["fuzzy"],
         "capability_gain": None, **extra}
  if base_row is not None:
    row["capability_gain"] = pub["exact"]["mean"] - base_row["public_test_exact"]["mean"]
  return row


def _run_cell(cell: Cell, config: BenchmarkConfig, release: release_lib.Release,
              base_dir: str, cell_dir: str, base_row: dict | None) -> dict:
  t0 = time.monotonic()
  recipe = config.harness
  extra: dict[str, Any] = {"delta": None, "num_docs": None,
                           "epsilon_verified": None}
  if cell.method == "base":
    model_dir = base_dir
  else:
    if cell.method == "real":
      corpus = release.corpus_path("train")
      extra["num_docs"] = release.manifest["documents"]["by_split"]["train"]
      extra["epsilon_verified"] = None
    elif cell.method == "own":
      corpus = config.synthetic
      extra["num_docs"] = sum(1 for _ in files.iter_jsonl(corpus, required=("text",)))
      extra.update(_own_ledger(config.ledger))
    else:
      corpus = os.path.join(cell_dir, "synth.jsonl")
      syn = synthesis_config(config, cell.method, cell.epsilon)
      summary = synthesis_api.synthesize(release.root, base_dir, syn, corpus)
      extra.update({"delta": summary.get("delta"),
                    "num_docs": summary.get("num_docs"),
                    "epsilon_verified": True,
                    "achieved_epsilon": summary.get("epsilon"),
                    "synthesis": {k: v for k, v in summary.items()
                                  if isinstance(v, (int, float, str, bool)) or v is None}})
    model_dir = os.path.join(cell_dir, "model")
    finetune.finetune(base_dir, corpus, model_dir,
                      recipe.finetune_recipe(base_dir))
  scores = score.score_qa(release.root, model_dir, SCORE_SPLITS,
                          os.path.join(cell_dir, "scores.json"))
  row = _row_from_scores(cell, scores, base_row, extra)
  row.update({"cell": cell.name, "key": cell.key,
              "wall_seconds": time.monotonic() - t0,
              "release_id": release.manifest["release_id"],
              "release_sha256": files.sha256_file(os.path.join(release.root, "manifest.json")),
              "recipe": config.harness.name, "versions": _versions()})
  return row


def _with_audit(row: dict, cell: Cell, config: BenchmarkConfig,
                release: release_lib.Release, base_dir: str,
                cell_dir: str) -> dict:
  """`row` plus its cell's exposure audit (run, or reused when finished)."""
  syn = synthesis_config(config, cell.method, cell.epsilon)
  log.info("%s: exposure audit", cell.name)
  summary = exposure.run_exposure_audit(
      release.root, base_dir, syn, config.harness.finetune_recipe(base_dir),
      config.audit, os.path.join(cell_dir, "audit"))
  keep = ("epsilon", "delta", "candidates", "max_exposure_bits",
          "chance_exposure_bits", "excluded_mean_exposure",
          "excluded_verbatim", "by_repeat", "membership")
  return {**row, "audit": {k: summary.get(k) for k in keep}}


def _own_ledger(path: str | None) -> dict:
  if not path:
    return {"epsilon_verified": False, "epsilon": None, "delta": None}
  try:
    info = ledger_lib.verify_file(path)
  except CbenchError as e:
    log.warning("ledger %s does not verify: %s", path, e)
    return {"epsilon_verified": False, "ledger_error": str(e)}
  return {"epsilon_verified": True, "verified_epsilon": info.get("epsilon"),
          "delta": info.get("delta")}


def ensure_base(config: BenchmarkConfig, release: release_lib.Release,
                 workdir: str) -> str:
  """The base model: --base, else the recipe's pretrained model, else the
  one the release's track builds (Geminon: pretrained on the public world
  into W/base)."""
  base = config.base_dir or config.harness.base_model
  if base and model_store.is_pretrained(base):
    return base
  if base:
    model_store.load_config(base)
    if not model_store.is_done(base):
      raise CbenchError(f"--base={base} is not a finished model directory.")
    finetune.check_base_recipe(config.harness, base)
    return base
  return track_registry.get(release.track).build_base(
      config.harness, workdir, config.public_world_dir)


def run_benchmark(config: BenchmarkConfig, workdir: str, *,
                  stop_after_cells: int | None = None) -> list[dict]:
  """Runs (or resumes) the grid; writes results files; returns the rows.

  Args:
    config: what to run.
    workdir: where everything goes.
    stop_after_cells: compute at most this many cells, then stop (tests).
  """
  release = validate(config)
  os.makedirs(workdir, exist_ok=True)
  base_dir = ensure_base(config, release, workdir)
  base_key = _base_key(base_dir)
  cells = plan_cells(config, release, base_key)
  rows: list[dict] = []
  base_row = None
  computed = 0
  for i, cell in enumerate(cells):
    cell_dir = os.path.join(workdir, "cells", cell.name)
    row_path = os.path.join(cell_dir, "row.json")
    row = files.read_json(row_path) if os.path.exists(row_path) else None
    if row is not None and row.get("key") == cell.key:
      log.info("[%d/%d] %s: cached", i + 1, len(cells), cell.name)
    else:
      if stop_after_cells is not None and computed >= stop_after_cells:
        break
      if row is not None or (os.path.exists(cell_dir) and _stale(cell_dir, cell)):
        log.info("[%d/%d] %s: config changed, recomputing", i + 1, len(cells), cell.name)
        shutil.rmtree(cell_dir)
      os.makedirs(cell_dir, exist_ok=True)
      files.write_json(os.path.join(cell_dir, "cell.json"),
                       {"key": cell.key, "request": cell.request})
      log.info("[%d/%d] %s: running", i + 1, len(cells), cell.name)
      row = _run_cell(cell, config, release, base_dir, cell_dir, base_row)
      files.write_json(row_path, row)
      computed += 1
      log.info("[%d/%d] %s: public EM %.3f, sensitive EM %.3f (%.0fs)", i + 1,
               len(cells), cell.name, row["public_test_exact"]["mean"],
               row["sensitive_test_exact"]["mean"], row["wall_seconds"])
    if config.audit is not None and cell.request.get("kind") == "synthetic":
      row = _with_audit(row, cell, config, release, base_dir, cell_dir)
      files.write_json(row_path, row)
    if cell.method == "base":
      base_row = row
    rows.append(row)
  write_outputs(rows, workdir, release)
  if config.results_store:
    store.append(config.results_store, store_records(rows, release,
                                                     config.seed))
  return rows


def epsilon_status(row: Mapping) -> str:
  """The store's ε status of a runner row."""
  if row["method"] in ("base", "real"):
    return "none"
  return {True: "verified", False: "unverified"}.get(
      row.get("epsilon_verified"), "unverified")


def store_records(rows: Sequence[Mapping], release: release_lib.Release,
                  seed: int, *, source: str = "benchmark",
                  status: str | None = None, **extra) -> list[dict]:
  """Results-store records of runner rows (`leaderboard.store`); `status`
  replaces each row's own ε status, `extra` goes to `make_record`."""
  sha = files.sha256_file(os.path.join(release.root, "manifest.json"))
  return [store.make_record(
      r, track=release.track, release_id=release.manifest["release_id"],
      release_sha256=sha, release_root=release.root, seed=seed,
      source=source, epsilon_status=status or epsilon_status(r), **extra)
          for r in rows]


def _base_key(base_dir: str) -> str:
  """What identifies the base model in the cell keys: the sha256 of its
  DONE.json, or the pretrained model's name."""
  if model_store.is_pretrained(base_dir):
    return base_dir
  return hashlib.sha256(json.dumps(
      files.read_json(os.path.join(base_dir, model_store.DONE)),
      sort_keys=True).encode()).hexdigest()


def _stale(cell_dir: str, cell: Cell) -> bool:
  path = os.path.join(cell_dir, "cell.json")
  return not os.path.exists(path) or files.read_json(path).get("key") != cell.key


def write_outputs(rows: Sequence[dict], workdir: str, release: release_lib.Release) -> None:
  """results.jsonl, results.md, accuracy_vs_epsilon.png, report.html."""
  files.write_jsonl(os.path.join(workdir, "results.jsonl"), rows)
  files.write_text(os.path.join(workdir, "results.md"),
                   report.markdown_table(rows) + report.audit_table(rows))
  png = os.path.join(workdir, "accuracy_vs_epsilon.png")
  report.plot_accuracy(rows, png)
  datasheet_path = os.path.join(release.root, "README.md")
  datasheet = open(datasheet_path, encoding="utf-8").read() if os.path.exists(datasheet_path) else ""
  files.write_text(os.path.join(workdir, "report.html"), report.html_report(
      rows, png, datasheet, f"cbench results: release {release.manifest['release_id']}"))
