"""A head's vector cache: the vectors of a store's tracks, computed once and kept (``MODEL_DIR/vectors``).

A track-level cache holds one vector per track, keyed by the track (below). A
patch-level cache (``patches``) holds each track's patch vectors, keyed
``KEY<TAB>i`` for its ``i``-th patch (:func:`mgc.models.kinds.head.patch_keys`):
all of a track's patches are written in the same shard, so a track has all or none of them,
and a track that failed is recorded under its patch-0 key. The number of
patches and the level are part of the fingerprint.

The cache is an ``engine.vectors`` store (sharded, atomic, resumable): a
training killed half-way resumes where it stopped, and a second training on
the same store and featurizer (``--vectors DIR``) reads it back instead of
running a backbone over every track again. Its ``model.fingerprint`` names
what makes the vectors: the featurizer and, for the statistics, the store's
FeatureSpec; a folder of another fingerprint is refused (or, the model folder's
own, replaced). Each vector is keyed by its track and its audio (the cache's
``track_id`` column holds :func:`mgc.models.kinds.head.track_keys`: track id,
path, size and modification time, tab-separated), so another store with the
same track ids, or changed audio, is computed anew. One training fills a cache
at a time (its ``.lock``): a second one sharing it is refused at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mgc.engine import FolderLock, VectorWriter, vectors
from mgc.models.data.inputs import describe_error
from mgc.models.errors import ModelError
from mgc.models.kinds.featurizers import store_vectors, vector_dim
from mgc.models.kinds.head import read_cached, read_cached_patches, track_keys

__all__ = ["cached_vectors"]

#: How the cache keys its vectors (see :func:`mgc.models.kinds.head.track_keys`).
KEYS = "track_id, path, size, mtime"


def cached_vectors(
    store: Any,
    rows: np.ndarray,
    folder: Path,
    featurizer: str,
    progress=None,
    workers=None,
    *,
    own: bool = True,
    patches: int | None = None,
):
    """Vectors of ``rows``, computed once into ``folder`` (resumable).

    Returns ``(vectors (n, dim), available (n,))`` for ``rows`` in order, or with
    ``patches``, ``(vectors (m, dim), owner (m,), available (n,))``: every patch
    vector and the position in ``rows`` of its track.

    A cache of another featurizer, spec or level is replaced when it is the model folder's ``own``, refused otherwise.
    """
    spec = store.spec.to_dict()
    # What makes the vectors: the featurizer and, for the statistics, the store's spec; each track's audio is
    # in its key (kinds.head.track_keys). A cache keyed by track id alone (before keys) has another fingerprint.
    fingerprint = featurizer if featurizer != "stats" else f"stats {json.dumps(spec, sort_keys=True)}"
    fingerprint += f" keys: {KEYS}"
    if patches is not None:  # a track-level cache's fingerprint is unchanged from before levels
        fingerprint += f" patches: {int(patches)}"
    meta = {
        "format": "mgc-embeddings",
        "version": 1,
        "model": {"dir": featurizer, "checkpoint": "", "step": None, "fingerprint": fingerprint},
        "dim": vector_dim(featurizer, spec),
        "dtype": "float32",
        "label_names": [],
        "spec": {},
    }
    vectors.check_folder(folder)  # a folder of anything else is refused before the lock file is made in it
    folder.mkdir(parents=True, exist_ok=True)
    # One training fills a cache at a time: a second one sharing it (--vectors) is refused at once.
    lock = FolderLock(
        folder,
        what="another training filling this vector cache",
        advice="wait for it to finish (its vectors are then reused), or give another --vectors",
        error=ModelError,
        invalid=ModelError,
    )
    with lock:
        return _fill(store, rows, folder, featurizer, meta, progress, workers, own=own, patches=patches)


def _fill(store, rows, folder: Path, featurizer: str, meta: dict, progress, workers, *, own: bool, patches=None):
    """:func:`cached_vectors` with the cache locked."""
    from mgc.engine import ProgressReporter, StoreError

    try:
        writer = VectorWriter(folder, meta, overwrite=False)
    except StoreError as error:
        if own:  # the model folder's own cache, of the head this training replaces: start it again
            writer = VectorWriter(folder, meta, overwrite=True)
        else:
            raise ModelError(
                f"{folder} holds vectors of another featurizer or feature spec than {featurizer} on this store "
                f"({error}); give another --vectors folder"
            ) from error
    keys = track_keys(store, rows)
    # A track is done when its vector (or its first patch's) or its failure is in the cache.
    first = keys if patches is None else [f"{key}\t0" for key in keys]
    missing = np.fromiter((key not in writer.done for key in first), bool, len(keys))
    todo, todo_keys = rows[missing], [key for key, miss in zip(keys, missing) if miss]
    report = ProgressReporter(progress, "vectors", "tracks")
    report("start", 0, len(todo))
    block: list = []
    failures: list = []
    done = 0

    def flush() -> None:
        if block or failures:
            writer.write(
                [k[0] for k, _ in block],
                [k[1] for k, _ in block],
                [k[2] for k, _ in block],
                np.stack([v for _, v in block]) if block else np.zeros((0, meta["dim"]), np.float32),
                failures,
            )
            block.clear()
            failures.clear()

    # Results come in the store's order, not necessarily the rows': their track ids name their keys.
    key_of = dict(zip(store.tracks.track_id.take(todo), todo_keys))
    for key, value in store_vectors(store, todo, featurizer, workers=workers, patches=patches):
        cache_key = key_of[key[0]]
        if isinstance(value, BaseException):
            failures.append((cache_key if patches is None else f"{cache_key}\t0", key[1], describe_error(value)))
        elif patches is None:
            block.append(((cache_key, key[1], key[2]), value))
        else:  # one row per patch, all in this block (a shard holds whole tracks)
            block.extend(((f"{cache_key}\t{i}", key[1], key[2]), vector) for i, vector in enumerate(value))
        done += 1
        if len(block) + len(failures) >= 4096:
            flush()
            report("update", done, len(todo))
    flush()
    report("end", done, len(todo))
    if patches is not None:
        return read_cached_patches(folder, keys, meta["dim"], patches)
    return read_cached(folder, keys, meta["dim"])
