"""sqlite3's errors -> the store's own, inside the SQLite backend (procrastinate's wrap_exceptions)."""
from __future__ import annotations

import sqlite3

from facewatch.store.errors import StoreBusy, StoreError, StoreUnavailable, StoreUnusable, said

# SQLite's primary result codes (https://sqlite.org/rescode.html)
SQLITE_BUSY = 5
_WAIT = {5: "is locked by another process", 6: "is locked by another process", 7: "ran out of memory",
         9: "was interrupted", 10: "had an I/O error", 13: "is on a full disk", 15: "is locked by another process",
         17: "changed its schema meanwhile"}
_PERMANENT = {
    8: "is read-only to facewatch, which needs to write it: check its owner, permissions and mount",
    11: "is damaged ({message}): restore a backup (`facewatch backup` makes them), or move it aside "
        "to start a new index",
    26: "is not a facewatch database (not an SQLite file): point `database` at a new file",
}
_UNKNOWN_SCHEMA = ("is damaged or another program's ({message}): check it with `facewatch check`, "
                   "or point `database` at a new file")
# the same by words, for Pythons before 3.11 (no sqlite_errorcode)
_BY_WORDS = [("locked", 5), ("busy", 5), ("disk is full", 13), ("i/o error", 10), ("out of memory", 7),
             ("readonly", 8), ("read-only", 8), ("malformed", 11), ("not a database", 26),
             ("unable to open", 14), ("interrupted", 9)]


def code_of(exc: sqlite3.Error) -> int:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF
    text = str(exc).lower()
    return next((c for words, c in _BY_WORDS if words in text), 1)


def translate(exc: sqlite3.Error, database: str) -> StoreError:
    """The store's exception for a sqlite3 error on `database`."""
    code, message = code_of(exc), said(str(exc))
    if code in _WAIT:
        return StoreBusy(f"the database {database} {_WAIT[code]} ({message})")
    if code == 14:  # cannot open: its folder went away (an unmounted disk) or no file handles are left
        return StoreUnavailable(f"the database {database} cannot be opened now ({message})")
    return StoreUnusable(f"the database {database} " + _PERMANENT.get(code, _UNKNOWN_SCHEMA).format(message=message))


def damaged(database: str, message: str) -> StoreUnusable:
    """What SQLite's "malformed" says, for damage a check found before any statement met it."""
    return StoreUnusable(f"the database {database} " + _PERMANENT[11].format(message=said(message)))


def mapped(store, exc: Exception):
    """The store's error for a sqlite3 error; None for what is a bug of ours (ProgrammingError)."""
    if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.ProgrammingError):
        return translate(exc, store.database)
    return None
