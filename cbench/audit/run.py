"""One audit request: the one-run DP-SGD audit and/or the exposure audit.

`run_audit` is what ``python -m experiments.audit`` calls. It writes
``W/one_run/`` (DP fine-tuning only), ``W/exposure/``, and ``W/audit.json``
plus ``W/audit.md`` (the bounds beside the ledger's ε, in words a reader
can check).
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

from cbench._validate import check
from cbench.audit import dpsgd as dpsgd_audit
from cbench.audit import exposure
from cbench.io import files
from cbench.synthesis import api
from cbench.synthesis import dp_finetune

KINDS = ("one_run", "exposure")


def default_kinds(method: str) -> tuple[str, ...]:
  """Both audits for DP fine-tuning; the exposure audit for the others."""
  return KINDS if method == dp_finetune.METHOD else ("exposure",)


def _fmt(eps) -> str:
  if eps is None:
    return "–"
  if isinstance(eps, str) or math.isinf(eps):
    return "∞"
  return f"{eps:.3f}"


def report(summary: dict) -> str:
  """audit.md: the bounds and exposures as a short Markdown page."""
  lines = [f"# Privacy audit: {summary['method']} at target ε = "
           f"{_fmt(summary['target_epsilon'])}", ""]
  one = summary.get("one_run")
  if one:
    lines += ["## One-run audit of DP-SGD (Steinke, Nasr, Jagielski 2023)",
              "", f"Ledger ε = {_fmt(one['epsilon'])} at δ = "
              f"{one['delta']:.2g}; audited at δ = {one['audit_delta']:.2g}, "
              f"where the ledger's ε is {_fmt(one['audit_epsilon'])}; "
              f"{one['canaries']} canaries on "
              f"{one['records']} records, σ = {one['noise_multiplier']:.3f}, "
              f"q = {one['sampling_prob']:.4f}, T = {one['steps']}.", "",
              "| score | ε lower bound (95%) | correct / guesses | "
              "most these canaries can show |", "|---|---|---|---|"]
    for name, b in one["bounds"].items():
      lines.append(f"| {name} | {b['epsilon_lb']:.3f} | {b['correct']}/"
                   f"{b['guesses']} | {b['ceiling']:.3f} |")
    lines.append("")
  exp = summary.get("exposure")
  if exp:
    mia = exp.get("membership") or {}
    lines += ["## Canary exposure in the synthetic text", "",
              f"Ledger ε = {_fmt(exp['epsilon'])}; {exp['candidates']} "
              f"candidate secrets per canary (at most "
              f"{exp['max_exposure_bits']:.2f} bits; chance "
              f"{exp['chance_exposure_bits']:.2f}).", "",
              "| repeats k | canaries | mean exposure (bits) | max | "
              "verbatim | near-verbatim |", "|---|---|---|---|---|---|"]
    for k, g in exp["by_repeat"].items():
      mean = "–" if g["mean_exposure"] is None else f"{g['mean_exposure']:.2f}"
      top = "–" if g["max_exposure"] is None else f"{g['max_exposure']:.2f}"
      lines.append(f"| {k} | {g['canaries']} | {mean} | {top} | "
                   f"{g['verbatim']} | {g['near_verbatim']} |")
    if mia:
      lines += ["", f"Membership inference on the single canaries: ε lower "
                f"bound {mia['epsilon_lb']:.3f} (95%; at most "
                f"{mia['ceiling']:.3f} with {mia['m']} canaries)."]
  return "\n".join(lines) + "\n"


def _as_float(eps) -> float:
  return math.inf if eps is None or isinstance(eps, str) else float(eps)


def check_not_broken(summary: dict) -> None:
  """Raises if any lower bound of `summary` exceeds its ledger's ε."""
  found = []
  one = summary.get("one_run")
  if one:
    found += [(f"one-run {k}", b["epsilon_lb"],
               _as_float(one["audit_epsilon"]))
              for k, b in one["bounds"].items()]
  exp = summary.get("exposure")
  if exp and exp.get("membership"):
    found.append(("membership", exp["membership"]["epsilon_lb"],
                  _as_float(exp["epsilon"])))
  for name, lb, eps in found:
    check(lb <= eps, f"Audit ({name}) lower bound {lb:.3f} exceeds the "
          f"ledger's epsilon {eps:.3f}: the run is not as private as "
          f"accounted.")


def run_audit(release_dir: str, base_dir: str, config: api.SynthesisConfig,
              recipe, workdir: str, *,
              kinds: Optional[Sequence[str]] = None,
              one_run: Optional[dpsgd_audit.OneRunConfig] = None,
              canaries: Optional[exposure.ExposureConfig] = None) -> dict:
  """Runs the requested audits of `config` on the release; the summary.

  Raises:
    CbenchError: an unknown kind, the one-run audit of a method other than
      DP fine-tuning, or any error of the audits themselves (before output).
  """
  kinds = tuple(kinds or default_kinds(config.method))
  for k in kinds:
    check(k in KINDS, f"Unknown audit {k!r}; known: {list(KINDS)}.")
  check("one_run" not in kinds or config.method == dp_finetune.METHOD,
        f"The one-run audit is for {dp_finetune.METHOD!r} (DP-SGD); method "
        f"{config.method!r} gets the exposure audit.")
  api.check_request(config)
  os.makedirs(workdir, exist_ok=True)
  summary = {"method": config.method, "target_epsilon":
             "inf" if math.isinf(config.epsilon) else config.epsilon}
  if "one_run" in kinds:
    summary["one_run"] = dpsgd_audit.run_one_run_audit(
        release_dir, base_dir, config, one_run or dpsgd_audit.OneRunConfig(),
        os.path.join(workdir, "one_run"))
  if "exposure" in kinds:
    summary["exposure"] = exposure.run_exposure_audit(
        release_dir, base_dir, config, recipe,
        canaries or exposure.ExposureConfig(),
        os.path.join(workdir, "exposure"))
  files.write_json(os.path.join(workdir, "audit.json"), summary)
  files.write_text(os.path.join(workdir, "audit.md"), report(summary))
  return summary
