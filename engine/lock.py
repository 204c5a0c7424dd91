"""Crash-safe folder locks: one writer at a time, or any number of readers.

``flock`` locks belong to the open file description, so the kernel releases
them when the holder dies, even by SIGKILL: a stale lock file never blocks
the next run. Two locks taken in one process through two :class:`FolderLock`
objects conflict like locks of two processes.

The lock file is opened without following symbolic links (``O_NOFOLLOW``) and
must be a regular file with a single link: an exclusive holder truncates it to
write its pid, and a ``.lock`` planted as a link to another file would
otherwise make mgc destroy that file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

from .errors import StoreError, StoreLockedError
from .schema import LOCK_NAME

__all__ = ["FolderLock", "StoreLock"]

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a FIFO named .lock never hangs the open


class FolderLock:
    """Context manager holding ``FOLDER/.lock``, exclusively (one writer) or shared (readers).

    Parameters
    ----------
    folder : str or os.PathLike
        The folder to lock. It must exist for an exclusive lock.
    shared : bool
        Take a shared lock: any number of shared holders, no exclusive one.
        A shared holder never creates nor writes the lock file, so readers
        work in read-only folders; a folder without a lock file has never
        had a writer and is read unlocked.
    what : str
        The writer, as the message names it: ``"another extraction"`` gives
        "another extraction (pid N) is writing into FOLDER".
    advice : str
        What the user can do, appended to the message when the lock is taken.
    error : type of Exception
        Raised when another process holds a conflicting lock.
    invalid : type of Exception
        Raised when the lock file cannot be used: a symbolic link, not a
        regular file, or not openable.
    wait_for_readers : float
        Seconds an exclusive lock waits for shared holders to finish before
        giving up (readers hold their lock only while they read). A
        conflicting exclusive holder always fails at once.
    name : str
        The lock file's name in ``folder``.

    Raises
    ------
    error
        When a conflicting lock is held; the message names the writer's pid.
    invalid
        When the lock file is a symbolic link or not a regular file.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        shared: bool = False,
        what: str = "another process",
        advice: str = "wait for it to finish and run this command again",
        error: type[Exception] = StoreLockedError,
        invalid: type[Exception] = StoreError,
        wait_for_readers: float = 0.0,
        name: str = LOCK_NAME,
    ) -> None:
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, name)
        self.shared = shared
        self.what = what
        self.advice = advice
        self.error = error
        self.invalid = invalid
        self.wait_for_readers = wait_for_readers
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        fd = self._open()
        if fd is None:
            return self
        try:
            self._acquire(fd)
            if not self.shared:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if not self.shared:
                os.ftruncate(fd, 0)  # a later message never names a finished writer
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the last descriptor releases the lock

    # ------------------------------------------------------------------------------
    def _open(self) -> int | None:
        """The lock file's descriptor; ``None`` when a shared lock finds no lock file."""
        flags = (os.O_RDONLY if self.shared else os.O_RDWR | os.O_CREAT) | _OPEN_FLAGS
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileNotFoundError:
            if self.shared:
                return None
            raise self.invalid(f"cannot create the lock file {self.path}: {self.folder} does not exist") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):  # EMLINK: O_NOFOLLOW on FreeBSD
                raise self.invalid(self._refusal("is a symbolic link")) from None
            raise self.invalid(f"cannot open the lock file {self.path}: {exc.strerror}") from None
        info = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(info.st_mode):
            problem = "is not a regular file"
        elif info.st_nlink > 1:
            problem = f"is a hard link ({info.st_nlink} names for one file)"
        if problem:
            os.close(fd)
            raise self.invalid(self._refusal(problem))
        return fd

    def _refusal(self, problem: str) -> str:
        return (
            f"the lock file {self.path} {problem}; mgc refuses to use it, because a writer "
            "overwrites its lock file. Remove it (mgc creates a fresh one) and run this command again"
        )

    def _acquire(self, fd: int) -> None:
        deadline = time.monotonic() + self.wait_for_readers
        attempt = 0
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                attempt += 1
            if self.shared or not self._only_readers(fd):
                raise self.error(self._taken_message(fd))
            # Retried once at once: a writer that was just releasing its lock also looks like readers.
            if attempt > 1 and time.monotonic() >= deadline:
                raise self.error(f"{self.folder} is being read by another process; {self.advice}")
            time.sleep(0.05 if attempt > 1 else 0.0)

    @staticmethod
    def _only_readers(fd: int) -> bool:
        """True when the holders of the lock ``fd`` could not take are all shared ones."""
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True

    def _taken_message(self, fd: int) -> str:
        holder = ""
        for _ in range(10):  # the writer may hold the lock but not have written its pid yet
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            if holder:
                break
            time.sleep(0.01)
        holder = holder or "unknown"
        if self.shared:
            return f"{self.folder} is in use: {self.what} (pid {holder}) is writing into it; {self.advice}"
        return f"{self.what} (pid {holder}) is writing into {self.folder}; {self.advice}"


class StoreLock(FolderLock):
    """Context manager holding ``STORE/.lock`` exclusively; raises StoreLockedError if taken."""

    def __init__(self, store: str | os.PathLike) -> None:
        super().__init__(
            store,
            what="another extraction",
            advice="wait for it to finish, or stop it and run this command again (it resumes)",
            error=StoreLockedError,
            invalid=StoreError,
        )
