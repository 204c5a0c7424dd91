"""Genre predictions for audio files, manifests and feature stores, in packed batches, to a list or a file."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mgc.models.config import CHECKPOINTS, TOP_K
from mgc.models.data.inputs import check_sources, describe_error, entries
from mgc.models.data.stores import open_store
from mgc.models.devices import inference_batch
from mgc.models.kinds.base import Model
from mgc.models.kinds.loader import loaded
from mgc.models.tasks.results import ResultsFile, is_csv

__all__ = ["SOURCE_FIELDS", "iter_predictions", "predict", "predict_to_file"]

#: Fields of each results-file line that say which version of its audio file it came from.
SOURCE_FIELDS = ("source_path", "source_bytes", "source_mtime_ns")
_NO_SOURCE = dict.fromkeys(SOURCE_FIELDS)  # a store's track: the store (in the marker) is its source


def _results(model: Model, inputs: Sequence, *, store: Any, listed, workers, skip, executor, batch_size, max_crops):
    """The model's results for audio inputs or for every track of ``store`` not in ``skip``, in order."""
    if store is None:
        found = listed if listed is not None else entries(inputs)
        todo = [e for e in found if e[0] not in skip]
        return model.audio_results(todo, workers=workers, executor=executor, batch_size=batch_size, max_crops=max_crops)
    store = open_store(store)
    model.check_store(store)
    rows = np.arange(len(store))
    if skip:
        rows = rows[~store.tracks.track_id.isin(list(skip))]
    return model.store_results(store, rows, batch_size=batch_size, max_crops=max_crops)


def iter_predictions(
    model: Model,
    inputs: Sequence[str | Path] = (),
    *,
    store: Any = None,
    top_k: int = TOP_K,
    max_crops: int | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    skip=frozenset(),
    executor=None,
    listed: Sequence[tuple] | None = None,
) -> Iterator[dict[str, Any]]:
    """One result per track, in input order (see :func:`predict`); tracks whose id is in ``skip`` are left out.

    ``listed``: the inputs' ``(track_id, path, label)`` entries when already listed (:func:`entries`).
    """
    if listed is None:
        check_sources(inputs, store)
    results = _results(
        model,
        inputs,
        store=store,
        listed=listed,
        workers=workers,
        skip=skip,
        executor=executor,
        batch_size=batch_size,
        max_crops=max_crops,
    )
    for done in results:
        track_id, path, label = done.key
        result: dict[str, Any] = {"track_id": track_id, "path": path, "label": label, "top": [], "error": None}
        if done.error is not None:
            result["error"] = describe_error(done.error)
        else:
            best = np.argsort(-done.probabilities, kind="stable")[:top_k]
            result["top"] = [{"label": model.label_names[i], "probability": float(done.probabilities[i])} for i in best]
        yield result


def predict(
    model_dir: str | Path | Model,
    inputs: Sequence[str | Path] | str | Path = (),
    *,
    store: Any = None,
    top_k: int = TOP_K,
    max_crops: int | None = None,
    which: str = CHECKPOINTS[0],
    workers: int | None = None,
    batch_size: int | None = None,
    progress: Any = None,
    executor=None,
    all_files: bool = False,
) -> list[dict[str, Any]]:
    """Top genres of each audio file, or of each track of a feature store.

    Crops of many tracks are packed into full batches of ``batch_size``; files are
    decoded on ``workers`` processes (default: all cores) by the engine.

    Parameters
    ----------
    model_dir : str, Path or Model
        A model folder or built-in name (see :func:`mgc.models.load_model`), or a loaded model.
    inputs : path or sequence of paths
        Audio files, folders (searched recursively for audio files) and CSV
        manifests (``path,label[,track_id,...]``).
    store : str, Path or engine.FeatureStore, optional
        Predict every track of this store instead (its spec must be the model's).
    top_k : int
        Genres reported per track.
    max_crops : int, optional
        Cap on crops per track (default: enough to cover the track).
    which : str
        ``best`` or ``latest`` checkpoint, when ``model_dir`` is a folder.
    workers : int, optional
        Decoding processes for audio inputs.
    batch_size : int
        Crops per network call.
    progress : callable, optional
        Receives ``engine.ProgressEvent`` values: task ``predict``, unit
        ``tracks``, ``total`` the number of tracks (files listed, or the store's
        tracks), ``info["failed"]``; updates at most every 0.1 s.
    executor : concurrent.futures.Executor, optional
        Decode there instead (a Dask client's ``get_executor()``, see
        ``engine.map_features``); the network runs in this process.
    all_files : bool
        List every file of a folder, not only known audio extensions (a cover
        image then fails with a reason).

    Returns
    -------
    list of dict
        One per track, in input order: ``track_id`` (the path for plain files),
        ``path``, ``label`` (from the store or manifest; ``""`` when unknown),
        ``top`` (a list of ``{"label", "probability"}``, best first) and
        ``error`` (``None``, or why the file could not be used; its ``top`` is
        then empty). Any exception while decoding, computing features or
        predicting one file is recorded there and the other files go on:
        ``"KIND: message"`` for an :class:`engine.AudioError` (kind ``crashed``
        when a decoding process died), the message of another mgc error, and
        ``"TYPE: message"`` (``"unexpected TYPE: ..."`` unless an OSError) for
        anything else. KeyboardInterrupt and SystemExit stop the batch.

    Raises
    ------
    ModelError
        When the model cannot be loaded, e.g. a training is writing into
        ``model_dir`` (the folder's shared lock is held only while the model
        is read, see :mod:`mgc.models.folder`).
    """
    from mgc.engine import ThrottledReporter

    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    check_sources(inputs, store)
    listed = entries(inputs, all_files=all_files) if store is None else None  # listed first: none found is an error
    model = loaded(model_dir, which)
    if store is not None:
        store = open_store(store)
    total = len(listed) if listed is not None else len(store)
    report = ThrottledReporter(progress, "predict", "tracks")
    report("start", 0, total)
    results, failed = [], 0
    for result in iter_predictions(
        model,
        inputs,
        store=store,
        top_k=top_k,
        max_crops=max_crops,
        workers=workers,
        batch_size=batch_size,
        executor=executor,
        listed=listed,
    ):
        results.append(result)
        failed += result["error"] is not None
        report("update", len(results), total, failed=failed)
    report("end", len(results), total, failed=failed)
    return results


def predict_to_file(
    model_dir: str | Path | Model,
    out: str | Path,
    inputs: Sequence[str | Path] | str | Path = (),
    *,
    store: Any = None,
    top_k: int = TOP_K,
    max_crops: int | None = None,
    which: str = CHECKPOINTS[0],
    workers: int | None = None,
    batch_size: int | None = None,
    progress: Any = None,
    executor=None,
    all_files: bool = False,
) -> dict[str, Any]:
    """:func:`predict` written to ``out`` as the tracks finish, resumable after a kill.

    ``out`` is JSON lines (one :func:`predict` result per line, with the
    :data:`SOURCE_FIELDS`), or CSV when its name ends in ``.csv`` (columns
    ``track_id, path, label, label_1, probability_1, ... label_K,
    probability_K, error, source_path, source_bytes, source_mtime_ns``). A plain
    file's ``track_id`` is its resolved absolute path. Lines are appended and
    fsynced every ``batch_size`` tracks. mgc writes only into a results file it
    made (marked by ``out.mgc.json``, see :mod:`mgc.models.tasks.results`), for
    the same model (fingerprint), store and ``top_k``, one run at a time.

    A re-run skips a track whose last line was made from the same file (resolved
    path, size and mtime), failed or not, and appends a new line for one whose
    file changed since: the last line of a track wins. A torn last line is
    dropped and redone, so a run killed at any moment and run again writes every
    track once.

    ``progress`` receives the events of :func:`predict`, whose ``total`` is the
    tracks this run does (those already in ``out`` left out); ``all_files`` is :func:`predict`'s.

    Returns
    -------
    dict
        ``out``, ``written`` (this run), ``skipped`` (already in the file), ``failed`` (this run).

    Raises
    ------
    ModelError
        Before anything is written, when ``out`` is a symbolic link, a folder, a
        file mgc did not make, results of another model, store or ``top_k``, in
        a place that cannot be written, or being written by another run.
    """
    from mgc.engine import ThrottledReporter

    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    check_sources(inputs, store)
    # Listed before the file is touched (none found is an error); ids are resolved paths, each once.
    listed = None if store is not None else _first_of_each(entries(inputs, resolve=True, all_files=all_files))
    sources = {} if listed is None else {e[0]: _source(e[1]) for e in listed}
    if is_csv(out):
        tops = [name for k in range(1, top_k + 1) for name in (f"label_{k}", f"probability_{k}")]
        columns = ["track_id", "path", "label", *tops, "error", *SOURCE_FIELDS]
    else:
        columns = ["track_id", "path", "label", "top", "error", *SOURCE_FIELDS]
    report = ThrottledReporter(progress, "predict", "tracks")
    summary = {"out": str(out), "written": 0, "skipped": 0, "failed": 0}
    with ResultsFile(out, columns, identity=SOURCE_FIELDS, what="another mgc predict") as results:
        model = loaded(model_dir, which)  # after the lock: a second run is refused before it loads a model
        store_path = None if store is None else os.path.realpath(getattr(store, "path", store))
        made_by = {"model_fingerprint": model.fingerprint(), "store": store_path, "top_k": top_k}
        results.open(made_by, {"model_source": model.source})
        if listed is not None:
            todo = [e for e in listed if not results.is_done(e[0], sources[e[0]])]
            summary["skipped"], skip = len(listed) - len(todo), frozenset()
        else:
            store, todo = open_store(store), None
            skip = frozenset(results.done)
            summary["skipped"] = int(np.sum(store.tracks.track_id.isin(list(skip)))) if skip else 0
        total = len(todo) if todo is not None else len(store) - summary["skipped"]
        report("start", 0, total)
        flush_every = inference_batch(batch_size)
        for n, result in enumerate(
            iter_predictions(
                model,
                inputs,
                store=store,
                top_k=top_k,
                max_crops=max_crops,
                workers=workers,
                batch_size=batch_size,
                skip=skip,
                executor=executor,
                listed=todo,
            ),
            start=1,
        ):
            record = {**result, **(sources[result["track_id"]] if todo is not None else _NO_SOURCE)}
            if results.csv:
                for k, top in enumerate(result["top"], start=1):
                    record[f"label_{k}"], record[f"probability_{k}"] = top["label"], top["probability"]
                del record["top"]
            results.write(record)
            summary["written"] += 1
            summary["failed"] += result["error"] is not None
            if n % flush_every == 0:
                results.flush()
            report("update", n, total, failed=summary["failed"])
        report("end", summary["written"], total, failed=summary["failed"])
    return summary


def _first_of_each(listed: list[tuple]) -> list[tuple]:
    """The entries with the first of each track id: one file named twice is predicted once."""
    seen: set = set()
    return [e for e in listed if not (e[0] in seen or seen.add(e[0]))]


def _source(path: str) -> dict[str, Any]:
    """What a results line records of the file it came from: resolved path, size and mtime (None when unreadable).

    Taken before the file is decoded: a file that changes during the run is predicted again by the next one.
    """
    resolved = os.path.realpath(path)
    try:
        info = os.stat(resolved)
    except OSError:
        return {**_NO_SOURCE, "source_path": resolved}
    return {"source_path": resolved, "source_bytes": info.st_size, "source_mtime_ns": info.st_mtime_ns}
