r"""Scores a model directory on a release's QA sets.

  python -m experiments.score_qa --release=DIR --checkpoint=W2 \
      --split=public_test[,sensitive_test] --out=scores.json

``--model=gemma3_270m`` (or ``smollm2_135m``) without ``--checkpoint``
scores that pretrained model (few-shot exemplars from the release's
public_val questions).

Few-shot prompt of public-world exemplars, greedy decoding (≤32 tokens, cut
at the first newline), exact and fuzzy match with bootstrap 95% intervals,
per feature and per support bucket.
"""

from absl import flags

from cbench.harness import score
from cbench.models import gguf_loader
from experiments import common

_RELEASE = flags.DEFINE_string("release", None, "Release directory.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Model directory (base or fine-tuned).")
_SPLIT = flags.DEFINE_list("split", ["public_test"], "QA sets to score.")
_OUT = flags.DEFINE_string("out", None, "Where to write the JSON scores.")
_MODEL = flags.DEFINE_enum(
    "model", "tiny", ["tiny", *gguf_loader.PRETRAINED_NAMES],
    "tiny: score --checkpoint; otherwise score that pretrained model.")
flags.mark_flags_as_required(["release"])


def main(argv):
  del argv
  checkpoint = common.model_or_dir("checkpoint", _CHECKPOINT.value,
                                  _MODEL.value)
  result = score.score_qa(_RELEASE.value, checkpoint, _SPLIT.value, _OUT.value)
  for split, s in result["splits"].items():
    print(f"{split}: exact {s['exact']['mean']:.3f} "
          f"[{s['exact']['low']:.3f}, {s['exact']['high']:.3f}]  "
          f"fuzzy {s['fuzzy']['mean']:.3f}  (n={s['num_questions']})")


if __name__ == "__main__":
  common.run(main)
