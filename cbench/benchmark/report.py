"""Benchmark outputs: results.md table, accuracy-vs-ε plot, single-page HTML.

All three are derived from the rows of ``results.jsonl`` only, so they can be
regenerated from a finished (or partial) workdir at any time.
"""

from __future__ import annotations

import base64
import html
import math
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

REFERENCE_METHODS = ("base", "real")


def _is_inf(eps) -> bool:
  """ε = ∞ in a row: the float or its JSON spelling "inf"."""
  return isinstance(eps, str) or (eps is not None and math.isinf(eps))


def _eps_label(eps) -> str:
  if eps is None:
    return "–"
  if _is_inf(eps):
    return "∞"
  return f"{eps:g}"


def _acc(cell: Mapping | None) -> str:
  if not cell:
    return "–"
  return f"{100 * cell['mean']:.1f} [{100 * cell['low']:.1f}, {100 * cell['high']:.1f}]"


def markdown_table(rows: Sequence[Mapping]) -> str:
  """The results table (accuracies in %, 95% bootstrap intervals)."""
  head = ("| method | ε | δ | ε verified | #docs | public EM | public fuzzy "
          "| sensitive EM | gain (EM) | wall (s) |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for r in rows:
    delta = r.get("delta")
    lines.append("| " + " | ".join([
        r["method"], _eps_label(r.get("epsilon")),
        "–" if delta is None else f"{delta:.2g}",
        {True: "yes", False: "**no**"}.get(r.get("epsilon_verified"), "n/a"),
        str(r.get("num_docs") or "–"),
        _acc(r.get("public_test_exact")), _acc(r.get("public_test_fuzzy")),
        _acc(r.get("sensitive_test_exact")),
        "–" if r.get("capability_gain") is None else f"{100 * r['capability_gain']:+.1f}",
        f"{r.get('wall_seconds', 0):.0f}",
    ]) + " |")
  return "\n".join(lines) + "\n"


def _x(eps, finite_max: float) -> float:
  if _is_inf(eps):
    return finite_max * 10
  return eps


def plot_accuracy(rows: Sequence[Mapping], path: str | None = None) -> dict:
  """Public-test (left) and sensitive-test (right) exact match against ε.

  One line per synthesis method; the base model and the real-data fine-tune
  are horizontal reference lines. ε = ∞ is drawn one decade right of the
  largest finite ε. Returns ``{"series": [labels]}``; the PNG's metadata
  records the same list.
  """
  synth = [r for r in rows if r["method"] not in REFERENCE_METHODS
           and r.get("epsilon") is not None]
  finite = [r["epsilon"] for r in synth
            if not _is_inf(r["epsilon"]) and r["epsilon"] > 0]
  finite_max = max(finite) if finite else 1.0
  methods = sorted({r["method"] for r in synth})
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
  series = []
  for ax, key, title in ((axes[0], "public_test_exact", "public test"),
                         (axes[1], "sensitive_test_exact", "sensitive test")):
    for m in methods:
      pts = sorted((_x(r["epsilon"], finite_max) if r["epsilon"] else finite_max / 100,
                    r[key]["mean"]) for r in synth if r["method"] == m and r.get(key))
      if pts:
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=m)
    for ref, style in (("base", ":"), ("real", "--")):
      for r in rows:
        if r["method"] == ref and r.get(key):
          ax.axhline(100 * r[key]["mean"], linestyle=style, color="gray" if ref == "base" else "black",
                     label=f"{ref} model")
    ax.set_xscale("log")
    ticks = sorted(set(finite)) + ([finite_max * 10] if any(
        _is_inf(r["epsilon"]) for r in synth) else [])
    if ticks:
      ax.set_xticks(ticks)
      ax.set_xticklabels([_eps_label(t) if t != finite_max * 10 else "∞" for t in ticks])
    ax.set_xlabel("ε")
    ax.set_title(f"QA exact match, {title}")
    ax.grid(alpha=0.3)
    if ax is axes[0]:
      ax.set_ylabel("accuracy (%)")
      series = [line.get_label() for line in ax.get_lines()]
  axes[0].legend(fontsize=8, loc="best")
  fig.tight_layout()
  if path:
    fig.savefig(path, dpi=110, metadata={"Description": "cbench-series: " + ",".join(series)})
  plt.close(fig)
  return {"series": series}


def _audit_cells(r: Mapping) -> list[str] | None:
  a = r.get("audit")
  if not a:
    return None
  mia = a.get("membership") or {}
  by = a.get("by_repeat") or {}
  exp = [f"{by[k]['mean_exposure']:.2f}" if by.get(k, {}).get(
      "mean_exposure") is not None else "–" for k in sorted(by, key=int)]
  verb = [f"{by[k]['verbatim']}/{by[k]['canaries']}" for k in
          sorted(by, key=int)]
  lb = (f"{mia['epsilon_lb']:.2f} (≤ {mia['ceiling']:.2f})" if mia else "–")
  return [r["method"], _eps_label(r.get("epsilon")), lb,
          " / ".join(exp), f"{a.get('chance_exposure_bits', 0):.2f}",
          " / ".join(verb)]


def audit_table(rows: Sequence[Mapping]) -> str:
  """The exposure audit of each synthetic row ("" when none was run).

  Columns: ε from the ledger; the membership lower bound on ε from the
  single canaries (and the most the canaries could show); mean exposure
  (bits) of included canaries per repetition count; the chance level;
  canaries whose name and secret appear together in the synthetic text.
  """
  audited = [c for c in (_audit_cells(r) for r in rows) if c]
  if not audited:
    return ""
  reps = next(sorted(r["audit"]["by_repeat"], key=int) for r in rows
              if r.get("audit"))
  head = ("| method | ε | MIA ε lower bound | exposure (bits) k = "
          + "/".join(reps) + " | chance | verbatim k = " + "/".join(reps)
          + " |")
  lines = ["", "### Privacy audit (canary exposure)", "", head,
           "|" + "---|" * 6]
  lines += ["| " + " | ".join(c) + " |" for c in audited]
  return "\n".join(lines) + "\n"


def html_report(rows: Sequence[Mapping], png_path: str, datasheet: str,
                title: str) -> str:
  """A single self-contained page: table, embedded plot, release datasheet."""
  with open(png_path, "rb") as f:
    png = base64.b64encode(f.read()).decode("ascii")
  header = ["method", "ε", "δ", "ε verified", "#docs", "public EM (%)",
            "public fuzzy (%)", "sensitive EM (%)", "gain (EM, pts)"]
  body = []
  for r in rows:
    cells = [r["method"], _eps_label(r.get("epsilon")),
             "–" if r.get("delta") is None else f"{r['delta']:.2g}",
             {True: "yes", False: "NO"}.get(r.get("epsilon_verified"), "n/a"),
             str(r.get("num_docs") or "–"), _acc(r.get("public_test_exact")),
             _acc(r.get("public_test_fuzzy")), _acc(r.get("sensitive_test_exact")),
             "–" if r.get("capability_gain") is None else f"{100 * r['capability_gain']:+.1f}"]
    body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
  return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child{{text-align:left}}pre{{background:#f6f6f6;padding:1em;white-space:pre-wrap}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<h2>Results</h2>
<table><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in header)}</tr>
{''.join(body)}
</table>
<p>Accuracy: exact match with 95% bootstrap intervals. Gain: public-test exact match
minus the untouched base model's. ε comes from the method's ledger; rows marked NO
have no verifiable ledger. Ex-post ε is data-dependent and reported separately.</p>
{_audit_html(rows)}
<h2>Accuracy against ε</h2>
<img alt="accuracy vs epsilon" src="data:image/png;base64,{png}">
<h2>Release datasheet</h2>
<pre>{html.escape(datasheet)}</pre>
</body></html>
"""


def _audit_html(rows: Sequence[Mapping]) -> str:
  audited = [c for c in (_audit_cells(r) for r in rows) if c]
  if not audited:
    return ""
  header = ["method", "ε", "MIA ε lower bound", "exposure (bits) by k",
            "chance (bits)", "verbatim by k"]
  body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row)
                 + "</tr>" for row in audited)
  return ("<h2>Privacy audit (canary exposure)</h2><table><tr>"
          + "".join(f"<th>{html.escape(h)}</th>" for h in header)
          + f"</tr>{body}</table><p>Canaries inserted into a copy of the "
          "private corpus; the membership bound (one-run, 95%) must stay "
          "below the ledger's ε.</p>")


def story_lines(rows: Sequence[Mapping]) -> list[str]:
  """The benchmark's story read off the rows, one line per claim.

  Public-test exact match (in %) of the base model, the real-corpus
  fine-tune (the non-private upper bound), the synthetic rows at ε = ∞
  and at finite ε > 0, and the largest sensitive-test exact match of a
  DP row next to the base model's (sensitive facts should stay at the
  base model's level under DP). Rows that are missing are skipped.
  """
  def pub(r):
    return 100 * r["public_test_exact"]["mean"]

  def sens(r):
    return 100 * r["sensitive_test_exact"]["mean"]

  by_method = {r["method"]: r for r in rows if r["method"] in REFERENCE_METHODS}
  synthetic = [r for r in rows if r["method"] not in REFERENCE_METHODS + ("own",)]
  lines = []
  base = by_method.get("base")
  if base:
    lines.append(f"base model: {pub(base):.1f}% public-test exact match")
  if "real" in by_method:
    lines.append(f"real corpus (non-private upper bound): {pub(by_method['real']):.1f}%")
  for r in synthetic:
    if _is_inf(r.get("epsilon")):
      lines.append(f"{r['method']} at ε=∞ (no privacy): {pub(r):.1f}%")
  dp = [r for r in synthetic
        if r.get("epsilon") not in (None, 0, 0.0) and not _is_inf(r.get("epsilon"))]
  if dp:
    best = max(dp, key=pub)
    lines.append(f"DP rows (ε={', '.join(sorted({_eps_label(r['epsilon']) for r in dp}))}): "
                 f"{min(map(pub, dp)):.1f}–{pub(best):.1f}% (best: {best['method']} "
                 f"at ε={_eps_label(best['epsilon'])})")
    worst = max(dp, key=sens)
    lines.append(f"sensitive facts under DP: at most {sens(worst):.1f}% "
                 f"({worst['method']})" + (f" vs base {sens(base):.1f}%" if base else ""))
  return lines
