"""``mgc similar``: the tracks of an embedding store nearest to track ids or audio files.

The search itself (exact, or through the saved approximate index) is
``engine.neighbours``'; this module resolves queries, embedding audio files
with the store's model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mgc.engine import neighbours, vectors
from mgc.models.config import NEAREST_K
from mgc.models.data.inputs import describe_error, entries
from mgc.models.errors import ModelError
from mgc.models.tasks.embed import EmbeddingStore

__all__ = ["similar"]


def similar(
    embeddings: str | Path | EmbeddingStore,
    queries: Sequence[str],
    *,
    k: int = NEAREST_K,
    exact: bool | None = None,
    workers: int | None = None,
) -> list[dict[str, Any]]:
    """The tracks of an embedding store nearest to each query.

    Parameters
    ----------
    embeddings : str, Path or EmbeddingStore
        A folder written by :func:`mgc.models.embed`.
    queries : sequence of str
        Track ids of the store, or audio files (embedded with the store's model,
        which must still be where the store says and unchanged).
    k : int
        Tracks per query.
    exact : bool, optional
        See :func:`search`.
    workers : int, optional
        Decoding processes for audio queries.

    Returns
    -------
    list of dict
        Per query, in order: ``query``, ``kind`` (``track`` or ``audio``),
        ``error`` (None, or why the query could not be embedded) and ``results``: a
        list of ``{"track_id", "path", "label", "score"}``, best first (a track
        query never returns itself).

    Raises
    ------
    ModelError
        No query, or a query that is neither a track id of the store nor a file.
    """
    if not queries:
        raise ModelError("give track ids or audio files to search for (or --precision)")
    store = embeddings if isinstance(embeddings, EmbeddingStore) else EmbeddingStore(embeddings)
    queries = [str(q) for q in queries]
    rows = store.rows(queries)
    audio = [q for q, row in zip(queries, rows) if row < 0]
    missing = [q for q in audio if not Path(q).is_file()]
    if missing:
        example = f" (its track ids look like {store.track_ids()[0]!r})" if len(store) else ""
        raise ModelError(f"{missing[0]!r} is neither a track id of {store.path}{example} nor an audio file")
    wanted = np.zeros((len(queries), store.dim), np.float32)
    known = np.flatnonzero(rows >= 0)
    wanted[known] = store.vectors(rows[known])
    errors: dict[int, str] = {}
    if audio:
        model = store.load_model()
        positions = [i for i, row in enumerate(rows) if row < 0]
        results = model.audio_results(entries(audio), workers=workers)
        for position, result in zip(positions, results):
            if result.error is not None:
                errors[position] = describe_error(result.error)
            elif not np.isfinite(result.embedding).all():
                errors[position] = "non_finite: the network's output for this file holds NaN or infinite values"
            else:
                wanted[position] = vectors.normalize(result.embedding)
    found, scores = neighbours.search(store, wanted, k, exclude=rows, exact=exact)
    valid = found[found >= 0]
    info = store.info(valid) if valid.size else {c: np.zeros(0, object) for c in ("track_id", "path", "label")}
    at = {int(r): i for i, r in enumerate(valid)}
    out = []
    for q, query in enumerate(queries):
        entry: dict[str, Any] = {
            "query": query,
            "kind": "track" if rows[q] >= 0 else "audio",
            "error": errors.get(q),
            "results": [],
        }
        if q not in errors:
            for row, score in zip(found[q], scores[q]):
                if row < 0:
                    continue
                i = at[int(row)]
                entry["results"].append(
                    {
                        "track_id": str(info["track_id"][i]),
                        "path": str(info["path"][i]),
                        "label": str(info["label"][i]),
                        "score": float(score),
                    }
                )
        out.append(entry)
    return out
