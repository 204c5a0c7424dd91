"""Listing a corpus: a labelled folder tree, a CSV manifest, or a plain folder.

The order of tracks is deterministic (sorted relative paths, or manifest order)
and track ids are stable: the POSIX path relative to the corpus root, or the
manifest's ``track_id`` column. A folder's symlinks are followed once, never
into a loop and never twice to one recording (see ``_scan``). A file name that
is not valid UTF-8 is kept as Python's ``os`` functions give it (undecodable
bytes as lone surrogates, "surrogateescape"): the store keeps its bytes exactly.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import soundfile

from .errors import CorpusError, MgcWarning

__all__ = [
    "Track",
    "Corpus",
    "load_corpus",
    "folder_tracks",
    "find_audio_files",
    "is_audio_name",
    "AUDIO_EXTENSIONS",
    "FFMPEG_EXTENSIONS",
    "UNSUPPORTED_EXTENSIONS",
    "SPLIT_NAMES",
]

# Extensions soundfile (libsndfile) decodes, plus common aliases. MPEG layers I and II
# (.mp1, .mp2, .mpa) decode through the same libmpg123 reader as MP3.
AUDIO_EXTENSIONS = frozenset(
    {fmt.lower() for fmt in soundfile.available_formats()}
    | {"wav", "wave", "flac", "ogg", "oga", "opus", "mp3", "au", "snd", "aiff", "aif", "aifc", "caf", "w64", "rf64"}
    | {"mp1", "mp2", "mpa", "mpga"}
)
# Audio, and audio/video containers, that only FFmpeg (PyAV, see engine/ffmpeg.py) decodes:
# AAC/ALAC in MP4, ADTS AAC, WMA, Opus/Vorbis in WebM/Matroska, AMR, Monkey's Audio, WavPack,
# Musepack, TTA, TAK, Speex, RealAudio, AC-3/E-AC-3/DTS, DSD, and the first audio stream of a video file.
FFMPEG_EXTENSIONS = (
    frozenset(
        {"m4a", "m4b", "m4r", "aac", "alac", "mp4", "3gp", "3g2", "amr", "awb", "wma", "wmv", "asf"}
        | {"ape", "wv", "mpc", "tta", "tak", "spx", "ra", "rm", "ac3", "eac3", "dts", "dsf", "dff"}
        | {"mka", "mkv", "webm", "mov", "avi", "flv", "ogv"}
    )
    - AUDIO_EXTENSIONS
)
# Audio that neither decoder reads: listed anyway so that each lands in the failures table
# as "unsupported" instead of being silently ignored (.m4p: iTunes FairPlay-protected AAC).
UNSUPPORTED_EXTENSIONS = frozenset({"m4p"}) - AUDIO_EXTENSIONS - FFMPEG_EXTENSIONS
#: The split names a manifest's ``split`` column may hold (an empty cell: no split).
SPLIT_NAMES = ("train", "valid", "test")
_MANIFEST_COLUMNS = ("path", "label", "track_id", "split", "artist")
#: At most this many names (of stray files, of lines) are shown in one warning.
_SHOWN = 5


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
    """True when a file name's extension is one mgc treats as audio (by soundfile, by FFmpeg, or listed to fail)."""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return ext in AUDIO_EXTENSIONS or ext in FFMPEG_EXTENSIONS or ext in UNSUPPORTED_EXTENSIONS


def _listed(name: str, all_files: bool = False, is_dir: bool = False) -> bool:
    """Not hidden, and audio-named; with ``all_files`` any file too (a folder still only when audio-named)."""
    return not name.startswith(".") and (is_audio_name(name) or (all_files and not is_dir))


class _Scan:
    """The audio-named entries under one root, each recording listed once (see ``_scan``)."""

    def __init__(self, all_files: bool = False) -> None:
        self.all_files = all_files  # list every (non-hidden) file, not only audio-named ones
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
                is_dir = entry.is_dir(follow_symlinks=False)
                if _listed(entry.name, self.all_files, is_dir) and entry_real not in self.seen:
                    self.found.append(entry_rel)
                    self.seen.add(entry_real)
                if is_dir:
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
            if _listed(name, self.all_files, is_dir=True):
                self.found.append(rel)
                self.seen.add(target)
            self.walk(path, target, rel)
        elif _listed(name, self.all_files) and target not in self.seen:
            # A file, or a dangling link: listed so that extraction reports it as "missing".
            self.found.append(rel)
            self.seen.add(target)


def _scan(root: Path, all_files: bool = False) -> list[str]:
    """Relative POSIX paths of audio-named entries under ``root``, sorted.

    With ``all_files`` every file is listed whatever its extension (FFmpeg reads
    by content; a cover image then fails as unreadable); hidden names (starting
    with ".") never are.

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
    scan = _Scan(all_files)
    scan.walk(os.fspath(root), os.path.realpath(root), "")
    while scan.links:
        links, scan.links = sorted(scan.links), []
        for rel, path, folder_real in links:
            scan.follow(rel, path, folder_real)
    return sorted(scan.found)


def find_audio_files(inputs) -> list[Path]:
    """Files as given; folders searched recursively for audio files that are regular files.

    A folder gives the names ``folder_tracks`` lists (what ``mgc extract``, ``predict`` and
    ``embed`` list) less those that are not regular files (a directory named ``x.wav``, a
    dangling symlink): for callers that want readable files only, such as the benchmarks.

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


def _some(names: list, more: str = " and {} more") -> str:
    """The first few of ``names``, comma-separated, then how many more there are."""
    shown = ", ".join(str(n) for n in names[:_SHOWN])
    return shown + more.format(len(names) - _SHOWN) if len(names) > _SHOWN else shown


def _check_labels(labels: str) -> None:
    if labels not in ("auto", "folders", "none"):
        raise CorpusError(f"labels must be 'auto', 'folders' or 'none', got {labels!r}")


def folder_tracks(folder, labels: str = "auto", *, name=None, all_files: bool = False) -> list[tuple[str, str | None]]:
    """``(relative path, label or None)`` of every audio-named entry under ``folder``: the listing of ``load_corpus``.

    Every entry ``_scan`` lists is here, those that cannot be decoded included (a
    directory named ``x.wav``, a dangling symlink: they fail later with a reason).
    The labelling rule is the one ``load_corpus`` documents.

    Parameters
    ----------
    folder : str or Path
        The folder to search (recursively).
    labels : {"auto", "folders", "none"}
        See ``load_corpus``.
    name : str, optional
        How a warning names the folder (default: ``folder`` as given).
    all_files : bool
        List every file, not only known audio extensions (hidden files still skipped).

    Returns
    -------
    list of (str, str or None)
        Relative POSIX paths, sorted, each with its label (None: unlabelled).

    Warns
    -----
    MgcWarning
        When tracks are labelled by folder and some files sit at the top (they stay
        unlabelled), or when "auto" reads a folder as plain though some of its files
        sit in sub-folders.
    """
    _check_labels(labels)
    name = folder if name is None else name
    rel_paths = _scan(Path(folder), all_files)
    top = [rel for rel in rel_paths if "/" not in rel]
    nested = len(rel_paths) - len(top)
    if labels == "auto":
        labels = "folders" if nested > len(top) else "none"
        if labels == "none" and nested:
            sit = "sits" if len(top) == 1 else "sit"
            warnings.warn(
                f"corpus {name} is read as a plain, unlabelled folder: {len(top)} of its {len(rel_paths)} audio "
                f"files {sit} at the top, not in label sub-folders ({_some(top)}); to label it by folder, move "
                "every file into one sub-folder per label",
                MgcWarning,
                stacklevel=2,
            )
    if labels == "folders" and top:
        files = "1 audio file sits" if len(top) == 1 else f"{len(top)} audio files sit"
        warnings.warn(
            f"corpus {name}: {files} at the top, outside the label folders, and "
            f"{'is' if len(top) == 1 else 'are'} unlabelled: {_some(top)}",
            MgcWarning,
            stacklevel=2,
        )
    if labels == "none":
        return [(rel, None) for rel in rel_paths]
    return [(rel, rel.split("/", 1)[0] if "/" in rel else None) for rel in rel_paths]


def _from_folder(root: Path, labels: str, name, all_files: bool = False) -> Corpus:
    listed = folder_tracks(root, labels, name=name, all_files=all_files)
    if not listed:
        raise CorpusError(
            f"no audio files found under {root}; expected files such as .wav/.flac/.ogg/.mp3 "
            "(a folder per label, or a plain folder), or pass a CSV manifest with --manifest"
        )
    tracks = tuple(Track(track_id=rel, path=str(root / rel), label=label) for rel, label in listed)
    label_names = tuple(sorted({t.label for t in tracks if t.label is not None}))
    return Corpus(str(root), tracks, "folders" if label_names else "plain", label_names)


def _decode(manifest: Path) -> str:
    """The text of ``manifest``: UTF-8 (a byte-order mark is dropped), or a CorpusError naming the line."""
    try:
        data = manifest.read_bytes()
    except OSError as exc:
        raise CorpusError(f"cannot read manifest {manifest}: {exc.strerror or exc}") from exc
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CorpusError(f"manifest {manifest} is UTF-16 text; save it as UTF-8 CSV (spreadsheets: 'CSV UTF-8')")
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CorpusError(
            f"manifest {manifest}, line {line}: byte 0x{data[exc.start]:02x} is not UTF-8; "
            "save the manifest as UTF-8 CSV (spreadsheets: 'CSV UTF-8')"
        ) from None


def _read_csv(manifest: Path) -> list[tuple[int, int, list[str]]]:
    """``(first line, last line, fields)`` of every row of ``manifest`` (header included); blank rows left out."""
    reader = csv.reader(io.StringIO(_decode(manifest), newline=""), strict=True)
    rows, first = [], 1
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                rows.append((first, reader.line_num, fields))
            first = reader.line_num + 1
    except csv.Error as exc:
        if "end of data" in str(exc):  # the end of the file inside a quoted value
            raise CorpusError(
                f'manifest {manifest}, line {first}: a quote (") opened on this line is never closed, so the rest '
                "of the file would be read as one value; close the quote or remove it"
            ) from None
        raise CorpusError(
            f"manifest {manifest}, line {reader.line_num} is not valid CSV ({exc}); quote a value that holds "
            'a comma or a quote, doubling its quotes: "a, ""b"".wav"'
        ) from None
    return rows


def _manifest_header(manifest: Path, header: list[str], labels_required: bool) -> dict[str, int]:
    """Column name -> index of the columns mgc reads, or a CorpusError for a header that lacks or repeats one."""
    header = [h.strip() for h in header]
    required = ("path", "label") if labels_required else ("path",)
    missing = [c for c in required if c not in header]
    if missing:
        optional = ", ".join(c for c in _MANIFEST_COLUMNS if c not in required)
        raise CorpusError(
            f"manifest {manifest} lacks the column(s) {', '.join(missing)}; its header must name at least "
            f"'{','.join(required)}' (optional: {optional}), found {header}"
        )
    twice = sorted({h for h in header if h in _MANIFEST_COLUMNS and header.count(h) > 1})
    if twice:
        raise CorpusError(f"manifest {manifest}: its header names the column(s) {', '.join(twice)} more than once")
    return {name: header.index(name) for name in _MANIFEST_COLUMNS if name in header}


def _manifest_row(where: str, fields: list[str], n_columns: int, last: int, columns: dict[str, int]) -> dict:
    """The values of one row's known columns (missing fields: empty), or a CorpusError saying what is wrong."""
    if len(fields) > n_columns:
        raise CorpusError(
            f"{where} has {len(fields)} fields, the header names {n_columns}; quote a value that holds a comma "
            '("a, b.wav") or remove the extra field(s)'
        )
    if any("\n" in f or "\r" in f for f in fields):
        raise CorpusError(f'{where}: a quoted value runs on to line {last}; check for an unbalanced quote (")')
    if any("\0" in f for f in fields):
        raise CorpusError(f"{where} holds a NUL character; is the manifest a CSV text file?")
    row = {name: fields[i].strip() if i < len(fields) else "" for name, i in columns.items()}
    split = row.get("split")
    if split and split not in SPLIT_NAMES:
        close = difflib.get_close_matches(split.lower(), SPLIT_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CorpusError(
            f"{where}: unknown split {split!r}{hint}; the split column takes {', '.join(SPLIT_NAMES)} "
            "or an empty cell (no split)"
        )
    return row


def _from_manifest(manifest: Path, labels_required: bool = True) -> Corpus:
    root = manifest.parent
    rows = _read_csv(manifest)
    if not rows:
        raise CorpusError(f"manifest {manifest} is empty; its first line must be a header such as 'path,label'")
    columns = _manifest_header(manifest, rows[0][2], labels_required)
    tracks, seen, unlabelled = [], {}, []
    for line, last, fields in rows[1:]:
        where = f"manifest {manifest}, line {line}"
        row = _manifest_row(where, fields, len(rows[0][2]), last, columns)
        if not row["path"]:
            raise CorpusError(f"{where}: empty 'path'")
        path = Path(row["path"])
        track_id = row.get("track_id") or path.as_posix()
        if track_id in seen:
            raise CorpusError(
                f"{where}: track id {track_id!r} repeats line {seen[track_id]}; every row must name a different track"
            )
        seen[track_id] = line
        if "label" in columns and not row["label"]:
            unlabelled.append(line)
        absolute = path if path.is_absolute() else root / path
        label, split, artist = row.get("label") or None, row.get("split") or None, row.get("artist") or None
        tracks.append(Track(track_id=track_id, path=str(absolute), label=label, split=split, artist=artist))
    if not tracks:
        raise CorpusError(f"manifest {manifest} has a header but no rows")
    if unlabelled:
        n = len(unlabelled)
        rows_have, lines = ("1 row has", "line") if n == 1 else (f"{n} rows have", "lines")
        warnings.warn(
            f"manifest {manifest}: {rows_have} an empty label ({lines} {_some(unlabelled, ', ...')}); "
            f"{'it is' if n == 1 else 'they are'} unlabelled: extracted but not trained or evaluated on",
            MgcWarning,
            stacklevel=2,
        )
    label_names = tuple(sorted({t.label for t in tracks if t.label is not None}))
    return Corpus(str(root), tuple(tracks), "manifest", label_names)


def load_corpus(
    path, manifest=None, *, labels: str = "auto", labels_required: bool = True, all_files: bool = False
) -> Corpus:
    """List the tracks of a corpus.

    A folder is labelled by its sub-folders (``labels="auto"``) when most of its
    audio files sit in sub-folders: each file's label is then the first folder
    below the root (``blues/live/x.wav`` is ``blues``), and a file at the top
    (``notes.wav`` beside ``blues/`` and ``rock/``) stays unlabelled, named in a
    ``MgcWarning``. Otherwise the folder is plain and every track unlabelled (a
    ``MgcWarning`` says so when some files do sit in sub-folders; a folder whose
    files all sit at the top is plain without a word). ``predict`` and ``embed``
    label a folder by the same rule (``folder_tracks``).

    Parameters
    ----------
    path : str or Path
        A folder (one sub-folder per label, or a plain folder), or a CSV manifest.
        With ``manifest``: the manifest itself, its folder, or None.
    manifest : str or Path, optional
        A UTF-8 CSV manifest with header ``path,label`` and optional ``track_id``,
        ``split`` (one of ``SPLIT_NAMES``, or empty), ``artist``; relative paths are
        relative to the manifest's folder. Other columns are ignored. A row with
        more fields than the header, an unclosed quote, a value that spans lines
        or an unknown split is refused with its line number; rows with an empty
        label stay unlabelled (one ``MgcWarning`` per manifest names their lines).
    labels : {"auto", "folders", "none"}
        For folders: "folders" takes the first folder below the root as the label,
        "none" leaves tracks unlabelled, "auto" picks "folders" when most audio
        files sit in sub-folders (see above).
    labels_required : bool
        Whether a manifest's header must name a ``label`` column; False lets a
        ``path``-only manifest list unlabelled tracks (for ``predict``, ``embed``).
    all_files : bool
        For a folder: list every file, not only known audio extensions (hidden
        files still skipped); a cover image then fails as unreadable.

    Returns
    -------
    Corpus

    Raises
    ------
    CorpusError
        For a path that is no folder nor manifest, a folder without audio, a
        malformed manifest, or a ``path`` that disagrees with ``manifest``.

    Warns
    -----
    MgcWarning
        For top-level files of a labelled folder, a folder read as plain though
        some of its files sit in sub-folders, and manifest rows with an empty label.
    """
    _check_labels(labels)
    if manifest is not None:
        given = manifest
        manifest = Path(manifest).resolve()
        if not manifest.is_file():
            what = "is a folder, not a CSV file" if manifest.is_dir() else "does not exist"
            raise CorpusError(f"manifest {manifest} {what}")
        if path is not None and Path(path).resolve() not in (manifest, manifest.parent):
            raise CorpusError(
                f"CORPUS {path} and --manifest {given} disagree: give the manifest as CORPUS "
                f"(mgc extract {given} STORE) or CORPUS as the manifest's folder ({manifest.parent})"
            )
        return _from_manifest(manifest, labels_required)
    root = Path(path).resolve()
    if root.is_file() and root.suffix.lower() == ".csv":
        return _from_manifest(root, labels_required)
    if not root.exists():
        raise CorpusError(f"corpus {root} does not exist; check the path")
    if not root.is_dir():
        raise CorpusError(f"corpus {root} is a file but not a .csv manifest; give a folder or a CSV manifest")
    return _from_folder(root, labels, path, all_files)
