"""One task of an extraction: write one shard file, the same code in every executor.

A task carries plain data only (paths, the spec as a dict): no open handles
cross process boundaries. The shard is written as ``NAME.tmp`` and renamed to
``NAME`` when complete, so a killed worker leaves nothing a reader would trust.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field

import h5py

from . import atomic, schema
from .errors import AudioError
from .features import features_from_blocks
from .prefetch import decoded_tracks
from .spec import FeatureSpec
from .verify import source_signature

__all__ = ["ShardTask", "ShardResult", "read_marker", "run_shard"]

_WRITE_SLICE_FRAMES = 8192  # frames per write: bounds the float16 temporaries of long tracks


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
    #: "skip" a file damaged part-way (a failure of kind ``corrupt``) or "keep" what decodes.
    on_corrupt: str = "skip"
    #: File name (in the store) where the worker writes the position in ``tracks`` of
    #: the track it is about to open: after a worker dies, the parent learns that the
    #: task had started and, in ``careful`` mode, which track it died on.
    marker: str | None = None
    #: Decode and compute one track at a time in one thread (no decoding ahead), so
    #: that the marker names exactly the track being worked on.
    careful: bool = False
    #: track_id -> message: tracks on which a worker died twice. They are recorded as
    #: failures of kind ``crashed`` and not opened again.
    crashed: dict = field(default_factory=dict)


@dataclass
class ShardResult:
    """What a worker reports back after writing a shard."""

    name: str
    n_tracks: int
    n_frames: int
    audio_seconds: float
    elapsed: float
    failures: list = field(default_factory=list)  # (track_id, path, kind, message)
    damaged: list = field(default_factory=list)  # (track_id, path, damage): stored with on_corrupt="keep"
    file_bytes: int = 0  # size of the shard file
    feature_bytes_stored: int = 0  # /features/* on disk (compressed)
    feature_bytes_raw: int = 0  # /features/* uncompressed, in their on-disk dtypes

    @property
    def n_failures(self) -> int:
        return len(self.failures)


def _write(h5: h5py.File, task: ShardTask, spec: FeatureSpec, marker: _Marker | None) -> ShardResult:
    started = time.perf_counter()
    datasets = {feature: schema.create_feature(h5, feature, spec, task.compression) for feature in spec.features}
    rows = {name: [] for name in schema.TRACK_COLUMNS}
    failures = {name: [] for name in schema.FAILURE_COLUMNS}
    total_frames, audio_seconds, damaged = 0, 0.0, []
    # Size and mtime before reading: a file changed during the run differs next time, and is redone.
    signatures = {row[0]: source_signature(row[1]) if row[1] else (-1, -1) for row in task.tracks}

    def fail(track_id, path, kind, message):
        values = (track_id, path, kind, message, *signatures[track_id])
        for name, value in zip(schema.FAILURE_COLUMNS, values):
            failures[name].append(value)

    positions = []  # position in task.tracks of each track to open
    for position, row in enumerate(task.tracks):
        if row[0] in task.crashed:
            fail(row[0], row[1], "crashed", task.crashed[row[0]])
        else:
            positions.append(position)
    items = [(task.tracks[k], task.tracks[k][1]) for k in positions]
    decoded_stream = decoded_tracks(
        items,
        spec.sr,
        offset=task.offset,
        duration=task.duration,
        depth=0 if task.careful else 4,
        on_corrupt=task.on_corrupt,
        on_item=None if marker is None else lambda j: marker.write(positions[j]),
    )
    for decoded in decoded_stream:
        track_id, path, label, split, artist = decoded.item
        try:
            if decoded.error is not None:
                raise decoded.error
            features, n_samples = features_from_blocks(decoded.blocks(), spec, path)
        except AudioError as exc:
            fail(track_id, path, exc.kind, str(exc))
            continue
        except Exception as exc:  # never let one track stop the shard (decoded_tracks skips its other blocks)
            fail(track_id, path, "internal", f"{path}: {type(exc).__name__}: {exc}")
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
            (
                track_id,
                path,
                label,
                split,
                artist,
                total_frames,
                n_frames,
                duration,
                stream.source_sr,
                stream.source_channels,
                *signatures[track_id],
                stream.damage or "",
            ),
        ):
            rows[name].append(value)
        total_frames += n_frames
        audio_seconds += duration
        if stream.damage:
            damaged.append((track_id, path, stream.damage))
    schema.write_table(h5, "tracks", schema.TRACK_COLUMNS, rows)
    schema.write_table(h5, "failures", schema.FAILURE_COLUMNS, failures)
    schema.write_shard_attrs(h5, spec, task.name)
    h5.flush()
    return ShardResult(
        name=task.name,
        n_tracks=len(rows["track_id"]),
        n_frames=total_frames,
        audio_seconds=audio_seconds,
        elapsed=time.perf_counter() - started,
        failures=list(zip(*(failures[c] for c in ("track_id", "path", "kind", "message")))),
        damaged=damaged,
        feature_bytes_stored=sum(d.id.get_storage_size() for d in datasets.values()),
        feature_bytes_raw=sum(d.size * d.dtype.itemsize for d in datasets.values()),
    )


class _Marker:
    """A tiny file holding one number, overwritten in place (no fsync: it must only outlive the process)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        self.write(-1)  # started, no track opened yet

    def write(self, position: int) -> None:
        os.pwrite(self._fd, f"{position:>12d}\n".encode("ascii"), 0)

    def close(self) -> None:
        os.close(self._fd)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def read_marker(path: str) -> int | None:
    """The position a worker's marker names: None if it never started, -1 if it opened no track yet."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(64).decode("ascii", "replace").strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return -1


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
    results = []
    marker = _Marker(os.path.join(task.store, task.marker)) if task.marker else None

    def write(temp: str) -> None:
        with h5py.File(temp, "w") as h5:
            results.append(_write(h5, task, spec, marker))

    # The tag makes the temporary name unique per attempt: a worker orphaned by a
    # killed run, or a second attempt of the same task elsewhere (Dask), never
    # writes into the file of the one that redoes the shard.
    try:
        atomic.write_atomic(final, write, tag=f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
    finally:
        if marker is not None:
            marker.close()  # an error (not a death) is the shard's error: no crash to trace
    _remove_leftovers(final)
    result = results[0]
    result.file_bytes = os.path.getsize(final)
    return result
