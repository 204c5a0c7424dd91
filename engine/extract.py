"""``extract``: a corpus to a sharded feature store, on every core, resumable.

The run is planned in shards of whole tracks (``plan.json``, stable across
re-runs); each shard is one task for the executor and one HDF5 file. The
parent process is the only writer of ``index.json``: it adds a shard there
after the shard's file has been renamed into place. Killing the run at any
moment leaves the index naming only complete shards; the next run skips them.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import math
import os
import time
import uuid
import warnings
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib import metadata

from mgc.kernels.validate import integer, one_of, real_number

from . import atomic, schema, tables
from .audio import ON_CORRUPT
from .corpus import Corpus, load_corpus
from .diff import describe_differences, differences
from .errors import EngineError, MgcWarning, SpecError, SpecMismatchError, StoreError
from .lock import StoreLock
from .progress import ProgressCallback, Reporter
from .shard import ShardTask, read_marker, run_shard
from .spec import FeatureSpec
from .verify import changed_tracks, check_shards
from .workers import default_workers, make_pool, one_thread_environment

__all__ = ["check_settings", "extract", "ExtractResult", "ExtractFailed"]

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
    damaged: list = field(default_factory=list)  # (track_id, path, damage): kept damaged (on_corrupt="keep"), this run
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


_OWN_NAMES = (schema.INDEX_NAME, schema.PLAN_NAME, schema.JOURNAL_NAME, schema.TABLE_NAME)


def _is_ours(name: str) -> bool:
    """A file name an extraction writes (the lock, the index, shards, their temporary files...)."""
    if name in _OWN_NAMES or name == schema.LOCK_NAME or schema.is_shard_name(name):
        return True
    if name.endswith(schema.TEMP_SUFFIX):
        return name.startswith("shard-") or any(name.startswith(own + ".") for own in _OWN_NAMES)
    return False


def _clear(store: str) -> None:
    """Delete what an extraction wrote (only our own files: never a user's)."""
    for name in os.listdir(store):
        if name != schema.LOCK_NAME and _is_ours(name):
            try:
                os.unlink(os.path.join(store, name))
            except FileNotFoundError:
                pass


def _remove_temporary_shards(store: str) -> None:
    for name in os.listdir(store):
        if name.startswith("shard-") and name.endswith(schema.TEMP_SUFFIX):
            try:
                os.unlink(os.path.join(store, name))
            except FileNotFoundError:
                pass


def _looks_like(path: str, check) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            return check(json.load(handle))
    except (OSError, ValueError):
        return False


def _prepare_folder(store: str) -> None:
    """Create the store folder, or make sure an existing folder is a store before anything in it is touched.

    A folder is a store when its ``index.json`` is an mgc index, or (a run killed
    before its first index) when it holds only an mgc plan, shards and their
    temporary files. Anything else is refused, ``--overwrite`` or not: mgc never
    deletes files it did not write.
    """
    if os.path.lexists(store) and not os.path.isdir(store):
        raise StoreError(f"store path {store} exists and is not a folder; give a folder path")
    os.makedirs(store, exist_ok=True)
    names = os.listdir(store)
    index, plan = os.path.join(store, schema.INDEX_NAME), os.path.join(store, schema.PLAN_NAME)
    if schema.INDEX_NAME in names:
        if not _looks_like(index, lambda d: isinstance(d, dict) and d.get("format") == schema.FORMAT_NAME):
            raise StoreError(
                f"{store} holds an {schema.INDEX_NAME} that is not an mgc feature store's: it is not a store, and "
                "nothing in it was changed; choose a new or empty folder for the store"
            )
        return
    foreign = sorted(n for n in names if not _is_ours(n))
    if schema.PLAN_NAME in names and not _looks_like(plan, lambda d: isinstance(d, dict) and "shard_size" in d):
        foreign.append(schema.PLAN_NAME)
    if foreign:
        raise StoreError(
            f"{store} is not empty and is not a feature store (it holds {foreign[:3]}); nothing in it was changed; "
            "choose a new or empty folder for the store"
        )


def check_settings(
    store_path, spec: FeatureSpec, *, offset=None, duration=None, on_corrupt: str = "skip", overwrite: bool = False
) -> bool:
    """Whether a run with these settings may go on into ``store_path``; reads only (the CLI asks before a cluster).

    A store made with other settings is refused unless ``overwrite``, or unless it holds no
    stored track (every track failed, e.g. with an ``n_fft`` longer than the tracks): nothing
    would be lost, so it is replaced, with an :class:`MgcWarning` saying so.

    Returns
    -------
    bool
        True when the existing store must be cleared first (``overwrite``, or the case above).

    Raises
    ------
    SpecMismatchError
        The store holds tracks made with other settings and ``overwrite`` is False.
    """
    run = {"offset": offset, "duration": duration, "on_corrupt": on_corrupt}
    store = os.path.abspath(os.fspath(store_path))
    if overwrite or not os.path.exists(os.path.join(store, schema.INDEX_NAME)):
        return True  # without an index, a plan or shards are leftovers of a run killed at its start
    index = schema.read_index(store)
    if index["spec_hash"] == spec.hash and index["run"] == run:
        return False
    changed = differences(FeatureSpec.from_dict(index["spec"]).to_dict(), spec.to_dict())
    described = describe_differences(changed | differences(index["run"], run), "store", "now")
    if sum(entry["n_tracks"] for entry in index["shards"] + schema.read_journal(store)) == 0:
        warnings.warn(
            f"replacing the store {store}: it holds no track, made with other settings ({described})",
            MgcWarning,
            stacklevel=2,
        )
        return True
    raise SpecMismatchError(
        f"the store {store} was made with other settings ({described}); "
        "pass --overwrite to delete it and extract again, or choose another store path"
    )


def _check_or_reset(store: str, spec: FeatureSpec, run: dict, overwrite: bool) -> dict | None:
    """The existing index if it matches this run, None if there is none (or it was cleared)."""
    if check_settings(store, spec, overwrite=overwrite, **run):
        _clear(store)
        return None
    return schema.read_index(store)


def _extend_plan(store: str, corpus: Corpus, shard_size: int | None) -> dict:
    """Load ``plan.json`` and append shards for tracks it does not name yet."""
    path = os.path.join(store, schema.PLAN_NAME)
    if os.path.exists(path):
        plan = schema.read_plan(path)
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


_DIED = (
    "a worker process died (killed, out of memory, or a crash in native code; or unable to start because "
    "the main script cannot be re-imported, e.g. code read from stdin: spawn needs a file guarded by "
    "`if __name__ == '__main__':`)"
)


def _died(exc: BaseException) -> bool:
    """Whether a task failed because its worker process died (ours, or a Dask worker)."""
    return isinstance(exc, BrokenProcessPool) or type(exc).__name__ == "KilledWorker"


def _with_marker(task: ShardTask, careful: bool = False) -> ShardTask:
    """The task with a marker file unique to this attempt."""
    marker = f"{task.name}.{uuid.uuid4().hex[:8]}.marker{schema.TEMP_SUFFIX}"
    return dataclasses.replace(task, marker=marker, careful=careful)


def _take_marker(store: str, task: ShardTask) -> int | None:
    """Read and delete a dead attempt's marker (see :func:`engine.shard.read_marker`)."""
    path = os.path.join(store, task.marker)
    position = read_marker(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return position


def _run_parallel(tasks, store, executor, workers, record, fail) -> None:
    """Run shard tasks on a pool (ours, or ``executor``), surviving workers that die.

    A dead worker breaks our pool and fails every unfinished task with it. The
    tasks that had not started run again in a fresh pool; each task that had
    started runs again alone (:func:`_isolate`), where a second death names the
    track that causes it.
    """
    own = executor is None
    pending, suspects = [_with_marker(t) for t in tasks], []
    while pending:
        pool = make_pool(min(workers or default_workers(), len(pending))) if own else executor
        again = []
        try:
            with one_thread_environment():  # workers are spawned by the first submits
                futures = {pool.submit(run_shard, task): task for task in pending}
            for future in cf.as_completed(futures):
                task = futures[future]
                try:
                    result = future.result()
                except Exception as exc:
                    if not _died(exc):
                        fail(task, exc)  # the store itself failed (disk full, permissions...)
                    elif _take_marker(store, task) is None:
                        again.append(task)  # never started: the pool broke under another task
                    else:
                        suspects.append(task)
                    continue
                record(task, result)
        finally:
            if own:
                pool.shutdown(wait=True, cancel_futures=True)
        if again and len(again) == len(pending):  # no task could even start: the workers cannot run
            for task in again:
                fail(task, _DIED)
            again = []
        pending = [_with_marker(t) for t in again]
    for task in suspects:
        _isolate(task, store, executor, record, fail)


def _isolate(task, store, executor, record, fail) -> None:
    """Run a task whose worker died alone, one track at a time, until it completes.

    A track on which the worker dies twice (the first death may be the parallel
    attempt's) is recorded as ``crashed`` and skipped, and the task goes on.
    """
    deaths: dict = {}
    careful_attempts = 0
    for _ in range(2 * len(task.tracks) + 2):
        task = _with_marker(task, careful=True)
        pool = make_pool(1) if executor is None else executor
        try:
            with one_thread_environment():
                future = pool.submit(run_shard, task)
            try:
                record(task, future.result())
                return
            except Exception as exc:
                if not _died(exc):
                    fail(task, exc)
                    return
        finally:
            if executor is None:
                pool.shutdown(wait=True)
        careful_attempts += 1
        position = _take_marker(store, task)
        if position is None or position < 0:
            fail(task, f"{_DIED}; it died before opening a track, twice")
            return
        track_id, path = task.tracks[position][:2]
        deaths[track_id] = deaths.get(track_id, 0) + 1
        if deaths[track_id] >= 2 or careful_attempts == 1:  # the first careful death follows the parallel one
            message = (
                "the worker process died twice while reading or computing this file "
                "(killed, out of memory, or a crash in native code); it is skipped"
            )
            task = dataclasses.replace(task, crashed={**task.crashed, track_id: message})
    fail(task, f"{_DIED}: too many times")


def _drop_stale_shards(store: str, index: dict, corpus: Corpus, progress) -> list[str]:
    """Take damaged shards, and shards holding tracks that changed in the corpus, out of the store.

    The index stops naming them first (written atomically), then their files are
    deleted: the plan still lists their tracks, so this run extracts them again.
    """
    if not index["shards"]:
        return []
    damaged = check_shards(store, index)
    bad = {name for name, _ in damaged}
    changed = changed_tracks(store, index, corpus, skip=bad)
    stale = bad | {name for name, _, _ in changed}
    if not stale:
        return []
    index["shards"] = [entry for entry in index["shards"] if entry["name"] not in stale]
    schema.fold_journal(store, index)
    for name in sorted(stale):
        try:
            os.unlink(os.path.join(store, name))
        except FileNotFoundError:
            pass
    atomic.fsync_folder(store)
    parts = []
    if damaged:
        parts.append(f"{len(damaged)} damaged shard(s) (first: {damaged[0][0]}: {damaged[0][1]})")
    if changed:
        parts.append(f"{len(changed)} track(s) changed in the corpus (first: {changed[0][1]}: {changed[0][2]})")
    message = f"re-extracting {len(stale)} shard(s): {'; '.join(parts)}"
    Reporter(progress, "extract", "tracks")("stage", message=message, stage="resume")
    return sorted(stale)


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
    on_corrupt: str = "skip",
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
    on_corrupt : {"skip", "keep"}
        A file whose stream is damaged part-way: recorded as a failure of kind
        ``corrupt`` (skip), or stored with the audio that decodes (keep: FFmpeg
        skips the damaged packets; the track's ``damage`` column says what happened).
        A store keeps the choice it was made with, as it keeps ``offset``.
    overwrite : bool
        Delete an existing store made with other settings (or the same) and start again.
    strict : bool
        Raise ExtractFailed when any track failed.
    progress : callable, optional
        Receives :class:`engine.progress.ProgressEvent` values of task ``"extract"``
        counting ``"tracks"``: ``start``, an ``update`` after each shard, ``end``;
        a ``stage`` event (``info["stage"] == "resume"``) when a resume redoes
        damaged shards or shards whose tracks changed in the corpus.
        ``info`` holds ``failed`` (tracks that failed so far), ``audio_seconds``
        (decoded so far), ``elapsed`` (seconds) and ``skipped`` (tracks already in
        complete shards before this run).
    shard_size : int, optional
        Tracks per shard for a new store (default: up to 128, at least 16 shards).
    compression : {"none", "lzf", "gzip"}
        Filter of the feature arrays of the shards this run writes (the numbers
        do not change; a store may mix filters). "none" (default) reads ten times
        faster than lzf and every HDF5 tool reads it; "lzf" (h5py only) is 13%
        smaller, "gzip" (level 1, every HDF5 tool) 22% smaller, on real music.

    Returns
    -------
    ExtractResult

    Raises
    ------
    SpecMismatchError
        The store exists with another spec/offset/duration/on_corrupt and ``overwrite`` is False.
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
    one_of("on_corrupt", on_corrupt, ON_CORRUPT, error=SpecError)
    store = os.path.abspath(os.fspath(store_path))
    run = {"offset": offset, "duration": duration, "on_corrupt": on_corrupt}
    _prepare_folder(store)
    with StoreLock(store):
        index = _check_or_reset(store, spec, run, overwrite) or _new_index(spec, run)
        _remove_temporary_shards(store)  # under the lock, a temporary shard is a killed run's
        index["label_names"] = sorted(set(index["label_names"]) | set(corpus.label_names))
        interrupted = bool(schema.read_journal(store))  # shards of a killed run, not in tracks.h5 yet
        schema.fold_journal(store, index)
        redone = _drop_stale_shards(store, index, corpus, progress)
        interrupted = interrupted or bool(redone)
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
            ShardTask(
                store,
                s["name"],
                spec.to_dict(),
                [row(i) for i in s["track_ids"]],
                offset,
                duration,
                compression,
                on_corrupt=on_corrupt,
            )
            for s in plan["shards"]
            if s["name"] not in complete
        ]
        skipped = sum(shard["n_tracks"] + shard["n_failures"] for shard in index["shards"])
        total = sum(len(task.tracks) for task in tasks)
        state = {"done": 0, "failed": 0, "audio": 0.0}
        failures, damaged, shard_errors, written = [], [], [], 0

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
            try:
                seen = os.stat(os.path.join(store, result.name)).st_size
            except OSError:
                seen = None
            if seen != result.file_bytes:  # e.g. Dask workers writing to a folder of their own
                fail(
                    task,
                    f"a worker wrote {result.name} ({result.file_bytes} bytes) but this process sees "
                    f"{'no such file' if seen is None else f'{seen} bytes'} in {store}: every worker must "
                    "write to the same store folder as this process (a shared filesystem)",
                )
                return
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
            damaged.extend(result.damaged)
            state["done"] += len(task.tracks)
            state["failed"] += result.n_failures
            state["audio"] += result.audio_seconds
            report()

        def fail(task, error):
            message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
            shard_errors.append((task.name, message))
            state["done"] += len(task.tracks)
            report()

        report("start")
        if tasks and executor is None and (workers or default_workers()) == 1:
            for task in tasks:
                record(task, run_shard(task))
        elif tasks:
            _run_parallel(tasks, store, executor, workers, record, fail)
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
        damaged=damaged,
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
