"""Atomic file writes: the one way mgc writes a file.

Every file is written under a temporary name in the same folder, flushed and
fsynced, renamed over the final name, and the folder is fsynced so the rename
itself survives a power loss. A reader therefore sees the old file or the new
one, never half of one; a killed writer leaves at most a ``*.tmp`` file that
the next run of the same writer removes or overwrites.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["TEMP_SUFFIX", "fsync_folder", "temporary_path", "write_atomic", "write_bytes", "write_json", "write_text"]

TEMP_SUFFIX = ".tmp"


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make the renames into ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_path(path: str | os.PathLike, tag: str = "") -> str:
    """The temporary name ``path`` is written under (``tag`` makes it unique per writer)."""
    return f"{os.fspath(path)}{'.' + tag if tag else ''}{TEMP_SUFFIX}"


def write_atomic(path: str | os.PathLike, write: Callable[[str], Any], *, tag: str = "") -> Path:
    """Call ``write(temporary_path)`` to produce the file, then move it into place atomically.

    ``write`` receives a path and must create and close the file; it may use any
    library (h5py, matplotlib). The file is fsynced before the rename.
    """
    path = os.fspath(path)
    temp = temporary_path(path, tag)
    if os.path.lexists(temp):  # a killed writer's leftover, or a link planted there: never written through
        os.unlink(temp)
    try:
        write(temp)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    fsync_folder(os.path.dirname(os.path.abspath(path)))
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""

    def write(temp: str) -> None:
        with open(temp, "wb") as handle:
            handle.write(data)

    return write_atomic(path, write)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 1, sort_keys: bool = True) -> Path:
    """Write ``data`` as JSON (ASCII, sorted keys by default) to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys, ensure_ascii=True) + "\n")
