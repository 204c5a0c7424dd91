"""Nearest neighbours in a vector store, exact or through an approximate index.

Vectors are L2-normalised, so the score of two tracks is their cosine
similarity (a dot product). Two ways to search:

- **exact**: streams the store shard by shard (one shard in memory at a time)
  and keeps the best ``k`` per query; the reference, and the default for stores
  smaller than :data:`ANN_MIN_VECTORS`.
- **approximate**: an HNSW graph built by `usearch <https://github.com/unum-cloud/usearch>`_
  over the whole store, saved beside it as ``index-usearch.bin`` (vectors held as
  float16) with ``index.json`` naming the shards it covers. It is opened
  memory-mapped, so a query touches only the pages it visits. usearch was
  chosen by measurement (``benchmarks/inference.py`` and the README): at a
  million vectors it built fastest in the least memory of the libraries tried,
  with sub-millisecond queries.

Integrity: ``index.json`` records the index file's size and SHA-256 and the
store generation (``store_id``) it was built from. The index is trusted only
after its size and checksum are verified, once per opened store (about 0.25 s
for the 390 MB index of a million 128-d vectors); a damaged one makes
:func:`search` raise a StoreError (``mgc embed`` rebuilds it), never return its
answers. Every score is checked: a NaN, a row outside the store or a score
beyond 1 by more than :data:`SCORE_SLACK` is damage, and scores are clipped to
[-1, 1] (float16 rounding can exceed 1 by about 1e-3).

:func:`genre_precision_at_k` measures whether similarity follows genre: the
share of each track's ``k`` nearest neighbours that carry its label.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic
from .errors import StoreError
from .vectors import INDEX_META, INDEX_NAME, VectorStore, failure_reason, normalize, sha256_file

__all__ = [
    "ANN_MIN_VECTORS",
    "build_index",
    "exact_search",
    "genre_precision_at_k",
    "index_is_current",
    "index_state",
    "search",
    "store_precision_at_k",
]

#: Stores with at least this many vectors get an approximate index by default.
ANN_MIN_VECTORS = 20_000
#: Scores of unit vectors beyond 1 by more than this are damage, not float16 rounding.
SCORE_SLACK = 1e-2
#: HNSW graph degree, candidates kept while building and while searching. expansion_search=64 gave
#: recall@10 of 0.99 on a million clustered vectors (benchmarks/inference.py); raise it for more.
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 64
#: Queries multiplied against one shard at a time by the exact search.
_QUERY_BLOCK = 1024
#: Queries per approximate search of :func:`store_precision_at_k` (a progress update each).
_ANN_BLOCK = 256


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` best scores of each row, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((scores.shape[0], 0), np.int64)
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    order = np.lexsort((part, -np.take_along_axis(scores, part, 1)), axis=1)
    return np.take_along_axis(part, order, 1)


def _damaged(store: VectorStore, why: str, *, index: bool = True) -> StoreError:
    advice = " (or search with --exact)" if index else ""
    return StoreError(f"{store.path}: {why}; run `mgc embed` again with the same --out to repair it{advice}")


def _checked_scores(store: VectorStore, scores: np.ndarray, where: str, *, index: bool) -> np.ndarray:
    """``scores`` of unit vectors clipped to [-1, 1]; a non-finite score or one far beyond is damage (a StoreError)."""
    bad = ~(np.abs(scores) <= 1 + SCORE_SLACK)  # NaN compares False
    if bad.any():
        why = f"{where} gave the score {float(scores[bad][0])}, which unit vectors cannot give"
        raise _damaged(store, why, index=index)
    return np.clip(scores, -1.0, 1.0, out=scores)


def exact_search(
    store: VectorStore,
    queries: np.ndarray,
    k: int = 10,
    *,
    exclude: np.ndarray | None = None,
    progress: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``store`` most similar to each query, by brute force.

    Parameters
    ----------
    store : VectorStore
    queries : np.ndarray [shape=(n_queries, dim)]
        Finite vectors (L2-normalised here).
    k : int
        Neighbours per query.
    exclude : np.ndarray [shape=(n_queries,)], optional
        A row to leave out of each query's results (its own, for a track of the store); -1 for none.
    progress : callable, optional
        Receives ``ProgressEvent`` values: task ``neighbours``, unit ``vectors``
        (the store's vectors searched, a shard at a time; ``total`` is ``len(store)``).

    Returns
    -------
    rows : np.ndarray [shape=(n_queries, k)], int64
        Best first; -1 where the store has fewer than ``k`` other rows.
    scores : np.ndarray [shape=(n_queries, k)], float32
        Cosine similarities in [-1, 1] (-inf where ``rows`` is -1).

    Raises
    ------
    StoreError
        When a shard cannot be read or holds vectors that are not unit length (NaN, or a score beyond 1).
    """
    from .progress import ThrottledReporter

    queries = _queries(queries)
    n = len(queries)
    report = ThrottledReporter(progress, "neighbours", "vectors")
    report("start", 0, len(store))
    exclude = np.full(n, -1, np.int64) if exclude is None else np.asarray(exclude, np.int64)
    best_rows = np.full((n, 0), -1, np.int64)
    best_scores = np.full((n, 0), -np.inf, np.float32)
    for number, (start, columns) in enumerate(store.iter_shards()):
        vectors = columns["embedding"]
        scores = np.empty((n, len(vectors)), np.float32)
        for q in range(0, n, _QUERY_BLOCK):
            np.matmul(queries[q : q + _QUERY_BLOCK], vectors.T, out=scores[q : q + _QUERY_BLOCK])
        _checked_scores(store, scores, store.shards[number]["name"], index=False)
        own = (exclude >= start) & (exclude < start + len(vectors))
        scores[np.flatnonzero(own), exclude[own] - start] = -np.inf
        local = _top_k(scores, k)
        rows = np.concatenate([best_rows, local + start], axis=1)
        merged = np.concatenate([best_scores, np.take_along_axis(scores, local, 1)], axis=1)
        keep = _top_k(merged, k)
        best_rows, best_scores = np.take_along_axis(rows, keep, 1), np.take_along_axis(merged, keep, 1)
        report("update", start + len(vectors), len(store))
    report("end", len(store), len(store))
    pad = k - best_rows.shape[1]
    if pad > 0:
        best_rows = np.pad(best_rows, ((0, 0), (0, pad)), constant_values=-1)
        best_scores = np.pad(best_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    best_rows[~np.isfinite(best_scores)] = -1
    return best_rows, best_scores


def _queries(queries: np.ndarray) -> np.ndarray:
    queries = np.atleast_2d(np.asarray(queries, np.float32))
    if not np.isfinite(queries).all():
        raise ValueError("queries hold NaN or infinite values")
    return normalize(queries)


def _check_index(store: VectorStore) -> tuple[str, str]:
    try:
        meta = json.loads((store.path / INDEX_META).read_bytes())
    except FileNotFoundError:
        return "absent", f"there is no {INDEX_META}"
    except (OSError, ValueError) as exc:
        return "damaged", f"{INDEX_META} cannot be read ({exc})"
    if not isinstance(meta, dict):
        return "damaged", f"{INDEX_META} is not an index description"
    if (
        meta.get("shards") != [s["name"] for s in store.shards]
        or meta.get("vectors") != len(store)
        or meta.get("store_id") != store.id
    ):
        return "stale", "it does not cover the store's shards"
    if not isinstance(meta.get("sha256"), str):
        return "stale", "it was built before indexes carried a checksum"
    path = store.path / INDEX_NAME
    try:
        size = path.stat().st_size
        if size != meta.get("bytes"):
            return "damaged", f"{INDEX_NAME} has {size} bytes where {INDEX_META} lists {meta.get('bytes')}"
        if sha256_file(path) != meta["sha256"]:
            return "damaged", f"{INDEX_NAME} does not match the SHA-256 that {INDEX_META} lists"
    except OSError as exc:
        return "damaged", f"{INDEX_NAME} cannot be read ({exc.strerror or exc})"
    return "current", ""


def index_state(store: VectorStore) -> tuple[str, str]:
    """``(state, why)`` of the store's approximate index, checked once per ``store`` object.

    ``state`` is ``"current"`` (covers exactly the store's shards, and its size and SHA-256 are those
    ``index.json`` records), ``"absent"``, ``"stale"`` (covers other shards, or has no checksum: rebuilt
    by the next ``mgc embed`` that wants one) or ``"damaged"``. Cost: a read of the whole index file
    (about 0.25 s at a million 128-d vectors), once.
    """
    if store._ann_state is None:
        store._ann_state = _check_index(store)
    return store._ann_state


def index_is_current(store: VectorStore) -> bool:
    """Whether the store's approximate index exists, covers exactly its shards and is intact (:func:`index_state`)."""
    return index_state(store)[0] == "current"


def build_index(store: VectorStore, *, threads: int | None = None, progress: Any = None) -> Path:
    """Build the approximate index of ``store`` and save it atomically beside the embeddings.

    ``index.json`` is removed first and written last, with the index file's size and SHA-256:
    a run stopped in between leaves no index that a search would trust.
    Memory: the graph and float16 vectors, about ``len(store) * (2 * dim + 2 * 4 * CONNECTIVITY)`` bytes
    (about 390 MB at a million 128-d vectors); the store is read one shard at a time.

    Returns
    -------
    Path
        ``STORE/index-usearch.bin``.

    Raises
    ------
    StoreError
        When the index cannot be written (a full disk): the store has no index then, and searches exactly.
    """
    import usearch
    from usearch.index import Index

    from .progress import Reporter as ProgressReporter

    report = ProgressReporter(progress, "index", "vectors")
    threads = threads or os.cpu_count() or 1
    index = Index(
        ndim=store.dim,
        metric="ip",
        dtype="f16",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )
    report("start", 0, len(store))
    for start, columns in store.iter_shards():
        vectors = columns["embedding"]
        if len(vectors):
            index.add(np.arange(start, start + len(vectors), dtype=np.uint64), vectors, threads=threads)
        report("update", start + len(vectors), len(store))
    path = store.path / INDEX_NAME
    digest: list[str] = []

    def save(temp: str) -> None:
        index.save(temp)
        digest.append(sha256_file(temp))

    store._ann_index, store._ann_state = None, None
    try:
        (store.path / INDEX_META).unlink(missing_ok=True)
        atomic.write_atomic(path, save)
        description = {
            "library": "usearch",
            "version": usearch.__version__,
            "metric": "ip",
            "dtype": "f16",
            "connectivity": CONNECTIVITY,
            "expansion_add": EXPANSION_ADD,
            "expansion_search": EXPANSION_SEARCH,
            "vectors": len(store),
            "shards": [s["name"] for s in store.shards],
            "store_id": store.id,
            "bytes": path.stat().st_size,
            "sha256": digest[0],
        }
        atomic.write_json(store.path / INDEX_META, description, sort_keys=False)
    except (OSError, RuntimeError) as exc:
        raise StoreError(
            f"cannot write the approximate index of {store.path}: {failure_reason(exc)}; the vectors are whole "
            "and searched exactly: free some space and run the same `mgc embed` again to build it"
        ) from None
    report("end", len(store), len(store))
    return path


def _ann_search(
    store: VectorStore, queries: np.ndarray, k: int, exclude: np.ndarray, expansion: int | None
) -> tuple[np.ndarray, np.ndarray]:
    from usearch.index import Index

    # Opened once per VectorStore (memory-mapped): repeated queries pay no open.
    index = store._ann_index
    if index is None:
        try:
            index = Index.restore(str(store.path / INDEX_NAME), view=True)
        except Exception as exc:  # usearch raises bare RuntimeErrors and ValueErrors for a bad file
            raise _damaged(store, f"the approximate index cannot be opened ({exc})") from None
        if index is None or index.ndim != store.dim or len(index) != len(store):
            raise _damaged(store, "the approximate index does not describe this store")
        store._ann_index = index
    index.expansion_search = max(expansion or EXPANSION_SEARCH, k + 1)
    matches = index.search(queries, k + 1, threads=1)
    keys = np.atleast_2d(np.asarray(matches.keys)).astype(np.int64)
    distances = np.atleast_2d(np.asarray(matches.distances, np.float32))
    # One query gives a Matches (only the found keys), several a BatchMatches (padded, with counts).
    counts = np.atleast_1d(np.asarray(matches.counts if hasattr(matches, "counts") else len(matches.keys)))
    rows = np.full((len(queries), k), -1, np.int64)
    scores = np.full((len(queries), k), -np.inf, np.float32)
    for q in range(len(queries)):
        found = keys[q, : counts[q]]
        if ((found < 0) | (found >= len(store))).any():
            raise _damaged(store, "the approximate index gave rows outside the store")
        sims = 1.0 - distances[q, : counts[q]]  # usearch's "ip" distance is 1 - dot
        sims = _checked_scores(store, sims, "the approximate index", index=True)
        keep = found != exclude[q]
        found, sims = found[keep][:k], sims[keep][:k]
        rows[q, : len(found)], scores[q, : len(found)] = found, sims
    return rows, scores


def search(
    store: VectorStore,
    queries: np.ndarray,
    k: int = 10,
    *,
    exclude: np.ndarray | None = None,
    exact: bool | None = None,
    expansion: int | None = None,
    progress: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_search`, or the approximate index when the store has a current one.

    ``exact=None`` uses the index when it is current; ``True`` always searches
    exactly; ``False`` requires the index. ``expansion`` widens the approximate
    search (more recall, slower); default :data:`EXPANSION_SEARCH`. ``progress``
    receives the events of an exact search (see :func:`exact_search`); an
    approximate one sends none.

    Raises
    ------
    StoreError
        When the index is damaged (unless ``exact``): searching without it would hide the damage,
        and ``mgc embed`` rebuilds it; or when the store itself is damaged.
    """
    queries = _queries(queries)
    exclude = np.full(len(queries), -1, np.int64) if exclude is None else np.asarray(exclude, np.int64)
    if exact is not True:
        state, why = index_state(store)
        if state == "current":
            return _ann_search(store, queries, k, exclude, expansion)
        if state == "damaged":
            raise _damaged(store, f"its approximate index is damaged ({why})")
    if exact is False:
        raise StoreError(
            f"{store.path} has no current approximate index; run `mgc embed` again with --index ann to build it"
        )
    return exact_search(store, queries, k, exclude=exclude, progress=progress)


def genre_precision_at_k(
    vectors: np.ndarray,
    labels: np.ndarray,
    k: int = 10,
    *,
    max_queries: int = 10_000,
    seed: int = 0,
    pool: str = "tracks",
    progress: Any = None,
) -> dict[str, Any]:
    """Share of each track's ``k`` nearest neighbours (cosine, itself excluded) that carry its label.

    Parameters
    ----------
    vectors : np.ndarray [shape=(n, dim)]
        Embeddings (normalised here).
    labels : np.ndarray [shape=(n,)]
        Any comparable labels.
    k : int
        Neighbours per track, lowered to ``n - 1`` (a track is not its own
        neighbour): the result's ``note`` says so.
    max_queries : int
        Tracks used as queries (a seeded sample when ``n`` is larger); neighbours
        are always searched among all ``n``. Cost: ``min(n, max_queries) * n * dim``.
    seed : int
        Seeds the sample of queries.
    pool : str
        What the ``n`` tracks are, for the ``note`` (``"tracks in the test split"``).
    progress : callable, optional
        Receives ``ProgressEvent`` values: task ``neighbours``, unit ``queries``,
        ``total`` the queries, an update per block of 1024 queries at most every 0.1 s.

    Returns
    -------
    dict
        ``k`` (the neighbours used), ``k_requested``, ``precision`` (the mean
        over queries), ``per_label`` (label -> mean over its queries),
        ``queries``, ``chance`` (the same share for neighbours drawn at random
        among the others: sum over labels of share * (count - 1) / (n - 1)) and
        ``note``: ``""``, or for a person why ``k`` was lowered, or why the
        figure says nothing (no two tracks share a label: then no neighbour can,
        and ``precision`` and ``chance`` are 0).
    """
    from .progress import ThrottledReporter

    vectors = normalize(vectors)
    labels = np.asarray(labels)
    n = len(vectors)
    requested, k = k, min(k, n - 1)
    if k < 1:
        note = f"genre precision at k needs at least 2 tracks; there {'is' if n == 1 else 'are'} {n} {pool}"
        return {
            "k": 0,
            "k_requested": int(requested),
            "precision": float("nan"),
            "per_label": {},
            "queries": 0,
            "chance": float("nan"),
            "note": note,
        }
    queries = np.arange(n)
    if n > max_queries:
        queries = np.sort(np.random.default_rng(seed).choice(n, max_queries, replace=False))
    report = ThrottledReporter(progress, "neighbours", "queries")
    report("start", 0, len(queries))
    hits = np.empty(len(queries), np.float64)
    for start in range(0, len(queries), _QUERY_BLOCK):
        block = queries[start : start + _QUERY_BLOCK]
        scores = vectors[block] @ vectors.T
        scores[np.arange(len(block)), block] = -np.inf
        nearest = _top_k(scores, k)
        hits[start : start + len(block)] = (labels[nearest] == labels[block, None]).mean(axis=1)
        report("update", start + len(block), len(queries))
    report("end", len(queries), len(queries))
    result = _precision_summary(hits, labels[queries], labels, k)
    result.update(k_requested=int(requested), note=_note(requested, k, n, pool, labels, pool))
    return result


def _note(requested: int, k: int, n: int, pool: str, labels: np.ndarray, labelled: str) -> str:
    """Why ``k`` is not the ``requested`` one (``n`` ``pool``), and whether any two of the ``labels`` match."""
    notes = []
    if k < requested:
        notes.append(f"k lowered from {requested} to {k}: there are {n} {pool} and a track is not its own neighbour")
    counts = np.unique(labels, return_counts=True)[1]
    if len(counts) and counts.max() < 2:
        notes.append(
            f"no two of the {len(labels)} {labelled} share a label, so no neighbour can: "
            "the figure says nothing of the embeddings (it needs at least 2 tracks of a label)"
        )
    return "; ".join(notes)


def _precision_summary(
    hits: np.ndarray, query_labels: np.ndarray, labels: np.ndarray, k: int, n: int | None = None
) -> dict[str, Any]:
    """The result of :func:`genre_precision_at_k` from each query's share of hits.

    ``labels`` are those of the tracks a query is drawn from, ``n`` the tracks its neighbours come from
    (default ``len(labels)``): chance is sum over labels of (count / len(labels)) * (count - 1) / (n - 1).
    """
    _names, counts = np.unique(labels, return_counts=True)
    n = len(labels) if n is None else n
    return {
        "k": int(k),
        "precision": float(hits.mean()),
        "per_label": {str(name): float(hits[query_labels == name].mean()) for name in np.unique(query_labels)},
        "queries": int(len(hits)),
        "chance": float(np.sum(counts * (counts - 1)) / (len(labels) * (n - 1))),
    }


def store_precision_at_k(
    embeddings: str | Path | VectorStore,
    k: int = 10,
    *,
    max_queries: int = 1000,
    seed: int = 0,
    exact=None,
    progress: Any = None,
) -> dict[str, Any]:
    """:func:`genre_precision_at_k` over an embedding store's labelled tracks, searched like :func:`search`.

    A seeded sample of ``max_queries`` labelled tracks are the queries; their
    neighbours are searched among every track of the store (unlabelled neighbours count as misses).
    ``k`` is lowered to the store's tracks less one (the result's ``k_requested`` and ``note`` say so).

    ``progress`` receives ``ProgressEvent`` values of task ``neighbours``: through
    the approximate index, unit ``queries`` (blocks of 256); searched exactly,
    unit ``vectors`` (the store's vectors searched, a shard at a time; every
    query is done at the end), as :func:`exact_search`.
    """
    from .progress import ThrottledReporter

    store = embeddings if isinstance(embeddings, VectorStore) else VectorStore(embeddings)
    labels = np.concatenate([c["label"] for _, c in store.iter_shards(columns=("label",))] or [np.zeros(0, object)])
    labelled = np.flatnonzero(labels != "")
    if len(labelled) < 2:
        raise StoreError(f"{store.path} has fewer than 2 labelled tracks; precision at k needs labels")
    queries = labelled
    if len(queries) > max_queries:
        queries = np.sort(np.random.default_rng(seed).choice(labelled, max_queries, replace=False))
    requested, k = k, min(k, len(labels) - 1)
    if exact is not True and index_state(store)[0] == "current":  # per block of queries: each costs the same
        report, parts = ThrottledReporter(progress, "neighbours", "queries"), []
        report("start", 0, len(queries))
        for start in range(0, len(queries), _ANN_BLOCK):
            block = queries[start : start + _ANN_BLOCK]
            parts.append(search(store, store.vectors(block), k, exclude=block, exact=exact)[0])
            report("update", start + len(block), len(queries))
        report("end", len(queries), len(queries))
        rows = np.concatenate(parts)
    else:  # one pass over the shards answers every query
        rows, _scores = search(store, store.vectors(queries), k, exclude=queries, exact=exact, progress=progress)
    valid = rows >= 0
    same = np.where(valid, labels[np.maximum(rows, 0)] == labels[queries, None], False)
    hits = same.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    result = _precision_summary(hits, labels[queries], labels[labelled], k, n=len(labels))
    note = _note(requested, k, len(labels), "tracks in the store", labels[labelled], "labelled tracks in the store")
    result.update(k_requested=int(requested), note=note)
    return result
