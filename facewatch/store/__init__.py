"""The store: one small contract for the queue, the results, the checkpoints and the daemons.

Two backends implement it, each with its own SQL: SQLite, the embedded default
(`store/sqlite.py`), and PostgreSQL, for an index shared by several hosts (`store/postgres.py`).
Callers see only this module: the `Store` protocol, its dataclasses and the store's own
exceptions. What saving a result does is decided once, here (`plan_save`); backends only write.
Also here: the writer's file lock (`lock`) and copying an index between backends (`copy`).
The only package that imports a database driver (sqlite3, psycopg) or catches its errors; it
imports nothing of facewatch but itself.
"""
from __future__ import annotations

import os
from typing import Optional

from facewatch.store.contract import (CHECKPOINT_STATUSES, COPIED, DIMENSIONS, FACES_PER_JOB, HEARTBEAT_STALE_S,
                                      CheckpointRecord, Claim, DaemonInfo, Embedded, ExportFilter, Face, FaceJob,
                                      FileRecord, FileStat, Known, PeopleChanged, PeopleError, Person, PersonFace,
                                      Result, Source, Stats, Store, checkpoint_status, is_url, iso, masked,
                                      needs_analysis)
from facewatch.store.errors import (TRANSIENT, DatabaseInUse, StoreBusy, StoreError, StoreUnavailable,
                                    StoreUnusable)

__all__ = ["CHECKPOINT_STATUSES", "COPIED", "DIMENSIONS", "FACES_PER_JOB", "HEARTBEAT_STALE_S", "CheckpointRecord",
           "Claim", "DaemonInfo", "Embedded", "ExportFilter", "Face", "FaceJob", "FileRecord", "FileStat", "Known",
           "PeopleChanged", "PeopleError", "Person", "PersonFace", "Result", "Source", "Stats", "Store",
           "checkpoint_status", "is_url", "iso", "masked", "needs_analysis", "TRANSIENT", "DatabaseInUse", "StoreBusy",
           "StoreError", "StoreUnavailable", "StoreUnusable", "open_store", "as_store", "open_reader"]


def open_store(database: str, readonly: bool = False) -> Store:
    """The backend for a `database` setting: a postgresql:// URL, or the path of an SQLite file.

    `readonly` opens an existing database for reading only (StoreUnusable if there is none)."""
    if is_url(database):
        from facewatch.store.postgres import PostgresStore
        return PostgresStore(database, readonly=readonly)
    from facewatch.store.sqlite import SQLiteStore
    return SQLiteStore(database, readonly=readonly)


def as_store(db) -> Store:
    """A store from whatever a caller of the checkpoint API holds: a store, a database setting
    (an SQLite file's path, a postgresql:// URL), or an open sqlite3 connection to an index."""
    import sqlite3
    if isinstance(db, (str, os.PathLike)):
        return open_store(os.fspath(db))
    if isinstance(db, sqlite3.Connection):
        path = next(r[2] for r in db.execute("PRAGMA database_list") if r[1] == "main")
        return open_store(path)
    return db


def open_reader(database: str) -> Optional[Store]:
    """A read-only store, or None when there is no index yet (an SQLite file not made yet)."""
    if not is_url(database) and not os.path.exists(database):
        return None
    return open_store(database, readonly=True)
