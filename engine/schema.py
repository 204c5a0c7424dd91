"""The on-disk layout of a feature store: the one place that defines it.

A store is a folder::

    STORE/
      index.json          the complete shards, label names, spec, versions (written atomically, see engine.atomic)
      shards.jsonl        shards completed since index.json was last written: one JSON entry per line,
                          appended and fsynced per shard (constant cost), folded into index.json at the
                          end of a run; a torn last line is ignored (that shard is simply redone)
      plan.json           which track ids go into which shard (stable across re-runs; rewritten only
                          when the corpus gains tracks)
      tracks.h5           the consolidated track table (see the end of this module)
      shard-00000.h5      one HDF5 file per shard, written by one worker
      shard-00001.h5
      .lock               held (flock) by the extraction that is writing the store
      shard-00002.h5.tmp  a shard being written; never listed in index.json

Readers trust only ``index.json`` and ``shards.jsonl`` (see ``read_index``): a
shard file that they do not name is incomplete or stale and is ignored. Every shard file holds::

    /                       attrs: schema_version (int), spec_hash (str), spec (JSON str), shard (its name)
    /features/<name>        (total_frames, n_bins), the frames of all the shard's tracks
                            concatenated in track order; logmel float16 (or float32), mfcc float32;
                            chunks (CHUNK_FRAMES, n_bins), uncompressed (or shuffle + lzf/gzip 1: COMPRESSIONS)
    /tracks/<column>        one 1-D dataset per column of TRACK_COLUMNS, one row per stored track
    /failures/<column>      one 1-D dataset per column of FAILURE_COLUMNS, one row per failed track

Track ``i`` of a shard is ``/features/logmel[first_frame[i] : first_frame[i] + n_frames[i]]``.
"""

from __future__ import annotations

import json
import os
import re

import h5py
import numpy as np

from . import atomic
from .errors import StoreError
from .spec import FeatureSpec

SCHEMA_VERSION = 1
FORMAT_NAME = "mgc-feature-store"
INDEX_NAME = "index.json"
PLAN_NAME = "plan.json"
JOURNAL_NAME = "shards.jsonl"
LOCK_NAME = ".lock"
SHARD_PATTERN = "shard-{:05d}.h5"
TEMP_SUFFIX = atomic.TEMP_SUFFIX

# 512 frames x 128 bins x 2 bytes = 128 KiB: one 30 s track is ~3 chunks.
CHUNK_FRAMES = 512
# Filters for /features/*, all readable by plain h5py. Measured by
# benchmarks/compression.py on a shard of real music (128 tracks x 30 s, float16
# log-mel + float32 MFCC): float16 dB values hardly compress (lzf + shuffle 1.15x,
# gzip 1.29x), while decoding costs a lot: whole-dataset reads at 4,251 MB/s
# uncompressed, 440 MB/s with lzf, 293 MB/s with gzip, and writes cost 4% of the
# feature computation uncompressed, 15% with lzf, 32% with gzip. Training reads a
# store many times and must feed an accelerator, so "none" is the default (and,
# like gzip, every HDF5 tool reads it; lzf only h5py). "lzf" saves 13% of the disk,
# "gzip" (level 1: half of level 4's time for 98% of its ratio) 22%.
COMPRESSIONS = ("none", "lzf", "gzip")
DEFAULT_COMPRESSION = "none"
GZIP_LEVEL = 1
#: h5py ``create_dataset`` keyword arguments of each compression choice.
FILTERS = {
    "none": {},
    "lzf": dict(compression="lzf", shuffle=True),
    "gzip": dict(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True),
}
FEATURE_DTYPES = {"logmel": None, "mfcc": "float32"}  # None: spec.logmel_dtype

_STR = h5py.string_dtype("utf-8")
# Column name -> (HDF5 dtype, meaning). Strings are variable-length UTF-8.
TRACK_COLUMNS = {
    "track_id": (_STR, "stable id: path relative to the corpus root, or the manifest's track_id"),
    "path": (_STR, "absolute path of the audio file when it was extracted"),
    "label": (_STR, "label name; empty when unlabelled (index.json label_names gives the int code)"),
    "split": (_STR, "split from the manifest (train/valid/test...); empty when not given"),
    "artist": (_STR, "artist from the manifest; empty when not given"),
    "first_frame": ("int64", "row of the track's first frame in /features/*"),
    "n_frames": ("int64", "number of frames of the track"),
    "duration": ("float64", "seconds of audio used (after offset/duration)"),
    "source_sr": ("int32", "sample rate of the file"),
    "source_channels": ("int16", "channel count of the file (mixed to mono by the mean)"),
    "source_bytes": ("int64", "size of the file in bytes when it was extracted (-1: unknown)"),
    "source_mtime_ns": ("int64", "modification time of the file then, ns since 1970 (-1: unknown)"),
    "damage": (
        _STR,
        "empty when the file decoded cleanly; else (extract --on-corrupt keep) why only part of its audio was used",
    ),
}
FAILURE_COLUMNS = {
    "track_id": (_STR, "id of the track that failed"),
    "path": (_STR, "absolute path of the file"),
    "kind": (_STR, "reason, one of engine.errors.AUDIO_ERROR_KINDS"),
    "message": (_STR, "what went wrong, for a person"),
    "source_bytes": ("int64", "size of the file in bytes when it was tried (-1: unknown or missing)"),
    "source_mtime_ns": ("int64", "modification time of the file then, ns since 1970 (-1: unknown or missing)"),
}
#: Columns added after stores of this schema version were first written: a shard or
#: table without them is read with this value in every row (resume then trusts the
#: file, as before the column existed).
OPTIONAL_COLUMNS = {"source_bytes": -1, "source_mtime_ns": -1, "damage": ""}


def fill_optional(columns: dict, present: dict, n_rows: int, empty_strings=None) -> dict:
    """``present`` (column -> array) with the absent OPTIONAL_COLUMNS of ``columns`` filled in.

    ``empty_strings(n_rows)``: the column of empty strings to use (default: an object array).
    """
    out = dict(present)
    for name, (dtype, _meaning) in columns.items():
        if name not in out and name in OPTIONAL_COLUMNS:
            if dtype == _STR and empty_strings is not None:
                out[name] = empty_strings(n_rows)
            else:
                out[name] = np.full(n_rows, OPTIONAL_COLUMNS[name], dtype=dtype)
    return {name: out[name] for name in columns}


def shard_name(number: int) -> str:
    """File name of shard ``number``."""
    return SHARD_PATTERN.format(number)


def create_feature(h5: h5py.File, feature: str, spec: FeatureSpec, compression: str = DEFAULT_COMPRESSION):
    """An empty, growable, chunked, compressed ``/features/<feature>`` dataset."""
    dtype = FEATURE_DTYPES[feature] or spec.logmel_dtype
    n_bins = spec.n_bins(feature)
    filters = FILTERS[compression]
    return h5.create_dataset(
        f"features/{feature}",
        shape=(0, n_bins),
        maxshape=(None, n_bins),
        dtype=dtype,
        chunks=(CHUNK_FRAMES, n_bins),
        track_times=False,
        **filters,
    )


def write_table(h5: h5py.File, group: str, columns: dict, rows: dict) -> None:
    """Write ``rows`` (column name -> list) as one dataset per column under ``group``.

    Strings are written as their UTF-8 bytes with "surrogateescape": a file name
    that is not valid UTF-8 (its bytes held as lone surrogates by Python's os
    functions) is stored as its original bytes, which ``read_table`` gives back.
    """
    grp = h5.create_group(group)
    for name, (dtype, _meaning) in columns.items():
        if dtype == _STR:
            data = np.empty(len(rows[name]), dtype=object)
            data[:] = [v if isinstance(v, bytes) else str(v).encode("utf-8", "surrogateescape") for v in rows[name]]
        else:
            data = np.asarray(rows[name], dtype=dtype)
        grp.create_dataset(name, data=data, dtype=dtype, track_times=False)


def read_table(h5: h5py.File, group: str, columns: dict) -> dict:
    """Read a table written by ``write_table``; strings come back as ``str`` objects.

    Bytes that are not valid UTF-8 come back as lone surrogates ("surrogateescape"),
    so ``os.fsencode(value)`` is the file name's original bytes.
    """
    out = {}
    for name, (dtype, _meaning) in columns.items():
        if name not in h5[group] and name in OPTIONAL_COLUMNS:
            continue
        dataset = h5[group][name]
        if dtype == _STR:
            out[name] = np.asarray(dataset.asstr(errors="surrogateescape")[()], dtype=object)
        else:
            out[name] = dataset[()]
    return fill_optional(columns, out, len(out["track_id"]))


def write_shard_attrs(h5: h5py.File, spec: FeatureSpec, name: str) -> None:
    h5.attrs["schema_version"] = SCHEMA_VERSION
    h5.attrs["spec_hash"] = spec.hash
    h5.attrs["spec"] = json.dumps(spec.to_dict(), sort_keys=True)
    h5.attrs["shard"] = name


def validate_shard(h5: h5py.File, spec: FeatureSpec) -> None:
    """Check a shard file against the schema and ``spec``; raise StoreError if it does not match."""
    where = h5.filename
    version = h5.attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        raise version_error(where, int(version) if isinstance(version, (int, np.integer)) else version)
    if h5.attrs.get("spec_hash") != spec.hash:
        raise StoreError(f"{where}: made with spec {h5.attrs.get('spec_hash')!r}, the store index says {spec.hash!r}")
    for group, columns in (("tracks", TRACK_COLUMNS), ("failures", FAILURE_COLUMNS)):
        if group not in h5:
            raise StoreError(f"{where}: missing group /{group}; the shard is damaged, re-extract it")
        lengths = set()
        for name in columns:
            if name not in h5[group] and name in OPTIONAL_COLUMNS:
                continue
            if name not in h5[group]:
                raise StoreError(f"{where}: missing /{group}/{name}; the shard is damaged, re-extract it")
            lengths.add(h5[group][name].shape[0])
        if len(lengths) > 1:
            raise StoreError(f"{where}: /{group} columns have different lengths {sorted(lengths)}")
    n_frames = h5["tracks/n_frames"][()]
    total = int(n_frames.sum())
    for feature in spec.features:
        dataset = h5.get(f"features/{feature}")
        if dataset is None or dataset.shape != (total, spec.n_bins(feature)):
            shape = None if dataset is None else dataset.shape
            raise StoreError(
                f"{where}: /features/{feature} has shape {shape}, expected {(total, spec.n_bins(feature))}"
            )


_SHARD_NAME = re.compile(r"shard-[0-9]{5,9}\.h5")


def is_shard_name(name) -> bool:
    """Whether ``name`` is a shard file name (``shard-NNNNN.h5``: no folder part, no ``..``)."""
    return isinstance(name, str) and _SHARD_NAME.fullmatch(name) is not None


def check_shard_name(name, where: str) -> str:
    """``name`` if it is a shard file name; a StoreError otherwise (never a path outside the store)."""
    if not is_shard_name(name):
        raise StoreError(
            f"{where} names {name!r}, which is not a shard file name (shard-NNNNN.h5): the file was edited "
            "or damaged; nothing outside the store is read or written"
        )
    return name


def shard_number(name: str) -> int:
    """The number in a shard's file name (its position in the plan)."""
    return int(check_shard_name(name, "the store")[len("shard-") : -len(".h5")])


def read_plan(path: str) -> dict:
    """Load and check ``plan.json``: its shard names must be shard file names, in order."""
    try:
        with open(path, encoding="utf-8") as handle:
            plan = json.load(handle)
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {path} ({exc}); run with --overwrite to extract the store again") from None
    ok = (
        isinstance(plan, dict)
        and isinstance(plan.get("shard_size"), int)
        and plan["shard_size"] >= 1
        and isinstance(plan.get("shards"), list)
        and all(isinstance(s, dict) and isinstance(s.get("track_ids"), list) for s in plan["shards"])
    )
    if not ok:
        raise StoreError(f"{path} is not an mgc plan; run with --overwrite to extract the store again")
    for number, shard in enumerate(plan["shards"]):
        if check_shard_name(shard.get("name"), path) != shard_name(number):
            raise StoreError(f"{path}: shard {number} is named {shard['name']!r}; the plan was edited or damaged")
    return plan


def version_error(where: str, version) -> StoreError:
    """The error for a schema version this mgc does not read, with the advice that fits it."""
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        return StoreError(
            f"{where}: schema version {version}, written by a newer mgc; this one reads version {SCHEMA_VERSION}. "
            "Upgrade mgc (pip install -U mgc) to read or extend it; --overwrite would delete it"
        )
    return StoreError(
        f"{where}: schema version {version!r}, which this mgc (version {SCHEMA_VERSION}) does not read; extract "
        "the corpus again into a new folder (or with --overwrite, which deletes this store)"
    )


def read_journal(store: str) -> list[dict]:
    """Shard entries of ``shards.jsonl`` (``[]`` when absent); a torn or damaged line is skipped."""
    try:
        with open(os.path.join(store, JOURNAL_NAME), "rb") as handle:
            lines = handle.read().split(b"\n")
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def append_journal(store: str, entry: dict) -> None:
    """Record one complete shard: one line appended and fsynced (cost independent of the store's size)."""
    line = json.dumps(entry, sort_keys=True, ensure_ascii=True).encode("ascii") + b"\n"
    path = os.path.join(store, JOURNAL_NAME)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        # A line torn by an earlier kill must not swallow this one: start on a fresh line.
        if os.fstat(fd).st_size:
            with open(path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def fold_journal(store: str, index: dict) -> None:
    """Write ``index`` (which holds every shard) atomically, then drop the journal it now contains."""
    atomic.write_json(os.path.join(store, INDEX_NAME), index)
    try:
        os.unlink(os.path.join(store, JOURNAL_NAME))
    except FileNotFoundError:
        pass
    atomic.fsync_folder(store)


def check_store_path(store: str) -> None:
    """Refuse a store path that does not exist or is a file, in the words every store opener uses.

    Raises
    ------
    StoreError
        "nosuch does not exist; create a store with `mgc extract CORPUS nosuch`", or
        "afile.txt is a file, not a feature store (a folder made by `mgc extract`)".
    """
    if os.path.isdir(store):
        return
    if os.path.exists(store):
        raise StoreError(f"{store} is a file, not a feature store (a folder made by `mgc extract`)")
    raise StoreError(f"{store} does not exist; create a store with `mgc extract CORPUS {store}`")


def read_index(store: str) -> dict:
    """Load and validate ``index.json`` with the journal's shards merged in (in plan order).

    Raises StoreError when the store does not exist, is a file, or its index is absent or wrong.
    """
    check_store_path(store)
    path = os.path.join(store, INDEX_NAME)
    try:
        with open(path, encoding="utf-8") as handle:
            index = json.load(handle)
    except FileNotFoundError:
        raise StoreError(f"{store} is not a feature store (no {INDEX_NAME}); create one with `mgc extract`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from None
    validate_index(index, path)
    index["run"].setdefault("on_corrupt", "skip")  # stores made before the option: damaged files were skipped
    journal = read_journal(store)
    if journal:
        validate_index({**index, "shards": journal}, os.path.join(store, JOURNAL_NAME))
        by_name = {shard["name"]: shard for shard in index["shards"]}
        for shard in journal:
            by_name.setdefault(shard["name"], shard)
        index["shards"] = sorted(by_name.values(), key=lambda shard: shard_number(shard["name"]))
    return index


def validate_index(index: dict, where: str = INDEX_NAME) -> None:
    """Check the keys and types of an index dict."""
    if not isinstance(index, dict) or index.get("format") != FORMAT_NAME:
        raise StoreError(f"{where} is not an mgc feature store index")
    if index.get("schema_version") != SCHEMA_VERSION:
        raise version_error(where, index.get("schema_version"))
    for key, kind in (("spec", dict), ("spec_hash", str), ("label_names", list), ("shards", list), ("run", dict)):
        if not isinstance(index.get(key), kind):
            raise StoreError(f"{where}: field {key!r} is missing or not a {kind.__name__}")
    spec = FeatureSpec.from_dict(index["spec"])
    if spec.hash != index["spec_hash"]:
        raise StoreError(f"{where}: spec_hash {index['spec_hash']!r} does not match its spec ({spec.hash!r})")
    for shard in index["shards"]:
        if not isinstance(shard, dict) or not {"name", "n_tracks", "n_failures", "n_frames"} <= set(shard):
            raise StoreError(f"{where}: malformed shard entry {shard!r}")
        check_shard_name(shard["name"], where)


# --- The consolidated track table (engine/tables.py writes and reads it) ------
#
# STORE/tracks.h5 holds every per-track row of the shards it names, so a reader
# loads a million rows as a few flat arrays instead of opening every shard. It
# is derived data, written atomically (temporary name, fsync, rename, fsync of
# the folder) by engine.tables.consolidate at the end of an extraction, and
# trusted only for the shards it names: shards of index.json it does not name
# are read from the shard files; a table that names a shard the index lacks,
# disagrees with the index on a shard's counts, names a shard whose file has
# another size or modification time than when the table was written (a shard
# extracted again: a changed label, a replaced file), or has another spec or
# version is ignored as a whole. Layout:
#
#   /                            attrs: format (TABLE_FORMAT), table_version (TABLE_VERSION), spec_hash (str)
#   /shards/name(_offsets)       the shard names covered (a string column, see below)
#   /shards/n_tracks             int64, rows of each covered shard in /tracks (equal to index.json's)
#   /shards/n_failures           int64, rows of each covered shard in /failures (equal to index.json's)
#   /shards/bytes, mtime_ns      int64, each covered shard file's size and st_mtime_ns when the table was written
#   /tracks/<column>             numeric columns of TRACK_COLUMNS and TABLE_SHARD_COLUMN: 1-D, one row
#                                per track; each covered shard's rows contiguous, shards in /shards order
#   /tracks/<column>             string columns: uint8, the UTF-8 bytes of all rows concatenated, and
#   /tracks/<column>_offsets     int64 (n_rows + 1,): row i is bytes[offsets[i]:offsets[i + 1]]
#   /failures/<column>(_offsets) the columns of FAILURE_COLUMNS (all strings), same encoding and order
#
# Datasets are contiguous (no chunks, no filter) so each loads in one read.
TABLE_NAME = "tracks.h5"  # file name of the consolidated table inside the store folder
TABLE_FORMAT = "mgc-track-table"  # value of the root attribute "format"
TABLE_VERSION = 3  # bumped when this layout changes; a table of another version is ignored
TABLE_OFFSETS_SUFFIX = "_offsets"  # name suffix of a string column's offsets dataset
TABLE_SHARD_COLUMN = {"shard": ("int32", "position of the track's shard in the table's /shards/name")}
