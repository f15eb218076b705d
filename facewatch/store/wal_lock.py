"""Sleep until another process lets go of a SQLite database's write lock, instead of polling it.

In WAL mode a writer holds an exclusive lock on byte 120 of the database's "-shm" file for as
long as its write transaction lasts (WAL_WRITE_LOCK: https://www.sqlite.org/walformat.html, 2.3.1).
Asking the kernel for a read lock on that byte, and letting go of it at once, sleeps until that
writer is done: no CPU, and awake the moment it commits. The lock is an open file description
lock (F_OFD_SETLKW): it conflicts with SQLite's own (POSIX) locks, even within this process, and
is let go with F_UNLCK. The descriptor is never closed: closing any descriptor of a file drops
every POSIX lock the process holds on it, SQLite's included.
"""
from __future__ import annotations

import fcntl
import os
import struct
import threading
from typing import Optional

WAL_WRITE_LOCK = 120
_FILES: dict[tuple[int, int], int] = {}  # (st_dev, st_ino) of a "-shm" file: its descriptor, kept open
_FILES_LOCK = threading.Lock()


def _flock(kind: int) -> bytes:
    """struct flock for byte WAL_WRITE_LOCK (Linux: l_type, l_whence, l_start, l_len, l_pid=0)."""
    return struct.pack("hhxxxxqqixxxx", kind, os.SEEK_SET, WAL_WRITE_LOCK, 1, 0)


def _descriptor(path: str) -> Optional[int]:
    """A read-only descriptor of `path`, one per file and process, open until the process ends."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    with _FILES_LOCK:
        fd = _FILES.get((st.st_dev, st.st_ino))
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            st = os.fstat(fd)  # the file opened, should `path` have been replaced meanwhile
            _FILES[st.st_dev, st.st_ino] = fd
        return fd


class WriterWatch:
    """One thread at a time sleeps on the write lock; waiters wait for it with a timeout, so a
    writer can still give up (the thread goes on sleeping until the lock is let go)."""

    def __init__(self, database: str):
        self.shm = database + "-shm"
        self._released = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._unsupported = False

    def wait(self, timeout: float) -> Optional[bool]:
        """True once the write lock has been let go, False after `timeout`; None when the lock
        cannot be waited for this way (no "-shm" file, no OFD locks): then poll."""
        if self._thread is None or self._released.is_set():  # no sleep going on: start one
            self._released.clear()
            self._unsupported = False
            self._thread = threading.Thread(target=self._sleep_on_lock, name="sqlite-write-lock-wait", daemon=True)
            self._thread.start()
        if not self._released.wait(timeout):
            return False
        return None if self._unsupported else True

    def _sleep_on_lock(self) -> None:
        fd = _descriptor(self.shm)
        try:
            if fd is None:
                self._unsupported = True
                return
            fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, _flock(fcntl.F_RDLCK))
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_UNLCK))  # before anyone is told
        except (OSError, AttributeError):  # an old kernel, a filesystem without such locks
            self._unsupported = True
        finally:
            self._released.set()
