"""The resumable per-track output of a batch run (``mgc predict --out FILE``): its files, format and rules.

Files, all in FILE's folder:

- ``FILE``: one line per track, JSON lines, or CSV (a header row first) when
  the name ends in ``.csv``. Lines are appended and fsynced batch by batch and
  never rewritten; the one change to bytes already there is cutting a torn last
  line (a run killed mid-write) before appending, and only in a file of ours.
- ``FILE.mgc.json`` (the marker): ``{"format": "mgc-predictions", "version": 1,
  "layout": "jsonl" or "csv", "key": "track_id", "columns": [...],
  "made_by": {...}, "about": {...}}``, written atomically before FILE is
  created and not changed while FILE holds anything. ``made_by`` is what
  decides the lines (for ``mgc predict``: the model's fingerprint, the store,
  ``top_k``); a run whose ``made_by`` or columns differ is refused. ``about``
  is for people (the model's folder).
- ``FILE.lock``: ``engine.FolderLock``'s lock file, held exclusively for the
  whole run; it holds the writer's pid, and the kernel frees the lock when the
  writer dies (even by SIGKILL).

Ownership: FILE is written only when it is absent, empty (nothing to lose: a
name made by ``mktemp``), or marked by ``FILE.mgc.json`` with every whole line
one of our records. A symbolic link (even to a file of ours), a folder, a FIFO,
a foreign or damaged marker, or a non-empty unmarked FILE is refused with a
one-line :class:`ModelError` before anything is written.

Identity: besides its key, each line carries the fields named by ``identity``
(for ``mgc predict``: the source file's resolved path, size and mtime), so a
run can tell a track done from the same input from one whose input changed
since. A track's newer line is appended after its old one: the last line of a
key wins.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mgc.engine import FolderLock, atomic
from mgc.models.errors import ModelError

__all__ = ["FORMAT", "LOCK_SUFFIX", "MARKER_SUFFIX", "VERSION", "ResultsFile", "is_csv"]

FORMAT = "mgc-predictions"  # the marker's "format": what kind of mgc output FILE is
VERSION = 1  # the marker's "version": a newer one is refused, not guessed at
MARKER_SUFFIX = ".mgc.json"  # FILE + this: the marker
LOCK_SUFFIX = ".lock"  # FILE + this: the lock file
_PID = re.compile(rb"\s*\d*\s*")  # what FolderLock leaves in a lock file: a pid, or nothing
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a FIFO never hangs the open


def is_csv(path: str | os.PathLike) -> bool:
    """True when the results file ``path`` is CSV (its name ends in ``.csv``), False for JSON lines."""
    return Path(path).name.lower().endswith(".csv")


class ResultsFile:
    """The resumable per-track output of a batch run, claimed for this run (see the module's rules).

    Creating one takes the lock and refuses a FILE that is not ours; :meth:`open`
    then checks or writes the marker and makes the file ready to append. Use it
    as a context manager: leaving it flushes, closes and frees the lock.

    Parameters
    ----------
    path : str or Path
        The file; its folder is created when missing.
    columns : sequence of str
        The CSV header, or the keys of a JSON-lines record (recorded in the marker).
    key : str
        The field that identifies a track (``track_id``).
    identity : sequence of str
        Fields that say what a line was made from: a track is done only when
        its last line holds the same values (see :meth:`is_done`).
    what : str
        The writer, as the message of a held lock names it.

    Attributes
    ----------
    done : dict
        Key -> the ``identity`` values (as CSV cells) of its last whole line.
    csv : bool
        True when FILE is CSV.

    Raises
    ------
    ModelError
        When FILE, its marker or its lock file is not ours or cannot be used,
        or another run holds the lock; nothing has been written then.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        columns: Sequence[str],
        *,
        key: str = "track_id",
        identity: Sequence[str] = (),
        what: str = "another mgc run",
    ) -> None:
        self.given = Path(path)
        self.columns, self.key, self.identity = list(columns), key, list(identity)
        self.csv = is_csv(self.given)
        self.done: dict[str, tuple] = {}
        self._handle: io.TextIOWrapper | None = None
        self._buffer: list[str] = []
        self.path = _claimable(self.given)
        self.marker = self.path.with_name(self.path.name + MARKER_SUFFIX)
        lock_path = self.path.with_name(self.path.name + LOCK_SUFFIX)
        self._inspect(read=False)  # a file that is not ours is refused before even a lock file is made
        _check_lock_file(lock_path, self.path)
        self._lock = FolderLock(
            self.path.parent,
            name=lock_path.name,
            what=what,
            advice=f"{self.path.name} is in use: wait for it to finish, or choose another --out",
            error=ModelError,
            invalid=ModelError,
        )
        self._lock.__enter__()
        try:
            self._inspect(read=True)  # again under the lock: what another run did before is seen
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise

    # ------------------------------------------------------------------------------
    def open(self, made_by: Mapping[str, Any], about: Mapping[str, Any] | None = None) -> ResultsFile:
        """Check (or, when FILE holds nothing, write) the marker; cut a torn last line; get ready to append.

        Parameters
        ----------
        made_by : mapping
            What decides the lines (JSON values); a FILE holding lines made
            otherwise is refused.
        about : mapping, optional
            Recorded in the marker for people, never compared.

        Raises
        ------
        ModelError
            When FILE holds lines made otherwise, or cannot be written.
        """
        layout = "csv" if self.csv else "jsonl"
        marker = {"format": FORMAT, "version": VERSION, "layout": layout, "key": self.key, "columns": self.columns}
        marker["made_by"], marker["about"] = json.loads(json.dumps(dict(made_by))), dict(about or {})
        try:
            if self._size:
                self._check_made_by(marker)
            else:  # nothing to lose: (re)mark it before FILE is created
                atomic.write_json(self.marker, marker)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o644)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise ModelError(f"{self.path} is not a regular file; choose another --out")
                os.ftruncate(fd, self._valid)  # a torn last line of ours (a kill mid-write) is redone
                os.lseek(fd, 0, os.SEEK_END)
                self._handle = open(fd, "a", encoding="utf-8", newline="", errors="surrogateescape")
            except BaseException:
                os.close(fd)
                raise
        except OSError as exc:
            raise ModelError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        if self.csv and self._valid == 0:
            csv.writer(self._handle).writerow(self.columns)
        return self

    def is_done(self, key: str, record: Mapping[str, Any]) -> bool:
        """True when ``key``'s last line was made from what ``record``'s ``identity`` fields say."""
        return self.done.get(key) == tuple(_cell(record.get(f)) for f in self.identity)

    def write(self, record: Mapping[str, Any]) -> None:
        """Queue one track's record (written by :meth:`flush`)."""
        if self.csv:
            out = io.StringIO()
            csv.writer(out).writerow([_cell(record.get(c)) for c in self.columns])
            self._buffer.append(out.getvalue())
        else:
            self._buffer.append(json.dumps(dict(record), ensure_ascii=True) + "\n")
        self.done[record[self.key]] = tuple(_cell(record.get(f)) for f in self.identity)

    def flush(self) -> None:
        """Append the queued lines and fsync: after this, a kill loses none of them."""
        if self._buffer and self._handle is not None:
            try:
                self._handle.write("".join(self._buffer))
                self._buffer.clear()
                self._handle.flush()
                os.fsync(self._handle.fileno())
            except OSError as exc:
                raise ModelError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Flush, close FILE and free the lock."""
        try:
            if self._handle is not None:
                self.flush()
                self._handle.close()
        finally:
            self._handle = None
            self._lock.__exit__(None, None, None)

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------------------
    def _inspect(self, *, read: bool) -> None:
        """Refuse FILE unless it is absent, empty or marked; with ``read``, collect its lines (see :attr:`done`)."""
        self._size = _regular_size(self.path)
        self._saved = self._read_marker()
        if self._size and self._saved is None:
            raise ModelError(
                f"{self.path} exists and is not an mgc results file (no {self.marker.name} beside it); "
                "mgc leaves it as it is: choose another --out"
            )
        if read:
            self._valid = self._read_existing() if self._size else 0

    def _read_marker(self) -> dict | None:
        """The marker's content; ``None`` when there is none; refused when it is not one of ours."""
        foreign = f"{self.marker} is not an mgc results marker; mgc leaves it and {self.path.name} as they are"
        try:
            fd = os.open(self.marker, os.O_RDONLY | _OPEN_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ModelError(f"{foreign} ({exc.strerror}): choose another --out") from None
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ModelError(f"{foreign} (not a regular file): choose another --out")
            data = handle.read(1 << 20)
        try:
            saved = json.loads(data.decode("utf-8"))
        except ValueError:
            saved = None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise ModelError(f"{foreign}: choose another --out")
        if saved.get("version") != VERSION:
            raise ModelError(
                f"{self.marker} is version {saved.get('version')} of {FORMAT}, this mgc writes version {VERSION}; "
                "use the mgc that wrote it, or choose another --out"
            )
        return saved

    def _read_existing(self) -> int:
        """Collect the keys of FILE's whole lines (all must be records); return their byte length."""
        with open(os.open(self.path, os.O_RDONLY | _OPEN_FLAGS), "rb") as handle:
            data = handle.read()
        end = data.rfind(b"\n") + 1  # whole lines only
        text = data[:end].decode("utf-8", "surrogateescape")
        if self.csv:
            rows = list(csv.reader(io.StringIO(text)))
            if rows and rows[0] != self.columns:
                raise ModelError(
                    f"{self.path} has the columns {rows[0]}, not {self.columns}; "
                    "mgc leaves it as it is: choose another --out"
                )
            index = {c: self.columns.index(c) for c in [self.key, *self.identity]}
            for n, row in enumerate(rows[1:], start=2):
                if len(row) != len(self.columns):
                    raise self._not_a_record(n)
                self.done[row[index[self.key]]] = tuple(row[index[f]] for f in self.identity)
            return end
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                self.done[record[self.key]] = tuple(_cell(record.get(f)) for f in self.identity)
            except (ValueError, KeyError, TypeError, AttributeError):
                raise self._not_a_record(n) from None
        return end

    def _not_a_record(self, line: int) -> ModelError:
        return ModelError(
            f"{self.path} line {line} is not an mgc result; mgc leaves the file as it is: choose another --out"
        )

    def _check_made_by(self, marker: dict) -> None:
        saved = self._saved or {}
        if saved.get("layout") != marker["layout"] or saved.get("columns") != marker["columns"]:
            raise ModelError(
                f"{self.path} holds {saved.get('layout')} results with the columns {saved.get('columns')}, "
                f"not {marker['columns']}: choose another --out"
            )
        old, new = saved.get("made_by") or {}, marker["made_by"]
        changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if changed:
            what = "; ".join(f"{k} {_short(old.get(k))} in the file, {_short(new.get(k))} now" for k in changed)
            about = "".join(f"; the file's {k}: {v}" for k, v in (saved.get("about") or {}).items())
            raise ModelError(
                f"{self.path} holds results made otherwise ({what}{about}); mgc adds to a file only results made "
                "the same way: choose another --out"
            )


def _claimable(path: Path) -> Path:
    """``path`` in its resolved folder (created when missing), refused when it is a link or not a file."""
    if path.is_symlink():
        raise _link_refusal(path)
    if path.is_dir():
        raise ModelError(f"{path} is a folder; --out takes a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = path.parent.resolve(strict=True)
    except OSError as exc:
        raise ModelError(f"cannot make the folder of {path}: {exc.strerror or exc}") from None
    return folder / path.name


def _regular_size(path: Path) -> int:
    """The size of ``path`` (0 when absent); refused unless a regular file that is not a link."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return 0
    if stat.S_ISLNK(info.st_mode):
        raise _link_refusal(path)
    if not stat.S_ISREG(info.st_mode):
        raise ModelError(f"{path} is not a regular file; mgc leaves it as it is: choose another --out")
    return info.st_size


def _link_refusal(path: Path) -> ModelError:
    return ModelError(
        f"{path} is a symbolic link; mgc writes only files it created and leaves links and their targets "
        "as they are: give the real file's name or another --out"
    )


def _check_lock_file(lock: Path, path: Path) -> None:
    """Refuse a ``FILE.lock`` that holds anything but a pid: the lock's holder overwrites it."""
    try:
        with open(os.open(lock, os.O_RDONLY | _OPEN_FLAGS), "rb") as handle:
            regular = stat.S_ISREG(os.fstat(handle.fileno()).st_mode)
            head = handle.read(64) if regular else b""
    except OSError:
        return  # absent, or a link FolderLock refuses with its own message
    if regular and not _PID.fullmatch(head):
        raise ModelError(
            f"{lock} exists and is not an mgc lock file; mgc leaves it (and {path.name}) as it is: choose another --out"
        )


def _short(value: Any) -> str:
    """A marker value for a message: long digests cut to 12 characters."""
    if isinstance(value, str) and len(value) > 16 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return json.dumps(value)


def _cell(value: Any) -> str:
    """A value as a CSV cell (and as the identity of a JSON-lines field)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
