"""Fixed disjoint batches of private records (host NumPy).

Keyed-hash batching (`keyed_hash_batches`)
------------------------------------------
Each record id is hashed with HMAC-SHA256 under a secret key to 64 bits h.
Its bucket is ``floor(h * num_batches / 2^64)``; inside a bucket records are
ranked by (h, id) and the first ``batch_size`` (s) fill the batch's rows.

* ``num_batches`` is a PUBLIC constant (chosen from the public release size
  or from DP counts, never from the private data itself: ``ceil(n / s)`` of
  the realised n would move every record when n changes).
* Partial buckets: rows beyond the bucket's records are padding (index -1).
  The shared decoder fills them with the public prompt; a sampler given
  ``row_mask = rows >= 0`` turns them into null (zero) rows instead.
* Overflow: records ranked >= s in their bucket are dropped (`dropped`),
  never moved to another batch.
* Every bucket yields its documents, empty ones included: skipping an empty
  batch would reveal that it is empty.

Adding or removing one record changes only its own bucket, and there at
most one row: a padding row becomes the record, or the record pushes out
the bucket's s-th record (see `cbench.privacy.pp_accounting` for what this
costs). `check_partition` asserts rows and `dropped` partition the records.

Clustered batching (`cluster_batches`, Amin et al. 2025)
-------------------------------------------------------
1. Public centres: k-means on PUBLIC embeddings (`public_kmeans`, seeded).
2. DP counts: each private record is counted at its nearest centre; the
   histogram gets Laplace or Gaussian noise (`dp_cluster_counts`, returns
   its `DpEvent`; L1/L2 sensitivity 1 under add/remove, 2 / sqrt(2) under
   replace-one).
3. Keep the `num_keep` centres with the largest noisy counts; every private
   record goes to its nearest KEPT centre.
4. Cluster j gets ``max(1, round(noisy_count_j / s))`` batches (public, from
   the DP counts) and keyed-hash batching runs inside it.
Private embeddings are computed by a public model and used only record by
record (nearest centre), so given the DP counts one record still changes
one batch only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
from typing import Optional, Sequence

import dp_accounting
import numpy as np

from cbench._validate import check, one_of

_TWO64 = 1 << 64


@dataclasses.dataclass(frozen=True)
class Batches:
  """Rows of every batch.

  Attributes:
    rows: int64 ``[num_batches, batch_size]`` record indices, -1 = padding.
    dropped: int64 indices of records in no batch (bucket overflow).
    batch_size: s.
    cluster_of_batch: int64 ``[num_batches]`` (clustered batching) or None.
  """

  rows: np.ndarray
  dropped: np.ndarray
  batch_size: int
  cluster_of_batch: Optional[np.ndarray] = None

  @property
  def num_batches(self) -> int:
    return int(self.rows.shape[0])

  @property
  def row_mask(self) -> np.ndarray:
    return self.rows >= 0

  @property
  def sizes(self) -> np.ndarray:
    return self.row_mask.sum(axis=1)

  def batch_of(self, num_records: int) -> np.ndarray:
    """``[num_records]`` batch index of each record, -1 if dropped."""
    out = np.full(num_records, -1, np.int64)
    b, _ = np.nonzero(self.rows >= 0)
    out[self.rows[self.rows >= 0]] = b
    return out


def keyed_hash(record_ids: Sequence, key: bytes) -> list[int]:
  """64-bit HMAC-SHA256 of each id's str() under `key`."""
  check(isinstance(key, (bytes, bytearray)) and len(key) >= 16,
        "Expected a secret batching key of at least 16 bytes.")
  out = []
  for rid in record_ids:
    digest = hmac.new(bytes(key), str(rid).encode("utf-8"),
                      hashlib.sha256).digest()
    out.append(int.from_bytes(digest[:8], "big"))
  return out


def keyed_hash_batches(record_ids: Sequence, key: bytes, batch_size: int,
                       num_batches: int) -> Batches:
  """Fixed disjoint batches by keyed hash (see module docstring).

  Args:
    record_ids: unique ids (str()-ed), one per private record.
    key: secret HMAC key (>= 16 bytes); never log it.
    batch_size: s >= 1, rows per batch.
    num_batches: public number of buckets >= 1.

  Returns:
    `Batches` with ``rows[b]`` the records of bucket b in hash order.
  """
  check(isinstance(batch_size, (int, np.integer)) and batch_size >= 1,
        f"Expected an integer batch_size={batch_size} >= 1.")
  check(isinstance(num_batches, (int, np.integer)) and num_batches >= 1,
        f"Expected an integer num_batches={num_batches} >= 1.")
  ids = [str(r) for r in record_ids]
  check(len(set(ids)) == len(ids), "Record ids must be unique.")
  hashes = keyed_hash(ids, key)
  buckets: list[list[tuple[int, str, int]]] = [[] for _ in range(num_batches)]
  for i, (h, rid) in enumerate(zip(hashes, ids)):
    buckets[(h * num_batches) >> 64].append((h, rid, i))
  rows = np.full((num_batches, batch_size), -1, np.int64)
  dropped = []
  for b, members in enumerate(buckets):
    members.sort()
    kept = [m[2] for m in members[:batch_size]]
    rows[b, :len(kept)] = kept
    dropped.extend(m[2] for m in members[batch_size:])
  return Batches(rows=rows, dropped=np.array(sorted(dropped), np.int64),
                 batch_size=int(batch_size))


def check_partition(batches: Batches, num_records: int) -> None:
  """Raises AssertionError unless rows + dropped partition range(n)."""
  used = batches.rows[batches.rows >= 0]
  everything = np.concatenate([used, batches.dropped])
  if everything.size != num_records or not np.array_equal(
      np.sort(everything), np.arange(num_records)):
    raise AssertionError(
        f"Batches do not partition the {num_records} records: "
        f"{used.size} in batches, {batches.dropped.size} dropped, "
        f"{everything.size - np.unique(everything).size} duplicates.")
  if batches.rows.shape[1] != batches.batch_size:
    raise AssertionError("Batch width differs from batch_size.")


# ---------------------------------------------------------------------------
# Clustering


def public_kmeans(public_embeddings: np.ndarray, num_centres: int,
                  rng: np.random.Generator, iterations: int = 25
                  ) -> np.ndarray:
  """k-means (k-means++ init, Lloyd steps) on PUBLIC embeddings ``[n, d]``."""
  x = np.asarray(public_embeddings, np.float64)
  check(x.ndim == 2 and x.shape[0] >= num_centres >= 1,
        f"Expected public_embeddings [n >= {num_centres}, d]; got {x.shape}.")
  centres = [x[rng.integers(x.shape[0])]]
  d2 = np.sum((x - centres[0]) ** 2, axis=1)
  for _ in range(1, num_centres):
    p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1.0 / len(x))
    centres.append(x[rng.choice(len(x), p=p)])
    d2 = np.minimum(d2, np.sum((x - centres[-1]) ** 2, axis=1))
  c = np.stack(centres)
  for _ in range(iterations):
    assign = nearest_centre(x, c)
    for j in range(num_centres):
      members = x[assign == j]
      if len(members):
        c[j] = members.mean(axis=0)
  return c


def nearest_centre(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
  """Index of the nearest centre (Euclidean; ties: lowest index)."""
  p = np.asarray(points, np.float64)
  c = np.asarray(centres, np.float64)
  d2 = (np.sum(p ** 2, 1)[:, None] - 2.0 * p @ c.T
        + np.sum(c ** 2, 1)[None, :])
  return np.argmin(d2, axis=1)


def dp_cluster_counts(private_embeddings: np.ndarray, centres: np.ndarray, *,
                      noise: str, noise_multiplier: float, relation: str,
                      rng: np.random.Generator
                      ) -> tuple[np.ndarray, dp_accounting.DpEvent]:
  """Noisy count of private records per public centre, and its DpEvent.

  Args:
    private_embeddings: ``[n, d]`` (public-model embeddings of records).
    centres: ``[k, d]`` public centres.
    noise: 'laplace' (scale = multiplier * L1 sensitivity) or 'gaussian'
      (std = multiplier * L2 sensitivity).
    noise_multiplier: > 0.
    relation: 'add_remove' (L1 = L2 = 1) or 'replace_one' (L1 = 2,
      L2 = sqrt 2).
    rng: host generator for the noise (an injected CSPRNG in production).

  Returns:
    ``(noisy_counts [k] float64, event)``; the event's multiplier is stated
    relative to the sensitivity of the histogram under `relation`, so it
    composes under dp_accounting's add/remove semantics.
  """
  one_of("noise", noise, ("laplace", "gaussian"))
  one_of("relation", relation, ("add_remove", "replace_one"))
  check(noise_multiplier > 0,
        f"Expected noise_multiplier={noise_multiplier} > 0.")
  k = np.asarray(centres).shape[0]
  counts = np.bincount(nearest_centre(private_embeddings, centres),
                       minlength=k).astype(np.float64)
  if noise == "laplace":
    sens = 1.0 if relation == "add_remove" else 2.0
    noisy = counts + rng.laplace(0.0, noise_multiplier * sens, size=k)
    event = dp_accounting.LaplaceDpEvent(float(noise_multiplier))
  else:
    sens = 1.0 if relation == "add_remove" else math.sqrt(2.0)
    noisy = counts + rng.normal(0.0, noise_multiplier * sens, size=k)
    event = dp_accounting.GaussianDpEvent(float(noise_multiplier))
  return noisy, event


def batches_within_clusters(private_embeddings: np.ndarray,
                            record_ids: Sequence, centres: np.ndarray,
                            noisy_counts: np.ndarray, num_keep: int, *,
                            key: bytes, batch_size: int) -> Batches:
  """Steps 3-4 of clustered batching (post-processing of the DP counts)."""
  noisy = np.asarray(noisy_counts, np.float64)
  k = np.asarray(centres).shape[0]
  check(noisy.shape == (k,), f"Expected {k} noisy counts; got {noisy.shape}.")
  check(1 <= num_keep <= k, f"Expected 1 <= num_keep={num_keep} <= {k}.")
  kept = np.argsort(-noisy, kind="stable")[:num_keep]
  assign = kept[nearest_centre(private_embeddings, np.asarray(centres)[kept])]
  ids = [str(r) for r in record_ids]
  check(len(ids) == len(assign),
        f"Expected one id per embedding ({len(assign)}); got {len(ids)}.")
  all_rows, all_dropped, cluster_of = [], [], []
  for j in kept:
    members = np.flatnonzero(assign == j)
    nb = max(1, int(round(max(noisy[j], 0.0) / batch_size)))
    sub = keyed_hash_batches([ids[m] for m in members], key, batch_size, nb)
    rows = np.where(sub.rows >= 0, members[np.maximum(sub.rows, 0)], -1)
    all_rows.append(rows)
    all_dropped.append(members[sub.dropped])
    cluster_of.extend([int(j)] * nb)
  return Batches(rows=np.concatenate(all_rows),
                 dropped=np.sort(np.concatenate(all_dropped)).astype(np.int64),
                 batch_size=int(batch_size),
                 cluster_of_batch=np.array(cluster_of, np.int64))


def cluster_batches(private_embeddings: np.ndarray, record_ids: Sequence,
                    public_centres: np.ndarray, *, num_keep: int, key: bytes,
                    batch_size: int, noise: str, noise_multiplier: float,
                    relation: str, rng: np.random.Generator
                    ) -> tuple[Batches, np.ndarray, dp_accounting.DpEvent]:
  """Clustered batching: returns (batches, noisy counts, counts DpEvent).

  Compose the counts event with the synthesis event (sequentially) to get
  the release's total cost.
  """
  noisy, event = dp_cluster_counts(
      private_embeddings, public_centres, noise=noise,
      noise_multiplier=noise_multiplier, relation=relation, rng=rng)
  batches = batches_within_clusters(private_embeddings, record_ids,
                                    public_centres, noisy, num_keep, key=key,
                                    batch_size=batch_size)
  return batches, noisy, event
