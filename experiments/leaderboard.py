r"""Writes the static leaderboard site from a results store.

  python -m experiments.leaderboard --results=results_store.jsonl --out=site/

One page per (track, release) with a sortable table, an accuracy-vs-ε plot
and the release datasheet; an index with each method's history across
releases. The site works from the folder, offline (open site/index.html).
"""

from absl import flags

from cbench._validate import CbenchError
from cbench.leaderboard import site
from cbench.leaderboard import store
from experiments import common

_RESULTS = flags.DEFINE_string("results", None, "Results store (JSONL).")
_OUT = flags.DEFINE_string("out", None, "Output folder for the site.")


def main(argv):
  if len(argv) > 1:
    raise CbenchError(f"Unexpected arguments: {argv[1:]}")
  for name, value in (("results", _RESULTS.value), ("out", _OUT.value)):
    if not value:
      raise CbenchError(f"--{name} is required.")
  records = store.read(_RESULTS.value)
  if not records:
    raise CbenchError(f"{_RESULTS.value} holds no results.")
  pages = site.build_site(records, _OUT.value)
  print(f"{len(pages)} pages in {_OUT.value}; open "
        f"{_OUT.value.rstrip('/')}/index.html")


if __name__ == "__main__":
  common.run(main)
