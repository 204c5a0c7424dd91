"""``mgc embed``: one L2-normalised vector per track from a trained model, into a vector store.

The vector is the network's penultimate layer averaged over the crops that
cover the track, divided by its L2 norm, so that the dot product of two vectors
is their cosine similarity. The store's layout, atomic writes and resume are
``engine.vectors``'; this module runs the network and records which model made
the vectors (its folder and a fingerprint of its weights), so that audio
queries of ``mgc similar`` are embedded by the same model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mgc.engine import VectorStore, VectorWriter, vectors
from mgc.models.config import CHECKPOINTS, EMBED_DTYPE, EMBED_INDEX, EMBED_INDEXES, INFER_BATCH
from mgc.models.data.inputs import check_sources, describe_error, entries
from mgc.models.data.stores import open_store
from mgc.models.errors import ModelError
from mgc.models.kinds.base import Model
from mgc.models.kinds.loader import load_model

__all__ = ["EmbeddingStore", "embed"]


class EmbeddingStore(VectorStore):
    """An embedding store written by :func:`embed` (see ``engine.vectors.VectorStore``), with its model."""

    def load_model(self):
        """The model that made the store (for embedding queries), checked against its fingerprint.

        Raises
        ------
        ModelError
            When the model folder is gone or its weights changed since.
        """
        model_meta = self.meta["model"]
        model = load_model(model_meta["dir"], model_meta["checkpoint"])
        if model.fingerprint() != model_meta["fingerprint"]:
            raise ModelError(
                f"the model in {model_meta['dir']} changed since {self.path} was made; "
                "embed the collection again with it to compare audio files"
            )
        return model


def _model_meta(model: Model, which: str) -> dict[str, Any]:
    """What the store records of the model that made it: where it is, and the fingerprint of its weights."""
    return {"dir": model.source, "checkpoint": which, "step": model.step, "fingerprint": model.fingerprint()}


def embed(
    model_dir: str | Path,
    out: str | Path,
    inputs: Sequence[str | Path] | str | Path = (),
    *,
    store: Any = None,
    dtype: str = EMBED_DTYPE,
    which: str = CHECKPOINTS[0],
    max_crops: int | None = None,
    workers: int | None = None,
    batch_size: int = INFER_BATCH,
    shard_tracks: int = vectors.SHARD_TRACKS,
    index: str = EMBED_INDEX,
    overwrite: bool = False,
    progress: Any = None,
    executor=None,
) -> dict[str, Any]:
    """Write the embedding of every track of ``inputs`` (or of ``store``) into the store ``out``.

    Parameters
    ----------
    model_dir : str or Path
        A model folder written by :func:`mgc.models.train`.
    out : str or Path
        The embedding store folder (created; resumed when it holds embeddings of
        the same model and dtype).
    inputs : path or sequence of paths
        Audio files, folders (searched recursively) and CSV manifests, decoded on
        ``workers`` processes.
    store : str, Path or engine.FeatureStore, optional
        Embed every track of this feature store instead (its spec must be the model's).
    dtype : str
        ``float16`` (half the size; cosine similarities within about 1e-3) or ``float32``.
    which : str
        ``best`` or ``latest`` checkpoint.
    max_crops : int, optional
        Cap on crops per track (default: enough to cover the track).
    workers, batch_size : int, optional
        Decoding processes; crops per network call.
    shard_tracks : int
        Tracks per shard.
    index : str
        ``auto`` (build the approximate index when the store holds at least
        :data:`engine.neighbours.ANN_MIN_VECTORS` vectors), ``ann`` (always) or
        ``none``. An index that no longer covers every shard is rebuilt.
    overwrite : bool
        Replace what ``out`` holds instead of resuming.
    progress : callable, optional
        Receives ``engine.ProgressEvent`` values (task ``embed``, unit ``tracks``;
        then task ``index`` while the index is built).
    executor : concurrent.futures.Executor, optional
        Decode audio there instead (a Dask client's ``get_executor()``).

    Returns
    -------
    dict
        ``out``, ``written`` (tracks embedded by this run), ``failed`` (this
        run), ``skipped`` (already in the store), ``vectors`` (in the store now)
        and ``index`` (the index file, or None).
    """
    from mgc.engine import FolderLock, ProgressReporter, neighbours

    if dtype not in vectors.DTYPES:
        raise ModelError(f"dtype must be one of {vectors.DTYPES}, got {dtype!r}")
    if index not in EMBED_INDEXES:
        raise ModelError(f"index must be {', '.join(EMBED_INDEXES[:-1])} or {EMBED_INDEXES[-1]}, got {index!r}")
    if shard_tracks < 1:
        raise ModelError("shard_tracks must be at least 1")
    folder = Path(out)
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    check_sources(inputs, store)
    listed = entries(inputs) if store is None else None  # before the folder is made: none found is an error
    model = load_model(model_dir, which)
    dim = model.embedding_dim
    meta = {
        "format": vectors.FORMAT,
        "version": vectors.VERSION,
        "model": _model_meta(model, which),
        "dim": int(dim),
        "dtype": dtype,
        "label_names": model.label_names,
        "spec": model.spec,
    }
    vectors.check_folder(folder)  # before the lock file is made in it
    folder.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"out": str(folder), "written": 0, "failed": 0, "skipped": 0, "index": None}
    with FolderLock(folder, what="another embedding run", error=ModelError, invalid=ModelError):
        writer = VectorWriter(folder, meta, overwrite=overwrite)
        summary["skipped"] = len(writer.done)
        skip = frozenset(writer.done)
        if store is not None:
            store = open_store(store)
            model.check_store(store)
            rows = np.arange(len(store))
            if skip:
                rows = rows[~store.tracks.track_id.isin(list(skip))]
            total = len(rows)
            results = model.store_results(store, rows, batch_size=batch_size, max_crops=max_crops)
        else:
            total = None
            todo = [e for e in listed if e[0] not in skip]
            results = model.audio_results(
                todo, workers=workers, executor=executor, batch_size=batch_size, max_crops=max_crops
            )
        report = ProgressReporter(progress, "embed", "tracks")
        report("start", 0, total)
        ids: list = []
        paths: list = []
        labels: list = []
        found: list = []
        failures: list = []

        def flush() -> None:
            if ids or failures:
                block = vectors.normalize(np.stack(found)) if found else np.zeros((0, dim), np.float32)
                writer.write(ids, paths, labels, block, failures)
                for part in (ids, paths, labels, found, failures):
                    part.clear()

        for done in results:
            track_id, path, label = done.key
            if done.error is not None:
                failures.append((track_id, path, describe_error(done.error)))
                summary["failed"] += 1
            else:
                ids.append(track_id)
                paths.append(path)
                labels.append(label)
                found.append(done.embedding)
                summary["written"] += 1
            if len(ids) + len(failures) >= shard_tracks:
                flush()
                report("update", summary["written"] + summary["failed"], total, failed=summary["failed"])
        flush()
        report("end", summary["written"] + summary["failed"], total, failed=summary["failed"])
        result = EmbeddingStore(folder)
        summary["vectors"] = len(result)
        if index == "ann" or (index == "auto" and len(result) >= neighbours.ANN_MIN_VECTORS):
            if not neighbours.index_is_current(result):
                neighbours.build_index(result, progress=progress)
            summary["index"] = str(folder / neighbours.INDEX_NAME)
    return summary
