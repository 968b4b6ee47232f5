"""Curation rounds beside "Escaping Collapse" (Amin et al. 2025).

`run_curation` runs `rounds.run_rounds` and writes, into one directory:

* curation_rounds.json: the config, every round record of every arm, and
  each paper claim with the measurement that tests it (and, when an arm
  runs both with and without ``+weighted``, provenance weighting against
  provenance-blind training);
* curation_rounds.md: the table (accuracy, synthetic corpus coverage and
  wrong-claim share, labeler counts per round and arm) and the claims;
* curation_rounds.png: public test accuracy against round per arm, and
  the wrong-claim share of each arm's synthetic corpus.

The claims are read at the last round K with the round-0 model as the
starting point; with a few dozen test questions, one question moves the
accuracy by several points, so the table prints the 95% bootstrap
intervals beside the means and a claim "holds" on the point estimates only.
"""

from __future__ import annotations

import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from cbench._validate import check
from cbench.corpus import release as release_lib
from cbench.curation import policies
from cbench.curation import rounds
from cbench.io import files

JSON_NAME = "curation_rounds.json"
MARKDOWN_NAME = "curation_rounds.md"
PNG_NAME = "curation_rounds.png"
PAPER = "arXiv 2502.08924"
PAPER_CLAIMS = {
    "uncurated_stalls": "Without verification the self-consuming loop "
                        "degrades or plateaus.",
    "curated_improves": "With a weak, noisy verifier the loop keeps "
                        "improving although almost all data is synthetic.",
    "hardest_first_beats_random": "Spending the verification budget on the "
                                  "hardest prompts beats random "
                                  "verification at equal budget.",
    "weighting_helps": "Weighting generations non-uniformly beats "
                       "provenance-blind training (ERM) on contaminated "
                       "data (Amin et al. 2026, arXiv 2601.15468).",
}


def _pct(x) -> str:
  return "–" if x is None else f"{100 * x:.1f}"


def _curve(result: dict, arm: str) -> list[float]:
  return [result["round0"]["accuracy"]] + [
      r["accuracy"] for r in result["arms"][arm]]


def claims(result: dict, num_questions: int) -> dict:
  """Each paper claim (`PAPER_CLAIMS`) measured on this run; a claim whose
  arms were not run is left out."""
  arms = result["arms"]
  acc0 = result["round0"]["accuracy"]
  step = 1.0 / max(num_questions, 1)
  out = {}
  if "none" in arms:
    c = _curve(result, "none")
    out["uncurated_stalls"] = {
        "measured": "none: " + " -> ".join(_pct(x) for x in c)
                    + f" % (one question = {100 * step:.1f} points)",
        "holds": c[-1] - acc0 <= step + 1e-9,
    }
  curated = [a for a in ("random", "hardest_first") if a in arms]
  if curated:
    out["curated_improves"] = {
        "measured": "; ".join(f"{a}: " + " -> ".join(
            _pct(x) for x in _curve(result, a)) + " %" for a in curated),
        "holds": all(_curve(result, a)[-1] > acc0 for a in curated),
    }
  if "random" in arms and "hardest_first" in arms:
    h, r = _curve(result, "hardest_first")[1:], _curve(result, "random")[1:]
    out["hardest_first_beats_random"] = {
        "measured": f"round K: {_pct(h[-1])} vs {_pct(r[-1])} %; mean over "
                    f"rounds 1..K: {_pct(sum(h) / len(h))} vs "
                    f"{_pct(sum(r) / len(r))} %",
        "holds": h[-1] > r[-1],
    }
  pairs = [(a, a[:-len(policies.WEIGHTED_SUFFIX)]) for a in arms
           if policies.split_name(a)[1]
           and a[:-len(policies.WEIGHTED_SUFFIX)] in arms]
  if pairs:
    out["weighting_helps"] = {
        "measured": "; ".join(
            f"{w} vs {u}: " + " -> ".join(_pct(x) for x in _curve(result, w))
            + " vs " + " -> ".join(_pct(x) for x in _curve(result, u)) + " %"
            for w, u in pairs),
        "holds": all(_curve(result, w)[-1] > _curve(result, u)[-1]
                     for w, u in pairs),
    }
  for key, value in out.items():
    value["paper"] = PAPER_CLAIMS[key]
  return out


def _stat(rec: dict, part: str, key: str):
  stats = rec.get(part)
  return None if stats is None else stats.get(key)


def markdown(result: dict) -> str:
  """The round table, the weighting comparison (if run) and the claims."""
  cfg = result["config"]
  lines = [
      f"### Curation rounds ({result['release']}, {len(result['entities'])} "
      f"public creatures; real slice {cfg['real_docs']} documents; "
      f"{cfg['docs_per_round']} generated and {cfg['budget']} labels per "
      f"round; γ = {cfg['gamma']})", "",
      "| arm | round | public test EM % [95% CI] | synthetic docs "
      "| synthetic fact coverage % | synthetic wrong claims % "
      "| generated wrong claims % | labeled | accepted | kept correct % |",
      "|---|---|---|---|---|---|---|---|---|---|"]

  def row(arm, rec):
    lines.append(
        f"| {arm} | {rec['round']} | {_pct(rec['accuracy'])} "
        f"[{_pct(rec['accuracy_low'])}, {_pct(rec['accuracy_high'])}] "
        f"| {rec['synthetic_docs']} "
        f"| {_pct(_stat(rec, 'synthetic_stats', 'fact_coverage'))} "
        f"| {_pct(_stat(rec, 'synthetic_stats', 'wrong_share'))} "
        f"| {_pct(_stat(rec, 'generated_stats', 'wrong_share'))} "
        f"| {rec['labeled']} | {rec['accepted']} "
        f"| {_pct(rec['kept_precision'])} |")

  row("(all) real slice only", result["round0"])
  for arm, recs in result["arms"].items():
    for rec in recs:
      row(arm, rec)
  real = result["round0"]["real_stats"]
  lines += ["", f"Real slice: fact coverage {_pct(real['fact_coverage'])} "
            f"%, wrong claims {_pct(real['wrong_share'])} %. Rounds took "
            f"{result['compute_seconds'] / 60:.1f} min (this call "
            f"{result['wall_seconds'] / 60:.1f} min; base model and release "
            f"not included).", "",
            f"### Claims ({PAPER})", "",
            "| paper | measured here | holds (point estimates) |",
            "|---|---|---|"]
  for c in result["claims"].values():
    lines.append(f"| {c['paper']} | {c['measured']} "
                 f"| {'yes' if c['holds'] else '**no**'} |")
  return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> None:
  """Accuracy vs round per arm; wrong-claim share of the synthetic corpus."""
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
  for arm, recs in result["arms"].items():
    k = [0] + [r["round"] for r in recs]
    style = "--" if policies.split_name(arm)[1] else "-"
    ax.plot(k, [100 * x for x in _curve(result, arm)], marker="o",
            linestyle=style, label=arm)
    bx.plot([r["round"] for r in recs],
            [100 * (_stat(r, "synthetic_stats", "wrong_share") or 0.0)
             for r in recs], marker="o", linestyle=style, label=arm)
  last = max((len(r) for r in result["arms"].values()), default=0)
  ax.set_xticks(range(last + 1))
  bx.set_xticks(range(1, last + 1))
  ax.set_xlabel("round k (0: real slice only)")
  ax.set_ylabel("public test exact match (%)")
  ax.set_title("QA accuracy per round")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  bx.set_xlabel("round k")
  bx.set_ylabel("wrong claims in the synthetic corpus (%)")
  bx.set_title("What the loop feeds itself")
  bx.grid(alpha=0.3)
  bx.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run_curation(config: rounds.CurationConfig, out_dir: str) -> dict:
  """Runs (or resumes) the loop in `out_dir` and writes its three outputs.

  Returns a summary: accuracy per arm and round (round 0 first), the
  claims held, wall seconds and the output paths.
  """
  config.validate()
  check(bool(out_dir), "Expected an output directory.")
  start = time.time()
  result = rounds.run_rounds(config, out_dir)
  for recs in (result["arms"].values()):
    for r in recs:
      r.pop("model_dir", None)
  result["round0"].pop("model_dir", None)
  cfg = rounds.config_dict(config)
  n_test = len(release_lib.load_release(
      result["release_dir"]).qa("public_test"))
  compute = result["round0"]["seconds"] + sum(
      r["seconds"] for recs in result["arms"].values() for r in recs)
  result.update({"config": cfg, "paper": PAPER,
                 "wall_seconds": time.time() - start,
                 "compute_seconds": compute,
                 "claims": claims(result, n_test),
                 "num_test_questions": n_test})
  paths = {name: os.path.join(out_dir, name)
           for name in (JSON_NAME, MARKDOWN_NAME, PNG_NAME)}
  plot(result, paths[PNG_NAME])
  files.write_text(paths[MARKDOWN_NAME], markdown(result))
  files.write_json(paths[JSON_NAME], result)
  held = [c["holds"] for c in result["claims"].values()]
  return {"accuracy": {arm: _curve(result, arm) for arm in result["arms"]},
          "claims_held": f"{sum(held)}/{len(held)}",
          "wall_seconds": result["wall_seconds"],
          "compute_seconds": compute, "paths": paths}
