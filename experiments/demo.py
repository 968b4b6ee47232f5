r"""`make demo`: the whole benchmark on the demo release, on CPU.

  python -m experiments.demo --workdir=demo_out

Prints progress, then the results table (also in
demo_out/benchmark/{results.md,accuracy_vs_epsilon.png,report.html}).
"""

from absl import flags

from cbench.benchmark import demo
from cbench.benchmark import report
from experiments import common

_WORKDIR = flags.DEFINE_string("workdir", "demo_out", "Output directory.")


def main(argv):
  del argv
  out = demo.run_demo(_WORKDIR.value)
  with open(out["results_md"], encoding="utf-8") as f:
    print(f.read())
  for line in report.story_lines(out["rows"]):
    print(line)
  print(f"demo finished in {out['seconds'] / 60:.1f} min; report: "
        f"{_WORKDIR.value}/benchmark/report.html")


if __name__ == "__main__":
  common.run(main)
