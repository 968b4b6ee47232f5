"""The static site: both tracks and several releases on one site, sortable
tables, inline plots, nothing fetched from outside; and in a real browser."""

import os
import re
import shutil

import pytest

try:  # Optional: the browser test skips without it.
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  from selenium.webdriver.common.by import By
except ImportError:
  webdriver = None

from cbench.leaderboard import site
from cbench.leaderboard import store


def _records(tmp_path):
  release_root = tmp_path / "rel"
  release_root.mkdir()
  (release_root / "README.md").write_text("# Datasheet of 2026q4\n")
  out = []
  for track, rel, gain0 in (("geminon", "2026q4", 0.0), ("geminon", "2027q1", 0.1),
                            ("news", "2026-03", 0.0)):
    for method, eps, mean in (("base", None, 0.05), ("real", "inf", 0.6),
                              ("dp_finetune", 10.0, 0.2 + gain0),
                              ("dp_finetune", "inf", 0.5),
                              ("private_prediction", 1.0, 0.1)):
      row = {"method": method, "epsilon": eps,
             "public_test_exact": {"mean": mean, "low": mean - 0.05,
                                   "high": mean + 0.05},
             "sensitive_test_exact": {"mean": 0.0, "low": 0.0, "high": 0.0},
             "capability_gain": None if method == "base" else mean - 0.05,
             "delta": 1e-5,
             "audit": {"membership": {"epsilon_lb": 0.1},
                       "by_repeat": {"16": {"mean_exposure": 1.5}}}}
      out.append(store.make_record(
          row, track=track, release_id=rel, release_sha256="x",
          release_root=str(release_root), seed=0, source="benchmark",
          epsilon_status="none" if method in ("base", "real") else "verified"))
  return out


def test_one_site_holds_every_track_and_release(tmp_path):
  out = str(tmp_path / "site")
  pages = site.build_site(_records(tmp_path), out)
  assert sorted(pages) == ["geminon-2026q4.html", "geminon-2027q1.html",
                           "index.html", "news-2026-03.html"]
  index = open(os.path.join(out, "index.html")).read()
  assert "Track: geminon" in index and "Track: news" in index
  assert index.count("<svg") == 2                   # a history per track
  page = open(os.path.join(out, "geminon-2026q4.html")).read()
  assert page.count("<tr>") == 1 + 5                # header + five rows
  assert "<svg" in page and "Datasheet of 2026q4" in page
  assert 'class="sortable"' in page and "addEventListener" in page
  for text in (index, page):                        # works offline
    refs = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert all(not r.startswith(("http:", "https:", "//")) for r in refs), refs


def _chromium():
  for name in ("chromium", "chromium-browser", "google-chrome"):
    path = shutil.which(name)
    if path:
      return path
  return None


@pytest.mark.browser
def test_site_sorts_and_renders_in_headless_chromium(tmp_path):
  if webdriver is None:
    pytest.skip("selenium is not installed")
  browser, driver_path = _chromium(), shutil.which("chromedriver")
  if not browser or not driver_path:
    pytest.skip("headless Chromium or chromedriver is not installed "
                "(Debian: apt-get install chromium chromium-driver)")
  out = tmp_path / "site"
  site.build_site(_records(tmp_path), str(out))
  opts = webdriver.ChromeOptions()
  opts.binary_location = browser
  for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
               "--window-size=1300,1600"):
    opts.add_argument(flag)
  drv = webdriver.Chrome(service=Service(driver_path), options=opts)
  try:
    drv.get((out / "geminon-2027q1.html").as_uri())
    headers = drv.find_elements(By.CSS_SELECTOR, "table.sortable th")
    col = [h.text for h in headers].index("public EM (%)")

    def column():
      return [float(r.find_elements(By.TAG_NAME, "td")[col]
                    .get_attribute("data-v"))
              for r in drv.find_elements(By.CSS_SELECTOR,
                                         "table.sortable tbody tr")]
    assert column() != sorted(column())             # not sorted to begin with
    headers[col].click()
    assert column() == sorted(column())
    headers[col].click()
    assert column() == sorted(column(), reverse=True)
    svg = drv.find_elements(By.TAG_NAME, "svg")
    assert svg and svg[0].size["width"] > 100       # the plot rendered
    drv.save_screenshot(str(tmp_path / "leaderboard.png"))
    keep = os.environ.get("CBENCH_TEST_ARTIFACTS")
    if keep:
      os.makedirs(keep, exist_ok=True)
      shutil.copy(tmp_path / "leaderboard.png", keep)
    drv.find_element(By.LINK_TEXT, "all releases").click()
    assert "Track: news" in drv.page_source
    assert drv.find_elements(By.LINK_TEXT, "2026-03")
  finally:
    drv.quit()
