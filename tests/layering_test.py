"""Imports run one way: `cbench.LAYERS`, no cycles, no imports in functions.

The repository itself must pass (`test_the_repository_obeys_the_layering`),
and the checker must be able to fail: the other tests copy a tiny package
with the same rules into a temporary directory, add one upward import, one
cycle or one import inside a function, and expect exactly that violation.
"""

import os
import re
import textwrap

from tools import check_layering

_README = os.path.join(check_layering.ROOT, "README.md")


def test_the_repository_obeys_the_layering():
  problems = check_layering.violations()
  assert not problems, "\n".join(problems)


def test_readme_and_package_docstring_state_the_same_layering():
  layers = check_layering.read_layers()
  line = check_layering.layer_line(layers)
  with open(_README, encoding="utf-8") as f:
    readme = f.read()
  assert f"`{line}`" in readme, f"README must state the layering: {line}"
  with open(os.path.join(check_layering.ROOT, "cbench", "__init__.py"),
            encoding="utf-8") as f:
    doc = " ".join(f.read().split())
  assert line in doc, f"cbench/__init__.py must state the layering: {line}"


def test_every_library_folder_is_in_a_layer():
  layers = {n for layer in check_layering.read_layers() for n in layer}
  cbench = os.path.join(check_layering.ROOT, "cbench")
  present = {n[:-3] if n.endswith(".py") else n for n in os.listdir(cbench)
             if n != "__init__.py" and n != "conftest.py"
             and not n.endswith("_test.py")
             and not n.startswith((".", "__"))
             and (n.endswith(".py") or os.path.isdir(os.path.join(cbench, n)))}
  assert present <= layers, sorted(present - layers)


def _package(root, files: dict[str, str]) -> str:
  """A miniature repository: cbench/ with LAYERS low -> mid -> high."""
  base = {
      "cbench/__init__.py": 'LAYERS = (("low",), ("mid",), ("high",))\n',
      "cbench/low/__init__.py": "",
      "cbench/low/a.py": "import os\n",
      "cbench/mid/__init__.py": "",
      "cbench/mid/b.py": "from cbench.low import a\n",
      "cbench/high/__init__.py": "",
      "cbench/high/c.py": "from cbench.mid import b\nfrom cbench.low import a\n",
  }
  base.update(files)
  for rel, text in base.items():
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      f.write(textwrap.dedent(text))
  return str(root)


def test_a_clean_miniature_passes(tmp_path):
  assert check_layering.violations(_package(tmp_path, {})) == []


def test_an_upward_import_fails(tmp_path):
  root = _package(tmp_path, {
      "cbench/low/a.py": "import os\nfrom cbench.high import c\n"})
  problems = check_layering.violations(root)
  assert any(re.search(r"cbench/low/a\.py:2: upward import: cbench\.low\.a "
                       r".*imports cbench\.high\.c", p) for p in problems), (
                           problems)


def test_an_import_cycle_inside_a_layer_fails(tmp_path):
  root = _package(tmp_path, {
      "cbench/mid/b.py": "from cbench.low import a\nfrom cbench.mid import d\n",
      "cbench/mid/d.py": "from cbench.mid import b\n"})
  problems = check_layering.violations(root)
  assert "import cycle: cbench.mid.b -> cbench.mid.d" in problems, problems


def test_an_import_inside_a_function_fails_unless_optional(tmp_path):
  root = _package(tmp_path, {
      "cbench/mid/b.py": """\
          from cbench.low import a

          def f():
            import json
            return json

          def g():
            import gguf  # Optional heavy dependency: allowed.
            return gguf
          """})
  problems = check_layering.violations(root)
  assert len(problems) == 1, problems
  assert "cbench/mid/b.py:4: import of json inside a function" in problems[0]


def test_the_library_must_not_import_binaries(tmp_path):
  root = _package(tmp_path, {
      "cbench/high/c.py": "from experiments import common\n",
      "experiments/__init__.py": "", "experiments/common.py": ""})
  problems = check_layering.violations(root)
  assert any("the library imports experiments.common" in p
             for p in problems), problems


def test_a_folder_outside_every_layer_fails(tmp_path):
  root = _package(tmp_path, {"cbench/stray/__init__.py": "",
                             "cbench/stray/x.py": "import os\n"})
  problems = check_layering.violations(root)
  assert any("cbench.stray is in no layer" in p for p in problems), problems


def test_tests_may_import_any_layer(tmp_path):
  root = _package(tmp_path, {
      "cbench/low/a_test.py": "from cbench.high import c\n"})
  assert check_layering.violations(root) == []
