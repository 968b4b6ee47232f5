r"""Scores a model directory on a release's QA sets.

  python -m experiments.score_qa --release=DIR --checkpoint=W2 \
      --split=public_test[,sensitive_test] --out=scores.json

Few-shot prompt of public-world exemplars, greedy decoding (≤32 tokens, cut
at the first newline), exact and fuzzy match with bootstrap 95% intervals,
per feature and per support bucket.
"""

from absl import flags

from cbench.harness import score
from experiments import common

_RELEASE = flags.DEFINE_string("release", None, "Release directory.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Model directory (base or fine-tuned).")
_SPLIT = flags.DEFINE_list("split", ["public_test"], "QA sets to score.")
_OUT = flags.DEFINE_string("out", None, "Where to write the JSON scores.")
flags.mark_flags_as_required(["release", "checkpoint"])


def main(argv):
  del argv
  result = score.score_qa(_RELEASE.value, _CHECKPOINT.value, _SPLIT.value, _OUT.value)
  for split, s in result["splits"].items():
    print(f"{split}: exact {s['exact']['mean']:.3f} "
          f"[{s['exact']['low']:.3f}, {s['exact']['high']:.3f}]  "
          f"fuzzy {s['fuzzy']['mean']:.3f}  (n={s['num_questions']})")


if __name__ == "__main__":
  common.run(main)
