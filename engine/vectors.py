"""Vector stores: one L2-normalised vector per track, sharded, atomic and resumable.

The storage behind ``mgc embed`` (``mgc.models.tasks.embed`` computes the vectors;
this module writes and reads them, and knows nothing of networks). A folder::

    STORE/
      .lock               flock: held by the run writing the folder
      embeddings.json     what made it: format, version, model (folder, checkpoint, step,
                          fingerprint of the weights), dim, dtype, label_names, spec
      shards.jsonl        one JSON line per finished shard, appended and fsynced:
                          {"name": "shard-00000.h5", "tracks": N, "failures": F, "bytes": B}
      shard-00000.h5      /embedding    (N, dim) float16 or float32, rows L2-normalised
                          /track_id, /path, /label   (N,) UTF-8 strings ("" when unknown)
                          /failures/track_id, /failures/path, /failures/error   (F,) UTF-8 strings
      index-usearch.bin   the approximate-nearest-neighbour index (see engine.neighbours),
      index.json          and what it covers; both optional

Row ``i`` of the store is the ``i``-th vector counting through the shards in
the order of ``shards.jsonl``. Every file is written under a temporary name and
renamed into place (``engine.atomic``); a shard is listed in ``shards.jsonl``
only after its rename, so a run killed at any moment leaves whole shards, and
the next run drops anything unlisted (or damaged, and every shard after it)
and carries on from the tracks in no listed shard.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import atomic
from .errors import StoreError

__all__ = ["VectorStore", "VectorWriter", "check_folder", "normalize"]

FORMAT = "mgc-embeddings"
VERSION = 1
META_NAME = "embeddings.json"
LOG_NAME = "shards.jsonl"
#: Tracks per shard: a kill loses at most this many tracks of work.
SHARD_TRACKS = 4096
DTYPES = ("float16", "float32")
_STR = h5py.string_dtype("utf-8")


def _shard_name(number: int) -> str:
    return f"shard-{number:05d}.h5"


def _strings(values) -> np.ndarray:
    data = np.empty(len(values), dtype=object)
    data[:] = [str(v).encode("utf-8", "surrogateescape") for v in values]
    return data


def _read_strings(dataset: h5py.Dataset) -> np.ndarray:
    return np.asarray(dataset.asstr(errors="surrogateescape")[()], dtype=object)


class VectorStore:
    """Read a vector store (the embedding store ``mgc embed`` writes).

    Parameters
    ----------
    path : str or Path
        The folder.

    Attributes
    ----------
    meta : dict
        ``embeddings.json``: ``model`` (``dir``, ``checkpoint``, ``step``,
        ``fingerprint``), ``dim``, ``dtype``, ``label_names``, ``spec``.
    shards : list of dict
        The listed shards, in row order (``name``, ``tracks``, ``failures``, ``bytes``).
    offsets : np.ndarray [shape=(n_shards + 1,)]
        Row of each shard's first vector; ``offsets[-1]`` is the number of vectors.

    Raises
    ------
    StoreError
        When the folder is not an embedding store, or is of a newer format.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / META_NAME
        if not meta_path.is_file():
            raise StoreError(f"{self.path} is not an embedding store (no {META_NAME}); make one with `mgc embed`")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise StoreError(f"{meta_path} is not an mgc embedding store")
        if int(self.meta.get("version", 0)) > VERSION:
            raise StoreError(f"{self.path} was written by a newer mgc (format {self.meta['version']}); upgrade mgc")
        self.shards = _read_log(self.path)
        counts = np.asarray([s["tracks"] for s in self.shards], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._ids: np.ndarray | None = None
        self._ann_index = None  # the approximate index, opened on first use by engine.neighbours

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
        return int(sum(s["failures"] for s in self.shards))

    def _file(self, number: int) -> h5py.File:
        return h5py.File(self.path / self.shards[number]["name"], "r")

    def iter_shards(self, *, columns: Sequence[str] = ("embedding",)) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(first row, {column: array})`` per shard, in row order: one shard in memory at a time.

        ``columns`` are any of ``embedding`` (float32 ``(n, dim)``), ``track_id``, ``path``, ``label``.
        """
        for number in range(len(self.shards)):
            with self._file(number) as h5:
                out = {}
                for column in columns:
                    if column == "embedding":
                        out[column] = h5["embedding"][()].astype(np.float32)
                    else:
                        out[column] = _read_strings(h5[column])
            yield int(self.offsets[number]), out

    def track_ids(self) -> np.ndarray:
        """Every row's track id (an object array; read once and kept)."""
        if self._ids is None:
            parts = [c["track_id"] for _, c in self.iter_shards(columns=("track_id",))]
            self._ids = np.concatenate(parts) if parts else np.zeros(0, object)
        return self._ids

    def failures(self) -> list[dict[str, str]]:
        """The tracks that could not be embedded: ``track_id``, ``path``, ``error``."""
        out = []
        for number in range(len(self.shards)):
            with self._file(number) as h5:
                group = h5["failures"]
                ids, paths, errors = (_read_strings(group[c]) for c in ("track_id", "path", "error"))
            out += [{"track_id": i, "path": p, "error": e} for i, p, e in zip(ids, paths, errors)]
        return out

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
        """Embeddings of ``rows`` as float32 ``(len(rows), dim)``, in the order given."""
        rows = np.asarray(rows, np.int64)
        out = np.zeros((rows.size, self.dim), np.float32)
        for number, positions, local in self._by_shard(rows):
            order = np.argsort(local)
            with self._file(number) as h5:
                # h5py wants increasing, unique indices.
                unique, inverse = np.unique(local[order], return_inverse=True)
                values = h5["embedding"][unique]
            out[positions[order]] = values[inverse]
        return out

    def info(self, rows) -> dict[str, np.ndarray]:
        """``track_id``, ``path`` and ``label`` of ``rows`` (object arrays), in the order given."""
        rows = np.asarray(rows, np.int64)
        out = {c: np.empty(rows.size, dtype=object) for c in ("track_id", "path", "label")}
        for number, positions, local in self._by_shard(rows):
            unique, inverse = np.unique(local, return_inverse=True)
            with self._file(number) as h5:
                for column in out:
                    out[column][positions] = _read_strings(h5[column])[unique][inverse]
        return out


def _read_log(folder: Path) -> list[dict[str, Any]]:
    """Whole lines of ``shards.jsonl`` (a torn last line, from a kill, is not a shard)."""
    try:
        data = (folder / LOG_NAME).read_bytes()
    except FileNotFoundError:
        return []
    shards = []
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        name = str(entry.get("name", ""))
        if name != _shard_name(len(shards)):
            raise StoreError(f"{folder / LOG_NAME} lists {name!r} where {_shard_name(len(shards))} belongs")
        shards.append(entry)
    return shards


def check_folder(folder: Path) -> None:
    """Refuse a folder that holds anything but a vector store (even with ``--overwrite``: nothing else is deleted).

    Raises
    ------
    StoreError
        When ``folder`` is a file, or a non-empty folder without ``embeddings.json``.
    """
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"{folder} is a file, not a folder; choose another --out")
    if folder.is_dir() and not (folder / META_NAME).exists():
        if {p.name for p in folder.iterdir()} - {".lock"}:
            raise StoreError(f"{folder} is not empty and not an embedding store; choose another --out")


class VectorWriter:
    """Appends shards to a vector store folder (locked by the caller); resumes what a killed run left.

    ``done`` holds the track ids already stored (vectors and failures). ``meta``
    must match the folder's ``embeddings.json`` in ``model.fingerprint``,
    ``dim``, ``dtype`` and ``label_names`` unless ``overwrite``.
    """

    def __init__(self, folder: Path, meta: dict[str, Any], *, overwrite: bool) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        meta_path = folder / META_NAME
        if meta_path.exists() and not overwrite:
            old = VectorStore(folder).meta
            mine = {k: meta[k] for k in ("dim", "dtype", "label_names")}
            theirs = {k: old.get(k) for k in mine}
            if old["model"]["fingerprint"] != meta["model"]["fingerprint"] or mine != theirs:
                raise StoreError(
                    f"{folder} holds embeddings of another model or dtype; choose another --out, "
                    "or pass --overwrite to replace them"
                )
        check_folder(folder)
        if overwrite:
            self._clear(everything=True)
        if not meta_path.exists():
            atomic.write_json(meta_path, meta, sort_keys=False)
        self.shards = _read_log(folder)
        self._clean()
        self.done: set[str] = set()
        for entry in self.shards:
            with h5py.File(folder / entry["name"], "r") as h5:
                self.done.update(_read_strings(h5["track_id"]))
                self.done.update(_read_strings(h5["failures/track_id"]))
        self.dtype = meta["dtype"]

    def _clear(self, *, everything: bool) -> None:
        for path in self.folder.iterdir():
            if path.name == ".lock":
                continue
            if path.name.startswith("shard-") or path.name.startswith("index") or path.name.endswith(".tmp"):
                path.unlink()
            elif everything and path.name in (META_NAME, LOG_NAME):
                path.unlink()

    def _clean(self) -> None:
        """Drop what a killed run left: temporaries, unlisted shards, and listed ones that are damaged."""
        good = []
        for entry in self.shards:
            path = self.folder / entry["name"]
            if path.is_file() and path.stat().st_size == entry["bytes"]:
                good.append(entry)
            else:
                break  # rows are positions: everything after a damaged shard is redone
        if len(good) != len(self.shards):
            atomic.write_text(self.folder / LOG_NAME, "".join(json.dumps(e) + "\n" for e in good))
        self.shards = good
        listed = {e["name"] for e in good}
        for path in self.folder.iterdir():
            if path.name.endswith(atomic.TEMP_SUFFIX) or (path.name.startswith("shard-") and path.name not in listed):
                path.unlink()

    def write(self, ids, paths, labels, vectors, failures) -> dict[str, Any]:
        """Write one shard atomically, then list it; returns its log entry."""
        name = _shard_name(len(self.shards))
        path = self.folder / name

        def write(temp: str) -> None:
            with h5py.File(temp, "w", track_order=True) as h5:
                h5.attrs["format"], h5.attrs["version"] = FORMAT, VERSION
                h5.create_dataset(
                    "embedding", data=np.asarray(vectors, self.dtype).reshape(len(ids), -1), track_times=False
                )
                for column, values in (("track_id", ids), ("path", paths), ("label", labels)):
                    h5.create_dataset(column, data=_strings(values), dtype=_STR, track_times=False)
                group = h5.create_group("failures")
                for i, column in enumerate(("track_id", "path", "error")):
                    group.create_dataset(column, data=_strings([f[i] for f in failures]), dtype=_STR, track_times=False)

        atomic.write_atomic(path, write)
        entry = {"name": name, "tracks": len(ids), "failures": len(failures), "bytes": path.stat().st_size}
        with open(self.folder / LOG_NAME, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
            log.flush()
            os.fsync(log.fileno())
        self.shards.append(entry)
        return entry


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (a zero row stays zero)."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
