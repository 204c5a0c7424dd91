"""Listing a corpus: a labelled folder tree, a CSV manifest, or a plain folder.

The order of tracks is deterministic (sorted relative paths, or manifest order)
and track ids are stable: the POSIX path relative to the corpus root, or the
manifest's ``track_id`` column. A folder's symlinks are followed once, never
into a loop and never twice to one recording (see ``_scan``). A file name that
is not valid UTF-8 is kept as Python's ``os`` functions give it (undecodable
bytes as lone surrogates, "surrogateescape"): the store keeps its bytes exactly.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import soundfile

from .errors import CorpusError

__all__ = [
    "Track",
    "Corpus",
    "load_corpus",
    "find_audio_files",
    "is_audio_name",
    "AUDIO_EXTENSIONS",
    "UNSUPPORTED_EXTENSIONS",
]

# Extensions soundfile (libsndfile) decodes, plus common aliases.
AUDIO_EXTENSIONS = frozenset(
    {fmt.lower() for fmt in soundfile.available_formats()}
    | {"wav", "wave", "flac", "ogg", "oga", "opus", "mp3", "au", "snd", "aiff", "aif", "aifc", "caf", "w64", "rf64"}
)
# Audio that soundfile cannot decode: listed anyway so that each lands in the
# failures table as "unsupported" instead of being silently ignored.
UNSUPPORTED_EXTENSIONS = frozenset({"m4a", "aac", "wma", "ape", "alac", "mka", "ac3", "dsf", "wv", "mp4"})
_MANIFEST_COLUMNS = ("path", "label", "track_id", "split", "artist")


@dataclass(frozen=True)
class Track:
    """One entry of a corpus.

    Attributes
    ----------
    track_id : str
        Stable id: relative POSIX path, or the manifest's ``track_id``.
    path : str
        Absolute path of the audio file (it may not exist; extraction reports that).
    label : str or None
        Label name, None when unlabelled.
    split, artist : str or None
        From the manifest when it has those columns.
    """

    track_id: str
    path: str
    label: str | None = None
    split: str | None = None
    artist: str | None = None


@dataclass(frozen=True)
class Corpus:
    """An ordered list of tracks and the sorted names of their labels."""

    root: str
    tracks: tuple[Track, ...]
    kind: str  # "folders", "manifest" or "plain"
    label_names: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.tracks)

    def __iter__(self):
        return iter(self.tracks)

    def __getitem__(self, index: int) -> Track:
        return self.tracks[index]


def is_audio_name(name: str) -> bool:
    """True when a file name's extension is one mgc treats as audio (decodable or not)."""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return ext in AUDIO_EXTENSIONS or ext in UNSUPPORTED_EXTENSIONS


def _listed(name: str) -> bool:
    return not name.startswith(".") and is_audio_name(name)


class _Scan:
    """The audio-named entries under one root, each recording listed once (see ``_scan``)."""

    def __init__(self) -> None:
        self.found: list[str] = []  # relative POSIX paths, as reached from the root
        self.seen: set[str] = set()  # real paths of the listed entries
        self.walked: set[str] = set()  # real paths of the folders walked
        self.links: list[tuple[str, str, str]] = []  # (relative path, path, real path of its folder) to follow

    def walk(self, top: str, top_real: str, top_rel: str) -> None:
        """List ``top`` without following symlinks (they are queued in ``links``); skip walked folders."""
        stack = [(top, top_real, top_rel)]
        while stack:
            folder, real, rel = stack.pop()
            if real in self.walked:
                continue
            self.walked.add(real)
            try:
                with os.scandir(folder) as scan:
                    entries = sorted(scan, key=lambda entry: entry.name)
            except OSError:  # unreadable or vanished: skipped, as os.walk does
                continue
            subfolders = []
            for entry in entries:
                entry_rel = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_symlink():
                    self.links.append((entry_rel, entry.path, real))
                    continue
                # No component below ``real`` is a symlink, so this is the entry's real path.
                entry_real = os.path.join(real, entry.name)
                if _listed(entry.name) and entry_real not in self.seen:
                    self.found.append(entry_rel)
                    self.seen.add(entry_real)
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append((entry.path, entry_real, entry_rel))
            stack.extend(reversed(subfolders))

    def follow(self, rel: str, path: str, folder_real: str) -> None:
        """Add what the symlink ``path`` leads to, unless it repeats a recording or loops."""
        target = os.path.realpath(path)
        name = rel.rsplit("/", 1)[-1]
        if os.path.isdir(target):
            # A target that holds the link (an ancestor: a loop) or that was walked already is never entered.
            if target in self.walked or folder_real == target or folder_real.startswith(target.rstrip("/") + "/"):
                return
            if _listed(name):
                self.found.append(rel)
                self.seen.add(target)
            self.walk(path, target, rel)
        elif _listed(name) and target not in self.seen:
            # A file, or a dangling link: listed so that extraction reports it as "missing".
            self.found.append(rel)
            self.seen.add(target)


def _scan(root: Path) -> list[str]:
    """Relative POSIX paths of audio-named entries under ``root``, sorted.

    Directories named like audio files are listed too (they fail later with
    kind "is_directory", so the user sees them) and are searched as well.

    Symlinks are followed once, never into a loop and never twice to one
    recording: first every entry reached without passing through a symlink is
    listed; then the symlinks met, in sorted order (and those met behind them,
    round after round): a link to a file adds it unless its real path was
    listed already; a link to a folder is walked the same way unless that
    folder was walked already or holds the link (``ln -s .. up``), skipping
    the folders walked already. An entry reached through a link keeps the
    link's relative path (so its label is the folder the link sits in). A
    dangling link is listed (extraction reports it as "missing"). Hard links
    are distinct entries, each listed.
    """
    scan = _Scan()
    scan.walk(os.fspath(root), os.path.realpath(root), "")
    while scan.links:
        links, scan.links = sorted(scan.links), []
        for rel, path, folder_real in links:
            scan.follow(rel, path, folder_real)
    return sorted(scan.found)


def find_audio_files(inputs) -> list[Path]:
    """Files as given; folders searched recursively for audio files (the names ``mgc extract`` lists).

    Parameters
    ----------
    inputs : iterable of str or Path

    Returns
    -------
    list of Path
        Given files in the order given; each folder's audio files in sorted order.
    """
    out: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            out += [item / rel for rel in _scan(item) if (item / rel).is_file()]
        else:
            out.append(item)
    return out


def _from_folder(root: Path, labels: str) -> Corpus:
    rel_paths = _scan(root)
    if not rel_paths:
        raise CorpusError(
            f"no audio files found under {root}; expected files such as .wav/.flac/.ogg/.mp3 "
            "(a folder per label, or a plain folder), or pass a CSV manifest with --manifest"
        )
    if labels == "auto":
        labels = "folders" if all("/" in rel for rel in rel_paths) else "none"
    tracks = []
    for rel in rel_paths:
        label = rel.split("/", 1)[0] if labels == "folders" else None
        tracks.append(Track(track_id=rel, path=str(root / rel), label=label))
    label_names = tuple(sorted({t.label for t in tracks if t.label is not None}))
    return Corpus(str(root), tuple(tracks), "folders" if labels == "folders" else "plain", label_names)


def _from_manifest(manifest: Path) -> Corpus:
    root = manifest.parent
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in ("path", "label") if c not in header]
            if missing:
                raise CorpusError(
                    f"manifest {manifest} lacks the column(s) {', '.join(missing)}; its header must "
                    f"name at least 'path,label' (optional: track_id, split, artist), found {header}"
                )
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except OSError as exc:
        raise CorpusError(f"cannot read manifest {manifest}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CorpusError(f"manifest {manifest} is not a UTF-8 CSV file: {exc}") from exc
    tracks, seen = [], {}
    for line, row in enumerate(rows, start=2):
        if not row.get("path"):
            raise CorpusError(f"manifest {manifest}, line {line}: empty 'path'")
        path = Path(row["path"])
        absolute = path if path.is_absolute() else root / path
        if row.get("track_id"):
            track_id = row["track_id"]
        elif path.is_absolute():
            track_id = path.as_posix()
        else:
            track_id = path.as_posix()
        if track_id in seen:
            raise CorpusError(
                f"manifest {manifest}, line {line}: track id {track_id!r} repeats line {seen[track_id]}; "
                "every row must name a different track"
            )
        seen[track_id] = line
        tracks.append(
            Track(
                track_id=track_id,
                path=str(absolute),
                label=row.get("label") or None,
                split=row.get("split") or None,
                artist=row.get("artist") or None,
            )
        )
    if not tracks:
        raise CorpusError(f"manifest {manifest} has a header but no rows")
    label_names = tuple(sorted({t.label for t in tracks if t.label is not None}))
    return Corpus(str(root), tuple(tracks), "manifest", label_names)


def load_corpus(path, manifest=None, *, labels: str = "auto") -> Corpus:
    """List the tracks of a corpus.

    Parameters
    ----------
    path : str or Path
        A folder (one sub-folder per label, or a plain folder), or a CSV manifest.
    manifest : str or Path, optional
        A CSV manifest with header ``path,label`` and optional ``track_id``,
        ``split``, ``artist``; relative paths are relative to the manifest's folder.
        When given, ``path`` is ignored unless it is the manifest itself.
    labels : {"auto", "folders", "none"}
        For folders: "folders" takes the first path component as the label,
        "none" leaves tracks unlabelled, "auto" picks "folders" when every
        audio file sits inside a sub-folder.

    Returns
    -------
    Corpus
    """
    if labels not in ("auto", "folders", "none"):
        raise CorpusError(f"labels must be 'auto', 'folders' or 'none', got {labels!r}")
    if manifest is not None:
        manifest = Path(manifest).resolve()
        if not manifest.is_file():
            raise CorpusError(f"manifest {manifest} does not exist or is not a file")
        return _from_manifest(manifest)
    root = Path(path).resolve()
    if root.is_file() and root.suffix.lower() == ".csv":
        return _from_manifest(root)
    if not root.is_dir():
        raise CorpusError(f"corpus {root} is not a folder or a .csv manifest; check the path")
    return _from_folder(root, labels)
