"""What a store's resume may trust: its shard files, and the corpus they were made from.

``extract`` runs :func:`check_shards` (cheap: one ``stat`` per shard) and
:func:`changed_tracks` on every resume and redoes what they name; ``mgc extract
--verify`` runs :func:`verify` (which also opens every shard) and reports it
all without writing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from . import schema
from .corpus import Corpus, load_corpus
from .errors import StoreError
from .spec import FeatureSpec

__all__ = ["StoreCheck", "check_shards", "changed_tracks", "source_signature", "verify"]


def source_signature(path: str) -> tuple[int, int]:
    """``(size in bytes, mtime in ns)`` of an audio file; ``(-1, -1)`` when it cannot be read."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return -1, -1
    return int(info.st_size), int(info.st_mtime_ns)


def check_shards(store: str, index: dict, *, deep: bool = False) -> list[tuple[str, str]]:
    """Shards of ``index`` whose file is missing or damaged, as ``(name, reason)``.

    Every shard's size is checked against the size its index entry recorded; with
    ``deep`` every shard is also opened with HDF5 and checked against the schema,
    the spec and the entry's counts (its feature data are not read).
    """
    spec = FeatureSpec.from_dict(index["spec"]) if deep else None
    damaged = []
    for entry in index["shards"]:
        name = entry["name"]
        path = os.path.join(store, name)
        try:
            size = os.lstat(path).st_size
        except FileNotFoundError:
            damaged.append((name, "the file is missing"))
            continue
        if os.path.islink(path):
            damaged.append((name, "the file is a symbolic link, not a shard mgc wrote"))
            continue
        expected = entry.get("file_bytes")
        if expected is not None and size != int(expected):
            damaged.append((name, f"the file has {size} bytes, the index recorded {int(expected)}"))
            continue
        if not deep:
            continue
        try:
            with h5py.File(path, "r") as h5:
                schema.validate_shard(h5, spec)
                counts = (
                    h5["tracks/track_id"].shape[0],
                    h5["failures/track_id"].shape[0],
                    int(h5["tracks/n_frames"][()].sum()),
                )
        except (OSError, StoreError, KeyError) as exc:
            damaged.append((name, f"it cannot be read: {exc}"))
            continue
        recorded = (entry["n_tracks"], entry["n_failures"], entry["n_frames"])
        if counts != tuple(int(c) for c in recorded):
            damaged.append((name, f"it holds (tracks, failures, frames) {counts}, the index recorded {recorded}"))
    return damaged


def _utf8(value) -> bytes:
    return (value or "").encode("utf-8", "surrogateescape")


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def changed_tracks(
    store: str, index: dict, corpus: Corpus, *, skip=(), loaded: tuple | None = None
) -> list[tuple[str, str, str]]:
    """Tracks of complete shards that differ from the corpus now, as ``(shard name, track_id, what)``.

    A stored track differs when its label, split or artist changed; a stored or
    failed track when its file's size or modification time (recorded when it was
    extracted) changed. Tracks no longer in the corpus are not changes (the store
    keeps them). One ``stat`` per track. Shards named in ``skip`` (damaged ones)
    are left out. ``loaded`` is ``tables.load``'s (tracks, failures) for ``index``
    when the caller has them already.
    """
    from . import tables

    if skip:
        index = {**index, "shards": [entry for entry in index["shards"] if entry["name"] not in skip]}
    tracks, failures = loaded or tables.load(store, index, FeatureSpec.from_dict(index["spec"]))[:2]
    names = [entry["name"] for entry in index["shards"]]
    failures = {**failures, "shard": None}
    failures["shard"] = np.repeat(np.arange(len(names)), [int(e["n_failures"]) for e in index["shards"]])
    tracks_of_corpus = list(corpus)
    ids = [t.track_id for t in tracks_of_corpus]
    out = []
    for table, fields in ((tracks, ("label", "split", "artist")), (failures, ())):
        rows = table["track_id"].lookup(ids) if len(table["track_id"]) else np.full(len(ids), -1)
        found = np.flatnonzero(rows >= 0)  # corpus positions of tracks this table holds
        stored = rows[found]
        reasons = [[] for _ in found]
        for f in fields:  # vectorised: fixed-width bytes, no Python string per stored row
            now = np.array([_utf8(getattr(tracks_of_corpus[k], f)) for k in found], dtype="S")
            before = table[f].take(stored).fixed() if len(found) else now
            for j in np.flatnonzero(before != now):
                reasons[j].append(f"{f} {_text(before[j])!r} -> {_text(now[j])!r}")
        sizes, mtimes = table["source_bytes"][stored], table["source_mtime_ns"][stored]
        for j in np.flatnonzero(sizes >= 0):  # one stat per track whose signature was recorded
            if source_signature(tracks_of_corpus[found[j]].path) != (sizes[j], mtimes[j]):
                reasons[j].append("its file changed (size or modification time)")
        for j, why in enumerate(reasons):
            if why:
                out.append((names[int(table["shard"][stored[j]])], ids[found[j]], "; ".join(why)))
    return out


@dataclass
class StoreCheck:
    """What ``mgc extract --verify`` found; ``clean`` when a resume would redo nothing."""

    store: str
    corpus_tracks: int
    stored_tracks: int
    failed_tracks: int
    damaged_shards: list = field(default_factory=list)  # (shard name, reason)
    changed_tracks: list = field(default_factory=list)  # (shard name, track_id, what changed)
    new_tracks: list = field(default_factory=list)  # track ids of the corpus not in the store's plan
    unfinished_shards: list = field(default_factory=list)  # planned shards not complete yet
    gone_tracks: int = 0  # tracks of the store no longer in the corpus (kept)

    @property
    def clean(self) -> bool:
        return not (self.damaged_shards or self.changed_tracks or self.new_tracks or self.unfinished_shards)

    def to_dict(self) -> dict:
        return {**self.__dict__, "clean": self.clean}

    def counts(self) -> dict[str, int]:
        """What was found, counted, by a description of each count (for a table)."""
        return {
            "tracks in the corpus": self.corpus_tracks,
            "stored tracks": self.stored_tracks,
            "failed tracks": self.failed_tracks,
            "damaged shards": len(self.damaged_shards),
            "tracks changed in the corpus": len(self.changed_tracks),
            "new tracks (not planned yet)": len(self.new_tracks),
            "planned shards not written yet": len(self.unfinished_shards),
            "stored tracks no longer in the corpus (kept)": self.gone_tracks,
        }


def verify(corpus, store_path) -> StoreCheck:
    """Check a store against its files and the corpus, without writing anything.

    Parameters
    ----------
    corpus : Corpus, str or Path
        The corpus the store is extracted from (as given to ``extract``).
    store_path : str or Path
        The store folder.

    Returns
    -------
    StoreCheck
    """
    from . import tables

    corpus = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
    store = os.path.abspath(os.fspath(store_path))
    index = schema.read_index(store)
    damaged = check_shards(store, index, deep=True)
    complete = {entry["name"] for entry in index["shards"]}
    plan = schema.read_plan(os.path.join(store, schema.PLAN_NAME))
    planned = {track_id for shard in plan["shards"] for track_id in shard["track_ids"]}
    unfinished = [shard["name"] for shard in plan["shards"] if shard["name"] not in complete]
    bad = {name for name, _ in damaged}
    readable = {**index, "shards": [entry for entry in index["shards"] if entry["name"] not in bad]}
    tracks, failures, _ = tables.load(store, readable, FeatureSpec.from_dict(index["spec"]))
    changed = changed_tracks(store, readable, corpus, loaded=(tracks, failures))
    stored_ids = set(np.asarray(tracks["track_id"])) | set(np.asarray(failures["track_id"]))
    ids = {t.track_id for t in corpus}
    return StoreCheck(
        store=store,
        corpus_tracks=len(corpus),
        stored_tracks=len(tracks["track_id"]),
        failed_tracks=len(failures["track_id"]),
        damaged_shards=damaged,
        changed_tracks=changed,
        new_tracks=sorted(ids - planned),
        unfinished_shards=unfinished,
        gone_tracks=len(stored_ids - ids),
    )
