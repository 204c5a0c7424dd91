"""Genre predictions for audio files, manifests and feature stores, in packed batches, to a list or a file."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mgc.models.checkpoint import TrainedModel, load_model
from mgc.models.inference import ResultsFile, infer

__all__ = ["describe_error", "iter_predictions", "predict", "predict_to_file"]


def _entries(inputs: Sequence, skip=frozenset()) -> list[tuple]:
    """``(track_id, path, label)`` of audio files, folders (searched recursively) and CSV manifests."""
    from mgc.engine import find_audio_files, load_corpus

    entries = []
    for item in inputs:
        if str(item).lower().endswith(".csv") and Path(item).is_file():
            entries += [(t.track_id, t.path, t.label or "") for t in load_corpus(item)]
        else:
            entries += [(str(path), str(path), "") for path in find_audio_files([item])]
    return [e for e in entries if e[0] not in skip]


def _decode(model: Any, entries: list, *, workers: int | None, executor=None) -> Iterator[tuple]:
    """``(entry, logmel or error)`` of ``entries`` (``entry[1]`` is the path), with the model's spec, in order."""
    from mgc.engine import FeatureSpec, map_features

    spec = FeatureSpec.from_dict(model.spec)
    # Only log-mel feeds the network; skip computing the rest.
    compute_spec = dataclasses.replace(spec, features=("logmel",))
    computed = map_features([e[1] for e in entries], compute_spec, workers=workers, executor=executor)
    for (_path, value), entry in zip(computed, entries):
        if not isinstance(value, BaseException):
            value = value["logmel"]
            if model.spec.get("logmel_dtype") == "float16":
                # The network was trained on float16-stored log-mel; round the same way.
                value = value.astype(np.float16).astype(np.float32)
        yield entry, value


def _audio_items(model: TrainedModel, inputs: Sequence, *, workers: int | None, skip, executor=None) -> Iterator[tuple]:
    """``((track_id, path, label), logmel or error)`` of audio files, folders and CSV manifests, in order."""
    yield from _decode(model, _entries(inputs, skip), workers=workers, executor=executor)


def _store_items(model: TrainedModel, store: Any, *, skip) -> Iterator[tuple]:
    """``((track_id, path, label), logmel)`` of every track of a feature store not in ``skip``, in storage order."""
    from mgc.engine import FeatureStore
    from mgc.models.checkpoint import check_spec

    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    check_spec(model.spec, store.spec, where="the model", store_path=store.path)
    ids = store.tracks.track_id
    rows = np.arange(len(store))
    if skip:
        rows = rows[~ids.isin(list(skip))]
    for row, logmel in store.iter_tracks(rows=rows):
        yield (ids[row], store.tracks.path[row], store.tracks.label_name[row]), logmel


def _head_results(model: Any, inputs: Sequence, *, store: Any, workers, skip, executor) -> Iterator:
    """:class:`models.inference.Inferred` results of a head model (one vector per track, no crops)."""
    from mgc.engine import FeatureStore
    from mgc.models.checkpoint import check_spec
    from mgc.models.inference import Inferred

    if store is not None:
        store = store if isinstance(store, FeatureStore) else FeatureStore(store)
        check_spec(model.spec, store.spec, where="the model", store_path=store.path)
        rows = np.arange(len(store))
        if skip:
            rows = rows[~store.tracks.track_id.isin(list(skip))]
        items = model.store_items(store, rows)
    else:
        items = model.audio_items(_entries(inputs, skip), workers=workers, executor=executor)
    for key, value in items:
        if isinstance(value, BaseException):
            yield Inferred(key, error=value)
        else:
            # The embedding of a head is its standardised input vector (what its linear layer sees).
            yield Inferred(key, probabilities=model.probabilities(value[None])[0], embedding=model.standardise(value))


def _loaded(model_dir: Any, which: str) -> Any:
    """A model already loaded (trained, built-in or a head: it has ``label_names``) as is; else load it."""
    return model_dir if hasattr(model_dir, "label_names") else load_model(model_dir, which)


def iter_predictions(
    model: TrainedModel,
    inputs: Sequence[str | Path] = (),
    *,
    store: Any = None,
    top_k: int = 3,
    max_crops: int | None = None,
    workers: int | None = None,
    batch_size: int = 256,
    skip=frozenset(),
    executor=None,
) -> Iterator[dict[str, Any]]:
    """One result per track, in input order (see :func:`predict`); tracks whose id is in ``skip`` are left out."""
    from mgc.models.heads import HeadModel

    if isinstance(model, HeadModel):
        results = _head_results(model, inputs, store=store, workers=workers, skip=skip, executor=executor)
    else:
        items = (
            _store_items(model, store, skip=skip)
            if store is not None
            else _audio_items(model, inputs, workers=workers, skip=skip, executor=executor)
        )
        results = infer(model, items, batch_size=batch_size, max_crops=max_crops)
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
    model_dir: str | Path | TrainedModel,
    inputs: Sequence[str | Path] | str | Path = (),
    *,
    store: Any = None,
    top_k: int = 3,
    max_crops: int | None = None,
    which: str = "best",
    workers: int | None = None,
    batch_size: int = 256,
    executor=None,
) -> list[dict[str, Any]]:
    """Top genres of each audio file, or of each track of a feature store.

    Crops of many tracks are packed into full batches of ``batch_size``; files are
    decoded on ``workers`` processes (default: all cores) by the engine.

    Parameters
    ----------
    model_dir : str, Path or TrainedModel
        A folder written by :func:`models.train` (or a model loaded from one).
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
    executor : concurrent.futures.Executor, optional
        Decode there instead (a Dask client's ``get_executor()``, see
        ``engine.map_features``); the network runs in this process.

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
        is read, see :mod:`models.layout`).
    """
    model = _loaded(model_dir, which)
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    return list(
        iter_predictions(
            model,
            inputs,
            store=store,
            top_k=top_k,
            max_crops=max_crops,
            workers=workers,
            batch_size=batch_size,
            executor=executor,
        )
    )


def predict_to_file(
    model_dir: str | Path | TrainedModel,
    out: str | Path,
    inputs: Sequence[str | Path] | str | Path = (),
    *,
    store: Any = None,
    top_k: int = 3,
    max_crops: int | None = None,
    which: str = "best",
    workers: int | None = None,
    batch_size: int = 256,
    progress: Any = None,
    executor=None,
) -> dict[str, Any]:
    """:func:`predict` written to ``out`` as the tracks finish, resumable after a kill.

    ``out`` is JSON lines (one :func:`predict` result per line), or CSV when its
    name ends in ``.csv`` (columns ``track_id, path, label, label_1,
    probability_1, ... label_K, probability_K, error``). Lines are appended and
    fsynced every ``batch_size`` tracks; a re-run skips the tracks already in
    the file (a torn last line is dropped and redone), so a run killed at any
    moment and run again writes every track exactly once.

    Returns
    -------
    dict
        ``out``, ``written`` (this run), ``skipped`` (already in the file), ``failed`` (this run).
    """
    from mgc.engine import ProgressReporter

    model = _loaded(model_dir, which)
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    columns = ["track_id", "path", "label"]
    for k in range(1, top_k + 1):
        columns += [f"label_{k}", f"probability_{k}"]
    columns.append("error")
    report = ProgressReporter(progress, "predict", "tracks")
    summary = {"out": str(out), "written": 0, "skipped": 0, "failed": 0}
    with ResultsFile(out, columns) as results:
        summary["skipped"] = len(results.done)
        report("start", 0, None)
        for n, result in enumerate(
            iter_predictions(
                model,
                inputs,
                store=store,
                top_k=top_k,
                max_crops=max_crops,
                workers=workers,
                batch_size=batch_size,
                skip=frozenset(results.done),
                executor=executor,
            ),
            start=1,
        ):
            record = dict(result)
            if results.csv:
                for k, top in enumerate(result["top"], start=1):
                    record[f"label_{k}"], record[f"probability_{k}"] = top["label"], top["probability"]
                del record["top"]
            results.write(record)
            summary["written"] += 1
            summary["failed"] += result["error"] is not None
            if n % batch_size == 0:
                results.flush()
                report("update", n, None, failed=summary["failed"])
        report("end", summary["written"], None, failed=summary["failed"])
    return summary


def describe_error(error: Exception) -> str:
    """One line saying why a file could not be used, for the ``error`` field of a prediction."""
    from mgc.engine import AudioError, MgcError

    if isinstance(error, AudioError):
        return f"{error.kind}: {error}"
    if isinstance(error, MgcError):
        return str(error)
    detail = f": {error}" if str(error) else ""
    if isinstance(error, OSError):
        return f"{type(error).__name__}{detail}"
    return f"unexpected {type(error).__name__}{detail} (please report it)"
