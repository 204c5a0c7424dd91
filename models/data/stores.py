"""From a feature store (through ``engine``'s public API) to training and evaluation sources."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mgc.engine import describe_differences, differences
from mgc.models.data.pipeline import TrackSource
from mgc.models.data.splits import track_columns
from mgc.models.errors import ModelError

__all__ = ["RETRAIN_ADVICE", "check_spec", "open_store", "StoreTracks", "split_source"]


#: What to do about a store of another spec than a trained model's.
RETRAIN_ADVICE = "Extract the store again with the model's spec, or train a new model (without --resume) on this store."


def check_spec(
    saved: dict[str, Any], store_spec: Any, *, where: str, store_path: str | Path, advice: str = RETRAIN_ADVICE
) -> None:
    """Raise :class:`ModelError` unless the store's FeatureSpec equals the one a model was trained on.

    Parameters
    ----------
    saved : dict
        The model's FeatureSpec, as a dict.
    store_spec : engine.FeatureSpec
        The store's.
    where : str
        The model, as the message names it ("the model in MODEL").
    store_path : str or Path
        The store, as the message names it.
    advice : str
        The sentence that ends the message: what to do (a built-in model's says which store to extract).
    """
    changed = differences(saved, store_spec.to_dict())
    if changed:
        raise ModelError(
            f"{where} was made with a different FeatureSpec than the store {store_path}: "
            + describe_differences(changed, "model", "store")
            + ". "
            + advice
        )


def open_store(store: Any) -> Any:
    """Return an ``engine.FeatureStore`` for a path, or ``store`` itself if it already is one."""
    if isinstance(store, (str, Path)):
        from mgc.engine import FeatureStore  # the engine's public API only

        return FeatureStore(store)
    return store


@dataclass
class StoreTracks:
    """A store and its per-track table as columns (numpy arrays; the engine's StringColumn for strings)."""

    store: Any
    columns: dict[str, Any]

    @classmethod
    def of(cls, store: Any) -> StoreTracks:
        store = open_store(store)
        return cls(store, track_columns(store.tracks))

    def rows_of(self, track_ids: list[str]) -> np.ndarray:
        """Store row indices of ``track_ids``, in that order; unknown ids are an error.

        A binary search in the sorted ids (built once by the column and kept),
        not a dict of a million Python strings.
        """
        track_ids = [str(t) for t in track_ids]
        column = self.columns["track_id"]
        if hasattr(column, "lookup"):
            rows = column.lookup(track_ids)
        else:
            keys = np.asarray(column, dtype=str)
            order = np.argsort(keys, kind="stable")
            query = np.asarray(track_ids, dtype=str)
            where = np.minimum(np.searchsorted(keys[order], query), max(len(keys) - 1, 0))
            found = (keys[order][where] == query) if len(keys) else np.zeros(len(query), bool)
            rows = np.where(found, order[where] if len(keys) else -1, -1)
        missing = [track_ids[i] for i in np.flatnonzero(rows < 0)[:3]]
        if missing:
            raise ModelError(f"{int(np.sum(rows < 0))} track ids of the split are not in the store, e.g. {missing}")
        return np.asarray(rows, np.int64)


class _StoreSource(TrackSource):
    """A TrackSource that reads the store a block (shard) at a time with ``store.read_rows``.

    ``TrackSource`` asks for one position at a time; here a miss reads every
    position of the same block in one bulk read and keeps the others (bounded
    by ``pending_mb``) until they are asked for. Held in memory, the whole
    source is read in one storage-order pass before ``TrackSource`` fills its cache.
    """

    def __init__(
        self,
        store: Any,
        rows: np.ndarray,
        n_frames: np.ndarray,
        n_mels: int,
        *,
        memory_limit_mb: float,
        blocks: np.ndarray | None,
        pending_mb: float = 512.0,
    ):
        self._store, self._rows = store, np.asarray(rows, np.int64)
        self._pending: OrderedDict[int, np.ndarray] = OrderedDict()
        self._pending_bytes, self._pending_limit = 0, pending_mb * 2**20
        self._pending_lock = threading.Lock()
        block_of = np.asarray(blocks) if blocks is not None else np.arange(len(rows)) // 256
        order = np.argsort(block_of, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(block_of[order]) != 0]) if len(order) else np.zeros(0, np.int64)
        self._block_positions = np.split(order, starts[1:])
        self._block_index = np.empty(len(rows), np.int64)
        for k, positions in enumerate(self._block_positions):
            self._block_index[positions] = k
        if int(np.asarray(n_frames, np.int64).sum()) * n_mels * 4 <= memory_limit_mb * 2**20 and len(rows):
            self._stash(np.arange(len(rows)), unbounded=True)  # one pass over the store, in storage order
        super().__init__(
            self._read_position, range(len(rows)), n_frames, n_mels, memory_limit_mb=memory_limit_mb, blocks=blocks
        )

    def _stash(self, positions: np.ndarray, unbounded: bool = False) -> None:
        arrays = self._store.read_rows(self._rows[positions], feature="logmel")
        for position, array in zip(positions.tolist(), arrays):
            self._pending[position] = array
            self._pending_bytes += array.nbytes
        while not unbounded and self._pending_bytes > self._pending_limit and len(self._pending) > len(positions):
            self._pending_bytes -= self._pending.popitem(last=False)[1].nbytes

    def _read_position(self, position: int) -> np.ndarray:
        with self._pending_lock:
            if position not in self._pending:
                self._stash(self._block_positions[self._block_index[position]])
            array = self._pending.pop(position)
            self._pending_bytes -= array.nbytes
            return array


def split_source(tracks: StoreTracks, rows: np.ndarray, *, memory_limit_mb: float) -> TrackSource:
    """Build a :class:`TrackSource` over store ``rows``, read a shard at a time in bulk (blocks are shards)."""
    cols = tracks.columns
    rows = np.asarray(rows, np.int64)
    # As strings, as before: block ids (and so the epoch order of a seed) do not change.
    blocks = np.unique(np.asarray(cols["shard"])[rows].astype(str), return_inverse=True)[1].ravel()
    store = tracks.store
    return _StoreSource(
        store, rows, cols["n_frames"][rows], store.spec.n_mels, memory_limit_mb=memory_limit_mb, blocks=blocks
    )
