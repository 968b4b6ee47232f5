"""Table of cyclic DP-SGD epsilon: all iterates vs last iterate.

`write_report(out_dir, ...)` accounts one cyclic plan (N, b) over a grid of
epochs and noise multipliers and writes, into `out_dir`:
  cyclic_accounting.json  rows + the plan, the assumptions, the theorem and
                          the wall time;
  cyclic_accounting.md    the table, with what is conditional on what;
  cyclic_accounting.png   epsilon vs epochs, one colour per sigma (solid:
                          all iterates, dashed: last iterate).
The all-iterates epsilon (PLD, `cyclic.CyclicConfig.epsilon`) holds
unconditionally; the last-iterate epsilon (`last_iterate`) only under the
stated assumptions.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from cbench._validate import check
from cbench.io import files
from cbench.privacy import cyclic
from cbench.privacy import last_iterate

STEM = "cyclic_accounting"


def accounting_rows(*, num_examples: int, batch_size: int,
                    epochs: Sequence[int], noise_multipliers: Sequence[float],
                    delta: float, relation: str,
                    assumptions: last_iterate.LastIterateAssumptions
                    ) -> list[dict]:
  """One row per (sigma, epochs): epsilon all iterates vs last iterate."""
  check(len(epochs) > 0 and len(noise_multipliers) > 0,
        "Expected at least one epoch count and one noise multiplier.")
  rows = []
  for sigma in noise_multipliers:
    for e in epochs:
      cfg = cyclic.CyclicConfig(num_examples=num_examples,
                                batch_size=batch_size, epochs=int(e),
                                noise_multiplier=float(sigma),
                                relation=relation)
      bound = last_iterate.last_iterate_bound(cfg, assumptions, delta)
      eps_all = cfg.epsilon(delta)
      eps_all_rdp = cfg.epsilon(delta, accountant="rdp")
      rows.append({
          "noise_multiplier": float(sigma), "epochs": int(e),
          "steps": cfg.num_steps, "steps_per_epoch": cfg.steps_per_epoch,
          "epsilon_all_iterates": eps_all,
          "epsilon_all_iterates_rdp": eps_all_rdp,
          "epsilon_last_iterate": bound.epsilon,
          "epsilon_best": min(eps_all, bound.epsilon),
          "last_iterate_cost": bound.cost,
          "participations": cyclic.participations(cfg.steps_per_epoch,
                                                  cfg.num_steps),
      })
  return rows


def markdown(rows: Sequence[dict], plan: dict, assumptions: dict,
             delta: float) -> str:
  head = ("| σ | epochs | steps | ε all iterates (PLD) | ε all iterates "
          "(RDP) | ε last iterate (RDP, conditional) | last / all (PLD) | "
          "ε best (conditional) |")
  lines = [
      f"Cyclic DP-SGD, N = {plan['num_examples']}, b = "
      f"{plan['batch_size']} (K = {rows[0]['steps_per_epoch']} steps per "
      f"epoch), relation = {plan['relation']}, δ = {delta:g}.", "",
      head, "|" + "---|" * (head.count("|") - 1)]
  for r in rows:
    ratio = r["epsilon_last_iterate"] / r["epsilon_all_iterates"]
    lines.append(
        f"| {r['noise_multiplier']:g} | {r['epochs']} | {r['steps']} | "
        f"{r['epsilon_all_iterates']:.3f} | "
        f"{r['epsilon_all_iterates_rdp']:.3f} | "
        f"{r['epsilon_last_iterate']:.3f} | {ratio:.2f} | "
        f"{r['epsilon_best']:.3f} |")
  conds = ", ".join(f"{k}={v}" for k, v in assumptions.items())
  lines += [
      "", "The last-iterate column holds ONLY under: " + conds + " (convex, "
      "β-smooth per-step objectives, η ≤ 2/β, per-example gradient norms "
      "≤ L ≤ C so clipping never acts, constant step size, no momentum, "
      "data-independent start, only the final model released).",
      "ε best = min(all iterates PLD, last iterate): both are valid upper "
      "bounds when the assumptions hold.",
      "Theorem: " + last_iterate.THEOREM, ""]
  return "\n".join(lines)


def plot(rows: Sequence[dict], path: str) -> None:
  fig, ax = plt.subplots(figsize=(6, 4))
  sigmas = sorted({r["noise_multiplier"] for r in rows})
  for i, s in enumerate(sigmas):
    rs = sorted((r for r in rows if r["noise_multiplier"] == s),
                key=lambda r: r["epochs"])
    x = [r["epochs"] for r in rs]
    color = f"C{i % 10}"
    ax.plot(x, [r["epsilon_all_iterates"] for r in rs], "-o", color=color,
            label=f"σ={s:g} all iterates")
    ax.plot(x, [r["epsilon_last_iterate"] for r in rs], "--s", color=color,
            label=f"σ={s:g} last iterate (conditional)")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("epochs")
  ax.set_ylabel("ε")
  ax.legend(fontsize=6)
  ax.grid(True, which="both", alpha=0.3)
  fig.tight_layout()
  with files.atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=120)
  plt.close(fig)


def write_report(out_dir: str, *, num_examples: int, batch_size: int,
                 epochs: Sequence[int], noise_multipliers: Sequence[float],
                 delta: float, relation: str,
                 assumptions: last_iterate.LastIterateAssumptions) -> dict:
  """Accounts the grid and writes JSON, markdown and PNG into `out_dir`.

  Returns the JSON summary (rows, plan, assumptions, theorem, paths, wall
  seconds).
  """
  start = time.monotonic()
  rows = accounting_rows(num_examples=num_examples, batch_size=batch_size,
                         epochs=epochs, noise_multipliers=noise_multipliers,
                         delta=delta, relation=relation,
                         assumptions=assumptions)
  plan = {"num_examples": num_examples, "batch_size": batch_size,
          "relation": relation, "sampler": "cyclic"}
  os.makedirs(out_dir, exist_ok=True)
  paths = {ext: os.path.join(out_dir, f"{STEM}.{ext}")
           for ext in ("json", "md", "png")}
  files.write_text(paths["md"], markdown(rows, plan,
                                         assumptions.describe(), delta))
  plot(rows, paths["png"])
  summary = {"rows": rows, "plan": plan, "delta": delta,
             "conditional_on": assumptions.describe(),
             "theorem": last_iterate.THEOREM, "paths": paths,
             "wall_seconds": time.monotonic() - start}
  files.write_json(paths["json"], summary)
  return summary
