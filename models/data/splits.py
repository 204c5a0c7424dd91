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

import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from mgc.engine import SPLIT_NAMES
from mgc.models.errors import ModelError

__all__ = ["SPLITS", "SPLIT_NAMES", "parse_split_files", "read_split_file", "track_columns", "make_splits"]

#: The splits, in order; the only names a split file may be given under (``--split-file train=...``).
SPLITS = SPLIT_NAMES
#: Names a store's ``split`` column is read with (a store extracted before the column was checked may hold aliases).
_ALIASES = {
    "train": "train",
    "training": "train",
    "tr": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "dev": "valid",
    "test": "test",
    "testing": "test",
    "eval": "test",
}


def _text(values: Any) -> np.ndarray:
    """Return an object array of str (h5py hands back bytes, pandas may hand back None)."""
    out = []
    for v in np.asarray(values, dtype=object).ravel():
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append("")
        elif isinstance(v, bytes):
            out.append(v.decode("utf-8", "surrogateescape"))
        else:
            out.append(str(v))
    return np.array(out, dtype=object)


def _is_string_column(values: Any) -> bool:
    """Tell the engine's StringColumn (bytes + offsets) by its vectorised helpers."""
    return hasattr(values, "codes") and hasattr(values, "lookup") and hasattr(values, "lengths")


def track_columns(tracks: Any) -> dict[str, Any]:
    """Return the store's per-track table as a dict of equal-length columns.

    Accepts the engine's ``TrackTable`` (``keys()`` + ``table[column]``), a dict
    of columns, or a numpy structured array. ``track_id``, ``path``, ``split``
    and ``artist`` come back as str object arrays, or as the engine's
    ``StringColumn`` when the table holds one (kept as is: no Python object per
    row); ``label`` and ``n_frames`` as int64.
    """
    if isinstance(tracks, np.ndarray) and tracks.dtype.names:
        cols = {n: tracks[n] for n in tracks.dtype.names}
    elif isinstance(tracks, Mapping) or (hasattr(tracks, "keys") and hasattr(tracks, "__getitem__")):
        cols = {str(k): tracks[k] if _is_string_column(tracks[k]) else np.asarray(tracks[k]) for k in tracks.keys()}
    else:
        kind = type(tracks).__name__
        raise ModelError(f"a track table must be the store's TrackTable or a dict of columns, not {kind}")
    for name in ("track_id", "path", "split", "artist"):
        if name in cols and not _is_string_column(cols[name]):
            cols[name] = _text(cols[name])
    for name in ("label", "n_frames"):
        if name in cols:
            cols[name] = np.asarray(cols[name]).astype(np.int64)
    if "track_id" not in cols or "label" not in cols:
        raise ModelError(f"the store's track table lacks track_id or label (columns: {sorted(cols)})")
    return cols


def _codes(values: Any) -> tuple[list[str], np.ndarray]:
    """Sorted distinct strings and each row's code (code point order, like ``sorted``)."""
    if _is_string_column(values):
        return values.codes()
    uniques, codes = np.unique(np.asarray(values, dtype=str), return_inverse=True)
    return [str(u) for u in uniques], codes.astype(np.int64).ravel()


def _blank(values: Any) -> np.ndarray:
    if _is_string_column(values):
        return values.lengths == 0
    return np.asarray(values, dtype=str) == ""


def _sorted_ids(track_id: Any, rows: np.ndarray) -> list[str]:
    """Return the ids of ``rows`` in ascending order (vectorised ranking; one str per returned id)."""
    if _is_string_column(track_id):
        rank = np.empty(len(track_id), dtype=np.int64)
        rank[track_id.sort_order()] = np.arange(len(track_id))
        rows = rows[np.argsort(rank[rows], kind="stable")]
        return [track_id[int(r)] for r in rows]
    return sorted(str(t) for t in np.asarray(track_id, dtype=object)[rows])


def _stratified(rows: np.ndarray, labels: np.ndarray, rng: np.random.Generator, val: float, test: float) -> dict:
    """Rows per split; ``labels[i]`` is the label of ``rows[i]``. A loop over labels, not tracks."""
    out = {s: [] for s in SPLITS}
    for label in np.unique(labels):
        members = rows[labels == label]
        members = members[rng.permutation(members.size)]
        n_test, n_val = _counts(members.size, val, test)
        out["test"].append(members[:n_test])
        out["valid"].append(members[n_test : n_test + n_val])
        out["train"].append(members[n_test + n_val :])
    return {s: np.concatenate(out[s]) if out[s] else np.zeros(0, np.int64) for s in SPLITS}


def _counts(n: int, val: float, test: float) -> tuple[int, int]:
    # At least one held-out track per class once a class has enough tracks, so
    # that every class is scored.
    n_test = max(int(round(n * test)), 1 if test > 0 and n >= 3 else 0)
    n_val = max(int(round(n * val)), 1 if val > 0 and n - n_test >= 2 else 0)
    return n_test, n_val


def _artist_disjoint(rows: np.ndarray, labels: np.ndarray, artists: np.ndarray, rng, val, test) -> dict:
    """Rows per split with every artist in one split; ``artists`` are int codes in sorted-name order.

    Each artist goes, with all of their tracks, to one split; artists are dealt
    out per majority label (ties: the smaller label) so that every split keeps
    the label mix. Within a label's artists, in a random order, the first go to
    test until it holds its share of tracks, the next to valid, the rest to train.
    """
    n_artists = int(artists.max()) + 1 if artists.size else 0
    sizes = np.bincount(artists, minlength=n_artists)
    # Majority label per artist: count (artist, label) pairs, keep each artist's most frequent.
    pairs, pair_counts = np.unique(artists * (int(labels.max()) + 1) + labels, return_counts=True)
    pair_artist, pair_label = np.divmod(pairs, int(labels.max()) + 1)
    best = np.lexsort((pair_label, -pair_counts, pair_artist))
    first_of_artist = best[np.r_[True, np.diff(pair_artist[best]) != 0]]
    majority = np.empty(n_artists, dtype=np.int64)
    majority[pair_artist[first_of_artist]] = pair_label[first_of_artist]
    present = sizes > 0
    split_of_artist = np.full(n_artists, 2, dtype=np.int64)  # 0 test, 1 valid, 2 train
    for label in np.unique(labels):
        group = np.flatnonzero(present & (majority == label))
        group = group[rng.permutation(len(group))]
        group_sizes = sizes[group]
        n_test, n_val = _counts(int(group_sizes.sum()), val, test)
        before = np.cumsum(group_sizes) - group_sizes  # tracks dealt before each artist
        to_test = (before < n_test) if len(group) >= 3 else np.zeros(len(group), bool)
        taken = int(group_sizes[to_test].sum())
        rest_before = before - taken  # the test prefix taken, valid fills up from the next artist on
        to_valid = ~to_test & (rest_before < n_val) if len(group) >= 2 else np.zeros(len(group), bool)
        split_of_artist[group[to_test]] = 0
        split_of_artist[group[to_valid]] = 1
    split_of_track = split_of_artist[artists]
    return {"test": rows[split_of_track == 0], "valid": rows[split_of_track == 1], "train": rows[split_of_track == 2]}


def _artist_codes(cols: dict, rows: np.ndarray) -> np.ndarray:
    r"""Artist code of each of ``rows``, ordered as sorted names; a track without one is its own artist.

    Artist-less tracks come first, ordered by track id (the order the old
    ``"\0" + track_id`` stand-in names sorted in), then the named artists.
    """
    artist = cols["artist"]
    column = artist.take(rows) if _is_string_column(artist) else np.asarray(artist, dtype=object)[rows]
    _names, codes = _codes(column)
    blank = _blank(column)
    out = np.empty(len(rows), dtype=np.int64)
    n_blank = int(blank.sum())
    if n_blank:
        track_id = cols["track_id"]
        blank_rows = rows[blank]
        if _is_string_column(track_id):
            ids = track_id.take(blank_rows)
        else:
            ids = np.asarray(track_id, dtype=object)[blank_rows]
        _ids, id_codes = _codes(ids)
        out[blank] = id_codes
    if n_blank < len(rows):
        named_codes = codes[~blank]
        _u, dense = np.unique(named_codes, return_inverse=True)
        out[~blank] = n_blank + dense.ravel()
    return out


def _keys(track_id: str, path: str) -> list[str]:
    """The names a split file may use for a track, most specific first.

    As given, without an extension, the file name, the file name without an extension. A suffix of
    digits is not an extension: ``blues.00001`` is a whole GTZAN-style id, not ``blues``.
    """
    keys: list[str] = []
    for name in (track_id, path):
        if not name:
            continue
        p = PurePosixPath(name.replace("\\", "/").lstrip("./"))
        bare = p.with_suffix("") if p.suffix and not p.suffix[1:].isdigit() else p
        bare_name = PurePosixPath(p.name)
        bare_name = bare_name.with_suffix("") if bare_name.suffix and not bare_name.suffix[1:].isdigit() else bare_name
        for key in (str(p), str(bare), p.name, str(bare_name)):
            if key not in keys:
                keys.append(key)
    return keys


def parse_split_files(split_files: Mapping[str, str | Path] | Sequence[str]) -> dict[str, str | Path]:
    """Split files as ``{split name: path}``, from a mapping or from ``NAME=PATH`` strings (``--split-file``).

    Each name must be one of :data:`SPLIT_NAMES` (given once) and each path an existing file; what the
    files hold is checked as they are read (see :func:`read_split_file`).

    Raises
    ------
    ModelError
        One line naming the ``--split-file`` item at fault: not ``NAME=PATH``, an unknown or repeated
        split name, a path that does not exist or is a folder.
    """
    items = split_files.items() if isinstance(split_files, Mapping) else None
    if items is None:
        items = []
        for item in split_files:
            name, equals, path = str(item).partition("=")
            if not (name and equals and path):
                raise ModelError(f"--split-file takes NAME=PATH (e.g. train=train_filtered.txt), got {item!r}")
            items.append((name, path))
    parsed: dict[str, str | Path] = {}
    for name, path in items:
        given = f"--split-file {name}={path}"
        if name not in SPLIT_NAMES:
            raise ModelError(f"{given}: unknown split {str(name)!r}; the splits are {', '.join(SPLIT_NAMES)}")
        if name in parsed:
            raise ModelError(f"{given}: the {name} split is given twice (also {parsed[name]}); give each split once")
        if not os.path.exists(path):
            raise ModelError(f"split file {path} ({given}) does not exist")
        if os.path.isdir(path):
            raise ModelError(f"split file {path} ({given}) is a folder, not a file of track ids")
        parsed[name] = path
    return parsed


def read_split_file(name: str, path: str | Path) -> list[str]:
    """The track ids of split file ``path`` (one per line; blank lines and ``#`` comments skipped).

    Raises
    ------
    ModelError
        One line when the file cannot be read, is not UTF-8 text or names no track id.
    """
    given = f"--split-file {name}={path}"
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ModelError(f"split file {path} ({given}) does not exist") from None
    except IsADirectoryError:
        raise ModelError(f"split file {path} ({given}) is a folder, not a file of track ids") from None
    except OSError as error:
        raise ModelError(f"cannot read split file {path} ({given}): {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ModelError(
            f"split file {path} ({given}) is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
            f"{error.start}); save it as UTF-8, one track id per line"
        ) from None
    lines = [ln.strip() for ln in text.splitlines()]
    ids = [ln for ln in lines if ln and not ln.startswith("#")]
    if not ids:
        raise ModelError(f"split file {path} ({given}) is empty: it names no track ids (one per line)")
    return ids


def _from_files(cols: dict, split_files: Mapping[str, str | Path]) -> dict:
    # One Python pass over the store's ids and paths: split files name tracks
    # one per line, so their cost is that of the files themselves.
    # A track's own id always names it; a shorter name (no folder, no extension) names a track only when
    # no other track shares it, so that a split file never puts one track in place of another.
    track_ids = np.asarray(cols["track_id"], dtype=object)
    paths = np.asarray(cols["path"], dtype=object) if "path" in cols else np.array([""] * len(track_ids), object)
    lookup: dict[str, str] = {str(tid): tid for tid in track_ids}
    derived: dict[str, object] = {}
    ambiguous = object()
    for tid, path in zip(track_ids, paths):
        for key in _keys(tid, path):
            if key not in lookup:
                derived[key] = tid if derived.get(key, tid) is tid else ambiguous
    lookup.update({key: tid for key, tid in derived.items() if tid is not ambiguous})
    out = {s: [] for s in SPLITS}
    for name, file in parse_split_files(split_files).items():
        lines = read_split_file(name, file)
        found = [lookup[k] for ln in lines for k in [next((k for k in _keys(ln, "") if k in lookup), None)] if k]
        if not found:
            raise ModelError(f"none of the {len(lines)} track ids in {file} is in the store (first: {lines[0]!r})")
        out[name] += found
    return out


def make_splits(
    tracks: Any,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_files: Mapping[str, str | Path] | Sequence[str] | None = None,
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
    split_files : mapping of split name to path, or ``NAME=PATH`` strings, optional
        Files with one track id per line; they take precedence over everything.

    Returns
    -------
    dict
        ``{"method": str, "train": [track_id, ...], "valid": [...], "test": [...]}``

    Notes
    -----
    Apart from split files, the work is vectorised over rows (loops run over
    labels and distinct split names only), so a million tracks cost seconds.
    """
    cols = track_columns(tracks)
    labeled = np.flatnonzero(cols["label"] >= 0)
    labels = cols["label"][labeled]
    rng = np.random.default_rng(seed)
    if split_files:
        method = "split files"
        labeled_ids = set(np.asarray(cols["track_id"], dtype=object)[labeled])
        files = parse_split_files(split_files)
        out = {k: [t for t in v if t in labeled_ids] for k, v in _from_files(cols, files).items()}
        out = {s: sorted(str(t) for t in out[s]) for s in SPLITS}
        seen: set[str] = set()
        for s in SPLITS:
            if seen & set(out[s]):
                raise ModelError(f"tracks in more than one split, e.g. {sorted(seen & set(out[s]))[:3]}")
            seen |= set(out[s])
        if not out["train"]:
            raise ModelError(f"no labeled training tracks ({method}); the store needs labels to train")
        return {"method": method, **out}
    split = cols.get("split")
    split_blank = _blank(split)[labeled] if split is not None else None
    artist_blank = _blank(cols["artist"])[labeled] if "artist" in cols else None
    if split_blank is not None and not np.all(split_blank):
        method = "manifest split column"
        values = split.take(labeled) if _is_string_column(split) else np.asarray(split, dtype=object)[labeled]
        names, codes = _codes(values)
        unknown = sorted(n for n in names if n and n.lower() not in _ALIASES)
        if unknown:
            raise ModelError(f"unknown split names {unknown} in the manifest; use train, valid or test")
        target = np.array([SPLITS.index(_ALIASES[n.lower()]) if n else -1 for n in names], dtype=np.int64)[codes]
        rows = {s: labeled[target == i] for i, s in enumerate(SPLITS)}
        missing = target < 0
        if np.any(missing):  # rows the manifest left blank are split at random
            extra = _stratified(labeled[missing], labels[missing], rng, val_fraction, test_fraction)
            rows = {s: np.concatenate([rows[s], extra[s]]) for s in SPLITS}
    elif artist_blank is not None and not np.all(artist_blank):
        method = "artist-disjoint stratified"
        rows = _artist_disjoint(labeled, labels, _artist_codes(cols, labeled), rng, val_fraction, test_fraction)
    else:
        method = "stratified"
        rows = _stratified(labeled, labels, rng, val_fraction, test_fraction)
    assigned = np.concatenate([rows[s] for s in SPLITS]).astype(np.int64)
    if assigned.size and np.bincount(assigned).max() > 1:
        twice = np.flatnonzero(np.bincount(assigned) > 1)[:3]
        raise ModelError(f"tracks in more than one split, e.g. {[cols['track_id'][int(r)] for r in twice]}")
    if not rows["train"].size:
        raise ModelError(f"no labeled training tracks ({method}); the store needs labels to train")
    return {"method": method, **{s: _sorted_ids(cols["track_id"], np.asarray(rows[s], np.int64)) for s in SPLITS}}
