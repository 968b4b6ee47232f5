"""The embedded default run behind `make demo` (`cbench.configs.demo`).

Builds the demo's release and the public world into the workdir, then runs
the benchmark grid of the config on CPU (`runner.run_benchmark`). Every
stage is cached in the workdir, so a second `make demo` only prints. The
rows also go to ``<workdir>/results_store.jsonl`` and the leaderboard site
to ``<workdir>/site/index.html``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

from cbench.benchmark import runner
from cbench.leaderboard import site
from cbench.leaderboard import store
from cbench.tracks.geminon import generator as geminon

log = logging.getLogger("cbench")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoConfig:
  """A release to build and the grid to run on it.

  Attributes:
    release_id: the Geminon release id (its seed).
    size: the release size (`release.SIZES`).
    benchmark: the grid; its ``release_dir`` and ``public_world_dir`` are
      set to ``<workdir>/release`` and ``<workdir>/public_world``.
  """
  release_id: str
  size: str
  benchmark: runner.BenchmarkConfig

  @property
  def harness(self):
    return self.benchmark.harness

  def in_workdir(self, workdir: str) -> runner.BenchmarkConfig:
    """The grid with its directories inside `workdir`."""
    return dataclasses.replace(
        self.benchmark, release_dir=os.path.join(workdir, "release"),
        public_world_dir=os.path.join(workdir, "public_world"))


def run_demo(config: DemoConfig, workdir: str) -> dict:
  """Runs (or resumes) the demo; returns timings and the result rows."""
  t0 = time.monotonic()
  bench = config.in_workdir(workdir)
  if not os.path.exists(os.path.join(bench.release_dir, "manifest.json")):
    log.info("building the demo release %s", config.release_id)
    geminon.build_release(
        geminon.make_config("geminon", config.release_id, config.size),
        bench.release_dir, overwrite=os.path.exists(bench.release_dir))
  if not os.path.exists(os.path.join(bench.public_world_dir, "manifest.json")):
    log.info("building the public world")
    geminon.build_public_world(
        bench.public_world_dir,
        overwrite=os.path.exists(bench.public_world_dir))
  store_path = os.path.join(workdir, "results_store.jsonl")
  bench = dataclasses.replace(bench, results_store=store_path)
  rows = runner.run_benchmark(bench, os.path.join(workdir, "benchmark"))
  site_dir = os.path.join(workdir, "site")
  site.build_site(store.read(store_path), site_dir)
  return {"rows": rows, "seconds": time.monotonic() - t0,
          "results_md": os.path.join(workdir, "benchmark", "results.md"),
          "site": os.path.join(site_dir, "index.html")}
