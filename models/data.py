"""From a feature store (through ``engine``'s public API) to training and evaluation sources."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.config import ModelError
from models.input_pipeline import TrackSource
from models.splits import track_columns

__all__ = ["open_store", "StoreTracks", "split_source"]


def open_store(store: Any) -> Any:
    """An ``engine.FeatureStore`` for a path, or ``store`` itself if it already is one."""
    if isinstance(store, (str, Path)):
        from engine import FeatureStore  # the engine's public API only

        return FeatureStore(store)
    return store


@dataclass
class StoreTracks:
    """A store and its per-track table as numpy columns."""

    store: Any
    columns: dict[str, np.ndarray]

    @classmethod
    def of(cls, store: Any) -> "StoreTracks":
        store = open_store(store)
        return cls(store, track_columns(store.tracks))

    def rows_of(self, track_ids: list[str]) -> np.ndarray:
        """Store row indices of ``track_ids``, in that order; unknown ids are an error."""
        index = {t: i for i, t in enumerate(self.columns["track_id"])}
        missing = [t for t in track_ids if t not in index]
        if missing:
            raise ModelError(f"{len(missing)} track ids of the split are not in the store, e.g. {missing[:3]}")
        return np.asarray([index[t] for t in track_ids], np.int64)


def split_source(tracks: StoreTracks, rows: np.ndarray, *, memory_limit_mb: float) -> TrackSource:
    """A :class:`TrackSource` over store ``rows`` (blocks follow the store's shard column when it has one)."""
    cols = tracks.columns
    if "n_frames" in cols:
        n_frames = cols["n_frames"][rows]
    else:
        n_frames = np.full(len(rows), 0)  # unknown sizes: assume they fit
    blocks = None
    for name in ("shard", "shard_index", "shard_id"):
        if name in cols:
            blocks = np.unique(np.asarray(cols[name]).astype(str)[rows], return_inverse=True)[1]
            break
    store = tracks.store
    return TrackSource(lambda row: store.read(int(row), feature="logmel"), rows, n_frames,
                       store.spec.n_mels, memory_limit_mb=memory_limit_mb, blocks=blocks)
