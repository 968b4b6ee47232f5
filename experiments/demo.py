r"""`make demo`: the whole benchmark on the demo release, on CPU.

  python -m experiments.demo --workdir=demo_out [--config=demo]

The config (`cbench.configs.demo`) names the release to build and the grid;
``--override=benchmark.num_docs=8`` changes a field.

Prints progress, then the results table (also in
demo_out/benchmark/{results.md,accuracy_vs_epsilon.png,report.html}).
"""

from absl import flags

from cbench._validate import CbenchError
from cbench.benchmark import demo
from cbench.benchmark import report
from experiments import common

_WORKDIR = flags.DEFINE_string("workdir", "demo_out", "Output directory.")
_CONFIG = common.define_config_flags("demo")


def main(argv):
  del argv
  config = _CONFIG.load()
  if not isinstance(config, demo.DemoConfig):
    raise CbenchError(f"--config gives a {type(config).__name__}; the demo "
                      f"needs a DemoConfig (see cbench/configs/demo.py).")
  out = demo.run_demo(config, _WORKDIR.value)
  with open(out["results_md"], encoding="utf-8") as f:
    print(f.read())
  for line in report.story_lines(out["rows"]):
    print(line)
  print(f"demo finished in {out['seconds'] / 60:.1f} min; report: "
        f"{_WORKDIR.value}/benchmark/report.html; leaderboard: {out['site']}")


if __name__ == "__main__":
  common.run(main)
