"""One task of an extraction: write one shard file, the same code in every executor.

A task carries plain data only (paths, the spec as a dict): no open handles
cross process boundaries. The shard is written as ``NAME.tmp`` and renamed to
``NAME`` when complete, so a killed worker leaves nothing a reader would trust.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import h5py

from . import schema
from .errors import AudioError
from .features import features_from_blocks
from .prefetch import decoded_tracks
from .spec import FeatureSpec

__all__ = ["ShardTask", "ShardResult", "run_shard", "init_worker"]

_WRITE_SLICE_FRAMES = 8192  # frames per write: bounds the float16 temporaries of long tracks
#: BLAS/OpenMP pools read these when numpy loads, so they must be in the
#: environment a worker process starts with (see extract._one_thread_environment).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _exit_with_parent() -> None:
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()  # returns when the parent process is gone, however it died
        os._exit(1)


def init_worker() -> None:
    """Initializer of the engine's own pool processes.

    Caps Numba's threads (before the kernels load; BLAS's cap is already in the
    environment the worker was spawned with, see ``THREAD_VARIABLES``), makes the
    worker leave as soon as its parent dies (after a
    SIGKILL of the run an orphan would otherwise wait forever for tasks; its
    half-written temporary shard is removed by the next run), and skips the
    interpreter's slow teardown when the pool shuts down.
    """
    import atexit
    import threading

    # Only in a fresh worker: changed after Numba started its threads (as in a
    # caller running shards itself), it makes Numba refuse every later compile.
    os.environ["NUMBA_NUM_THREADS"] = "1"
    threading.Thread(target=_exit_with_parent, name="mgc-parent-watch", daemon=True).start()
    # A worker's results are sent and its shard files closed before it exits; the
    # interpreter's teardown (numba, llvmlite, h5py) would then cost ~0.3 s that the
    # whole run waits for. Registered last, this handler runs first at exit.
    atexit.register(os._exit, 0)


@dataclass
class ShardTask:
    """Everything a worker needs to write one shard (picklable, no handles).

    ``tracks`` holds ``(track_id, path, label, split, artist)`` tuples; labels,
    splits and artists are strings, empty when unknown.
    """

    store: str
    name: str
    spec: dict
    tracks: list
    offset: float | None = None
    duration: float | None = None
    compression: str = schema.DEFAULT_COMPRESSION


@dataclass
class ShardResult:
    """What a worker reports back after writing a shard."""

    name: str
    n_tracks: int
    n_frames: int
    audio_seconds: float
    elapsed: float
    failures: list = field(default_factory=list)  # (track_id, path, kind, message)

    @property
    def n_failures(self) -> int:
        return len(self.failures)


def _drain(decoded) -> None:
    """Consume what is left of a track's blocks so the decoder thread moves on."""
    try:
        for _ in decoded.blocks():
            pass
    except Exception:
        pass


def _write(h5: h5py.File, task: ShardTask, spec: FeatureSpec) -> ShardResult:
    started = time.perf_counter()
    datasets = {feature: schema.create_feature(h5, feature, spec, task.compression) for feature in spec.features}
    rows = {name: [] for name in schema.TRACK_COLUMNS}
    failures = {name: [] for name in schema.FAILURE_COLUMNS}
    total_frames, audio_seconds = 0, 0.0
    items = [(row, row[1]) for row in task.tracks]
    for decoded in decoded_tracks(items, spec.sr, offset=task.offset, duration=task.duration):
        track_id, path, label, split, artist = decoded.item
        try:
            if decoded.error is not None:
                raise decoded.error
            features, n_samples = features_from_blocks(decoded.blocks(), spec, path)
        except AudioError as exc:
            for name, value in zip(schema.FAILURE_COLUMNS, (track_id, path, exc.kind, str(exc))):
                failures[name].append(value)
            continue
        except Exception as exc:  # never let one track stop the shard
            _drain(decoded)
            message = f"{path}: {type(exc).__name__}: {exc}"
            for name, value in zip(schema.FAILURE_COLUMNS, (track_id, path, "internal", message)):
                failures[name].append(value)
            continue
        n_frames = next(iter(features.values())).shape[0]
        for feature, values in features.items():
            dataset = datasets[feature]
            dataset.resize(total_frames + n_frames, axis=0)
            # numpy casts 3x faster than HDF5; slices bound the temporaries of long tracks
            for start in range(0, n_frames, _WRITE_SLICE_FRAMES):
                piece = values[start : start + _WRITE_SLICE_FRAMES]
                dataset[total_frames + start : total_frames + start + len(piece)] = piece.astype(dataset.dtype)
        stream = decoded.stream
        duration = n_samples / spec.sr
        for name, value in zip(
            schema.TRACK_COLUMNS,
            (track_id, path, label, split, artist, total_frames, n_frames, duration,
             stream.source_sr, stream.source_channels),
        ):  # fmt: skip
            rows[name].append(value)
        total_frames += n_frames
        audio_seconds += duration
    schema.write_table(h5, "tracks", schema.TRACK_COLUMNS, rows)
    schema.write_table(h5, "failures", schema.FAILURE_COLUMNS, failures)
    schema.write_shard_attrs(h5, spec, task.name)
    return ShardResult(
        name=task.name, n_tracks=len(rows["track_id"]), n_frames=total_frames, audio_seconds=audio_seconds,
        elapsed=time.perf_counter() - started, failures=list(zip(*failures.values())),
    )  # fmt: skip


def _remove_leftovers(final: str) -> None:
    """Delete other attempts' temporary files of a shard that is now complete.

    A worker killed mid-shard (and re-run elsewhere by the executor) leaves its
    ``NAME.<pid>.tmp`` behind; once NAME exists, such a file is garbage.
    """
    folder, name = os.path.split(final)
    for other in os.listdir(folder):
        if other.startswith(name + ".") and other.endswith(schema.TEMP_SUFFIX):
            try:
                os.unlink(os.path.join(folder, other))
            except FileNotFoundError:
                pass


def run_shard(task: ShardTask) -> ShardResult:
    """Compute and write one shard; the unit of work handed to an executor.

    Bad audio files are recorded in the shard's failures table; only I/O errors
    on the store itself propagate.
    """
    spec = FeatureSpec.from_dict(task.spec)
    final = os.path.join(task.store, task.name)
    # The pid makes the name unique: a worker orphaned by a killed run can never
    # write into the file of the worker that redoes its shard.
    temp = f"{final}.{os.getpid()}{schema.TEMP_SUFFIX}"
    try:
        with h5py.File(temp, "w") as h5:
            result = _write(h5, task, spec)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, final)
        _remove_leftovers(final)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return result
