"""Reading a feature store: lazily, from any number of processes at once, with few open files.

The track table comes from ``tracks.h5`` (see ``engine.tables``) plus the
shards it does not cover; shard files are opened on demand and kept in a small
LRU, so a pass over a million tracks holds at most ``max_open`` files. Passes
over many tracks should use ``iter_tracks`` or ``read_rows``: they read each
shard's frames in large contiguous slices instead of one small read per track.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

import h5py
import numpy as np

from . import schema, tables
from .errors import StoreError
from .spec import FeatureSpec
from .tables import StringColumn

__all__ = ["FeatureStore", "TrackTable", "FailureTable", "StringColumn"]

#: Frames read per slice by ``iter_tracks``/``read_rows`` (128 bins: 16 MiB of float16, 32 MiB as float32).
SPAN_FRAMES = 65536
#: A gap of more frames than this between two wanted tracks of a shard splits the read in two.
GAP_FRAMES = 4 * schema.CHUNK_FRAMES


@dataclass(frozen=True)
class TrackTable:
    """Per-track fields of a store, one column per field (row i = track i, in storage order).

    ``label`` is the int index into ``FeatureStore.label_names`` (-1 when
    unlabelled); ``shard`` the position of the track's shard in the index.
    String columns (``track_id``, ``path``, ``label_name``, ``split``,
    ``artist``, ``damage``; ``""`` when unknown or clean) are :class:`StringColumn`: ``col[i]`` is a
    ``str``, ``np.asarray(col)`` an object array (for small uses).
    """

    track_id: StringColumn
    path: StringColumn
    label: np.ndarray
    label_name: StringColumn
    split: StringColumn
    artist: StringColumn
    n_frames: np.ndarray
    duration: np.ndarray
    source_sr: np.ndarray
    source_channels: np.ndarray
    shard: np.ndarray
    first_frame: np.ndarray
    source_bytes: np.ndarray
    source_mtime_ns: np.ndarray
    damage: StringColumn  # "" unless stored from a damaged file (extract --on-corrupt keep): why

    def __len__(self) -> int:
        return len(self.track_id)

    def __getitem__(self, column: str):
        return getattr(self, column)

    def keys(self) -> list[str]:
        return list(self.__dataclass_fields__)


@dataclass(frozen=True)
class FailureTable:
    """Tracks that could not be used: ``track_id``, ``path``, ``kind``, ``message`` (StringColumns).

    ``source_bytes`` and ``source_mtime_ns`` (int64, -1 when unknown) describe the
    file when it was tried: a resume tries it again once it changes.
    """

    track_id: StringColumn
    path: StringColumn
    kind: StringColumn
    message: StringColumn
    source_bytes: np.ndarray
    source_mtime_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.track_id)


def _label_codes(label_name: StringColumn, label_names: list) -> np.ndarray:
    names, codes = label_name.codes()  # a handful of distinct names: the mapping loop is tiny
    position = {name: i for i, name in enumerate(label_names)}
    mapping = np.array([position.get(name, -1) for name in names] or [-1], dtype=np.int32)
    return mapping[codes] if len(codes) else np.zeros(0, dtype=np.int32)


class FeatureStore:
    """A feature store written by ``engine.extract``.

    Parameters
    ----------
    path : str or Path
        The store folder.
    max_open : int
        Shard files kept open at most (least recently used closed first).

    Attributes
    ----------
    spec : FeatureSpec
    label_names : list of str
    tracks : TrackTable
    failures : FailureTable
    index : dict
        The parsed ``index.json``.
    shards_read_on_open : int
        Shards whose tables were read from the shard files because ``tracks.h5``
        does not cover them (``engine.tables.consolidate(path)`` makes it 0).

    Notes
    -----
    Only shards named in ``index.json`` are read; each is validated the first
    time this process opens it. Handles are dropped when pickled and after a
    fork, so a store can be passed to worker processes; ``close()`` (or leaving
    a ``with`` block) closes every open file.
    """

    def __init__(self, path, *, max_open: int = 8) -> None:
        if not isinstance(max_open, int) or max_open < 1:
            raise StoreError(f"max_open must be a positive integer, got {max_open!r}")
        self.path = os.fspath(path)
        self.max_open = max_open
        self.index = schema.read_index(self.path)
        self.spec = FeatureSpec.from_dict(self.index["spec"])
        self.label_names = list(self.index["label_names"])
        self.shard_names = [shard["name"] for shard in self.index["shards"]]
        columns, failed, self.shards_read_on_open = tables.load(self.path, self.index, self.spec)
        self.tracks = TrackTable(
            track_id=columns["track_id"],
            path=columns["path"],
            label=_label_codes(columns["label"], self.label_names),
            label_name=columns["label"],
            split=columns["split"],
            artist=columns["artist"],
            n_frames=columns["n_frames"],
            duration=columns["duration"],
            source_sr=columns["source_sr"],
            source_channels=columns["source_channels"],
            shard=columns["shard"],
            first_frame=columns["first_frame"],
            source_bytes=columns["source_bytes"],
            source_mtime_ns=columns["source_mtime_ns"],
            damage=columns["damage"],
        )
        self.failures = FailureTable(**failed)
        # Rows of shard k are shard_rows[k]:shard_rows[k + 1] (rows are in shard order).
        self._shard_rows = np.searchsorted(self.tracks.shard, np.arange(len(self.shard_names) + 1))
        self._validated: set = set()  # shards checked against the schema by this process
        self._reset_handles()

    def _reset_handles(self) -> None:
        self._handles: OrderedDict = OrderedDict()
        self._lock = threading.RLock()
        self._pid = os.getpid()

    # --- open files ---------------------------------------------------------

    def _open(self, number: int) -> h5py.File:
        """Return the open shard file ``number`` (call with ``self._lock`` held)."""
        h5 = self._handles.get(number)
        if h5 is not None:
            self._handles.move_to_end(number)
            return h5
        while len(self._handles) >= self.max_open:
            _number, oldest = self._handles.popitem(last=False)
            oldest.close()
        path = os.path.join(self.path, self.shard_names[number])
        try:
            h5 = h5py.File(path, "r")
        except OSError as exc:
            raise StoreError(f"cannot open shard {path} named in the index: {exc}; re-run mgc extract") from None
        if number not in self._validated:
            try:
                self._check_shard(h5, number)
            except BaseException:
                h5.close()
                raise
            self._validated.add(number)
        self._handles[number] = h5
        return h5

    def _check_shard(self, h5: h5py.File, number: int) -> None:
        """Check what reading frames relies on: version, spec and feature shapes agree with the index.

        The track table was checked when the store was opened (read from the
        shard with ``schema.validate_shard``, or from ``tracks.h5`` checked
        against the index), so the per-column checks are not repeated here:
        they would cost a millisecond per shard of every pass.
        """
        where = h5.filename
        if h5.attrs.get("schema_version") != schema.SCHEMA_VERSION or h5.attrs.get("spec_hash") != self.spec.hash:
            raise StoreError(
                f"{where}: schema version {h5.attrs.get('schema_version')!r} / spec "
                f"{h5.attrs.get('spec_hash')!r}, the index says {schema.SCHEMA_VERSION} / "
                f"{self.spec.hash!r}; re-extract the store"
            )
        total = int(self.index["shards"][number]["n_frames"])
        for feature in self.spec.features:
            dataset = h5.get(f"features/{feature}")
            expected = (total, self.spec.n_bins(feature))
            if dataset is None or dataset.shape != expected:
                shape = None if dataset is None else dataset.shape
                raise StoreError(
                    f"{where}: /features/{feature} has shape {shape}, expected {expected}; "
                    "the shard is damaged, re-extract it"
                )

    def _check_process(self) -> None:
        if self._pid != os.getpid():  # forked: the parent's handles and lock are not ours
            for h5 in self._handles.values():
                try:
                    h5.close()
                except Exception:
                    pass
            self._reset_handles()

    def _dataset(self, feature: str) -> str:
        if feature not in self.spec.features:
            raise StoreError(f"this store holds {list(self.spec.features)}, not {feature!r}")
        return f"features/{feature}"

    def _read_frames(self, number: int, dataset: str, start: int, stop: int) -> np.ndarray:
        self._check_process()
        with self._lock:
            return self._open(number)[dataset][start:stop]

    @property
    def open_files(self) -> int:
        """Shard files this process holds open now."""
        return len(self._handles) if self._pid == os.getpid() else 0

    # --- the table ----------------------------------------------------------

    def __len__(self) -> int:
        return len(self.tracks)

    def __repr__(self) -> str:
        return f"FeatureStore({self.path!r}, {len(self)} tracks, spec {self.spec.hash})"

    def row(self, index_or_track_id) -> int:
        """Row number of a track given its row number or its track id."""
        if isinstance(index_or_track_id, (int, np.integer)):
            row = int(index_or_track_id)
            if not -len(self) <= row < len(self):
                raise IndexError(f"track {row} out of range for a store of {len(self)} tracks")
            return row % len(self)
        row = int(self.tracks.track_id.lookup([index_or_track_id])[0])
        if row < 0:
            raise KeyError(f"no track with id {index_or_track_id!r} in {self.path}")
        return row

    def rows(self, track_ids) -> np.ndarray:
        """Rows of many track ids at once (vectorised); KeyError names the first unknown id."""
        track_ids = list(track_ids)
        rows = self.tracks.track_id.lookup(track_ids)
        if np.any(rows < 0):
            missing = [track_ids[i] for i in np.flatnonzero(rows < 0)[:3]]
            raise KeyError(f"{int(np.sum(rows < 0))} track ids are not in {self.path}, e.g. {missing}")
        return rows

    # --- frames -------------------------------------------------------------

    def read(self, index_or_track_id, feature: str = "logmel") -> np.ndarray:
        """Frames of one track (random access: for a few tracks; passes use ``iter_tracks``).

        Returns
        -------
        np.ndarray [shape=(n_frames, n_bins), dtype=float32]
        """
        dataset = self._dataset(feature)
        row = self.row(index_or_track_id)
        start = int(self.tracks.first_frame[row])
        stop = start + int(self.tracks.n_frames[row])
        return self._read_frames(int(self.tracks.shard[row]), dataset, start, stop).astype(np.float32, copy=False)

    def iter_tracks(self, feature: str = "logmel", rows=None, *, span_frames: int = SPAN_FRAMES, dtype=np.float32):
        """Yield ``(row, frames)`` for every track (or ``rows``), in storage order.

        Each shard's wanted frames are read in a few large contiguous slices
        (at most ``span_frames`` frames each, split where wanted tracks are far
        apart) and cut into tracks; ``frames`` is ``(n_frames, n_bins)`` of
        ``dtype`` (float32 by default; ``None`` keeps the on-disk dtype, e.g.
        float16 log-mel, with no conversion), a view into the slice it came from.
        """
        dataset = self._dataset(feature)
        if rows is None:
            wanted = np.arange(len(self))
        else:
            rows = np.asarray(rows, dtype=np.int64).ravel()
            if len(rows) and (rows.min() < -len(self) or rows.max() >= len(self)):
                raise IndexError(f"rows out of range for a store of {len(self)} tracks")
            wanted = np.unique(rows % max(len(self), 1))
        first, counts, shards = self.tracks.first_frame, self.tracks.n_frames, self.tracks.shard
        bounds = np.flatnonzero(np.diff(shards[wanted])) + 1
        for group in np.split(wanted, bounds) if len(wanted) else []:
            number = int(shards[group[0]])
            starts_a = first[group]
            stops_a = starts_a + counts[group]
            starts, stops, rows_of_group = starts_a.tolist(), stops_a.tolist(), group.tolist()
            # Runs of tracks with no large gap between them; each run is read in spans of at most
            # span_frames frames (a few per shard: the per-track work is only the slice and the yield).
            gaps = (np.flatnonzero(starts_a[1:] - stops_a[:-1] > GAP_FRAMES) + 1).tolist()
            for run_start, run_stop in zip([0, *gaps], [*gaps, len(group)]):
                span_start = run_start
                while span_start < run_stop:
                    limit = starts[span_start] + span_frames
                    k = span_start + int(np.searchsorted(stops_a[span_start:run_stop], limit, side="right"))
                    k = max(k, span_start + 1)
                    lo, hi = starts[span_start], stops[k - 1]
                    block = self._read_frames(number, dataset, lo, hi)
                    if dtype is not None:
                        block = block.astype(dtype, copy=False)
                    for j in range(span_start, k):
                        yield rows_of_group[j], block[starts[j] - lo : stops[j] - lo]
                    span_start = k

    def read_rows(self, rows, feature: str = "logmel") -> list:
        """Frames of many tracks, in the order of ``rows``; each touched shard is read once, in large slices."""
        rows = np.asarray(rows, dtype=np.int64)
        got = dict(self.iter_tracks(feature, rows))
        return [got[int(row) % len(self)] for row in rows]

    # --- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Close the open shard files of this process."""
        if self._pid != os.getpid():
            self._check_process()
            return
        with self._lock:
            while self._handles:
                self._handles.popitem(last=False)[1].close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in ("_handles", "_lock", "_pid"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_handles()
