"""The track table of a store as flat numpy columns, and its consolidated file ``tracks.h5``.

A million rows must not become a million Python objects: numeric columns are
plain arrays and string columns are a :class:`StringColumn` (UTF-8 bytes of all
rows in one ``uint8`` array plus ``int64`` offsets, as Arrow stores strings).
``consolidate`` writes every shard's rows into ``STORE/tracks.h5`` (layout in
``engine.schema``); ``load`` reads that file and completes it from the shards
it does not cover, so stores written before it existed still open (slower).
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from . import atomic, schema
from .errors import StoreError

__all__ = ["StringColumn", "consolidate", "load"]

_OFFSETS = schema.TABLE_OFFSETS_SUFFIX


def _encode(value) -> bytes:
    """UTF-8 bytes of a row; a file name's undecodable bytes (lone surrogates) become those bytes again."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")


def _decode(data: bytes) -> str:
    """The row's ``str``; bytes that are not valid UTF-8 become lone surrogates (``os.fsencode`` inverts it)."""
    return data.decode("utf-8", "surrogateescape")


class StringColumn:
    """A column of strings stored as UTF-8 bytes plus row offsets.

    Bytes that are not valid UTF-8 (a file name's, on Linux) are kept as they
    are and read as lone surrogates ("surrogateescape"), as Python's ``os``
    functions give such names; a ``str`` holding them is encoded back to those bytes.

    ``column[i]`` is a ``str``; ``column[slice or rows or mask]`` an object
    array (for small uses); ``take(rows)`` a ``StringColumn``. Vectorised
    helpers: ``lengths``, ``==``/``!=`` with one string, ``isin``, ``codes``
    (unique values and each row's code) and ``lookup`` (rows of given strings,
    through a sorted index built on first use).
    """

    __slots__ = ("data", "offsets", "_sorted")

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data = np.asarray(data, dtype=np.uint8)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self._sorted = None  # (order, fixed-width keys in that order), built by lookup

    @classmethod
    def from_strings(cls, values) -> StringColumn:
        """From any sequence of ``str``/``bytes``/``None`` (one Python pass: for small inputs or per shard)."""
        encoded = [_encode("" if v is None else v) for v in values]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets)

    @classmethod
    def concat(cls, parts: list) -> StringColumn:
        if not parts:
            return cls(np.zeros(0, np.uint8), np.zeros(1, np.int64))
        if len(parts) == 1:
            return parts[0]
        data = np.concatenate([p.data[p.offsets[0] : p.offsets[-1]] for p in parts])
        shifted, base = [np.zeros(1, np.int64)], 0
        for p in parts:
            shifted.append(p.offsets[1:] - p.offsets[0] + base)
            base += int(p.offsets[-1] - p.offsets[0])
        return cls(data, np.concatenate(shifted))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Bytes per row (0 for an empty string)."""
        return np.diff(self.offsets)

    def _one(self, i: int) -> str:
        return _decode(self.data[self.offsets[i] : self.offsets[i + 1]].tobytes())

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            n = len(self)
            if not -n <= key < n:
                raise IndexError(f"row {key} out of range for {n} rows")
            return self._one(int(key) % n)
        if isinstance(key, slice):
            return self.to_numpy(np.arange(len(self))[key])
        return self.to_numpy(np.arange(len(self))[np.asarray(key)])

    def slice(self, start: int, stop: int) -> StringColumn:
        """Rows ``start:stop`` as a StringColumn sharing this one's memory."""
        return StringColumn(self.data, self.offsets[start : stop + 1])

    def take(self, rows) -> StringColumn:
        """Rows ``rows`` (ints or a boolean mask) as a new StringColumn, without Python objects per row."""
        rows = np.arange(len(self))[np.asarray(rows)] if np.asarray(rows).dtype == bool else np.asarray(rows, np.int64)
        starts, lengths = self.offsets[rows], self.lengths[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # The byte at output position p comes from starts[row] + (p - offsets[row]).
        source = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return StringColumn(self.data[source], offsets)

    def __iter__(self):
        for i in range(len(self)):
            yield self._one(i)

    def to_numpy(self, rows=None) -> np.ndarray:
        """Return an object array of ``str`` (one Python object per row: for small uses)."""
        rows = range(len(self)) if rows is None else rows
        out = np.empty(len(rows), dtype=object)
        out[:] = [self._one(int(i)) for i in rows]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.to_numpy()
        return out if dtype is None else out.astype(dtype)

    def tolist(self) -> list:
        return list(self)

    def __repr__(self) -> str:
        head = ", ".join(repr(self._one(i)) for i in range(min(len(self), 3)))
        return f"StringColumn([{head}{', ...' if len(self) > 3 else ''}], {len(self)} rows)"

    def fixed(self) -> np.ndarray:
        """Return the rows as a fixed-width bytes array (``S<longest>``): sortable, comparable, vectorised.

        Costs ``len(self) * longest`` bytes; byte order equals code point order for UTF-8.
        """
        lengths = self.lengths
        width = max(int(lengths.max(initial=0)), 1)
        out = np.zeros((len(self), width), dtype=np.uint8)
        by_length = np.argsort(-lengths, kind="stable")
        longer_than = np.searchsorted(-lengths[by_length], -np.arange(width), side="left")
        starts = self.offsets[:-1]
        for j in range(width):  # column j of the rows at least j + 1 bytes long: total work = total bytes
            rows = by_length[: longer_than[j]]
            out[rows, j] = self.data[starts[rows] + j]
        return out.view(f"S{width}").ravel()

    def codes(self) -> tuple[list, np.ndarray]:
        """``(uniques, codes)``: the sorted distinct strings and each row's position among them."""
        uniques, inverse = np.unique(self.fixed(), return_inverse=True)
        return [_decode(u) for u in uniques.tolist()], inverse.astype(np.int64).ravel()

    def __eq__(self, other):
        if isinstance(other, (str, bytes)):
            key = _encode(other)
            lengths = self.lengths
            match = lengths == len(key)
            rows = np.flatnonzero(match)
            starts = self.offsets[rows]
            for j, byte in enumerate(key):
                keep = self.data[starts + j] == byte
                match[rows[~keep]] = False
                rows, starts = rows[keep], starts[keep]
            return match
        return np.asarray(self) == np.asarray(other, dtype=object)

    def __ne__(self, other):
        return ~np.asarray(self.__eq__(other), dtype=bool)

    __hash__ = None

    def isin(self, values) -> np.ndarray:
        """Boolean mask of the rows whose string is one of ``values``."""
        keys = [_encode(v) for v in values]
        if not keys:
            return np.zeros(len(self), dtype=bool)
        return np.isin(self.fixed(), np.array(keys, dtype=bytes))

    def lookup(self, values) -> np.ndarray:
        """Row of each of ``values`` (the first when repeated), -1 when absent.

        The sorted index (``len * longest`` bytes plus an int64 per row) is built
        on the first call and kept.
        """
        if self._sorted is None:
            keys = self.fixed()
            order = np.argsort(keys, kind="stable")
            self._sorted = (order, keys[order])
        order, keys = self._sorted
        query = np.array([_encode(v) for v in values], dtype=bytes)
        if not len(keys) or not len(query):
            return np.full(len(query), -1, dtype=np.int64)
        if query.dtype.itemsize > keys.dtype.itemsize:  # longer than every row: cannot match
            too_long = np.char.str_len(query) > keys.dtype.itemsize
            query = query.astype(keys.dtype)
        else:
            too_long = np.zeros(len(query), bool)
        where = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        found = (keys[where] == query) & ~too_long
        return np.where(found, order[where], -1).astype(np.int64)

    def sort_order(self) -> np.ndarray:
        """Rows in ascending string order (code point order)."""
        if self._sorted is None:
            self.lookup([])
        return self._sorted[0]


# --- reading and writing tables -------------------------------------------------


def _empty_strings(n_rows: int) -> StringColumn:
    return StringColumn(np.zeros(0, dtype=np.uint8), np.zeros(n_rows + 1, dtype=np.int64))


def _string_columns(columns: dict) -> set:
    return {name for name, (dtype, _meaning) in columns.items() if dtype is schema._STR}


def _from_shard_dataset(dataset: h5py.Dataset, is_string: bool):
    if is_string:
        return StringColumn.from_strings(dataset[()])  # h5py hands back bytes
    return dataset[()]


def _read_group(group: h5py.Group, columns: dict) -> dict:
    strings = _string_columns(columns)
    out = {}
    for name in columns:
        if name not in group and name in schema.OPTIONAL_COLUMNS:
            continue
        if name in strings:
            out[name] = StringColumn(group[name][()], group[name + _OFFSETS][()])
        else:
            out[name] = group[name][()]
    return schema.fill_optional(columns, out, len(out["track_id"]), _empty_strings) if "track_id" in columns else out


def _write_group(group: h5py.Group, columns: dict, values: dict) -> None:
    strings = _string_columns(columns)
    for name, (dtype, _meaning) in columns.items():
        if name in strings:
            column = values[name]
            group.create_dataset(name, data=column.data[column.offsets[0] : column.offsets[-1]], track_times=False)
            group.create_dataset(name + _OFFSETS, data=column.offsets - column.offsets[0], track_times=False)
        else:
            group.create_dataset(name, data=np.asarray(values[name], dtype=dtype), track_times=False)


_TABLE_TRACKS = {**schema.TRACK_COLUMNS, **schema.TABLE_SHARD_COLUMN}
_SHARD_INFO = {
    "name": (schema._STR, ""),
    "n_tracks": ("int64", ""),
    "n_failures": ("int64", ""),
    "bytes": ("int64", "the shard file's size when the table was written"),
    "mtime_ns": ("int64", "the shard file's modification time then: a shard written again since is read anew"),
}


def _shard_stats(store: str, names) -> tuple[np.ndarray, np.ndarray]:
    """Size and modification time (ns) of each shard file (-1 where it is missing)."""
    sizes, mtimes = np.full(len(names), -1, np.int64), np.full(len(names), -1, np.int64)
    for i, name in enumerate(names):
        try:
            st = os.stat(os.path.join(store, name))
        except OSError:
            continue
        sizes[i], mtimes[i] = st.st_size, st.st_mtime_ns
    return sizes, mtimes


def _read_consolidated(store: str, index: dict) -> dict | None:
    """Return the table file's contents if it exists and agrees with ``index``, else None."""
    path = os.path.join(store, schema.TABLE_NAME)
    if not os.path.exists(path):
        return None
    try:
        with h5py.File(path, "r") as h5:
            if (
                h5.attrs.get("format") != schema.TABLE_FORMAT
                or h5.attrs.get("table_version") != schema.TABLE_VERSION
                or h5.attrs.get("spec_hash") != index["spec_hash"]
            ):
                return None
            shards = _read_group(h5["shards"], _SHARD_INFO)
            tracks = _read_group(h5["tracks"], _TABLE_TRACKS)
            failures = _read_group(h5["failures"], schema.FAILURE_COLUMNS)
    except (OSError, KeyError):  # damaged or half-known: the shards still hold everything
        return None
    names = list(shards["name"])
    # A shard written again since the table (a changed label, a replaced file: the same name and counts)
    # holds rows the table does not: one stat per shard finds it, and the shards are read instead.
    sizes, mtimes = _shard_stats(store, names)
    if not (np.array_equal(sizes, shards["bytes"]) and np.array_equal(mtimes, shards["mtime_ns"])):
        return None
    entries = {s["name"]: s for s in index["shards"]}
    for name, n_tracks, n_failures in zip(names, shards["n_tracks"], shards["n_failures"]):
        entry = entries.get(name)
        if entry is None or entry["n_tracks"] != n_tracks or entry["n_failures"] != n_failures:
            return None
    if len(tracks["track_id"]) != shards["n_tracks"].sum() or len(failures["track_id"]) != shards["n_failures"].sum():
        return None
    # Frames per covered shard must match the index too (a cheap guard against a table left over
    # from shards that were deleted and written again with as many tracks).
    shard = tracks["shard"]
    if len(shard) and (shard.min() < 0 or shard.max() >= len(names) or np.any(np.diff(shard) < 0)):
        return None
    frames = np.bincount(shard, weights=tracks["n_frames"], minlength=len(names))
    if len(frames) != len(names) or np.any(frames != [entries[name]["n_frames"] for name in names]):
        return None
    return {
        "names": names,
        "n_tracks": shards["n_tracks"],
        "n_failures": shards["n_failures"],
        "tracks": tracks,
        "failures": failures,
    }


def _read_shard(store: str, name: str, spec) -> tuple[dict, dict]:
    path = os.path.join(store, name)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"cannot open shard {path} named in the index: {exc}; re-run mgc extract") from None
    with h5:
        schema.validate_shard(h5, spec)
        out = []
        for group, columns in (("tracks", schema.TRACK_COLUMNS), ("failures", schema.FAILURE_COLUMNS)):
            strings = _string_columns(columns)
            present = {c: _from_shard_dataset(h5[group][c], c in strings) for c in columns if c in h5[group]}
            out.append(schema.fill_optional(columns, present, len(present["track_id"]), _empty_strings))
    return out[0], out[1]


def _concat(parts: list, dtype):
    if parts and isinstance(parts[0], StringColumn):
        return StringColumn.concat(parts)
    if not parts:
        return StringColumn.concat([]) if dtype is schema._STR else np.zeros(0, dtype=dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def load(store: str, index: dict, spec) -> tuple[dict, dict, int]:
    """Track and failure columns of every shard of ``index``, in index order.

    Returns
    -------
    tracks : dict
        TRACK_COLUMNS plus ``shard`` (int32, position in ``index["shards"]``).
    failures : dict
        FAILURE_COLUMNS.
    n_read : int
        Shards read from their own files (not covered by ``tracks.h5``).
    """
    table = _read_consolidated(store, index)
    covered = {}
    if table is not None:
        track_starts = np.concatenate([[0], np.cumsum(table["n_tracks"])])
        failure_starts = np.concatenate([[0], np.cumsum(table["n_failures"])])
        covered = {name: k for k, name in enumerate(table["names"])}
    # Runs of index shards that are consecutive in the table too become one slice of it.
    segments = []  # ("table", first table position, last + 1, first index number) or ("shard", number)
    for number, entry in enumerate(index["shards"]):
        k = covered.get(entry["name"])
        if k is None:
            segments.append(("shard", number))
        elif segments and segments[-1][0] == "table" and segments[-1][2] == k:
            kind, first, _stop, first_number = segments[-1]
            segments[-1] = (kind, first, k + 1, first_number)
        else:
            segments.append(("table", k, k + 1, number))
    tracks = {c: [] for c in schema.TRACK_COLUMNS}
    tracks["shard"] = []
    failures = {c: [] for c in schema.FAILURE_COLUMNS}
    n_read = 0
    for segment in segments:
        if segment[0] == "shard":
            number = segment[1]
            shard_tracks, shard_failures = _read_shard(store, index["shards"][number]["name"], spec)
            shard_tracks["shard"] = np.full(len(shard_tracks["track_id"]), number, dtype=np.int32)
            n_read += 1
        else:
            _kind, first, stop, first_number = segment
            t0, t1, f0, f1 = track_starts[first], track_starts[stop], failure_starts[first], failure_starts[stop]
            shard_tracks = {c: _take(v, t0, t1) for c, v in table["tracks"].items()}
            shard_tracks["shard"] = (shard_tracks["shard"] - first + first_number).astype(np.int32)
            shard_failures = {c: _take(v, f0, f1) for c, v in table["failures"].items()}
        for c in tracks:
            tracks[c].append(shard_tracks[c])
        for c in failures:
            failures[c].append(shard_failures[c])
    dtypes = {c: dt for c, (dt, _) in _TABLE_TRACKS.items()}
    tracks = {c: _concat(parts, dtypes[c]) for c, parts in tracks.items()}
    failures = {c: _concat(parts, schema.FAILURE_COLUMNS[c][0]) for c, parts in failures.items()}
    return tracks, failures, n_read


def _take(column, start: int, stop: int):
    start, stop = int(start), int(stop)
    if isinstance(column, StringColumn):
        return column.slice(start, stop)
    return column[start:stop]


def consolidate(store_path) -> str:
    """Write ``STORE/tracks.h5`` covering every shard ``index.json`` names now.

    Reuses the rows of an existing table for the shards it covers and reads only
    the other shards, so calling it after each extraction run costs little.
    Atomic (temporary name, fsync, rename, folder fsync): concurrent readers see
    the old table or the new one. Returns the table's path.
    """
    from .spec import FeatureSpec

    store = os.fspath(store_path)
    index = schema.read_index(store)
    spec = FeatureSpec.from_dict(index["spec"])
    tracks, failures, _n_read = load(store, index, spec)
    shard_info = {
        "name": StringColumn.from_strings([s["name"] for s in index["shards"]]),
        "n_tracks": np.array([s["n_tracks"] for s in index["shards"]], dtype=np.int64),
        "n_failures": np.array([s["n_failures"] for s in index["shards"]], dtype=np.int64),
    }
    shard_info["bytes"], shard_info["mtime_ns"] = _shard_stats(store, [s["name"] for s in index["shards"]])
    counts = np.bincount(tracks["shard"], minlength=len(index["shards"]))
    if not np.array_equal(counts, shard_info["n_tracks"]):
        raise StoreError(f"{store}: the shards hold other track counts than index.json says; re-run mgc extract")

    def write(temp: str) -> None:
        with h5py.File(temp, "w") as h5:
            h5.attrs["format"] = schema.TABLE_FORMAT
            h5.attrs["table_version"] = schema.TABLE_VERSION
            h5.attrs["spec_hash"] = index["spec_hash"]
            _write_group(h5.create_group("shards"), _SHARD_INFO, shard_info)
            _write_group(h5.create_group("tracks"), _TABLE_TRACKS, tracks)
            _write_group(h5.create_group("failures"), schema.FAILURE_COLUMNS, failures)

    path = os.path.join(store, schema.TABLE_NAME)
    atomic.write_atomic(path, write, tag=str(os.getpid()))
    return path
