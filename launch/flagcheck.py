r"""Checks command lines against a binary's own absl flag definitions.

  echo '[["--workdir=/x", "--config=tiny"]]' | \
      python -m launch.flagcheck experiments.train

Imports the binary module (which defines its flags on absl's global
`FLAGS`; hence one process per binary) and parses every argument list with
them: unknown flags, bad values (enums, integers) and missing required
flags are errors, exactly as when the binary itself starts. Prints a JSON
list with, per argument list, null (valid) or the error message; with
``--list`` it prints the binary's own flag names instead. Exit status 0
when every list parses, 1 otherwise, 2 when the module cannot be imported
or is not a binary.
"""

from __future__ import annotations

import importlib
import json
import sys

from absl import flags


def _own_flags(module_name: str, flag_values) -> list[str]:
  names = flag_values.flags_by_module_dict().get(module_name, [])
  return sorted({f.name for f in names})


def load_binary(module_name: str):
  """Imports a binary module (defining its flags); ImportError if not one."""
  module = importlib.import_module(module_name)
  if not callable(getattr(module, "main", None)):
    raise ImportError(f"{module_name} has no main(argv): not a binary.")
  return module


def check(module_name: str, arg_lists: list[list[str]]) -> list[str | None]:
  """Parse errors (None = valid) of each argument list for `module_name`."""
  load_binary(module_name)
  fv = flags.FLAGS
  errors = []
  for args in arg_lists:
    fv.unparse_flags()
    try:
      rest = fv([module_name] + list(args))
      errors.append(None if len(rest) == 1 else
                    f"unexpected positional arguments {rest[1:]}")
    except flags.Error as e:
      errors.append(f"{type(e).__name__}: {e}")
  fv.unparse_flags()
  return errors


def main(argv: list[str]) -> int:
  if len(argv) < 2 or argv[1].startswith("-"):
    print(__doc__, file=sys.stderr)
    return 2
  module_name = argv[1]
  try:
    load_binary(module_name)
  except ImportError as e:
    print(f"error: cannot import {module_name}: {e}", file=sys.stderr)
    return 2
  if "--list" in argv[2:]:
    print(json.dumps(_own_flags(module_name, flags.FLAGS)))
    return 0
  errors = check(module_name, json.load(sys.stdin))
  print(json.dumps(errors))
  return 0 if all(e is None for e in errors) else 1


if __name__ == "__main__":
  sys.exit(main(sys.argv))
