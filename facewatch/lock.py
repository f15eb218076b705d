"""One writer process per database: the daemon or a scan holds an flock beside the file."""
from __future__ import annotations

import fcntl
import os
from typing import Optional


class DatabaseBusy(Exception):
    """Another facewatch process (a daemon or a scan) holds the database."""


class DatabaseLock:
    def __init__(self, database: str):
        self.path = os.path.abspath(database) + ".lock"
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DatabaseBusy(f"the database {self.path[:-5]} is in use by facewatch (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def is_held(database: str) -> Optional[bool]:
    """Whether some process holds the lock now; None when that cannot be told (no access)."""
    path = os.path.abspath(database) + ".lock"
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
