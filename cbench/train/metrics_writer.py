"""One metrics writer per run: JSONL + TensorBoard from process 0, progress/ETA.

Only process 0 writes files (multi-host runs call this on every process).
Progress lines go through `logging` (binaries route it to stderr).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Mapping

import jax
from tensorboardX import SummaryWriter

from cbench.io import files

log = logging.getLogger("cbench")


class MetricsWriter:
  """Appends `{"step", ...metrics}` rows to `workdir/metrics.jsonl`."""

  def __init__(self, workdir: str, *, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      if tensorboard:
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def forget_after(self, step: int) -> None:
    """Drops rows of steps after `step` (a resumed run replays them), so
    every step appears once; the file is rewritten atomically."""
    if not self.enabled or not os.path.exists(self.path):
      return
    with open(self.path, encoding="utf-8") as f:
      lines = [line for line in f if line.strip()]
    keep = []
    for line in lines:
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        continue  # A line cut by the kill.
      if isinstance(row, dict) and int(row.get("step", 0)) <= step:
        keep.append(line if line.endswith("\n") else line + "\n")
    if len(keep) != len(lines):
      with files.atomic_open(self.path) as f:
        f.writelines(keep)

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step)}
    for k, v in metrics.items():
      v = float(v) if hasattr(v, "__float__") else v
      row[k] = v
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(row, sort_keys=True) + "\n")
    if self._tb is not None:
      for k, v in row.items():
        if k != "step" and isinstance(v, float) and math.isfinite(v):
          self._tb.add_scalar(k, v, int(step))

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


class Progress:
  """Periodic progress lines with rate and ETA."""

  def __init__(self, total: int, *, name: str = "train", every_seconds: float = 10.0,
               start_step: int = 0):
    self.total, self.name, self.every = total, name, every_seconds
    self._t0 = time.monotonic()
    self._s0 = start_step
    self._last = -math.inf

  def update(self, step: int, extra: str = "", force: bool = False) -> None:
    now = time.monotonic()
    if not force and now - self._last < self.every:
      return
    self._last = now
    done = step - self._s0
    rate = done / max(now - self._t0, 1e-9)
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    log.info("%s %d/%d (%.1f%%) %.2f it/s ETA %s %s", self.name, step, self.total,
             100.0 * step / max(self.total, 1), rate, format_seconds(eta), extra)


def format_seconds(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
