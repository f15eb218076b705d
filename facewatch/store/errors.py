"""The store's own exceptions: what callers catch instead of any backend's errors."""
from __future__ import annotations


class StoreError(Exception):
    """A database problem, already worded for users: what happened to which database."""


class StoreBusy(StoreError):
    """Locked, busy, full or an I/O error: waiting can heal it."""


class StoreUnavailable(StoreError):
    """The database server cannot be reached now: waiting can heal it."""


class StoreUnusable(StoreError):
    """No wait heals it: not a database, another program's, a newer schema, damaged, read-only,
    wrong credentials. The message says what to do."""


class DatabaseInUse(StoreError):
    """Another facewatch process holds the database (a daemon, a scan)."""


TRANSIENT = (StoreBusy, StoreUnavailable)
