"""An exclusive, crash-safe lock on a store: one extraction at a time.

``flock`` locks belong to the open file description, so the kernel releases
them when the holder dies, even by SIGKILL: a stale lock file never blocks
the next run.
"""

from __future__ import annotations

import fcntl
import os

from .errors import StoreLockedError
from .schema import LOCK_NAME

__all__ = ["StoreLock"]


class StoreLock:
    """Context manager holding ``STORE/.lock``; raises StoreLockedError if taken."""

    def __init__(self, store: str) -> None:
        self.path = os.path.join(store, LOCK_NAME)
        self._fd: int | None = None

    def __enter__(self) -> StoreLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreLockedError(
                f"another extraction (pid {holder}) is writing into {os.path.dirname(self.path)}; "
                "wait for it to finish, or stop it and run this command again (it resumes)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
