"""``extract``: a corpus to a sharded feature store, on every core, resumable.

The run is planned in shards of whole tracks (``plan.json``, stable across
re-runs); each shard is one task for the executor and one HDF5 file. The
parent process is the only writer of ``index.json``: it adds a shard there
after the shard's file has been renamed into place. Killing the run at any
moment leaves the index naming only complete shards; the next run skips them.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import os
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib import metadata

from kernels.validate import integer, one_of, real_number

from . import schema, tables
from .corpus import Corpus, load_corpus
from .diff import describe_differences, differences
from .errors import EngineError, SpecError, SpecMismatchError, StoreError
from .lock import StoreLock
from .progress import ProgressCallback, Reporter
from .shard import ShardTask, run_shard
from .spec import FeatureSpec
from .workers import default_workers, make_pool, one_thread_environment

__all__ = ["extract", "ExtractResult", "ExtractFailed"]

_MAX_SHARD_TRACKS = 128


@dataclass
class ExtractResult:
    """What a run did and what the store now holds."""

    store: str
    spec: FeatureSpec
    corpus_tracks: int
    processed_tracks: int  # tracks handled by this run (stored or failed)
    skipped_tracks: int  # already in complete shards
    stored_tracks: int  # in the whole store
    failed_tracks: int  # in the whole store
    audio_seconds: float  # decoded by this run
    elapsed: float
    shards_written: int
    shards_skipped: int
    failures: list = field(default_factory=list)  # (track_id, path, kind, message), this run
    shard_errors: list = field(default_factory=list)  # (shard name, message): shards not written


class ExtractFailed(EngineError):
    """No track could be used, shards could not be written, or ``strict`` and some failed.

    The store is consistent; ``.result`` describes the run.
    """

    def __init__(self, message: str, result: ExtractResult) -> None:
        super().__init__(message)
        self.result = result


def _versions() -> dict:
    out = {}
    for name in ("mgc", "numpy", "numba", "soundfile", "soxr", "h5py"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def _clear(store: str) -> None:
    """Delete what an extraction wrote (only our own files: never a user's)."""
    for name in os.listdir(store):
        if name in (schema.INDEX_NAME, schema.PLAN_NAME, schema.JOURNAL_NAME, schema.TABLE_NAME) or (
            name.startswith("shard-") and ".h5" in name
        ):
            os.unlink(os.path.join(store, name))
        elif name.endswith(schema.TEMP_SUFFIX) and name[: -len(schema.TEMP_SUFFIX)] in (
            schema.INDEX_NAME,
            schema.PLAN_NAME,
            schema.TABLE_NAME,
        ):
            os.unlink(os.path.join(store, name))


def _remove_temporary_shards(store: str) -> None:
    for name in os.listdir(store):
        if name.startswith("shard-") and name.endswith(schema.TEMP_SUFFIX):
            try:
                os.unlink(os.path.join(store, name))
            except FileNotFoundError:
                pass


def _prepare_folder(store: str, overwrite: bool) -> None:
    if os.path.exists(store) and not os.path.isdir(store):
        raise StoreError(f"store path {store} exists and is a file; give a folder path")
    os.makedirs(store, exist_ok=True)
    ours = {schema.INDEX_NAME, schema.PLAN_NAME, schema.LOCK_NAME, schema.JOURNAL_NAME, schema.TABLE_NAME}
    foreign = [n for n in os.listdir(store) if n not in ours and not n.startswith("shard-") and not n.endswith(".tmp")]
    if foreign and not os.path.exists(os.path.join(store, schema.INDEX_NAME)):
        raise StoreError(
            f"{store} is not empty and is not a feature store (it holds {foreign[:3]}); "
            "choose a new or empty folder for the store"
        )


def _check_or_reset(store: str, spec: FeatureSpec, run: dict, overwrite: bool) -> dict | None:
    """The existing index if it matches this run, None if there is none (or it was cleared)."""
    if overwrite or not os.path.exists(os.path.join(store, schema.INDEX_NAME)):
        _clear(store)  # without an index, a plan or shards are leftovers of a run killed at its start
        return None
    index = schema.read_index(store)
    if index["spec_hash"] != spec.hash or index["run"] != run:
        changed = differences(FeatureSpec.from_dict(index["spec"]).to_dict(), spec.to_dict())
        changed.update(differences(index["run"], run))
        raise SpecMismatchError(
            f"the store {store} was made with other settings ({describe_differences(changed, 'store', 'now')}); "
            "pass --overwrite "
            "(overwrite=True) to delete it and extract again, or choose another store path"
        )
    return index


def _extend_plan(store: str, corpus: Corpus, shard_size: int | None) -> dict:
    """Load ``plan.json`` and append shards for tracks it does not name yet."""
    path = os.path.join(store, schema.PLAN_NAME)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            plan = json.load(handle)
    else:
        size = shard_size or min(_MAX_SHARD_TRACKS, max(1, math.ceil(len(corpus) / 16)))
        plan = {"shard_size": size, "shards": []}
    planned = {track_id for shard in plan["shards"] for track_id in shard["track_ids"]}
    new = [t.track_id for t in corpus if t.track_id not in planned]
    size = plan["shard_size"]
    for start in range(0, len(new), size):
        name = schema.shard_name(len(plan["shards"]))
        plan["shards"].append({"name": name, "track_ids": new[start : start + size]})
    if new or not os.path.exists(path):
        schema.atomic.write_json(path, plan)
    return plan


def _new_index(spec: FeatureSpec, run: dict) -> dict:
    return {
        "format": schema.FORMAT_NAME,
        "schema_version": schema.SCHEMA_VERSION,
        "spec": spec.to_dict(),
        "spec_hash": spec.hash,
        "run": run,
        "label_names": [],
        "shards": [],
        "versions": _versions(),
    }


def extract(
    corpus,
    store_path,
    spec: FeatureSpec | None = None,
    *,
    workers: int | None = None,
    executor: cf.Executor | None = None,
    offset: float | None = None,
    duration: float | None = None,
    overwrite: bool = False,
    strict: bool = False,
    progress: ProgressCallback | None = None,
    shard_size: int | None = None,
    compression: str = schema.DEFAULT_COMPRESSION,
) -> ExtractResult:
    """Extract the features of every track of a corpus into a store.

    Parameters
    ----------
    corpus : Corpus, str or Path
        A ``Corpus`` or a path for ``load_corpus`` (folder or CSV manifest).
    store_path : str or Path
        The store folder (created if needed).
    spec : FeatureSpec, optional
        Defaults to ``FeatureSpec()``.
    workers : int, optional
        Processes of the local pool (spawn, one Numba/BLAS thread each); default:
        all cores. ``workers=1`` runs in this process. Ignored with ``executor``.
    executor : concurrent.futures.Executor, optional
        Any executor (a Dask client's ``get_executor()`` included) whose workers
        can import mgc and see ``store_path``. Not shut down here.
    offset, duration : float, optional
        Seconds: use only this window of each track (as ``librosa.load``).
    overwrite : bool
        Delete an existing store made with other settings (or the same) and start again.
    strict : bool
        Raise ExtractFailed when any track failed.
    progress : callable, optional
        Receives :class:`engine.progress.ProgressEvent` values of task ``"extract"``
        counting ``"tracks"``: ``start``, an ``update`` after each shard, ``end``.
        ``info`` holds ``failed`` (tracks that failed so far), ``audio_seconds``
        (decoded so far), ``elapsed`` (seconds) and ``skipped`` (tracks already in
        complete shards before this run).
    shard_size : int, optional
        Tracks per shard for a new store (default: up to 128, at least 16 shards).
    compression : {"lzf", "gzip", "none"}
        Filter of the feature arrays of the shards this run writes (the numbers
        do not change; a store may mix filters). lzf (default) is read by h5py
        and is fast; gzip (level 1) is read by every HDF5 tool and ~15% smaller.

    Returns
    -------
    ExtractResult

    Raises
    ------
    SpecMismatchError
        The store exists with another spec/offset/duration and ``overwrite`` is False.
    StoreLockedError
        Another extraction is writing into the store.
    ExtractFailed
        No track stored, shards not written, or ``strict`` and failures.
    """
    started = time.perf_counter()
    spec = FeatureSpec() if spec is None else spec
    corpus = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
    if offset is not None:
        real_number("offset (seconds)", offset, minimum=0, error=SpecError)
    if duration is not None:
        real_number(
            "duration (seconds, or None for the whole track)", duration, minimum=0, strictly=True, error=SpecError
        )
    for name, value in (("workers", workers), ("shard_size", shard_size)):
        if value is not None:
            integer(name, value, 1, error=SpecError)
    one_of("compression", compression, schema.COMPRESSIONS, error=SpecError)
    store = os.path.abspath(os.fspath(store_path))
    run = {"offset": offset, "duration": duration}
    _prepare_folder(store, overwrite)
    with StoreLock(store):
        index = _check_or_reset(store, spec, run, overwrite) or _new_index(spec, run)
        _remove_temporary_shards(store)  # under the lock, a temporary shard is a killed run's
        index["label_names"] = sorted(set(index["label_names"]) | set(corpus.label_names))
        interrupted = bool(schema.read_journal(store))  # shards of a killed run, not in tracks.h5 yet
        schema.fold_journal(store, index)
        plan = _extend_plan(store, corpus, shard_size)
        order = {shard["name"]: i for i, shard in enumerate(plan["shards"])}
        complete = {shard["name"] for shard in index["shards"]}
        by_id = {t.track_id: t for t in corpus}

        def row(track_id):
            t = by_id.get(track_id)
            if t is None:  # planned by an earlier run, gone from the corpus now: reported as missing
                return (track_id, "", "", "", "")
            return (t.track_id, t.path, t.label or "", t.split or "", t.artist or "")

        tasks = [
            ShardTask(store, s["name"], spec.to_dict(), [row(i) for i in s["track_ids"]], offset, duration, compression)
            for s in plan["shards"]
            if s["name"] not in complete
        ]
        skipped = sum(shard["n_tracks"] + shard["n_failures"] for shard in index["shards"])
        total = sum(len(task.tracks) for task in tasks)
        state = {"done": 0, "failed": 0, "audio": 0.0}
        failures, shard_errors, written = [], [], 0

        reporter = Reporter(progress, "extract", "tracks")

        def report(kind="update"):
            reporter(
                kind,
                state["done"],
                total,
                failed=state["failed"],
                audio_seconds=state["audio"],
                elapsed=time.perf_counter() - started,
                skipped=skipped,
            )

        def record(task, result):
            nonlocal written
            entry = {
                "name": result.name,
                "n_tracks": result.n_tracks,
                "n_failures": result.n_failures,
                "n_frames": result.n_frames,
                "audio_seconds": round(result.audio_seconds, 3),
                "file_bytes": result.file_bytes,
                "feature_bytes_stored": result.feature_bytes_stored,
                "feature_bytes_raw": result.feature_bytes_raw,
            }
            # One appended line per shard: the cost of recording a shard does not grow with the store.
            schema.append_journal(store, entry)
            index["shards"].append(entry)
            written += 1
            failures.extend(result.failures)
            state["done"] += len(task.tracks)
            state["failed"] += result.n_failures
            state["audio"] += result.audio_seconds
            report()

        report("start")
        if tasks and executor is None and (workers or default_workers()) == 1:
            for task in tasks:
                record(task, run_shard(task))
        elif tasks:
            own = executor is None
            pool = make_pool(min(workers or default_workers(), len(tasks))) if own else executor
            try:
                with one_thread_environment():  # workers are spawned by the first submits
                    futures = {pool.submit(run_shard, task): task for task in tasks}
                for future in cf.as_completed(futures):
                    task = futures[future]
                    try:
                        result = future.result()
                    except Exception as exc:  # the store itself failed (disk full, a dead worker...)
                        message = f"{type(exc).__name__}: {exc}"
                        if isinstance(exc, BrokenProcessPool):
                            message += (
                                " (a worker died: killed, out of memory, or unable to start because the main "
                                "script cannot be re-imported, e.g. code read from stdin; spawn needs a file "
                                "guarded by `if __name__ == '__main__':`)"
                            )
                        shard_errors.append((task.name, message))
                        state["done"] += len(task.tracks)
                        report()
                        continue
                    record(task, result)
            finally:
                if own:
                    pool.shutdown(wait=True, cancel_futures=True)
        _remove_temporary_shards(store)  # of workers that died during this run
        index["shards"].sort(key=lambda shard: order.get(shard["name"], len(order)))
        if written or interrupted:
            schema.fold_journal(store, index)
            tables.consolidate(store)
        report("end")
    result = ExtractResult(
        store=store,
        spec=spec,
        corpus_tracks=len(corpus),
        processed_tracks=total,
        skipped_tracks=skipped,
        stored_tracks=sum(s["n_tracks"] for s in index["shards"]),
        failed_tracks=sum(s["n_failures"] for s in index["shards"]),
        audio_seconds=state["audio"],
        elapsed=time.perf_counter() - started,
        shards_written=written,
        shards_skipped=len(plan["shards"]) - len(tasks),
        failures=failures,
        shard_errors=shard_errors,
    )
    if shard_errors:
        first = shard_errors[0]
        raise ExtractFailed(
            f"{len(shard_errors)} shard(s) could not be written (first: {first[0]}: {first[1]}); "
            "fix the cause and run the same command again: it resumes",
            result,
        )
    if result.stored_tracks == 0:
        raise ExtractFailed(
            f"no track could be used ({result.failed_tracks} failed); see the failures with `mgc inspect {store}`",
            result,
        )
    if strict and result.failed_tracks:
        raise ExtractFailed(f"{result.failed_tracks} track(s) failed and strict mode is on", result)
    return result
