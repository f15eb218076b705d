"""An flock held by one process: the SQLite store's single writer (a daemon or a one-shot run)."""
from __future__ import annotations

import fcntl
import os
from typing import Optional

from facewatch.store.errors import DatabaseInUse


class FileLock:
    def __init__(self, path: str):
        self.path = path
        self._fd: Optional[int] = None

    def acquire(self, what: str) -> None:
        """Hold the lock, or raise DatabaseInUse naming `what` and the pid that holds it."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DatabaseInUse(f"{what} is in use by facewatch (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def is_held(path: str) -> Optional[bool]:
    """Whether some process holds the lock at `path` now; None when that cannot be told (no access)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
