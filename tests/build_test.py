"""BUILD lists every module and test file of the repository, up to date."""

import os
import re

from tools import update_build


def test_every_module_has_a_target():
  with open(os.path.join(update_build.ROOT, "BUILD"), encoding="utf-8") as f:
    build = f.read()
  listed = set(re.findall(r'srcs = \["([^"]+)"\]', build))
  missing = [m for m in update_build._modules() if m not in listed]  # pylint: disable=protected-access
  assert not missing, f"not in BUILD (run python tools/update_build.py): {missing}"
  stale = sorted(listed - set(update_build._modules()))  # pylint: disable=protected-access
  assert not stale, f"BUILD lists files that no longer exist: {stale}"


def test_build_is_current():
  with open(os.path.join(update_build.ROOT, "BUILD"), encoding="utf-8") as f:
    assert f.read() == update_build.render(), (
        "BUILD is out of date: run python tools/update_build.py")


def test_tests_are_py_test_targets():
  text = update_build.render()
  for m in update_build._modules():  # pylint: disable=protected-access
    if m.endswith("_test.py"):
      assert re.search(r'py_test\(\n    name = "[^"]+",\n    srcs = \["%s"\]' % re.escape(m), text), m
