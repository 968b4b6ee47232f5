"""ERM's limits on synthetic-contaminated data: simulations beside the paper.

`run_erm_limits` runs `mean_estimation` and `pac` (Amin et al. 2026, arXiv
2601.15468) and writes, into one directory:

* erm_limits.json: the config, every curve, and each paper claim with the
  measurement that tests it;
* erm_limits.md: the tables (mean estimation, ERM's regime change, PAC,
  claims);
* erm_limits_mean.png: MSE against generation for ERM and the
  generation-weighted estimator at each α, and ERM's decay exponent
  against α;
* erm_limits_pac.png: threshold-learning error against examples seen, one
  panel per α.
"""

from __future__ import annotations

import dataclasses
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from cbench._validate import check
from cbench.io import files
from cbench.provenance import mean_estimation
from cbench.provenance import pac

JSON_NAME = "erm_limits.json"
MARKDOWN_NAME = "erm_limits.md"
MEAN_PNG = "erm_limits_mean.png"
PAC_PNG = "erm_limits_pac.png"

PAPER_CLAIMS = {
    "mean_erm_converges": "ERM converges to the true mean.",
    "mean_weighting_wins": "ERM is outperformed by an algorithm with "
                           "non-uniform weights on different generations.",
    "mean_phase_transition": "ERM's variance has a phase transition when "
                             "the contamination α exceeds 1/2.",
    "pac_erm_stalls": "Repeated ERM does not always converge to the true "
                      "concept (non-zero asymptotic error), notably at high "
                      "contamination.",
    "pac_non_erm_learns": "Non-ERM algorithms learn the correct hypothesis "
                          "for any VC class and any amount of contamination.",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ErmLimitsConfig:
  """Both simulations; the defaults take about ten seconds on two cores."""
  mean: mean_estimation.MeanConfig = dataclasses.field(
      default_factory=mean_estimation.MeanConfig)
  pac: pac.PacConfig = dataclasses.field(default_factory=pac.PacConfig)
  seed: int = 0

  def validate(self) -> None:
    check(isinstance(self.seed, int) and self.seed >= 0,
          f"Expected seed={self.seed} to be an integer >= 0.")
    self.mean.validate()
    self.pac.validate()


def _final(curve: dict, key: str) -> float:
  return curve[key][-1]


def claims(mean: dict, pac_res: dict) -> dict:
  """Each paper claim with our measurement and whether it holds here."""
  out = {}
  mc = mean["curves"]
  out["mean_erm_converges"] = {
      "measured": "ERM MSE first -> last generation (exact decay "
                  "exponent > 0 at every α): " + ", ".join(
          f"α={a}: {r['erm']['mc_mse'][0]:.3g} -> "
          f"{_final(r['erm'], 'mc_mse'):.3g}" for a, r in mc.items()),
      # Decreasing beyond MC error, and the exact MSE ~ t^-p with p > 0.
      "holds": all(_final(r["erm"], "mc_mse") + 3 * _final(r["erm"], "mc_sem")
                   < r["erm"]["mc_mse"][0] - 3 * r["erm"]["mc_sem"][0]
                   and r["erm"]["exact_exponent"] > 0 for r in mc.values()),
  }
  ratios = {a: _final(r["erm"], "mc_mse") / _final(r["weighted"], "mc_mse")
            for a, r in mc.items()}
  out["mean_weighting_wins"] = {
      "measured": "ERM / weighted MSE at the last generation: " + ", ".join(
          f"α={a}: {v:.2f}" for a, v in ratios.items()),
      "holds": all(v > 1 for a, v in ratios.items() if float(a) > 0),
  }
  fits = mean["regime"]["fits"]
  out["mean_phase_transition"] = {
      "measured": "ERM decay exponent leaves 1 at α* = " + ", ".join(
          f"{f['alpha_star']:.3f} (T={f['generations']:.0e})" for f in fits)
          + "; exponent ≈ 2(1-α) above it",
      "holds": abs(fits[-1]["alpha_star"] - 0.5) <= 0.05,
  }
  high = [a for a in pac_res["curves"] if float(a) > 0.5]
  stall = {}
  for a in high:
    e = pac_res["curves"][a]["erm"]
    stall[a] = (_final(e, "mean"), _final(e, "sem"),
                pac_res["lower_bound"][a])
  out["pac_erm_stalls"] = {
      "measured": "ERM error at the last round (lower bound): " + ", ".join(
          f"α={a}: {v[0]:.4f} ± {v[1]:.4f} (≥ {v[2]:.4f})"
          for a, v in stall.items()),
      "holds": bool(stall) and all(m - 2 * s > 0 and m + 2 * s >= b
                                   for m, s, b in stall.values()),
  }
  learn = {a: (r["reweighted"]["mean"][0], _final(r["reweighted"], "mean"),
               _final(r["erm"], "mean"))
           for a, r in pac_res["curves"].items()}
  out["pac_non_erm_learns"] = {
      "measured": "reweighted error round 0 -> last (ERM last): " + ", ".join(
          f"α={a}: {v[0]:.4f} -> {v[1]:.4f} ({v[2]:.4f})"
          for a, v in learn.items()),
      "holds": all(v[1] <= 0.1 * v[0] for v in learn.values())
               and all(learn[a][1] < learn[a][2] for a in high),
  }
  for key, value in out.items():
    value["paper"] = PAPER_CLAIMS[key]
  return out


def markdown(result: dict) -> str:
  """The four tables of erm_limits.md."""
  mean, pac_res = result["mean"], result["pac"]
  last = mean["generations"][-1]
  horizon = max(result["config"]["mean"]["regime_generations"])
  lines = [
      f"### Mean estimation: MSE at generation {last} "
      f"(d={result['config']['mean']['dim']}, "
      f"n={result['config']['mean']['samples_per_generation']} per "
      f"generation, {result['config']['mean']['trials']} trials)", "",
      "| α | ERM MSE (MC ± se) | ERM exact | weighted MSE (MC ± se) "
      "| weighted exact | ERM / weighted | ERM exponent (MC; exact at "
      f"T={horizon:.0e}) | theory min(1, 2(1-α)) |",
      "|---|---|---|---|---|---|---|---|"]
  for a, r in mean["curves"].items():
    e, w = r["erm"], r["weighted"]
    lines.append(
        f"| {a} | {_final(e, 'mc_mse'):.4g} ± {_final(e, 'mc_sem'):.2g} "
        f"| {_final(e, 'exact_mse'):.4g} "
        f"| {_final(w, 'mc_mse'):.4g} ± {_final(w, 'mc_sem'):.2g} "
        f"| {_final(w, 'exact_mse'):.4g} "
        f"| {_final(e, 'mc_mse') / _final(w, 'mc_mse'):.2f} "
        f"| {e['mc_exponent']:.2f}; {e['exact_exponent']:.3f} "
        f"| {min(1.0, 2 * (1 - float(a))):.2f} |")
  reg = mean["regime"]
  lines += ["", "### ERM's regime change (exact decay exponent, hinge fit)",
            "", "| horizon T | α* | slope b (theory 2) | exponent at α = "
            + ", ".join(f"{a:g}" for a in reg["alphas"][::2]) + " |",
            "|---|---|---|---|"]
  for f in reg["fits"]:
    lines.append(f"| {f['generations']:.0e} | {f['alpha_star']:.3f} "
                 f"| {f['slope']:.2f} | "
                 + ", ".join(f"{x:.2f}" for x in f["exponents"][::2]) + " |")
  cfg = result["config"]["pac"]
  g = pac_res["generations"]
  marks = sorted({0, len(g) // 10, len(g) - 1})
  lines += [
      "", f"### PAC thresholds: mean error (m={cfg['domain_size']} atoms, "
      f"n={cfg['samples_per_generation']} per round, {cfg['trials']} "
      "trials)", "",
      "| α | learner | " + " | ".join(f"round {k}" for k in marks)
      + " | ERM lower bound |",
      "|---|---|" + "---|" * (len(marks) + 1)]
  for a, row in pac_res["curves"].items():
    for name in pac.LEARNERS:
      c = row[name]
      lines.append(f"| {a} | {name} | " + " | ".join(
          f"{c['mean'][k]:.4f}" for k in marks) + " | "
          + (f"{pac_res['lower_bound'][a]:.4f}" if name == "erm" else "")
          + " |")
  lines += ["", "### Claims", "", "| paper (2601.15468) | measured here "
            "| holds |", "|---|---|---|"]
  for c in result["claims"].values():
    lines.append(f"| {c['paper']} | {c['measured']} "
                 f"| {'yes' if c['holds'] else '**no**'} |")
  return "\n".join(lines) + "\n"


def plot_mean(mean: dict, path: str) -> None:
  """MSE vs generation (log-log) and ERM's exponent vs α."""
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
  k = np.array(mean["generations"]) + 1
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, (a, r) in enumerate(mean["curves"].items()):
    col = colors[i % len(colors)]
    ax.plot(k, r["erm"]["mc_mse"], color=col, label=f"ERM α={a}")
    ax.plot(k, r["weighted"]["mc_mse"], color=col, linestyle="--",
            label=f"weighted α={a}")
    ax.plot(k, r["erm"]["exact_mse"], color="black", linewidth=0.5,
            alpha=0.6)
    ax.plot(k, r["weighted"]["exact_mse"], color="black", linewidth=0.5,
            linestyle="--", alpha=0.6)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("generation k + 1")
  ax.set_ylabel("MSE  E||Y_k - μ||²")
  ax.set_title("ERM (solid) vs generation-weighted (dashed); black: exact")
  ax.legend(fontsize=7, ncol=2)
  ax.grid(alpha=0.3, which="both")
  reg = mean["regime"]
  bx.plot(reg["alphas"], reg["theory"], color="black", linewidth=2,
          alpha=0.3, label="theory min(1, 2(1-α))")
  for f in reg["fits"]:
    bx.plot(reg["alphas"], f["exponents"], marker=".",
            label=f"exact, T={f['generations']:.0e}: α*={f['alpha_star']:.3f}")
  bx.axvline(reg["fits"][-1]["alpha_star"], color="gray", linestyle=":")
  bx.set_xlabel("contamination α")
  bx.set_ylabel("ERM decay exponent p (MSE ~ t^-p)")
  bx.set_title("ERM's regime change")
  bx.legend(fontsize=7)
  bx.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_pac(pac_res: dict, path: str) -> None:
  """Error vs examples seen, one panel per α, with ERM's lower bound."""
  curves = pac_res["curves"]
  fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3.4),
                           sharey=True, squeeze=False)
  x = np.array(pac_res["samples_seen"])
  for ax, (a, row) in zip(axes[0], curves.items()):
    for name, style in zip(pac.LEARNERS, ("-", "--", ":")):
      ax.plot(x, row[name]["mean"], linestyle=style, label=name)
    bound = pac_res["lower_bound"][a]
    if bound > 0:
      ax.axhline(bound, color="red", linewidth=0.8,
                 label="ERM lower bound")
    ax.set_xscale("log")
    ax.set_title(f"α = {a}")
    ax.set_xlabel("examples seen")
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("error P[h(x) ≠ f*(x)]")
  axes[0][-1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run_erm_limits(config: ErmLimitsConfig, out_dir: str) -> dict:
  """Runs both simulations and writes the four outputs into `out_dir`.

  Returns a summary: α* (largest horizon), claims held / total, the final
  ERM-to-weighted MSE ratios, ERM's and the reweighted learner's last PAC
  errors, wall seconds and the output paths.
  """
  config.validate()
  check(bool(out_dir), "Expected an output directory.")
  start = time.time()
  mean_seed, pac_seed = np.random.SeedSequence(config.seed).spawn(2)
  mean = mean_estimation.run(config.mean, np.random.default_rng(mean_seed))
  pac_res = pac.run(config.pac, np.random.default_rng(pac_seed))
  result = {"config": dataclasses.asdict(config), "mean": mean,
            "pac": pac_res, "claims": claims(mean, pac_res),
            "paper": "arXiv 2601.15468"}
  os.makedirs(out_dir, exist_ok=True)
  paths = {name: os.path.join(out_dir, name)
           for name in (JSON_NAME, MARKDOWN_NAME, MEAN_PNG, PAC_PNG)}
  plot_mean(mean, paths[MEAN_PNG])
  plot_pac(pac_res, paths[PAC_PNG])
  result["wall_seconds"] = time.time() - start
  files.write_text(paths[MARKDOWN_NAME], markdown(result))
  files.write_json(paths[JSON_NAME], result)
  held = [c["holds"] for c in result["claims"].values()]
  return {
      "alpha_star": mean["regime"]["fits"][-1]["alpha_star"],
      "claims_held": f"{sum(held)}/{len(held)}",
      "mean_ratio_last": {a: _final(r["erm"], "mc_mse")
                          / _final(r["weighted"], "mc_mse")
                          for a, r in mean["curves"].items()},
      "pac_last_error": {a: {n: _final(r[n], "mean") for n in pac.LEARNERS}
                         for a, r in pac_res["curves"].items()},
      "wall_seconds": result["wall_seconds"],
      "paths": paths,
  }
