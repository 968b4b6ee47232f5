"""Benchmark outputs from result rows: table, ε plot, HTML page, story lines.

Rows have the schema of `cbench.benchmark.runner._row_from_scores` plus the
fields `_run_cell` adds (ε = ∞ is the JSON string "inf"; reference rows
"base" and "real").
"""

import base64
import math
import re

import matplotlib.image
import matplotlib.pyplot as plt
from PIL import Image
import pytest

from cbench.benchmark import report


def _acc(mean, low=None, high=None, n=40):
  low = mean - 0.05 if low is None else low
  high = mean + 0.05 if high is None else high
  return {"mean": mean, "low": low, "high": high, "n": n}


def _row(method, epsilon, pub, sens, **extra):
  row = {"method": method, "epsilon": epsilon,
         "public_test_exact": _acc(pub), "public_test_fuzzy": _acc(pub + 0.1),
         "sensitive_test_exact": _acc(sens),
         "sensitive_test_fuzzy": _acc(sens + 0.1), "capability_gain": None,
         "delta": None, "num_docs": None,
         "epsilon_verified": None, "wall_seconds": 1.0, "cell": method,
         "key": "k"}
  row.update(extra)
  return row


def _rows():
  return [
      _row("base", None, 0.10, 0.02, wall_seconds=3.2),
      _row("real", "inf", 0.50, 0.40, num_docs=120, capability_gain=0.40),
      _row("public_only", 0.0, 0.10, 0.02, num_docs=16, delta=1e-5,
           epsilon_verified=True, capability_gain=0.0),
      _row("private_prediction", 1.0, 0.12, 0.03, num_docs=16, delta=1e-5,
           epsilon_verified=True,
           capability_gain=0.02),
      _row("private_prediction", 10.0, 0.20, 0.05, num_docs=16, delta=1e-5,
           epsilon_verified=True, capability_gain=0.10),
      _row("dp_finetune", 10.0, 0.25, 0.04, num_docs=16, delta=1e-5,
           epsilon_verified=True, capability_gain=0.15, wall_seconds=61.7),
      _row("dp_finetune", "inf", 0.35, 0.30, num_docs=16,
           epsilon_verified=True, capability_gain=0.25),
  ]


# _is_inf -------------------------------------------------------------------


@pytest.mark.parametrize("eps,expected", [
    ("inf", True), (math.inf, True), (float("inf"), True),
    (10.0, False), (0.0, False), (0, False), (1e300, False), (None, False),
])
def test_is_inf(eps, expected):
  assert report._is_inf(eps) is expected


# markdown_table ------------------------------------------------------------


def test_markdown_table_header_and_rows():
  rows = _rows()
  lines = report.markdown_table(rows).split("\n")
  assert lines[-1] == ""  # Ends with a newline.
  lines = lines[:-1]
  assert len(lines) == 2 + len(rows)
  assert lines[0] == (
      "| method | ε | δ | ε verified | #docs | public EM "
      "| public fuzzy | sensitive EM | gain (EM) | wall (s) |")
  assert lines[1] == "|" + "---|" * 10
  assert lines[2] == ("| base | – | – | n/a | – | 10.0 [5.0, 15.0] | "
                      "20.0 [15.0, 25.0] | 2.0 [-3.0, 7.0] | – | 3 |")
  assert lines[3].startswith("| real | ∞ | – | n/a | 120 | 50.0 ")
  assert lines[3].endswith("| +40.0 | 1 |")
  assert lines[5] == ("| private_prediction | 1 | 1e-05 | yes | 16 | "
                      "12.0 [7.0, 17.0] | 22.0 [17.0, 27.0] | 3.0 [-2.0, 8.0] "
                      "| +2.0 | 1 |")
  assert lines[7].endswith("| +15.0 | 62 |")
  assert lines[8].startswith("| dp_finetune | ∞ | – |")
  for line in lines:
    assert line.count("|") == 11


def test_markdown_table_marks_unverified_and_missing_cells():
  rows = [{"method": "own", "epsilon": None, "epsilon_verified": False,
           "public_test_exact": None},
          {"method": "own", "epsilon": 2.0, "epsilon_verified": True,
           "capability_gain": -0.031, "wall_seconds": 0.4}]
  lines = report.markdown_table(rows).splitlines()
  assert lines[2] == ("| own | – | – | **no** | – | – | – | – | – "
                      "| 0 |")
  assert lines[3] == ("| own | 2 | – | yes | – | – | – | – | -3.1 "
                      "| 0 |")


# plot_accuracy -------------------------------------------------------------


def _spy_axes(monkeypatch):
  """Keeps the axes `plot_accuracy` draws (it closes its figure)."""
  made = []
  real = plt.subplots

  def subplots(*args, **kwargs):
    fig, axes = real(*args, **kwargs)
    made.append(axes)
    return fig, axes
  monkeypatch.setattr(report.plt, "subplots", subplots)
  return made


def test_plot_accuracy_writes_a_png_with_its_series(tmp_path):
  png = str(tmp_path / "acc.png")
  info = report.plot_accuracy(_rows(), png)
  expected = ["dp_finetune", "private_prediction", "public_only",
              "base model", "real model"]
  assert info == {"series": expected}
  pixels = matplotlib.image.imread(png)
  assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
  assert pixels.shape[0] > 200 and pixels.shape[1] > 600
  assert pixels.std() > 0.01  # Not a blank canvas.
  with Image.open(png) as im:
    assert im.format == "PNG"
    assert im.info["Description"] == "cbench-series: " + ",".join(expected)


def test_plot_accuracy_places_inf_one_decade_right(monkeypatch):
  made = _spy_axes(monkeypatch)
  info = report.plot_accuracy(_rows())  # No path: nothing written.
  assert info["series"][-2:] == ["base model", "real model"]
  (axes,) = made
  lines = {ln.get_label(): ln for ln in axes[0].get_lines()}
  dp = lines["dp_finetune"]
  assert list(dp.get_xdata()) == [10.0, 100.0]  # ε = 10 and ε = ∞.
  assert list(dp.get_ydata()) == pytest.approx([25.0, 35.0])
  assert list(lines["private_prediction"].get_xdata()) == [1.0, 10.0]
  # public_only's ε = 0 sits two decades left of the largest finite ε.
  assert list(lines["public_only"].get_xdata()) == [0.1]
  assert list(lines["base model"].get_ydata()) == pytest.approx([10.0, 10.0])
  assert list(lines["real model"].get_ydata()) == pytest.approx([50.0, 50.0])
  right = {ln.get_label(): ln for ln in axes[1].get_lines()}
  assert list(right["dp_finetune"].get_ydata()) == pytest.approx([4.0, 30.0])
  assert [t.get_text() for t in axes[0].get_xticklabels()] == ["1", "10", "∞"]
  assert axes[0].get_xscale() == "log"


def test_plot_accuracy_skips_methods_without_scores(tmp_path):
  rows = [_row("a", 1.0, 0.2, 0.1), _row("b", 1.0, 0.2, 0.1)]
  rows[1]["public_test_exact"] = None
  info = report.plot_accuracy(rows, str(tmp_path / "p.png"))
  assert info["series"] == ["a"]


# html_report ---------------------------------------------------------------


def test_html_report_is_self_contained(tmp_path):
  rows = _rows()
  rows.append({"method": "own<script>", "epsilon": None,
               "epsilon_verified": False})
  png = str(tmp_path / "acc.png")
  report.plot_accuracy(rows[:-1], png)
  page = report.html_report(rows, png, datasheet="facts: a < b & c",
                            title="Bench <1>")
  with open(png, "rb") as f:
    raw = f.read()
  images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
  assert len(images) == 1
  assert base64.b64decode(images[0]) == raw
  assert not re.search(r"https?://|<link|<script|@import|url\(", page)
  assert page.count("src=") == 1
  assert page.startswith("<!DOCTYPE html>")
  assert "<title>Bench &lt;1&gt;</title>" in page
  assert "<pre>facts: a &lt; b &amp; c</pre>" in page
  assert "<td>own&lt;script&gt;</td>" in page
  assert page.count("<tr>") == 1 + len(rows)
  assert "<td>NO</td>" in page
  assert "<td>∞</td>" in page
  assert "<td>+15.0</td>" in page


# story_lines ---------------------------------------------------------------


def test_story_lines_read_the_rows():
  assert report.story_lines(_rows()) == [
      "base model: 10.0% public-test exact match",
      "real corpus (non-private upper bound): 50.0%",
      "dp_finetune at ε=∞ (no privacy): 35.0%",
      "DP rows (ε=1, 10): 12.0–25.0% (best: dp_finetune at ε=10)",
      "sensitive facts under DP: at most 5.0% (private_prediction) "
      "vs base 2.0%"]


def test_story_lines_skip_missing_rows():
  assert report.story_lines([]) == []
  rows = [_row("dp_finetune", math.inf, 0.3, 0.2),
          _row("own", 5.0, 0.9, 0.9),
          _row("private_prediction", 2.0, 0.1, 0.01)]
  assert report.story_lines(rows) == [
      "dp_finetune at ε=∞ (no privacy): 30.0%",
      "DP rows (ε=2): 10.0–10.0% (best: private_prediction at ε=2)",
      "sensitive facts under DP: at most 1.0% (private_prediction)"]
  only_refs = [_row("base", None, 0.0, 0.0), _row("public_only", 0.0, 0.0,
                                                  0.0)]
  assert report.story_lines(only_refs) == [
      "base model: 0.0% public-test exact match"]
