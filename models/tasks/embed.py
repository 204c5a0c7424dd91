"""``mgc embed``: one L2-normalised vector per track from a trained model, into a vector store.

The vector is the network's penultimate layer averaged over the crops that
cover the track, divided by its L2 norm, so that the dot product of two vectors
is their cosine similarity. The store's layout, atomic writes, checksums and
repair are ``engine.vectors``'; this module runs the network and records which
model made the vectors (its folder and a fingerprint of its weights), so that
audio queries of ``mgc similar`` are embedded by the same model, and what they
came from: the feature store (its resolved path and spec hash), or each audio
file's resolved path, size and modification time. A resume compares these
identities, never names alone.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mgc.engine import VectorStore, VectorWriter, vectors
from mgc.models.config import CHECKPOINTS, EMBED_DTYPE, EMBED_INDEX, EMBED_INDEXES
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
    batch_size: int | None = None,
    shard_tracks: int = vectors.SHARD_TRACKS,
    index: str = EMBED_INDEX,
    overwrite: bool = False,
    progress: Any = None,
    executor=None,
    all_files: bool = False,
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
        Replace what ``out`` holds instead of resuming (only the files mgc wrote there are deleted).
    progress : callable, optional
        Receives ``engine.ProgressEvent`` values (task ``embed``, unit ``tracks``,
        ``total`` the tracks this run embeds, those already in ``out`` left out;
        updates at most every 0.1 s; then task ``index`` while the index is built).
    executor : concurrent.futures.Executor, optional
        Decode audio there instead (a Dask client's ``get_executor()``).
    all_files : bool
        List every file of a folder, not only known audio extensions (a cover
        image then fails with a reason).

    Returns
    -------
    dict
        ``out``, ``written`` (tracks embedded by this run), ``failed`` (this
        run), ``skipped`` (inputs already in the store, or listed twice),
        ``retried`` (failed before, tried again because their file changed),
        ``repaired`` (what resuming repaired, for a person),
        ``vectors`` (in the store now) and ``index`` (the index file, or None).

    Raises
    ------
    ModelError, engine.StoreError
        Bad arguments; ``out`` is not an embedding store, holds another model's,
        dtype's or source's vectors (another feature store, or audio files where a
        store was embedded), or cannot be written (a full disk: the store keeps
        every whole shard, and the same call resumes once there is space), or
        holds vectors of files that changed since they were embedded (their
        vectors would be stale: ``overwrite`` recomputes them).
    """
    from mgc.engine import FolderLock, ThrottledReporter, neighbours

    if dtype not in vectors.DTYPES:
        raise ModelError(f"dtype must be one of {vectors.DTYPES}, got {dtype!r}")
    if index not in EMBED_INDEXES:
        raise ModelError(f"index must be {', '.join(EMBED_INDEXES[:-1])} or {EMBED_INDEXES[-1]}, got {index!r}")
    if shard_tracks < 1:
        raise ModelError("shard_tracks must be at least 1")
    folder = Path(out)
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    check_sources(inputs, store)
    listed = (
        entries(inputs, all_files=all_files) if store is None else None
    )  # before the folder is made: none found is an error
    model = load_model(model_dir, which)
    if store is not None:
        store = open_store(store)
        model.check_store(store)
        source = {"kind": "feature-store", "path": os.path.realpath(store.path), "spec_hash": store.spec.hash}
    else:
        source = {"kind": "audio"}
    dim = model.embedding_dim
    meta = {
        "format": vectors.FORMAT,
        "version": vectors.VERSION,
        "model": _model_meta(model, which),
        "dim": int(dim),
        "dtype": dtype,
        "label_names": model.label_names,
        "spec": model.spec,
        "source": source,
    }
    vectors.check_folder(folder)  # before the lock file is made in it
    folder.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"out": str(folder), "written": 0, "failed": 0, "skipped": 0, "index": None}
    report = ThrottledReporter(progress, "embed", "tracks")
    with FolderLock(folder, what="another embedding run", error=ModelError, invalid=ModelError):
        writer = VectorWriter(folder, meta, overwrite=overwrite)
        for message in writer.repairs:
            report("stage", message=f"repaired {folder}: {message}", stage="repair")
        if store is not None:
            plan = _plan_store(writer, store)
            total = len(plan.rows)
            results = model.store_results(store, plan.rows, batch_size=batch_size, max_crops=max_crops)
        else:
            plan = _plan_audio(writer, listed)
            total = len(plan.todo)
            results = model.audio_results(
                plan.todo, workers=workers, executor=executor, batch_size=batch_size, max_crops=max_crops
            )
        if plan.changed:  # their stored vectors would answer for audio they were not computed from
            raise ModelError(
                f"{plan.changed} file(s) changed since they were embedded into {folder}: pass --overwrite to "
                "embed the collection again, or embed into another --out"
            )
        summary.update(skipped=plan.skipped, retried=plan.retried, repaired=list(writer.repairs))
        report("start", 0, total)
        ids: list = []
        paths: list = []
        labels: list = []
        found: list = []
        sources: list = []
        failures: list = []

        def flush() -> None:
            if ids or failures:
                block = vectors.normalize(np.stack(found)) if found else np.zeros((0, dim), np.float32)
                writer.write(ids, paths, labels, block, failures, sources=sources)
                for part in (ids, paths, labels, found, sources, failures):
                    part.clear()

        for number, done in enumerate(results):
            track_id, path, label = done.key
            origin = plan.source(number, done.key)
            error = done.error
            if error is None and not np.isfinite(done.embedding).all():
                error = "non_finite: the network's output for this track holds NaN or infinite values"
            if error is not None:
                failures.append((track_id, path, error if isinstance(error, str) else describe_error(error), origin))
                summary["failed"] += 1
            else:
                ids.append(track_id)
                paths.append(path)
                labels.append(label)
                found.append(done.embedding)
                sources.append(origin)
                summary["written"] += 1
            if len(ids) + len(failures) >= shard_tracks:
                flush()
            report("update", summary["written"] + summary["failed"], total, failed=summary["failed"])
        flush()
        report("end", summary["written"] + summary["failed"], total, failed=summary["failed"])
        result = EmbeddingStore(folder)
        summary["vectors"] = len(result)
        if index == "ann" or (index == "auto" and len(result) >= neighbours.ANN_MIN_VECTORS):
            state, why = neighbours.index_state(result)
            if state == "damaged":
                summary["repaired"].append(f"the approximate index is damaged ({why}): rebuilt")
                report("stage", message=f"repaired {folder}: its approximate index is damaged ({why})", stage="repair")
            if state != "current":
                neighbours.build_index(result, progress=progress)
            summary["index"] = str(folder / neighbours.INDEX_NAME)
    return summary


@dataclasses.dataclass
class _Plan:
    """What a run embeds, what it skips, and the source identity of each result (by result number or key)."""

    skipped: int = 0
    changed: int = 0
    retried: int = 0
    rows: np.ndarray | None = None  # a store run's rows
    todo: list = dataclasses.field(default_factory=list)  # an audio run's entries
    origins: Any = None  # (source_path, bytes, mtime_ns): per row (store) or per entry (audio)

    def source(self, number: int, key: tuple) -> tuple:
        return self.origins[number] if self.rows is not None else self.origins[tuple(key)]


def _origin(path: str) -> tuple[str, int, int]:
    """``(resolved path, size, mtime_ns)`` of an audio file (-1, -1 when it cannot be stat'ed)."""
    resolved = os.path.realpath(path)
    try:
        info = os.stat(resolved)
    except OSError:
        return resolved, -1, -1
    return resolved, int(info.st_size), int(info.st_mtime_ns)


def _recorded(columns: dict[str, np.ndarray]) -> dict[str, tuple[int, int]]:
    """Source key -> ``(bytes, mtime_ns)`` of stored rows or failures (a later record wins)."""
    keys = map(vectors.source_key, columns["track_id"], columns["path"], columns["source_path"])
    return dict(zip(keys, zip(columns["source_bytes"].tolist(), columns["source_mtime_ns"].tolist())))


def _plan_audio(writer: VectorWriter, listed: list[tuple]) -> _Plan:
    """Audio entries not in the store yet, by identity: a resolved path (and a manifest's id), not a name.

    A file listed twice (say relative and absolute) is embedded once; a failed file is tried again once
    its size or modification time changed; a stored file that changed since is counted in ``changed``.
    """
    stored, failed = _recorded(writer.rows), _recorded(writer.failed)
    plan, seen, origins = _Plan(), set(), {}
    for entry in listed:
        origin = _origin(entry[1])
        key = vectors.source_key(entry[0], entry[1], origin[0])
        if key in seen:
            plan.skipped += 1
            continue
        seen.add(key)
        if key in stored:
            plan.skipped += 1
            plan.changed += stored[key] not in (origin[1:], (-1, -1))
        elif key in failed and failed[key] == origin[1:]:
            plan.skipped += 1
        else:
            plan.retried += key in failed
            plan.todo.append(entry)
            origins[tuple(entry)] = origin
    plan.origins = origins
    return plan


def _plan_store(writer: VectorWriter, store: Any) -> _Plan:
    """Rows of a feature store not in the embedding store yet (by track id: the store's identity is in its meta).

    A failed track is tried again once the store holds it from a changed file (its recorded size or
    modification time); a stored track whose file changed since is counted in ``changed``.
    """
    tracks = store.tracks
    current = np.stack([tracks.source_bytes, tracks.source_mtime_ns], axis=1)
    skip = tracks.track_id.isin(list(set(writer.rows["track_id"]))) if len(writer.rows["track_id"]) else None
    skip = np.zeros(len(tracks), bool) if skip is None else skip
    plan = _Plan()
    stored_rows = tracks.track_id.lookup(list(writer.rows["track_id"])) if len(writer.rows["track_id"]) else []
    for row, recorded in zip(stored_rows, zip(writer.rows["source_bytes"], writer.rows["source_mtime_ns"])):
        plan.changed += bool(row >= 0 and recorded != (-1, -1) and tuple(current[row]) != recorded)
    failed = dict(zip(writer.failed["track_id"], zip(writer.failed["source_bytes"], writer.failed["source_mtime_ns"])))
    if failed:
        for row in np.flatnonzero(tracks.track_id.isin(list(failed)) & ~skip):
            if failed[tracks.track_id[row]] == tuple(current[row]):
                skip[row] = True
            else:
                plan.retried += 1
    plan.skipped = int(skip.sum())
    plan.rows = np.flatnonzero(~skip)
    plan.origins = _StoreOrigins(tracks, plan.rows)
    return plan


class _StoreOrigins:
    """``(path, bytes, mtime_ns)`` of result ``number`` of a store run, from the store's track table."""

    def __init__(self, tracks: Any, rows: np.ndarray) -> None:
        self.tracks, self.rows = tracks, rows

    def __getitem__(self, number: int) -> tuple[str, int, int]:
        row = int(self.rows[number])
        return self.tracks.path[row], int(self.tracks.source_bytes[row]), int(self.tracks.source_mtime_ns[row])
