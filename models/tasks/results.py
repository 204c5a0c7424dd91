"""The resumable per-track output of a batch run (``mgc predict --out``).

One line per track (JSON lines, or CSV when the name ends in ``.csv``),
appended and fsynced batch by batch; a run killed at any moment leaves whole
lines (a torn last line is ignored and that track is redone), and the next run
skips the tracks already written.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from mgc.models.errors import ModelError

__all__ = ["ResultsFile"]


class ResultsFile:
    """The resumable per-track output of a batch run (JSON lines, or CSV for a ``.csv`` name).

    Parameters
    ----------
    path : str or Path
        The file; created with its folder, appended to when it exists.
    columns : sequence of str
        CSV header (JSON lines write each record's keys as given).
    key : str
        The field that identifies a track (``track_id``); :attr:`done` holds the
        keys already in the file.
    """

    def __init__(self, path, columns, key: str = "track_id") -> None:
        self.path, self.columns, self.key = Path(path), list(columns), key
        self.csv = self.path.suffix.lower() == ".csv"
        self.done: set = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        valid = self._read_existing()
        # Drop a torn last line (a kill mid-write) before appending after it.
        with open(self.path, "ab") as handle:
            handle.truncate(valid)
        self._handle = open(self.path, "a", encoding="utf-8", newline="", errors="surrogateescape")
        if self.csv and valid == 0:
            csv.writer(self._handle).writerow(self.columns)
        self._buffer: list[str] = []

    def _read_existing(self) -> int:
        """Collect the keys of whole lines; return the byte length of the whole lines."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1  # whole lines only
        text = data[:end].decode("utf-8", "surrogateescape")
        if self.csv:
            rows = list(csv.reader(io.StringIO(text)))
            if rows and rows[0] != self.columns:
                raise ModelError(f"{self.path} has the columns {rows[0]}, not {self.columns}; choose another --out")
            index = self.columns.index(self.key)
            self.done = {row[index] for row in rows[1:] if len(row) == len(self.columns)}
        else:
            for line in text.splitlines():
                try:
                    self.done.add(json.loads(line)[self.key])
                except (ValueError, KeyError, TypeError):
                    continue
        return end

    def write(self, record: dict) -> None:
        """Queue one track's record (written by :meth:`flush`)."""
        if self.csv:
            out = io.StringIO()
            csv.writer(out).writerow([_cell(record.get(c)) for c in self.columns])
            self._buffer.append(out.getvalue())
        else:
            self._buffer.append(json.dumps(record, ensure_ascii=True) + "\n")
        self.done.add(record[self.key])

    def flush(self) -> None:
        """Append the queued lines and fsync: after this, a kill loses none of them."""
        if self._buffer:
            self._handle.write("".join(self._buffer))
            self._buffer.clear()
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self.flush()
        self._handle.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
