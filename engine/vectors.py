"""Vector stores: one L2-normalised vector per track, sharded, checksummed, atomic and resumable.

The storage behind ``mgc embed`` (``mgc.models.tasks.embed`` computes the vectors;
this module writes and reads them, and knows nothing of networks). A folder::

    STORE/
      .lock               flock: held by the run writing the folder
      embeddings.json     what made it: format, version, id (this generation of the store), model (folder,
                          checkpoint, step, fingerprint of the weights), dim, dtype, label_names, spec,
                          source (what the vectors came from; optional)
      shards.jsonl        one JSON line per finished shard, appended and fsynced:
                          {"name": "shard-00000.h5", "tracks": N, "failures": F, "bytes": B, "sha256": H}
      shard-00000.h5      attrs format, version, store_id (the id of embeddings.json)
                          /embedding    (N, dim) float16 or float32, rows L2-normalised
                          /track_id, /path, /label, /source_path   (N,) UTF-8 strings ("" when unknown)
                          /source_bytes, /source_mtime_ns          (N,) int64 (-1 when unknown)
                          /failures/track_id, path, error, source_path (F,) UTF-8 strings,
                          /failures/source_bytes, source_mtime_ns    (F,) int64
      index-usearch.bin   the approximate-nearest-neighbour index (see engine.neighbours),
      index.json          and what it covers; both optional

Row ``i`` of the store is the ``i``-th vector counting through the shards in
the order of ``shards.jsonl``. Every file is written under a temporary name and
renamed into place (``engine.atomic``); a shard is listed in ``shards.jsonl``
only after its rename, so a run stopped at any moment (a kill, a full disk)
leaves whole shards and at most a torn last line.

Integrity. Readers check every listed shard's size when they open the store,
and each shard's ``store_id`` when they open it (a shard of an earlier
generation means an ``--overwrite`` run is replacing the store: a one-line
error, never a mix). A log line that is damaged (not a torn last line) makes
the store unreadable with a one-line error that says how to repair it. The
writer, when it resumes, repairs: it keeps the longest prefix of log lines
whose shards have the recorded size and SHA-256 (SHA-256 runs at about
1.7 GB/s; with reading the stored identities, about 2.4 s for the 630 MB of
a million 128-d float16 vectors), truncates the log after it (in place: no
free space needed), deletes the unlisted shards and its own temporaries, and
the caller embeds the rest again. It deletes only files of the exact names it
writes (:func:`owned`). A write that fails (a full disk) leaves the store as
it was before it: the shard's temporary is removed, and a log line cut short
is truncated away.

Identity. Each row records the audio it came from (resolved path, size,
modification time); :func:`source_key` turns that into the identity a resume
compares, so an input given once relative and once absolute is one track,
and a failed file is tried again once it changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import atomic
from .errors import StoreError
from .lock import FolderLock

__all__ = [
    "VectorStore",
    "VectorWriter",
    "check_folder",
    "failure_reason",
    "normalize",
    "owned",
    "sha256_file",
    "source_key",
]

FORMAT = "mgc-embeddings"
VERSION = 1
META_NAME = "embeddings.json"
LOG_NAME = "shards.jsonl"
#: The approximate index and its description (written by engine.neighbours; named here, where ownership is decided).
INDEX_NAME = "index-usearch.bin"
INDEX_META = "index.json"
#: Tracks per shard: a kill loses at most this many tracks of work.
SHARD_TRACKS = 4096
DTYPES = ("float16", "float32")
#: Per-row columns besides the vector; ``SOURCE_COLUMNS`` are absent from shards written before they existed.
STRING_COLUMNS = ("track_id", "path", "label")
FAILURE_COLUMNS = ("track_id", "path", "error")
SOURCE_COLUMNS = ("source_path", "source_bytes", "source_mtime_ns")
_STR = h5py.string_dtype("utf-8")
_SHARD = re.compile(r"shard-[0-9]{5,9}\.h5")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REPAIR = "run `mgc embed` again with the same --out to repair it"


def _shard_name(number: int) -> str:
    return f"shard-{number:05d}.h5"


def owned(name: str) -> bool:
    """Whether mgc wrote a file of this name in a vector store (and may delete it).

    Exactly ``embeddings.json``, ``shards.jsonl``, ``shard-NNNNN.h5``, ``index-usearch.bin``,
    ``index.json`` and their temporaries (the name plus ``engine.atomic.TEMP_SUFFIX``); never
    ``notes.tmp``, ``shard-foo.txt`` or ``index.html``.
    """
    if name.endswith(atomic.TEMP_SUFFIX):
        name = name[: -len(atomic.TEMP_SUFFIX)]
    return name in (META_NAME, LOG_NAME, INDEX_NAME, INDEX_META) or _SHARD.fullmatch(name) is not None


def source_key(track_id: str, path: str, source_path: str) -> str:
    """What identifies a track's audio in a vector store: resume and retries compare these.

    A plain file (its track id is its path: as given, absolute or resolved) is its
    resolved path ``source_path``, so ``music/a.wav`` and ``/home/me/music/a.wav``
    are one track; a manifest's track (an id of its own) is its id and resolved
    path; a row without ``source_path`` is its track id.
    """
    if not source_path:
        return str(track_id)
    if track_id in (path, source_path) or os.path.abspath(track_id) == source_path:
        return str(source_path)
    return f"{track_id}\t{source_path}"


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (about 1.7 GB/s on one core)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _strings(values) -> np.ndarray:
    data = np.empty(len(values), dtype=object)
    data[:] = [str(v).encode("utf-8", "surrogateescape") for v in values]
    return data


def _read_strings(dataset: h5py.Dataset) -> np.ndarray:
    return np.asarray(dataset.asstr(errors="surrogateescape")[()], dtype=object)


def _read_columns(group: h5py.Group, names: Sequence[str], n: int) -> dict[str, np.ndarray]:
    """``names`` of ``group`` (a shard's root or ``/failures``); source columns a shard lacks come as unknown."""
    out = {}
    for name in names:
        if name in group:
            dataset = group[name]
            out[name] = dataset[()].astype(np.int64) if dataset.dtype.kind in "iu" else _read_strings(dataset)
        elif name == "source_path":
            out[name] = np.full(n, "", dtype=object)
        elif name in SOURCE_COLUMNS:
            out[name] = np.full(n, -1, np.int64)
        else:
            raise KeyError(f"no dataset {name!r}")
    return out


def _read_meta(folder: Path, *, version: bool = True) -> dict[str, Any]:
    """``embeddings.json``, checked to be an mgc embedding store's (of a format this mgc reads, with ``version``)."""
    meta_path = folder / META_NAME
    if not folder.is_dir():
        what = "is a file, not an embedding store" if folder.exists() else "does not exist"
        raise StoreError(f"{folder} {what}; make one with `mgc embed MODEL INPUTS... --out {folder}`")
    try:
        meta = json.loads(meta_path.read_bytes())
    except FileNotFoundError:
        raise StoreError(f"{folder} is not an embedding store (no {META_NAME}); make one with `mgc embed`") from None
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {meta_path} ({exc}); it is not an mgc embedding store's") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StoreError(f"{meta_path} is not an mgc embedding store")
    if version and int(meta.get("version", 0)) > VERSION:
        raise StoreError(f"{folder} was written by a newer mgc (format {meta['version']}); upgrade mgc")
    return meta


def _parse_entry(line: bytes, number: int) -> dict[str, Any] | None:
    """The log entry of shard ``number``, or None when ``line`` is not one."""
    try:
        entry = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(entry, dict) or entry.get("name") != _shard_name(number):
        return None
    for key in ("tracks", "failures", "bytes"):
        value = entry.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None
    sha = entry.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        return None
    return entry


def _parse_log(folder: Path) -> tuple[list[dict[str, Any]], list[int], str | None]:
    """The valid whole lines of ``shards.jsonl``: ``(entries, ends, problem)``.

    ``ends`` is the byte offset after each entry's line; ``problem`` is ``None``, ``"torn"`` (a last
    line without its newline: an interrupted append) or ``"damaged at line N"``.
    """
    try:
        data = (folder / LOG_NAME).read_bytes()
    except FileNotFoundError:
        return [], [], None
    entries: list[dict[str, Any]] = []
    ends: list[int] = []
    start = 0
    while start < len(data):
        newline = data.find(b"\n", start)
        if newline < 0:
            return entries, ends, "torn"
        entry = _parse_entry(data[start:newline], len(entries))
        if entry is None:
            return entries, ends, f"damaged at line {len(entries) + 1}"
        entries.append(entry)
        start = newline + 1
        ends.append(start)
    return entries, ends, None


def _read_log(folder: Path) -> list[dict[str, Any]]:
    """The shards of ``shards.jsonl`` for a reader: a torn last line is not a shard; any other damage is an error."""
    entries, _ends, problem = _parse_log(folder)
    if problem not in (None, "torn"):
        raise StoreError(f"{folder / LOG_NAME} is {problem}: the store cannot be read as it is; {_REPAIR}")
    return entries


class VectorStore:
    """Read a vector store (the embedding store ``mgc embed`` writes).

    Parameters
    ----------
    path : str or Path
        The folder.

    Attributes
    ----------
    meta : dict
        ``embeddings.json``: ``id``, ``model`` (``dir``, ``checkpoint``, ``step``,
        ``fingerprint``), ``dim``, ``dtype``, ``label_names``, ``spec``, ``source``.
    shards : list of dict
        The listed shards, in row order (``name``, ``tracks``, ``failures``, ``bytes``, ``sha256``).
    offsets : np.ndarray [shape=(n_shards + 1,)]
        Row of each shard's first vector; ``offsets[-1]`` is the number of vectors.

    Raises
    ------
    StoreError
        When the folder is not an embedding store, is of a newer format, its log
        is damaged, or a listed shard is missing or of another size than listed.
        Reading a shard raises it too when the shard is damaged, or belongs to a
        generation of the store that an ``--overwrite`` run replaced meanwhile.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.meta = _read_meta(self.path)
        self.shards = _read_log(self.path)
        for number, entry in enumerate(self.shards):
            try:
                size = (self.path / entry["name"]).stat().st_size
            except OSError:
                size = None
            if size != entry["bytes"]:
                found = "is missing" if size is None else f"has {size} bytes, {LOG_NAME} lists {entry['bytes']}"
                raise self._unreadable(number, found)
        counts = np.asarray([s["tracks"] for s in self.shards], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._ids: np.ndarray | None = None
        self._ann_index = None  # the approximate index, opened on first use by engine.neighbours
        self._ann_state: tuple[str, str] | None = None  # its checked state, kept by engine.neighbours

    @property
    def id(self) -> str | None:
        """The id of this generation of the store (None for stores made before ids were recorded)."""
        return self.meta.get("id")

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def label_names(self) -> list[str]:
        return list(self.meta["label_names"])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __repr__(self) -> str:
        return f"VectorStore({str(self.path)!r}, {len(self)} vectors of {self.dim})"

    @property
    def n_failures(self) -> int:
        """Failure records in the log (a track tried again after its file changed counts once per try)."""
        return int(sum(s["failures"] for s in self.shards))

    def _unreadable(self, number: int, problem: str) -> StoreError:
        """The error for shard ``number``: replaced by a concurrent ``--overwrite``, or damaged."""
        try:
            replaced = _read_meta(self.path).get("id") != self.id
        except StoreError:
            replaced = True
        if replaced or _writer_active(self.path):
            return StoreError(
                f"{self.path} was replaced while it was being read, or is being written right now (by "
                "`mgc embed --overwrite`?); run this command again once that run has finished"
            )
        return StoreError(f"{self.path / self.shards[number]['name']} {problem}; {_REPAIR}")

    @contextlib.contextmanager
    def _file(self, number: int) -> Iterator[h5py.File]:
        """Shard ``number`` open for reading; any failure to read it is a StoreError that says why."""
        try:
            with h5py.File(self.path / self.shards[number]["name"], "r") as h5:
                if self.id is not None and h5.attrs.get("store_id") != self.id:
                    raise self._unreadable(number, "belongs to another store or generation")
                yield h5
        except (OSError, KeyError) as exc:
            raise self._unreadable(number, f"cannot be read ({exc})") from None

    def iter_shards(self, *, columns: Sequence[str] = ("embedding",)) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(first row, {column: array})`` per shard, in row order: one shard in memory at a time.

        ``columns`` are any of ``embedding`` (float32 ``(n, dim)``), ``track_id``, ``path``, ``label``,
        ``source_path``, ``source_bytes``, ``source_mtime_ns``.
        """
        for number in range(len(self.shards)):
            with self._file(number) as h5:
                out = {}
                n = int(self.shards[number]["tracks"])
                if "embedding" in columns:
                    out["embedding"] = h5["embedding"][()].astype(np.float32)
                out.update(_read_columns(h5, [c for c in columns if c != "embedding"], n))
            yield int(self.offsets[number]), out

    def track_ids(self) -> np.ndarray:
        """Every row's track id (an object array; read once and kept)."""
        if self._ids is None:
            parts = [c["track_id"] for _, c in self.iter_shards(columns=("track_id",))]
            self._ids = np.concatenate(parts) if parts else np.zeros(0, object)
        return self._ids

    def failures(self) -> list[dict[str, str]]:
        """The tracks that could not be embedded: ``track_id``, ``path``, ``error``.

        A failure is left out once a later record of the same audio (:func:`source_key`) exists:
        the file was tried again after it changed, and embedded or failed anew.
        """
        records: dict[str, dict[str, str] | None] = {}
        for number in range(len(self.shards)):
            with self._file(number) as h5:
                n, f = int(self.shards[number]["tracks"]), int(self.shards[number]["failures"])
                rows = _read_columns(h5, ("track_id", "path", "source_path"), n)
                failed = _read_columns(h5["failures"], (*FAILURE_COLUMNS, "source_path"), f)
            for key in map(source_key, rows["track_id"], rows["path"], rows["source_path"]):
                records.pop(key, None)
                records[key] = None
            for i, key in enumerate(map(source_key, failed["track_id"], failed["path"], failed["source_path"])):
                records.pop(key, None)
                records[key] = {c: failed[c][i] for c in FAILURE_COLUMNS}
        return [record for record in records.values() if record is not None]

    def rows(self, track_ids: Sequence[str]) -> np.ndarray:
        """Rows of ``track_ids`` (-1 for an id not in the store)."""
        ids = self.track_ids()
        order = np.argsort(ids, kind="stable")
        wanted = np.asarray(list(track_ids), dtype=object)
        if not len(ids):
            return np.full(len(wanted), -1, np.int64)
        at = np.searchsorted(ids[order], wanted)
        at = np.minimum(at, len(ids) - 1)
        found = ids[order][at] == wanted
        return np.where(found, order[at], -1).astype(np.int64)

    def _by_shard(self, rows: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(shard, positions in rows, offsets in the shard)`` for the shards that ``rows`` touch."""
        rows = np.asarray(rows, np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows outside 0..{len(self) - 1}")
        shard_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for number in np.unique(shard_of):
            positions = np.flatnonzero(shard_of == number)
            yield int(number), positions, rows[positions] - self.offsets[number]

    def vectors(self, rows) -> np.ndarray:
        """Embeddings of ``rows`` as float32 ``(len(rows), dim)``, in the order given (a NaN is a StoreError)."""
        rows = np.asarray(rows, np.int64)
        out = np.zeros((rows.size, self.dim), np.float32)
        for number, positions, local in self._by_shard(rows):
            order = np.argsort(local)
            with self._file(number) as h5:
                # h5py wants increasing, unique indices.
                unique, inverse = np.unique(local[order], return_inverse=True)
                values = h5["embedding"][unique]
            if not np.isfinite(values).all():
                raise self._unreadable(number, "holds vectors that are not finite (the file is damaged)")
            out[positions[order]] = values[inverse]
        return out

    def info(self, rows) -> dict[str, np.ndarray]:
        """``track_id``, ``path`` and ``label`` of ``rows`` (object arrays), in the order given."""
        rows = np.asarray(rows, np.int64)
        out = {c: np.empty(rows.size, dtype=object) for c in STRING_COLUMNS}
        for number, positions, local in self._by_shard(rows):
            unique, inverse = np.unique(local, return_inverse=True)
            with self._file(number) as h5:
                for column in out:
                    out[column][positions] = _read_strings(h5[column])[unique][inverse]
        return out


def check_folder(folder: Path) -> None:
    """Refuse a folder that holds anything but a vector store (even with ``--overwrite``: nothing else is deleted).

    Raises
    ------
    StoreError
        When ``folder`` is a file, a non-empty folder without ``embeddings.json``
        (its lock and the temporary of a first ``embeddings.json`` aside), or holds an
        ``embeddings.json`` that is not an mgc embedding store's.
    """
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"{folder} is a file, not a folder; choose another --out")
    if not folder.is_dir():
        return
    if (folder / META_NAME).exists():
        _read_meta(folder, version=False)
    elif {p.name for p in folder.iterdir()} - {".lock", META_NAME + atomic.TEMP_SUFFIX}:
        raise StoreError(f"{folder} is not empty and not an embedding store; choose another --out")


def _writer_active(folder: Path) -> bool:
    """Whether a writer holds the folder's lock now (its shards may be changing under a reader)."""
    try:
        with FolderLock(folder, shared=True):
            return False
    except StoreError:
        return True


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def failure_reason(exc: BaseException) -> str:
    """Why a write failed, on one line: the system's words for its errno (HDF5 buries it in a long message)."""
    text = " ".join(str(exc).split())
    found = re.search(r"errno = (\d+)", text)
    if found:
        return os.strerror(int(found.group(1)))
    if isinstance(exc, OSError) and exc.errno and exc.strerror:
        return exc.strerror
    return text[:300]


def _write_error(what: Path, exc: BaseException) -> StoreError:
    reason = failure_reason(exc)
    return StoreError(
        f"cannot write {what}: {reason}; the store keeps every shard written before it: free some space "
        "(or fix the folder) and run the same command again to resume"
    )


class VectorWriter:
    """Appends shards to a vector store folder (locked by the caller); resumes, and repairs, what a run left.

    Parameters
    ----------
    folder : Path
        The store folder (created).
    meta : dict
        What ``embeddings.json`` records (without ``id``, made here). An existing
        store must match it in ``model.fingerprint``, ``dim``, ``dtype`` and
        ``label_names``, and in ``source`` when both record one, unless ``overwrite``.
    overwrite : bool
        Replace the store: a new generation (new ``id``); only files :func:`owned` are deleted.

    Attributes
    ----------
    meta : dict
        The store's ``embeddings.json``.
    done : set of str
        Track ids already stored, with a vector or as a failure.
    rows, failed : dict of np.ndarray
        The stored rows' and failures' ``track_id``, ``path`` and source columns (for resume decisions).
    repairs : list of str
        What resuming repaired (a torn or damaged log, damaged or foreign shards), for a person.

    Raises
    ------
    StoreError
        When the folder is not a vector store, holds another model's, dtype's or source's vectors.
    """

    def __init__(self, folder: Path, meta: dict[str, Any], *, overwrite: bool) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        check_folder(folder)
        meta_path = folder / META_NAME
        if meta_path.exists() and not overwrite:
            old = _read_meta(folder)
            mine = {k: meta[k] for k in ("dim", "dtype", "label_names")}
            theirs = {k: old.get(k) for k in mine}
            if old["model"]["fingerprint"] != meta["model"]["fingerprint"] or mine != theirs:
                raise StoreError(
                    f"{folder} holds embeddings of another model or dtype; choose another --out, "
                    "or pass --overwrite to replace them"
                )
            if old.get("source") and meta.get("source") and old["source"] != meta["source"]:
                raise StoreError(
                    f"{folder} holds embeddings of {_describe(old['source'])}, not of {_describe(meta['source'])}; "
                    "choose another --out, or pass --overwrite to replace them"
                )
            self.meta = old
        else:
            self.meta = {**meta, "id": uuid.uuid4().hex}
            if overwrite:  # no reader may trust an index over the new rows
                for name in (INDEX_META, INDEX_NAME):
                    _unlink(folder / name)
            try:  # a new generation before anything else goes
                atomic.write_json(meta_path, self.meta, sort_keys=False)
            except OSError as exc:
                raise _write_error(meta_path, exc) from None
            if overwrite:
                _unlink(folder / LOG_NAME)
        self.dtype = meta["dtype"]
        self.repairs: list[str] = []
        self._repair()

    def _repair(self) -> None:
        """Keep the log's longest verified prefix; truncate the rest; delete unlisted shards and temporaries."""
        entries, ends, problem = _parse_log(self.folder)
        if problem == "torn":
            self.repairs.append(f"{LOG_NAME}: dropped a torn last line (an interrupted write)")
        elif problem:
            self.repairs.append(f"{LOG_NAME} {problem}: the shards from there on are embedded again")
        rows: list[dict[str, np.ndarray]] = []
        failed: list[dict[str, np.ndarray]] = []
        good = 0
        for entry in entries:
            problem_here = self._verify(entry, rows, failed)
            if problem_here:
                self.repairs.append(f"{entry['name']} {problem_here}: it and the shards after it are embedded again")
                break
            good += 1
        self.shards = entries[:good]
        if good < len(entries) or problem:
            log = self.folder / LOG_NAME
            os.truncate(log, ends[good - 1] if good else 0)  # in place: needs no free space
            with open(log, "rb+") as handle:
                os.fsync(handle.fileno())
        listed = {e["name"] for e in self.shards}
        for path in self.folder.iterdir():
            temporary = path.name.endswith(atomic.TEMP_SUFFIX)
            stale = temporary or (_SHARD.fullmatch(path.name) and path.name not in listed)
            if stale and owned(path.name) and not path.is_dir():
                path.unlink()
        columns = ("track_id", "path", *SOURCE_COLUMNS)
        self.rows = {c: _concat([r[c] for r in rows], c) for c in columns}
        self.failed = {c: _concat([f[c] for f in failed], c) for c in columns}
        self.done = set(self.rows["track_id"]) | set(self.failed["track_id"])

    def _verify(self, entry: dict[str, Any], rows: list, failed: list) -> str | None:
        """What is wrong with a listed shard (None: it is whole), reading its columns into ``rows`` and ``failed``."""
        try:
            data = (self.folder / entry["name"]).read_bytes()
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        if len(data) != entry["bytes"]:
            return f"has {len(data)} bytes where {LOG_NAME} lists {entry['bytes']}"
        if "sha256" in entry and hashlib.sha256(data).hexdigest() != entry["sha256"]:
            return f"does not match the SHA-256 that {LOG_NAME} lists (the file is damaged)"
        columns = ("track_id", "path", *SOURCE_COLUMNS)
        try:
            with h5py.File(io.BytesIO(data), "r") as h5:
                if self.meta.get("id") is not None and h5.attrs.get("store_id") != self.meta["id"]:
                    return "belongs to another store or generation"
                shape = h5["embedding"].shape
                if shape != (entry["tracks"], self.meta["dim"]):
                    return f"holds vectors of shape {shape} where ({entry['tracks']}, {self.meta['dim']}) belongs"
                got = _read_columns(h5, columns, entry["tracks"])
                lost = _read_columns(h5["failures"], columns, entry["failures"])
        except (OSError, KeyError, ValueError) as exc:
            return f"cannot be read ({exc})"
        lengths = {len(v) for v in got.values()}, {len(v) for v in lost.values()}
        if lengths != ({entry["tracks"]}, {entry["failures"]}):
            return "holds columns of other lengths than listed"
        for part in (got, lost):  # stores made before sources were recorded: the path, resolved now
            unknown = part["source_path"] == ""
            part["source_path"][unknown] = [os.path.realpath(p) if p else "" for p in part["path"][unknown]]
        rows.append(got)
        failed.append(lost)
        return None

    def write(self, ids, paths, labels, vectors, failures, *, sources=None) -> dict[str, Any]:
        """Write one shard atomically, then list it; returns its log entry.

        Parameters
        ----------
        ids, paths, labels : sequence of str
            One per vector.
        vectors : np.ndarray [shape=(n, dim)]
        failures : sequence of tuple
            ``(track_id, path, error)`` or ``(track_id, path, error, (source_path, bytes, mtime_ns))``.
        sources : sequence of tuple, optional
            ``(source_path, bytes, mtime_ns)`` of each vector's audio (unknown when not given).

        Raises
        ------
        StoreError
            When the shard or its log line cannot be written (a full disk): the store is left
            as it was before this call, and the next run resumes from it.
        """
        name = _shard_name(len(self.shards))
        path = self.folder / name
        unknown = ("", -1, -1)
        sources = list(sources) if sources is not None else [unknown] * len(ids)
        failed_sources = [f[3] if len(f) > 3 else unknown for f in failures]
        digest: list[str] = []

        def write(temp: str) -> None:
            with h5py.File(temp, "w", track_order=True) as h5:
                h5.attrs["format"], h5.attrs["version"] = FORMAT, VERSION
                if self.meta.get("id") is not None:
                    h5.attrs["store_id"] = self.meta["id"]
                data = np.asarray(vectors, self.dtype).reshape(len(ids), self.meta["dim"])  # also a shard of failures
                h5.create_dataset("embedding", data=data, track_times=False)
                group = h5.create_group("failures")
                columns = {"track_id": ids, "path": paths, "label": labels}
                lost = {c: [f[i] for f in failures] for i, c in enumerate(FAILURE_COLUMNS)}
                for i, column in enumerate(SOURCE_COLUMNS):
                    columns[column] = [s[i] for s in sources]
                    lost[column] = [s[i] for s in failed_sources]
                for where, values in ((h5, columns), (group, lost)):
                    for column, data in values.items():
                        if column in ("source_bytes", "source_mtime_ns"):
                            where.create_dataset(column, data=np.asarray(data, np.int64), track_times=False)
                        else:
                            where.create_dataset(column, data=_strings(data), dtype=_STR, track_times=False)
            digest.append(sha256_file(temp))

        try:
            atomic.write_atomic(path, write)
        except (OSError, RuntimeError) as exc:
            raise _write_error(path, exc) from None
        entry = {
            "name": name,
            "tracks": len(ids),
            "failures": len(failures),
            "bytes": path.stat().st_size,
            "sha256": digest[0],
        }
        self._append(entry)
        self.shards.append(entry)
        return entry

    def _append(self, entry: dict[str, Any]) -> None:
        """Append ``entry``'s line to the log and fsync it; on failure, leave the log and the folder as they were."""
        log = self.folder / LOG_NAME
        line = (json.dumps(entry) + "\n").encode("ascii")
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            with contextlib.suppress(OSError):
                (self.folder / entry["name"]).unlink()
            raise _write_error(log, exc) from None
        size = os.fstat(fd).st_size
        try:
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # no torn line left behind (truncating needs no space)
                os.fsync(fd)
            with contextlib.suppress(OSError):
                (self.folder / entry["name"]).unlink()
            raise _write_error(log, exc) from None
        finally:
            os.close(fd)


def _describe(source: dict[str, Any]) -> str:
    if source.get("kind") == "feature-store":
        return f"the feature store {source.get('path')}"
    return "audio files" if source.get("kind") == "audio" else f"{source}"


def _concat(parts: list[np.ndarray], column: str) -> np.ndarray:
    if parts:
        return np.concatenate(parts)
    return np.zeros(0, np.int64 if column in ("source_bytes", "source_mtime_ns") else object)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (a zero row stays zero)."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
