"""Today's reader (engine/store.py before the columnar table), kept to compare against in benchmarks/store.py."""
# ruff: noqa: E501, D401  (a verbatim copy of the old code, kept as it was)

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from mgc.engine import schema
from mgc.engine.errors import StoreError
from mgc.engine.spec import FeatureSpec

__all__ = ["FeatureStore", "TrackTable", "FailureTable"]


@dataclass(frozen=True)
class TrackTable:
    """Per-track fields of a store, one numpy array per column (row i = track i).

    ``label`` is the int index into ``FeatureStore.label_names`` (-1 when
    unlabelled); strings are object arrays (``""`` when unknown).
    """

    track_id: np.ndarray
    path: np.ndarray
    label: np.ndarray
    label_name: np.ndarray
    split: np.ndarray
    artist: np.ndarray
    n_frames: np.ndarray
    duration: np.ndarray
    source_sr: np.ndarray
    source_channels: np.ndarray
    shard: np.ndarray
    first_frame: np.ndarray

    def __len__(self) -> int:
        return len(self.track_id)

    def __getitem__(self, column: str) -> np.ndarray:
        return getattr(self, column)

    def keys(self) -> list[str]:
        return list(self.__dataclass_fields__)


@dataclass(frozen=True)
class FailureTable:
    """Tracks that could not be used: ``track_id``, ``path``, ``kind``, ``message``."""

    track_id: np.ndarray
    path: np.ndarray
    kind: np.ndarray
    message: np.ndarray

    def __len__(self) -> int:
        return len(self.track_id)


def _concat(parts: list, dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


class FeatureStore:
    """A feature store written by ``engine.extract``.

    Parameters
    ----------
    path : str or Path
        The store folder.

    Attributes
    ----------
    spec : FeatureSpec
    label_names : list of str
    tracks : TrackTable
    failures : FailureTable
    index : dict
        The parsed ``index.json``.

    Notes
    -----
    Only shards named in ``index.json`` are read. HDF5 files are opened on the
    first ``read`` in each process (handles are dropped when pickled), so a
    store can be passed to worker processes.
    """

    def __init__(self, path) -> None:
        self.path = os.fspath(path)
        self.index = schema.read_index(self.path)
        self.spec = FeatureSpec.from_dict(self.index["spec"])
        self.label_names = list(self.index["label_names"])
        self.shard_names = [shard["name"] for shard in self.index["shards"]]
        self._handles: dict = {}
        self._pid = os.getpid()
        self._load_tables()

    def _load_tables(self) -> None:
        tracks = {name: [] for name in schema.TRACK_COLUMNS}
        failures = {name: [] for name in schema.FAILURE_COLUMNS}
        shard_numbers = []
        for number, name in enumerate(self.shard_names):
            path = os.path.join(self.path, name)
            try:
                h5 = h5py.File(path, "r")
            except OSError as exc:
                raise StoreError(f"cannot open shard {path} named in the index: {exc}; re-run mgc extract") from None
            with h5:
                schema.validate_shard(h5, self.spec)
                table = schema.read_table(h5, "tracks", schema.TRACK_COLUMNS)
                failed = schema.read_table(h5, "failures", schema.FAILURE_COLUMNS)
            for column in tracks:
                tracks[column].append(table[column])
            shard_numbers.append(np.full(len(table["track_id"]), number, dtype=np.int32))
            for column in failures:
                failures[column].append(failed[column])
        columns = {
            c: _concat(tracks[c], object if dt is schema._STR else dt) for c, (dt, _) in schema.TRACK_COLUMNS.items()
        }
        codes = {name: i for i, name in enumerate(self.label_names)}
        label = np.array([codes.get(name, -1) for name in columns["label"]], dtype=np.int32)
        self.tracks = TrackTable(
            track_id=columns["track_id"],
            path=columns["path"],
            label=label,
            label_name=columns["label"],
            split=columns["split"],
            artist=columns["artist"],
            n_frames=columns["n_frames"],
            duration=columns["duration"],
            source_sr=columns["source_sr"],
            source_channels=columns["source_channels"],
            shard=_concat(shard_numbers, np.int32),
            first_frame=columns["first_frame"],
        )
        # (the failure columns this reader knew; it reads the newer ones too, as it would have)
        self.failures = FailureTable(
            **{c: _concat(failures[c], object) for c in ("track_id", "path", "kind", "message")}
        )
        self._row_of = {track_id: row for row, track_id in enumerate(self.tracks.track_id)}

    def _open(self, number: int) -> h5py.File:
        if self._pid != os.getpid():  # forked: handles of the parent are not ours
            self._handles, self._pid = {}, os.getpid()
        h5 = self._handles.get(number)
        if h5 is None:
            path = os.path.join(self.path, self.shard_names[number])
            try:
                h5 = h5py.File(path, "r")
            except (OSError, FileNotFoundError) as exc:
                raise StoreError(f"cannot open shard {path} named in the index: {exc}; re-run mgc extract") from None
            self._handles[number] = h5
        return h5

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
        try:
            return self._row_of[index_or_track_id]
        except KeyError:
            raise KeyError(f"no track with id {index_or_track_id!r} in {self.path}") from None

    def read(self, index_or_track_id, feature: str = "logmel") -> np.ndarray:
        """Frames of one track.

        Returns
        -------
        np.ndarray [shape=(n_frames, n_bins), dtype=float32]
        """
        if feature not in self.spec.features:
            raise StoreError(f"this store holds {list(self.spec.features)}, not {feature!r}")
        row = self.row(index_or_track_id)
        start = int(self.tracks.first_frame[row])
        stop = start + int(self.tracks.n_frames[row])
        data = self._open(int(self.tracks.shard[row]))[f"features/{feature}"][start:stop]
        return data.astype(np.float32, copy=False)

    def close(self) -> None:
        """Close the open shard files of this process."""
        for h5 in self._handles.values():
            h5.close()
        self._handles = {}

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()


# --- today's summarize_store (engine/summary.py), on today's reader ---

from collections import Counter  # noqa: E402


def _storage_v0(store: FeatureStore) -> tuple[int, int, int]:
    """(bytes of all files named by the index, feature bytes on disk, feature bytes uncompressed)."""
    on_disk = os.path.getsize(os.path.join(store.path, "index.json"))
    stored = raw = 0
    for name in store.shard_names:
        path = os.path.join(store.path, name)
        on_disk += os.path.getsize(path)
        with h5py.File(path, "r") as h5:
            for dataset in h5["features"].values():
                stored += dataset.id.get_storage_size()
                raw += dataset.size * dataset.dtype.itemsize
    return on_disk, stored, raw


def summarize_store_v0(path) -> dict:
    """A JSON-ready description of a store (what ``mgc inspect`` prints).

    Returns
    -------
    dict
        ``spec``, ``spec_hash``, ``tracks``, ``frames``, ``hours``, ``labels``
        (name -> tracks, frames, hours), ``failures`` (count per kind and the list),
        ``shards``, ``bytes_on_disk``, ``feature_bytes_stored``,
        ``feature_bytes_uncompressed``, ``compression_ratio`` (vs float32 in memory
        and vs the on-disk dtypes uncompressed), ``versions``.
    """
    store = FeatureStore(path)
    tracks = store.tracks
    labels = {}
    for code in np.unique(tracks.label):
        name = "(unlabelled)" if code < 0 else store.label_names[code]
        rows = tracks.label == code
        labels[name] = {
            "tracks": int(rows.sum()),
            "frames": int(tracks.n_frames[rows].sum()),
            "hours": round(float(tracks.duration[rows].sum()) / 3600, 4),
        }
    on_disk, stored, raw = _storage_v0(store)
    frames = int(tracks.n_frames.sum())
    as_float32 = frames * 4 * sum(store.spec.n_bins(f) for f in store.spec.features)
    failures = [
        {"track_id": t, "path": p, "kind": k, "message": m}
        for t, p, k, m in zip(store.failures.track_id, store.failures.path, store.failures.kind, store.failures.message)
    ]
    return {
        "store": os.path.abspath(store.path),
        "spec": store.spec.to_dict(),
        "spec_hash": store.spec.hash,
        "run": store.index["run"],
        "tracks": len(store),
        "frames": frames,
        "hours": round(float(tracks.duration.sum()) / 3600, 4),
        "labels": labels,
        "failures": {"count": len(failures), "by_kind": dict(Counter(f["kind"] for f in failures)), "list": failures},
        "shards": len(store.shard_names),
        "bytes_on_disk": on_disk,
        "feature_bytes_stored": stored,
        "feature_bytes_uncompressed": raw,
        "compression_ratio": round(raw / stored, 3) if stored else None,
        "compression_ratio_vs_float32": round(as_float32 / stored, 3) if stored else None,
        "versions": store.index.get("versions", {}),
    }
