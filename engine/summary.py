"""What a store holds: per-label counts, failures, size on disk, compression."""

from __future__ import annotations

import os

import h5py
import numpy as np

from . import schema
from .store import FeatureStore

__all__ = ["summarize_store"]


def _storage(store: FeatureStore) -> tuple[int, int, int]:
    """(bytes of the store's files, feature bytes on disk, feature bytes uncompressed).

    Uses the sizes the extraction recorded in each index entry; only shards
    written before those were recorded are opened (one at a time).
    """
    on_disk = 0
    for name in (schema.INDEX_NAME, schema.JOURNAL_NAME, schema.PLAN_NAME, schema.TABLE_NAME):
        try:
            on_disk += os.path.getsize(os.path.join(store.path, name))
        except FileNotFoundError:
            pass
    stored = raw = 0
    for entry in store.index["shards"]:
        path = os.path.join(store.path, entry["name"])
        if all(key in entry for key in ("file_bytes", "feature_bytes_stored", "feature_bytes_raw")):
            on_disk += int(entry["file_bytes"])
            stored += int(entry["feature_bytes_stored"])
            raw += int(entry["feature_bytes_raw"])
            continue
        on_disk += os.path.getsize(path)
        with h5py.File(path, "r") as h5:
            for dataset in h5["features"].values():
                stored += dataset.id.get_storage_size()
                raw += dataset.size * dataset.dtype.itemsize
    return on_disk, stored, raw


def summarize_store(path) -> dict:
    """Describe a store as a JSON-ready dict (what ``mgc inspect`` prints).

    Returns
    -------
    dict
        ``spec``, ``spec_hash``, ``tracks``, ``frames``, ``hours``, ``labels``
        (name -> tracks, frames, hours), ``failures`` (count per kind and the list),
        ``damaged`` (count and list of tracks stored from damaged files, ``--on-corrupt keep``),
        ``shards``, ``bytes_on_disk``, ``feature_bytes_stored``,
        ``feature_bytes_uncompressed``, ``compression_ratio`` (vs float32 in memory
        and vs the on-disk dtypes uncompressed), ``versions``.
    """
    with FeatureStore(path, max_open=1) as store:
        tracks = store.tracks
        # Per label code (shifted by one so that -1, unlabelled, is bin 0), without a loop over tracks.
        codes = tracks.label.astype(np.int64) + 1
        n_codes = len(store.label_names) + 1
        counts = np.bincount(codes, minlength=n_codes)
        frames_per_code = np.bincount(codes, weights=tracks.n_frames, minlength=n_codes)
        seconds_per_code = np.bincount(codes, weights=tracks.duration, minlength=n_codes)
        labels = {}
        for code in np.flatnonzero(counts):
            name = "(unlabelled)" if code == 0 else store.label_names[code - 1]
            labels[name] = {
                "tracks": int(counts[code]),
                "frames": int(round(frames_per_code[code])),
                "hours": round(float(seconds_per_code[code]) / 3600, 4),
            }
        on_disk, stored, raw = _storage(store)
        frames = int(tracks.n_frames.sum())
        as_float32 = frames * 4 * sum(store.spec.n_bins(f) for f in store.spec.features)
        failed = store.failures
        failures = [
            {"track_id": t, "path": p, "kind": k, "message": m}
            for t, p, k, m in zip(failed.track_id, failed.path, failed.kind, failed.message)
        ]
        rows = np.flatnonzero(tracks.damage.lengths)
        damaged = [{"track_id": tracks.track_id[i], "damage": tracks.damage[i]} for i in rows.tolist()]
        kinds, kind_codes = failed.kind.codes()
        by_kind = dict(zip(kinds, np.bincount(kind_codes, minlength=len(kinds)).tolist()))
    return {
        "store": os.path.abspath(store.path),
        "spec": store.spec.to_dict(),
        "spec_hash": store.spec.hash,
        "run": store.index["run"],
        "tracks": len(store),
        "frames": frames,
        "hours": round(float(tracks.duration.sum()) / 3600, 4),
        "labels": labels,
        "failures": {"count": len(failures), "by_kind": by_kind, "list": failures},
        "damaged": {"count": len(damaged), "list": damaged},
        "shards": len(store.shard_names),
        "bytes_on_disk": on_disk,
        "feature_bytes_stored": stored,
        "feature_bytes_uncompressed": raw,
        "compression_ratio": round(raw / stored, 3) if stored else None,
        "compression_ratio_vs_float32": round(as_float32 / stored, 3) if stored else None,
        "versions": store.index.get("versions", {}),
    }
