"""Track-level train/valid/test splits, never crops of one track on both sides.

Sources, in order of precedence:

1. split files given by the user (one track id per line, like the
   fault-filtered GTZAN lists ``train_filtered.txt``/``valid_filtered.txt``/
   ``test_filtered.txt``); tracks listed in none of them are left out;
2. the manifest's ``split`` column, when the store has one;
3. artist-disjoint splits, stratified by label, when there is an ``artist`` column;
4. otherwise a split stratified by label.

Unlabeled tracks (label -1) are never in a split.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

import numpy as np

from models.config import ModelError

__all__ = ["SPLITS", "track_columns", "make_splits", "save_splits", "load_splits"]

SPLITS = ("train", "valid", "test")
_ALIASES = {
    "train": "train", "training": "train", "tr": "train",
    "valid": "valid", "val": "valid", "validation": "valid", "dev": "valid",
    "test": "test", "testing": "test", "eval": "test",
}


def _text(values: Any) -> np.ndarray:
    """An object array of str (h5py hands back bytes, pandas may hand back None)."""
    out = []
    for v in np.asarray(values, dtype=object).ravel():
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append("")
        elif isinstance(v, bytes):
            out.append(v.decode("utf-8"))
        else:
            out.append(str(v))
    return np.array(out, dtype=object)


def track_columns(tracks: Any) -> dict[str, np.ndarray]:
    """The store's per-track table as a dict of equal-length numpy columns.

    Accepts the engine's ``TrackTable``, a pandas DataFrame, a numpy
    structured array, a dict of columns or a sequence of row dicts / objects. ``track_id``, ``path``, ``split`` and
    ``artist`` come back as str arrays, ``label`` and ``n_frames`` as int64.
    """
    if hasattr(tracks, "columns") and hasattr(tracks, "to_numpy"):
        cols = {str(c): tracks[c].to_numpy() for c in tracks.columns}
    elif isinstance(tracks, np.ndarray) and tracks.dtype.names:
        cols = {n: tracks[n] for n in tracks.dtype.names}
    elif isinstance(tracks, Mapping) or (hasattr(tracks, "keys") and hasattr(tracks, "__getitem__")):
        # A dict of columns, or the engine's TrackTable (keys() + table[column]).
        cols = {str(k): np.asarray(tracks[k]) for k in tracks.keys()}
    elif dataclasses.is_dataclass(tracks):
        cols = {f.name: np.asarray(getattr(tracks, f.name)) for f in dataclasses.fields(tracks)}
    else:
        rows = list(tracks)
        if not rows:
            return {"track_id": np.array([], object), "label": np.array([], np.int64)}
        keys = rows[0].keys() if isinstance(rows[0], Mapping) else getattr(rows[0], "_fields", vars(rows[0]).keys())
        get = (lambda r, k: r[k]) if isinstance(rows[0], Mapping) else getattr
        cols = {k: np.asarray([get(r, k) for r in rows]) for k in keys}
    for name in ("track_id", "path", "split", "artist"):
        if name in cols:
            cols[name] = _text(cols[name])
    for name in ("label", "n_frames"):
        if name in cols:
            cols[name] = np.asarray(cols[name]).astype(np.int64)
    if "track_id" not in cols or "label" not in cols:
        raise ModelError(f"the store's track table lacks track_id or label (columns: {sorted(cols)})")
    return cols


def _stratified(ids: np.ndarray, labels: np.ndarray, rng: np.random.Generator, val: float, test: float) -> dict:
    out = {s: [] for s in SPLITS}
    for label in np.unique(labels):
        members = ids[labels == label]
        members = members[rng.permutation(members.size)]
        n_test, n_val = _counts(members.size, val, test)
        out["test"] += list(members[:n_test])
        out["valid"] += list(members[n_test:n_test + n_val])
        out["train"] += list(members[n_test + n_val:])
    return out


def _counts(n: int, val: float, test: float) -> tuple[int, int]:
    # At least one held-out track per class once a class has enough tracks, so
    # that every class is scored.
    n_test = max(int(round(n * test)), 1 if test > 0 and n >= 3 else 0)
    n_val = max(int(round(n * val)), 1 if val > 0 and n - n_test >= 2 else 0)
    return n_test, n_val


def _artist_disjoint(ids, labels, artists, rng, val, test) -> dict:
    out = {s: [] for s in SPLITS}
    unique_artists = np.unique(artists)
    # Each artist goes, with all of their tracks, to one split; artists are
    # dealt out per majority label so that every split keeps the label mix.
    majority = {a: np.bincount(labels[artists == a]).argmax() for a in unique_artists}
    for label in np.unique(labels):
        group = [a for a in unique_artists if majority[a] == label]
        group = [group[i] for i in rng.permutation(len(group))]
        n_tracks = sum(int(np.sum(artists == a)) for a in group)
        n_test, n_val = _counts(n_tracks, val, test)
        taken = {"test": 0, "valid": 0}
        for a in group:
            members = list(ids[artists == a])
            if taken["test"] < n_test and len(group) >= 3:
                split = "test"
            elif taken["valid"] < n_val and len(group) >= 2:
                split = "valid"
            else:
                split = "train"
            taken[split] = taken.get(split, 0) + len(members)
            out[split] += members
    return out


def _keys(track_id: str, path: str) -> set[str]:
    keys = set()
    for name in (track_id, path):
        if not name:
            continue
        p = PurePosixPath(name.replace("\\", "/").lstrip("./"))
        keys |= {str(p), str(p.with_suffix("")), p.name, p.stem}
    return keys


def _from_files(cols: dict, split_files: Mapping[str, str | Path]) -> dict:
    lookup: dict[str, str] = {}
    paths = cols.get("path", np.array([""] * len(cols["track_id"]), object))
    for tid, path in zip(cols["track_id"], paths):
        for key in _keys(tid, path):
            lookup.setdefault(key, tid)
    out = {s: [] for s in SPLITS}
    for name, file in split_files.items():
        split = _ALIASES.get(str(name).lower())
        if split is None:
            raise ModelError(f"unknown split name {name!r} for split file {file}; use train, valid or test")
        lines = [ln.strip() for ln in Path(file).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        found = [lookup[k] for ln in lines for k in [next((k for k in _keys(ln, "") if k in lookup), None)] if k]
        if lines and not found:
            raise ModelError(f"none of the {len(lines)} track ids in {file} is in the store (first: {lines[0]!r})")
        out[split] += found
    return out


def make_splits(
    tracks: Any, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1,
    split_files: Mapping[str, str | Path] | None = None,
) -> dict[str, Any]:
    """Assign labeled tracks to ``train``/``valid``/``test``.

    Parameters
    ----------
    tracks : table
        The store's ``tracks`` (see :func:`track_columns`).
    seed : int
        Seeds the random assignment (not used with a split column or split files).
    val_fraction, test_fraction : float
        Share of each label's tracks (or, with artists, of each label's
        artists' tracks) held out.
    split_files : mapping of split name to path, optional
        Files with one track id per line; they take precedence over everything.

    Returns
    -------
    dict
        ``{"method": str, "train": [track_id, ...], "valid": [...], "test": [...]}``
    """
    cols = track_columns(tracks)
    labeled = cols["label"] >= 0
    ids, labels = cols["track_id"][labeled], cols["label"][labeled]
    rng = np.random.default_rng(seed)
    if split_files:
        method = "split files"
        labeled_ids = set(ids)
        out = {k: [t for t in v if t in labeled_ids] for k, v in _from_files(cols, split_files).items()}
    elif "split" in cols and np.any(cols["split"][labeled] != ""):
        method = "manifest split column"
        splits = cols["split"][labeled]
        unknown = sorted({s for s in splits if s and s.lower() not in _ALIASES})
        if unknown:
            raise ModelError(f"unknown split names {unknown} in the manifest; use train, valid or test")
        out = {s: [t for t, v in zip(ids, splits) if v and _ALIASES[v.lower()] == s] for s in SPLITS}
        missing = splits == ""
        if np.any(missing):  # rows the manifest left blank are split at random
            extra = _stratified(ids[missing], labels[missing], rng, val_fraction, test_fraction)
            for s in SPLITS:
                out[s] += extra[s]
    elif "artist" in cols and np.any(cols["artist"][labeled] != ""):
        method = "artist-disjoint stratified"
        artists = cols["artist"][labeled].copy()
        # Tracks without an artist are their own artist.
        artists[artists == ""] = np.array(["\0" + t for t in ids[artists == ""]], dtype=object)
        out = _artist_disjoint(ids, labels, artists, rng, val_fraction, test_fraction)
    else:
        method = "stratified"
        out = _stratified(ids, labels, rng, val_fraction, test_fraction)
    out = {s: sorted(str(t) for t in out[s]) for s in SPLITS}
    seen: set[str] = set()
    for s in SPLITS:
        if seen & set(out[s]):
            raise ModelError(f"tracks in more than one split, e.g. {sorted(seen & set(out[s]))[:3]}")
        seen |= set(out[s])
    if not out["train"]:
        raise ModelError(f"no labeled training tracks ({method}); the store needs labels to train")
    return {"method": method, **out}


def save_splits(splits: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(splits, indent=1))


def load_splits(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
