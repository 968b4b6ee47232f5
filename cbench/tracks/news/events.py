"""Stage 5: group articles into events (the same story told by many outlets).

1. Embed every article's title + lede (`articles.lede`) with a PUBLIC
   encoder: 'minilm' (all-MiniLM-L6-v2, `cbench.models.minilm`) or
   'hashing' (word unigrams and bigrams hashed into `HASH_DIM` signed
   buckets, TF-IDF weighted over the articles being grouped, L2-normalised;
   no model). Rows are unit vectors, so a dot product is a cosine.
2. Link each article to its `neighbours` most similar articles published at
   most `window_days` apart whose cosine (rounded to 1e-4, so float noise
   cannot flip a link) is at least `similarity` and that name at least
   `shared_entities` of the same proper names in their ledes (`entities`:
   capitalised words that do not start a sentence; names in more than
   `_COMMON_NAME_SHARE` of the articles, at least 10, identify nothing and
   are ignored): reports of two fires in two towns read alike, but name
   different places and people. The search is blocked by
   date (articles sorted by day: a block of rows only meets the contiguous
   range of rows within the window) and runs as jitted JAX matmul + top-k
   over fixed, bucketed shapes: the same code on CPU, GPU and TPU.
3. Find communities with Leiden (`leidenalg`, RBConfiguration partition,
   `resolution`, fixed seed: deterministic).
4. Keep events reported by at least `min_outlets` distinct outlets that
   span at most `max_event_days` days. Events are numbered by their first
   article (date, then key): ``<release>-e0001``, ...

Cost: O(n * articles in a window) similarities; a month of CC-NEWS (~1-2M
articles) is an accelerator job (the kernel is the same).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import functools
import math
import re
import zlib
from typing import Sequence

import igraph
import jax
import jax.numpy as jnp
import leidenalg
import numpy as np

from cbench.models import minilm
from cbench.tracks.news import articles as articles_lib
from cbench.tracks.news import config as config_lib

HASH_DIM = 4096
_COMMON_NAME_SHARE = 0.02
_BLOCK = 256      # Query rows per kernel call.
_BUCKET = 1024    # Candidate rows are padded to a multiple of this.
_WORD = re.compile(r"[a-z][a-z0-9'-]{2,}")
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because
been before being below between both but by can could did do does doing down
during each few for from further had has have having he her here hers herself
him himself his how i if in into is it its itself just me more most my myself
no nor not now of off on once only or other our ours ourselves out over own
said same say says she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very
was we were what when where which while who whom why will with would you your
yours yourself yourselves new one two also its year years day days week monday
tuesday wednesday thursday friday saturday sunday told according
""".split())


@dataclasses.dataclass(frozen=True)
class Event:
  """A group of articles about one story.

  Attributes:
    id: ``<release>-eNNNN``.
    members: indices into the article list, ascending.
    outlets: distinct outlets, sorted.
    first_date / last_date: ``YYYY-MM-DD``.
  """
  id: str
  members: tuple[int, ...]
  outlets: tuple[str, ...]
  first_date: str
  last_date: str


_CAPITAL = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}\b")
_NOT_NAMES = frozenset(
    articles_lib.MONTHS + ("Monday", "Tuesday", "Wednesday", "Thursday",
                           "Friday", "Saturday", "Sunday", "The", "This",
                           "That", "These", "Those", "Some", "More", "Most"))


def entities(text: str) -> frozenset:
  """Proper names of a text: capitalised words (3+ letters) that do not
  start it or a sentence, without month and weekday names (lowercase)."""
  return frozenset(w.lower() for w in _CAPITAL.findall(text)
                   if w not in _NOT_NAMES)


def content_words(text: str) -> list[str]:
  """Lowercase content words (no stopwords, at least 3 characters)."""
  return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def _bucket(token: str) -> tuple[int, float]:
  h = zlib.crc32(token.encode("utf-8"))
  return h % HASH_DIM, 1.0 if (h >> 16) & 1 else -1.0


def hashing_embeddings(texts: Sequence[str]) -> np.ndarray:
  """``[n, HASH_DIM]`` float32 unit rows (see the module docstring)."""
  feats = []
  df = collections.Counter()
  for text in texts:
    words = content_words(text)
    grams = collections.Counter(words + [f"{a} {b}" for a, b in
                                         zip(words, words[1:])])
    feats.append(grams)
    df.update(grams.keys())
  n = max(len(texts), 1)
  out = np.zeros((len(texts), HASH_DIM), np.float32)
  for i, grams in enumerate(feats):
    for gram in sorted(grams):
      col, sign = _bucket(gram)
      idf = math.log((1.0 + n) / (1.0 + df[gram])) + 1.0
      out[i, col] += sign * (1.0 + math.log(grams[gram])) * idf
  norms = np.linalg.norm(out, axis=1, keepdims=True)
  return out / np.maximum(norms, 1e-12)


def embed(texts: Sequence[str], embedder: str) -> np.ndarray:
  """Unit embeddings of `texts` with the named public encoder."""
  if embedder == "hashing":
    return hashing_embeddings(texts)
  return minilm.default_encoder().encode(list(texts))


@functools.partial(jax.jit, static_argnames=("k",))
def _block_topk(queries, candidates, q_day, c_day, q_id, c_id, window, k):
  """Top-k cosine of each query row among candidates within the window
  (excluding itself and padding, whose id is -1). Cosines are rounded to
  1e-4 first, so equal ones tie and the lower candidate index wins (top_k
  is stable): float noise does not choose between neighbours."""
  sims = jnp.round((queries @ candidates.T) * 1e4) / 1e4
  ok = ((jnp.abs(q_day[:, None] - c_day[None, :]) <= window)
        & (q_id[:, None] != c_id[None, :]) & (c_id[None, :] >= 0))
  sims = jnp.where(ok, sims, -jnp.inf)
  return jax.lax.top_k(sims, k)


def similarity_edges(emb: np.ndarray, days: np.ndarray, window_days: int,
                     neighbours: int, threshold: float,
                     names: Sequence[frozenset] | None = None,
                     shared: int = 0) -> list[tuple[int, int, float]]:
  """Undirected links ``(i, j, cosine)`` with i < j (see the module doc).

  `emb` rows and `days` (int day numbers) must be sorted by day; with
  `names` (one set per row) a link also needs `shared` common names.
  """
  n = len(days)
  if n < 2:
    return []
  emb = np.asarray(emb, np.float32)
  days = np.asarray(days, np.int32)
  k = min(neighbours, n - 1)
  src, dst, sim = [], [], []
  for start in range(0, n, _BLOCK):
    rows = np.arange(start, min(start + _BLOCK, n))
    lo = int(np.searchsorted(days, days[rows[0]] - window_days, "left"))
    hi = int(np.searchsorted(days, days[rows[-1]] + window_days, "right"))
    width = -(-(hi - lo) // _BUCKET) * _BUCKET
    cand_id = np.full(width, -1, np.int32)
    cand_id[:hi - lo] = np.arange(lo, hi)
    cand = np.zeros((width, emb.shape[1]), np.float32)
    cand[:hi - lo] = emb[lo:hi]
    cand_day = np.zeros(width, np.int32)
    cand_day[:hi - lo] = days[lo:hi]
    q_id = np.full(_BLOCK, -1, np.int32)
    q_id[:len(rows)] = rows
    q = np.zeros((_BLOCK, emb.shape[1]), np.float32)
    q[:len(rows)] = emb[rows]
    q_day = np.zeros(_BLOCK, np.int32)
    q_day[:len(rows)] = days[rows]
    vals, idx = jax.device_get(_block_topk(q, cand, q_day, cand_day, q_id,
                                           cand_id, window_days, k))
    vals = np.round(vals[:len(rows)].astype(np.float64), 4)  # Exact 4 dp.
    keep = vals >= threshold  # -inf (masked) never passes.
    r, c = np.nonzero(keep)
    src.append(rows[r])
    dst.append(cand_id[idx[:len(rows)][r, c]])
    sim.append(vals[r, c])
  src, dst, sim = (np.concatenate(x) for x in (src, dst, sim))
  lo_id, hi_id = np.minimum(src, dst), np.maximum(src, dst)
  # One link per pair, with its largest cosine (both directions agree up to
  # rounding); sorted by (i, j).
  order = np.lexsort((-sim, hi_id, lo_id))
  lo_id, hi_id, sim = lo_id[order], hi_id[order], sim[order]
  first = np.ones(len(lo_id), bool)
  first[1:] = (lo_id[1:] != lo_id[:-1]) | (hi_id[1:] != hi_id[:-1])
  return [(int(i), int(j), float(v))
          for i, j, v in zip(lo_id[first], hi_id[first], sim[first])
          if names is None or len(names[i] & names[j]) >= shared]


def communities(n: int, edges: Sequence[tuple[int, int, float]],
                resolution: float, seed: int) -> list[int]:
  """Leiden community of each of `n` nodes (isolated nodes: their own)."""
  if not edges:
    return list(range(n))
  graph = igraph.Graph(n=n, edges=[(i, j) for i, j, _ in edges])
  graph.es["weight"] = [w for _, _, w in edges]
  partition = leidenalg.find_partition(
      graph, leidenalg.RBConfigurationVertexPartition, weights="weight",
      resolution_parameter=resolution, seed=seed % (2**31 - 1),
      n_iterations=-1)
  return list(partition.membership)


def group_events(arts: Sequence[articles_lib.Article],
                 config: config_lib.NewsReleaseConfig
                 ) -> tuple[list[Event], dict]:
  """Events of `arts` (sorted by date, then key) and the stage's counts."""
  first = config.window[0]
  days = np.array([(datetime.date.fromisoformat(a.date) - first).days
                   for a in arts], np.int32)
  ledes = [articles_lib.lede(a) for a in arts]
  emb = embed(ledes, config.embedder)
  names = [entities(" ".join(a.text.split()[:60])) for a in arts]
  df = collections.Counter(n for ns in names for n in ns)
  common = {n for n, c in df.items()
            if c > max(10, _COMMON_NAME_SHARE * len(arts))}
  names = [ns - common for ns in names]
  edges = similarity_edges(emb, days, config.window_days, config.neighbours,
                           config.link_similarity, names,
                           config.shared_entities)
  membership = communities(len(arts), edges, config.resolution, config.seed)
  groups: dict[int, list[int]] = collections.defaultdict(list)
  for i, c in enumerate(membership):
    groups[c].append(i)
  candidates = sorted((sorted(m) for m in groups.values() if len(m) > 1),
                      key=lambda m: (arts[m[0]].date, arts[m[0]].key))
  events, outlet_hist = [], collections.Counter()
  too_few = too_long = 0
  for members in candidates:
    outlets = sorted({arts[i].outlet for i in members})
    outlet_hist[len(outlets)] += 1
    dates = sorted(arts[i].date for i in members)
    span = (datetime.date.fromisoformat(dates[-1])
            - datetime.date.fromisoformat(dates[0])).days
    if len(outlets) < config.min_outlets:
      too_few += 1
      continue
    if span > config.max_event_days:
      too_long += 1
      continue
    events.append(Event(
        id=f"{config.release_id}-e{len(events) + 1:04d}",
        members=tuple(members), outlets=tuple(outlets),
        first_date=dates[0], last_date=dates[-1]))
  stats = {
      "articles": len(arts), "links": len(edges),
      "groups": len(candidates),
      "groups_by_outlets": {str(k): v for k, v in sorted(outlet_hist.items())},
      "dropped_too_few_outlets": too_few,
      "dropped_too_long": too_long,
      "events": len(events),
      "articles_in_events": sum(len(e.members) for e in events),
      "embedder": config.embedder,
  }
  return events, stats
