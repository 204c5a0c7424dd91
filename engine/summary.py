"""What a store holds: per-label counts, failures, size on disk, compression."""

from __future__ import annotations

import os
from collections import Counter

import h5py
import numpy as np

from .store import FeatureStore

__all__ = ["summarize_store"]


def _storage(store: FeatureStore) -> tuple[int, int, int]:
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


def summarize_store(path) -> dict:
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
    on_disk, stored, raw = _storage(store)
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
