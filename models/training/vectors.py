"""A head's vector cache: one vector per track of a store, computed once and kept (``MODEL_DIR/vectors``).

The cache is an ``engine.vectors`` store (sharded, atomic, resumable): a
training killed half-way resumes where it stopped, and a second training on
the same store and featurizer (``--vectors DIR``) reads it back instead of
running a backbone over every track again. Its ``model.fingerprint`` names
what makes the vectors: the featurizer and, for the statistics, the store's
FeatureSpec; a folder of another fingerprint is refused (or, the model folder's
own, replaced).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mgc.engine import VectorWriter
from mgc.models.data.inputs import describe_error
from mgc.models.errors import ModelError
from mgc.models.kinds.featurizers import store_vectors, vector_dim
from mgc.models.kinds.head import read_cached

__all__ = ["cached_vectors"]


def cached_vectors(
    store: Any, rows: np.ndarray, folder: Path, featurizer: str, progress=None, workers=None, *, own: bool = True
):
    """Vectors of ``rows`` (in order) and which rows have one, computed once into ``folder`` (resumable).

    A cache of another featurizer or spec is replaced when it is the model folder's ``own``, refused otherwise.
    """
    from mgc.engine import ProgressReporter, StoreError

    spec = store.spec.to_dict()
    # What makes the vectors: the featurizer and, for the statistics, the store's spec.
    fingerprint = featurizer if featurizer != "stats" else f"stats {json.dumps(spec, sort_keys=True)}"
    meta = {
        "format": "mgc-embeddings",
        "version": 1,
        "model": {"dir": featurizer, "checkpoint": "", "step": None, "fingerprint": fingerprint},
        "dim": vector_dim(featurizer, spec),
        "dtype": "float32",
        "label_names": [],
        "spec": {},
    }
    folder.mkdir(parents=True, exist_ok=True)
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
    ids = store.tracks.track_id
    todo = rows[~ids.take(rows).isin(list(writer.done))] if writer.done else rows
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

    for key, value in store_vectors(store, todo, featurizer, workers=workers):
        if isinstance(value, BaseException):
            failures.append((key[0], key[1], describe_error(value)))
        else:
            block.append((key, value))
        done += 1
        if len(block) + len(failures) >= 4096:
            flush()
            report("update", done, len(todo))
    flush()
    report("end", done, len(todo))
    return read_cached(folder, ids.take(rows), meta["dim"])
