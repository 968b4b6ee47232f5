"""The static leaderboard site: HTML files that work from a folder, offline.

`build_site(records, out_dir)` writes

  index.html                  every track, its releases, and each method's
                              history across releases (inline SVG)
  <track>-<release>.html      a sortable table per release (public-test
                              gain over the base model with bootstrap
                              intervals, public fuzzy, sensitive, ε/δ and
                              whether ε was verified, audit figures), an
                              accuracy-vs-ε plot (inline SVG) and the
                              release's datasheet

No script, style sheet, font or image is fetched: plots are inline SVG
(matplotlib), sorting is a few lines of inline JavaScript, and a
submission's paper/code link is shown as text, not fetched.
"""

from __future__ import annotations

import collections
import html
import io
import math
import os
import re
from typing import Any, Mapping, Sequence

import matplotlib
matplotlib.use("Agg")
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

from cbench.io import files

_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th, i) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.getAttribute('data-order') !== 'asc';
    rows.sort(function (a, b) {
      var x = a.cells[i].getAttribute('data-v'), y = b.cells[i].getAttribute('data-v');
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return asc ? c : -c;
    });
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-order'); });
    th.setAttribute('data-order', asc ? 'asc' : 'desc');
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""
_STYLE = ("body{font-family:sans-serif;max-width:1500px;margin:1em auto;"
          "padding:0 1em}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;"
          "padding:4px 8px;text-align:right;white-space:nowrap}"
          "td:first-child,th:first-child"
          "{text-align:left}th{cursor:pointer;background:#f3f3f3}"
          "th[data-order=asc]::after{content:' ▲'}"
          "th[data-order=desc]::after{content:' ▼'}"
          "pre{background:#f6f6f6;padding:1em;white-space:pre-wrap}")

COLUMNS = ("method", "ε", "δ", "ε status", "public EM (%)", "gain (pts)",
           "public fuzzy (%)", "sensitive EM (%)", "MIA ε lower bound",
           "exposure k=16 (bits)", "source")


def page_name(track: str, release_id: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{track}-{release_id}") + ".html"


def _eps_value(eps: Any) -> float:
  if eps is None:
    return -1.0
  return math.inf if isinstance(eps, str) else float(eps)


def _eps_label(eps: Any) -> str:
  v = _eps_value(eps)
  return "–" if v < 0 else ("∞" if math.isinf(v) else f"{v:g}")


def _acc(cell: Mapping | None) -> tuple[str, float]:
  if not cell:
    return "–", -1.0
  return (f"{100 * cell['mean']:.1f} [{100 * cell['low']:.1f}, "
          f"{100 * cell['high']:.1f}]", 100 * cell["mean"])


def _row_cells(rec: Mapping) -> list[tuple[str, Any]]:
  """(text, sort value) per column."""
  row = rec["row"]
  name = rec["method"]
  if rec.get("submission"):
    name = f"{rec['submission']['name']} ({rec['method']})"
  eps = rec["epsilon"]
  delta = row.get("delta")
  if rec.get("submission"):
    delta = rec["submission"].get("delta", delta)
  audit = row.get("audit") or {}
  mia = (audit.get("membership") or {}).get("epsilon_lb")
  k16 = ((audit.get("by_repeat") or {}).get("16") or {}).get("mean_exposure")
  gain = row.get("capability_gain")
  pub, fuzzy, sens = (_acc(row.get("public_test_exact")),
                      _acc(row.get("public_test_fuzzy")),
                      _acc(row.get("sensitive_test_exact")))
  ev = _eps_value(eps)
  return [
      (name, name),
      (_eps_label(eps), 1e300 if math.isinf(ev) else ev),
      ("–" if delta is None else f"{delta:.2g}", -1 if delta is None else delta),
      (rec["epsilon_status"], rec["epsilon_status"]),
      pub,
      ("–" if gain is None else f"{100 * gain:+.1f}",
       -1e9 if gain is None else 100 * gain),
      fuzzy,
      sens,
      ("–" if mia is None else f"{mia:.2f}", -1 if mia is None else mia),
      ("–" if k16 is None else f"{k16:.2f}", -1 if k16 is None else k16),
      (rec["source"], rec["source"]),
  ]


def _svg(fig) -> str:
  buf = io.StringIO()
  fig.savefig(buf, format="svg", bbox_inches="tight")
  plt.close(fig)
  text = buf.getvalue()
  return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE


def accuracy_svg(records: Sequence[Mapping]) -> str:
  """Public-test EM against ε, one line per method (∞ at the right)."""
  fig, ax = plt.subplots(figsize=(6.5, 3.6))
  by = collections.defaultdict(list)
  finite = [_eps_value(r["epsilon"]) for r in records
            if 0 < _eps_value(r["epsilon"]) < math.inf]
  right = (max(finite) * 10) if finite else 100.0
  for r in records:
    acc = r["row"].get("public_test_exact")
    e = _eps_value(r["epsilon"])
    if acc is None or e <= 0:
      continue
    by[r["method"]].append((right if math.isinf(e) else e, 100 * acc["mean"],
                            100 * acc["low"], 100 * acc["high"]))
  for method, pts in sorted(by.items()):
    pts.sort()
    x, y, lo, hi = zip(*pts)
    ax.errorbar(x, y, yerr=[[a - b for a, b in zip(y, lo)],
                            [b - a for a, b in zip(y, hi)]],
                marker="o", capsize=3, label=method)
  for name, style in (("base", "--"), ("public_only", ":")):
    ref = [r for r in records if r["method"] == name
           and r["row"].get("public_test_exact")]
    if ref:
      ax.axhline(100 * ref[0]["row"]["public_test_exact"]["mean"],
                 color="grey", ls=style,
                 label="base model" if name == "base" else "public_only (ε=0)")
  ax.set_xscale("log")
  ticks = sorted({x for pts in by.values() for x, *_ in pts})
  if ticks:
    ax.set_xticks(ticks, ["∞" if t == right else f"{t:g}" for t in ticks])
    ax.minorticks_off()
  ax.set_xlabel("ε")
  ax.set_ylabel("public-test exact match (%)")
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=7)
  return _svg(fig)


def history_svg(records: Sequence[Mapping]) -> str:
  """Each (method, ε) series' public-test gain across releases."""
  fig, ax = plt.subplots(figsize=(6.5, 3.6))
  releases = sorted({r["release_id"] for r in records})
  series = collections.defaultdict(dict)
  for r in records:
    gain = r["row"].get("capability_gain")
    if gain is not None:
      series[(r["method"], _eps_label(r["epsilon"]))][r["release_id"]] = (
          100 * gain)
  for (method, eps), pts in sorted(series.items()):
    xs = [releases.index(k) for k in sorted(pts)]
    ax.plot(xs, [pts[k] for k in sorted(pts)], marker="o",
            label=f"{method} ε={eps}")
  ax.set_xticks(range(len(releases)), releases)
  ax.set_ylabel("gain over base (pts, public EM)")
  ax.set_xlabel("release")
  if series:
    ax.legend(fontsize=7)
  return _svg(fig)


def _table(records: Sequence[Mapping]) -> str:
  head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
  body = []
  for r in sorted(records, key=lambda r: (r["method"] != "base",
                                          r["method"] != "real",
                                          r["method"],
                                          _eps_value(r["epsilon"]))):
    cells = "".join(f'<td data-v="{html.escape(str(v))}">'
                    f"{html.escape(t)}</td>" for t, v in _row_cells(r))
    body.append(f"<tr>{cells}</tr>")
  return (f'<table class="sortable"><thead><tr>{head}</tr></thead>'
          f"<tbody>{''.join(body)}</tbody></table>")


def _page(title: str, body: str) -> str:
  return (f'<!DOCTYPE html><html><head><meta charset="utf-8">'
          f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
          f"</head><body><h1>{html.escape(title)}</h1>{body}"
          f"<script>{_SORT_JS}</script></body></html>\n")


def _datasheet(records: Sequence[Mapping]) -> str:
  for r in records:
    path = os.path.join(r.get("release_root") or "", "README.md")
    if r.get("release_root") and os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        return f.read()
  return "(the release directory is not on this machine)"


def _submissions(records: Sequence[Mapping]) -> str:
  subs = [r for r in records if r.get("submission")]
  if not subs:
    return ""
  items = []
  for r in subs:
    m = r["submission"]
    items.append(
        f"<li><b>{html.escape(m['name'])}</b> ({html.escape(m['method'])}; "
        f"ε {html.escape(r['epsilon_status'])}; base model "
        f"{html.escape(m['base_model'])}; tuned on private data: "
        f"{'yes' if m['tuned_on_private'] else 'no'}; link: "
        f"<code>{html.escape(m['link'])}</code>)</li>")
  return f"<h2>Submissions</h2><ul>{''.join(items)}</ul>"


def build_site(records: Sequence[Mapping], out_dir: str) -> list[str]:
  """Writes the site into `out_dir`; returns the pages written."""
  os.makedirs(out_dir, exist_ok=True)
  by_release = collections.defaultdict(list)
  for r in records:
    by_release[(r["track"], r["release_id"])].append(r)
  written = []
  for (track, rel), recs in sorted(by_release.items()):
    body = (f"<p><a href=\"index.html\">all releases</a> · track "
            f"<b>{html.escape(track)}</b> · release <b>{html.escape(rel)}</b>"
            f"</p><h2>Results</h2>{_table(recs)}<p>Click a column to sort. "
            "Accuracy: exact match with 95% bootstrap intervals; gain: "
            "public-test exact match minus the base model's. ε status "
            "'verified': recomputed from the ledger's events; 'as "
            "declared': a method cbench does not implement.</p>"
            f"{_submissions(recs)}<h2>Accuracy against ε</h2>"
            f"{accuracy_svg(recs)}<h2>Release datasheet</h2><pre>"
            f"{html.escape(_datasheet(recs))}</pre>")
    name = page_name(track, rel)
    files.write_text(os.path.join(out_dir, name),
                     _page(f"cbench leaderboard: {track} {rel}", body))
    written.append(name)
  sections = []
  tracks = sorted({t for t, _ in by_release})
  for track in tracks:
    rels = sorted(r for t, r in by_release if t == track)
    links = "".join(
        f'<li><a href="{page_name(track, r)}">{html.escape(r)}</a> '
        f"({len(by_release[(track, r)])} rows)</li>" for r in rels)
    recs = [x for t, r in by_release if t == track
            for x in by_release[(t, r)]]
    sections.append(f"<h2>Track: {html.escape(track)}</h2><ul>{links}</ul>"
                    f"<h3>History across releases</h3>{history_svg(recs)}")
  files.write_text(os.path.join(out_dir, "index.html"), _page(
      "cbench leaderboard", "".join(sections) or "<p>No results yet.</p>"))
  return ["index.html", *written]
