"""absl flag definitions for benchmark binaries that tolerate re-definition.

Benchmarks are binaries, but their smoke tests import them side by side in
one pytest process, where two modules defining e.g. ``--model`` would clash.
Flags defined here pass ``allow_override=True``; each binary still parses
its own command line with `absl.app.run`.
"""

import functools

from absl import flags

DEFINE_bool = functools.partial(flags.DEFINE_bool, allow_override=True)
DEFINE_enum = functools.partial(flags.DEFINE_enum, allow_override=True)
DEFINE_float = functools.partial(flags.DEFINE_float, allow_override=True)
DEFINE_integer = functools.partial(flags.DEFINE_integer, allow_override=True)
DEFINE_list = functools.partial(flags.DEFINE_list, allow_override=True)
DEFINE_string = functools.partial(flags.DEFINE_string, allow_override=True)
