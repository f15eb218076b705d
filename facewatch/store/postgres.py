"""The PostgreSQL store: one index shared by several hosts.

PostgreSQL is the distributed engine, as in procrastinate and pgqueuer: claims are row locks
(`FOR UPDATE SKIP LOCKED`) and leases are rows, so no two claimants ever lease one file; wake-ups
are LISTEN/NOTIFY; the writers' lock and each watched root's reconcile lock are advisory locks,
held by a connection of their own, so a host that dies lets go of them at once.

The queries the SQLite backend uses are plain SQL both engines run; this backend reuses them
through a connection that speaks SQLite's dialect (`?` parameters, `INSERT OR REPLACE`, `lastrowid`)
and writes its own SQL where PostgreSQL must do something else: claims, locks, notifications,
the schema and its checks.
"""
from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
import zlib
from contextlib import contextmanager
from typing import Optional

from facewatch.store.contract import (DETECTED, HEARTBEAT_STALE_S, Claim, Stats, embedding_columns, iso, masked,
                                      plan_save, same_person)
from facewatch.store.errors import (DatabaseInUse, StoreBusy, StoreError, StoreUnavailable, StoreUnusable, said,
                                    refuse_newer, translating)
from facewatch.store.postgres_schema import MIGRATIONS
from facewatch.store.sqlite import _CONSISTENCY, SQLiteStore, _b, _s

WRITERS_LOCK = 0x66616365  # "face": held shared by daemons, exclusively by one-shot runs
MIGRATE_LOCK = 0x66616366
CHANNEL = "facewatch_queue"
CONNECT_TIMEOUT_S = 10
LISTEN_LOOK_S = 10.0  # the listener looks whether the store closes this often (a notification wakes it at once)
POOL_SIZE = 8  # the daemon's threads hold one each (worker, watcher, jobs, loader) and readers borrow


def _last_line(exc: Exception) -> str:
    """libpq's message on one line."""
    return " ".join(line.strip() for line in str(exc).strip().splitlines()) or "no answer"


# SQLite's dialect, as the shared queries speak it ------------------------------------------------
_UPSERTS = {  # INSERT OR REPLACE INTO <table>: its key, and what replacing a row resets
    "pending": ("file_id", {"not_before": "0", "attempts": "0", "claimed_by": "NULL", "claimed_until": "NULL"}),
    "folder_marks": ("dir", {}),
    "daemons": ("name", {}),
}
_IDENTITY = {"files": "file_id", "checkpoints": "checkpoint_id", "persons": "person_id"}
_REPLACE = re.compile(r"INSERT OR REPLACE INTO (\w+) \(([^)]*)\)(.*)", re.S)
_INSERT = re.compile(r"\s*INSERT INTO (\w+) ", re.S)


@functools.lru_cache(maxsize=512)
def dialect(sql: str) -> str:
    """A query of the SQLite backend, as PostgreSQL takes it."""
    sql = sql.replace("%", "%%").replace("?", "%s").replace("INDEXED BY faces_person ", "")
    replace = _REPLACE.match(sql.strip())
    if replace:
        table, columns, rest = replace.groups()
        key, resets = _UPSERTS[table]
        names = [c.strip() for c in columns.split(",")]
        sets = [f"{c}=excluded.{c}" for c in names if c != key] + [f"{c}={v}" for c, v in resets.items()]
        sql = f"INSERT INTO {table} ({columns}){rest} ON CONFLICT ({key}) DO UPDATE SET {', '.join(sets)}"
    insert = _INSERT.match(sql)
    if insert and insert.group(1) in _IDENTITY and "RETURNING" not in sql:
        sql += f" RETURNING {_IDENTITY[insert.group(1)]}"
    return sql


class _Cursor:
    def __init__(self, cursor):
        self._cursor = cursor

    def fetchone(self):
        return self._cursor.fetchone()

    def fetchall(self):
        return self._cursor.fetchall()

    def __iter__(self):
        return iter(self._cursor)

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self):
        row = self._cursor.fetchone()
        return row[0] if row else None


class _Connection:
    """A psycopg connection (autocommit: transactions are the caller's BEGIN and COMMIT) that
    takes the shared queries as written; closing it gives it back to its pool, if it has one."""

    def __init__(self, conn, pool=None):
        self.raw = conn
        self.pool = pool

    def execute(self, sql: str, args=()) -> _Cursor:
        return _Cursor(self.raw.execute(dialect(sql), tuple(args) if args else None))

    def executemany(self, sql: str, rows) -> None:
        rows = list(rows)
        if rows:
            with self.raw.cursor() as cur:
                cur.executemany(dialect(sql), rows)

    def close(self) -> None:
        if self.pool is None:
            self.raw.close()
            return
        try:
            if not self.raw.closed and self.raw.info.transaction_status != 0:  # not idle: end what was left
                self.raw.rollback()
        except Exception:
            pass
        try:
            self.pool.putconn(self.raw)
        except Exception:  # the pool is closed already
            self.raw.close()


# errors -----------------------------------------------------------------------------------------
def translate(exc: Exception, display: str) -> StoreError:
    import psycopg
    from psycopg import errors
    message = said(str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (errors.LockNotAvailable, errors.DeadlockDetected, errors.SerializationFailure,
                        errors.QueryCanceled, errors.AdminShutdown, errors.CannotConnectNow)):
        return StoreBusy(f"the database {display} is busy ({message})")
    if isinstance(exc, (errors.DiskFull, errors.OutOfMemory, errors.TooManyConnections)):
        return StoreBusy(f"the database {display} cannot take more now ({message})")
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return StoreUnavailable(f"the database {display} cannot be reached now ({message})")
    if isinstance(exc, (errors.InsufficientPrivilege,)):
        return StoreUnusable(f"the database {display} refuses facewatch ({message}): grant its user the "
                             "rights to create tables and write them")
    return StoreUnusable(f"the database {display} is damaged or another program's ({message}): check it with "
                         "`facewatch check`")


def _mapped(store, exc: Exception) -> Optional[StoreError]:
    """The store's error for a psycopg error; None for what is a bug of ours (bad SQL)."""
    import psycopg
    if not isinstance(exc, psycopg.Error):
        return None
    missing = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn)  # the database's fault, not ours
    if isinstance(exc, psycopg.ProgrammingError) and not isinstance(exc, missing):
        return None
    store._forget_connection()
    return translate(exc, store.display)


@translating(_mapped)
class PostgresStore(SQLiteStore):
    _LOCK_WAITING_FACES = " FOR UPDATE OF x SKIP LOCKED"  # claim_faces: hosts never lease one face twice

    def __init__(self, database: str, readonly: bool = False):
        import psycopg  # noqa: F401  (a clear ImportError here if it is not installed)
        self.database = database
        self.display = masked(database)
        self.readonly = readonly
        self._local = threading.local()
        self._all: list = []
        self._lock = threading.Lock()
        self._holder = None  # the connection holding the writers' lock
        self._listener: Optional[threading.Thread] = None
        self._closing = threading.Event()
        self._pool = None
        self._connect_probe()
        applied = self._applied()
        self._check_schema(applied)
        if not readonly:
            self.migrate()
        elif applied is None or any(name not in applied for name, _ in MIGRATIONS):
            raise StoreUnusable(f"the database {self.display} has no facewatch index yet (or an older one): "
                                "run `facewatch scan` or start the daemon")
        self._check_columns()

    @contextmanager
    def _turn(self, wait_s: float):
        """Row locks: a host's writers run side by side (SQLite's take turns)."""
        yield

    @staticmethod
    def _begin_write(conn, wait_s: float) -> None:
        conn.execute("BEGIN")  # a lock another transaction holds is waited for by the server

    # connections ------------------------------------------------------------------------------
    def _raw(self):
        """A connection of its own, outside the pool: for what holds session state (the writers'
        lock, a root's lock, LISTEN)."""
        import psycopg
        try:
            conn = psycopg.connect(self.database, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                   application_name="facewatch")
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"the database {self.display} cannot be reached ({_last_line(exc)})") from None
        self._configure(conn)
        return conn

    def _configure(self, conn) -> None:
        if self.readonly:
            conn.execute("SET default_transaction_read_only = on")

    def _connect_probe(self) -> None:
        """The pool (psycopg_pool): each thread holds one of its connections; readers borrow one.
        A read-only store (status, export: a command that reads and ends) connects directly."""
        if self.readonly:
            self._local.conn = _Connection(self._raw())
            self._all.append(self._local.conn)
            return
        from psycopg_pool import ConnectionPool, PoolTimeout
        self._raw().close()  # a server that refuses says so at once, and why (the pool would only wait)
        self._pool = ConnectionPool(
            self.database, min_size=1, max_size=POOL_SIZE, open=False, name="facewatch",
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S, "application_name": "facewatch"},
            configure=self._configure, check=ConnectionPool.check_connection, reconnect_timeout=CONNECT_TIMEOUT_S)
        self._pool.open()
        try:
            self._pool.wait(timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout:
            self._pool.close()
            raise StoreUnavailable(f"the database {self.display} cannot be reached (no connection in "
                                   f"{CONNECT_TIMEOUT_S} s)") from None

    @property
    def conn(self) -> _Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.raw.closed:
            conn = _Connection(self._borrow(), self._pool)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _borrow(self):
        if self._pool is None:
            return self._raw()
        from psycopg_pool import PoolTimeout
        try:
            return self._pool.getconn(timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout:
            raise StoreUnavailable(f"the database {self.display} cannot be reached now (no connection from the "
                                   f"pool in {CONNECT_TIMEOUT_S} s)") from None

    def _forget_connection(self) -> None:
        """After an error, this thread's connection goes back to the pool, which checks it (and
        drops it if it is broken); the next call borrows another."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)
            conn.close()

    def _fresh_reader(self) -> _Connection:
        return _Connection(self._borrow(), self._pool)

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            held, self._all = self._all, []
        for conn in held:
            conn.close()
        self._local = threading.local()
        if self._pool is not None:
            self._pool.close()
        if self._holder is not None:
            try:
                self._holder.close()
            except Exception:
                pass
            self._holder = None

    # schema -----------------------------------------------------------------------------------
    def _applied(self) -> Optional[set]:
        """The schema changes recorded, or None: no schema_migrations table (no facewatch index)."""
        if not self.conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0]:
            return None
        return {r[0] for r in self.conn.execute("SELECT name FROM schema_migrations")}

    def _check_schema(self, applied: Optional[set]) -> None:
        """Refuse another program's tables and a newer facewatch's schema, touching nothing: a schema
        without facewatch's migrations may hold tables of other names, none of facewatch's (the
        checkpoint specification's two included: its DDL is SQLite's, and is upgraded there)."""
        from facewatch.store.sqlite_schema import EXPECTED
        if applied is not None:
            refuse_newer(self.display, applied, MIGRATIONS)
            return
        clashing = [r[0] for r in self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_name = ANY(?) ORDER BY table_name", (sorted(EXPECTED),))]
        if clashing:
            raise StoreUnusable(f"{self.display} is another program's database (it has tables facewatch did "
                                f"not make: {', '.join(clashing[:5])}): point `database` at another database "
                                "or schema")

    def migrate(self) -> list[str]:
        applied = []
        with self._write() as c:
            c.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATE_LOCK,))  # hosts starting together
            c.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
            done = {r[0] for r in c.execute("SELECT name FROM schema_migrations")}
            refuse_newer(self.display, done, MIGRATIONS)  # again, under the lock: another host may have upgraded
            for name, steps in MIGRATIONS:
                if name in done:
                    continue
                for step in steps:
                    c.execute(step)
                c.execute("INSERT INTO schema_migrations VALUES (?, to_char(now() AT TIME ZONE 'UTC', "
                          "'YYYY-MM-DD\"T\"HH24:MI:SS+00:00'))", (name,))
                applied.append(name)
        return applied

    def _check_columns(self) -> None:
        from facewatch.store.sqlite_schema import EXPECTED
        rows = self.conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                                 "WHERE table_schema = current_schema()").fetchall()
        have: dict = {}
        for table, column in rows:
            have.setdefault(table, set()).add(column)
        for table, columns in {**EXPECTED, "daemons": EXPECTED["daemons"] | {"backend_pid"}}.items():
            if not columns <= have.get(table, set()):
                lacking = ", ".join(sorted(columns - have.get(table, set()))) or "the whole table"
                raise StoreUnusable(f"the database {self.display} is damaged or another program's: table {table} "
                                    f"lacks {lacking}")

    def migrations(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM schema_migrations ORDER BY name")]

    # writers ----------------------------------------------------------------------------------
    def lock(self, exclusive: bool) -> None:
        """One-shot runs hold the writers' lock exclusively, daemons share it (several hosts)."""
        holder = self._raw()
        function = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
        if not holder.execute(f"SELECT {function}(%s)", (WRITERS_LOCK,)).fetchone()[0]:
            holder.close()
            who = "daemons are running on it" if exclusive else "a one-shot scan holds it"
            raise DatabaseInUse(f"the database {self.display} is in use: {who}")
        self._holder = holder
        # claims of hosts that stopped heartbeating go back now; a one-shot run is alone: all of them
        self.release_stale(float("inf") if exclusive else time.time())

    def unlock(self) -> None:
        if self._holder is not None:
            self._holder.close()
            self._holder = None

    def lock_held(self) -> Optional[bool]:
        probe = self._raw()
        try:
            free = probe.execute("SELECT pg_try_advisory_lock(%s)", (WRITERS_LOCK,)).fetchone()[0]
            return not free
        finally:
            probe.close()  # and with it the lock, if we took it

    @contextmanager
    def root_lock(self, root: str):
        """An advisory lock per watched root: while one host reconciles it, others do not."""
        key = zlib.crc32(root.encode("utf-8", "surrogateescape")) - 2 ** 31  # the two-key form takes int4s
        holder = self._raw()
        try:
            yield bool(holder.execute("SELECT pg_try_advisory_lock(%s::int4, %s::int4)",
                                      (WRITERS_LOCK, key)).fetchone()[0])
        finally:
            holder.close()

    def on_enqueued(self, callback) -> None:
        """LISTEN: another host queued work, so an idle worker wakes at once."""
        def listen():
            while not self._closing.is_set():
                conn = None
                try:
                    conn = self._raw()
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._closing.is_set():
                        for _ in conn.notifies(timeout=LISTEN_LOOK_S):
                            callback()
                except Exception:  # the server went away: listen again once it is back
                    self._closing.wait(2.0)
                finally:
                    if conn is not None:
                        conn.close()
        self._listener = threading.Thread(target=listen, name="pg-listen", daemon=True)
        self._listener.start()

    def enqueue(self, stats, now: float, force: bool = False) -> int:
        """As SQLite's, in set statements: new files in one INSERT, the rest one by one; safe with
        other hosts queueing the same files at once (rows locked in path order, so two hosts'
        batches never deadlock; a row another host just made is taken as found). Idle hosts are woken."""
        stats = sorted(stats, key=lambda st: st.path)
        if not stats:
            return 0
        with self._write() as c:
            paths = [_b(st.path) for st in stats]
            rows = c.raw.execute(
                "INSERT INTO files (path, dir, size, mtime_ns, ctime_ns, status, updated_at) "
                "SELECT p, d, s, m, t, 'pending', %s FROM unnest(%s::bytea[], %s::bytea[], %s::int8[], "
                "%s::int8[], %s::int8[]) AS n(p, d, s, m, t) ORDER BY p ON CONFLICT (path) DO NOTHING "
                "RETURNING file_id, path",
                (iso(now), paths, [_b(os.path.dirname(st.path)) for st in stats], [st.size for st in stats],
                 [st.mtime_ns for st in stats], [st.ctime_ns for st in stats])).fetchall()
            c.raw.execute("INSERT INTO pending (file_id, enqueued_at) SELECT unnest(%s::int8[]), %s",
                          ([r[0] for r in rows], now))
            made = {bytes(r[1]) for r in rows}
            queued = len(rows)
            for st, path in zip(stats, paths):
                if path not in made:
                    c.execute("SELECT 1 FROM files WHERE path = ? FOR UPDATE", (path,))
                    queued += SQLiteStore._enqueue_one(self, c, st, now, force)
            if queued:
                c.execute(f"NOTIFY {CHANNEL}")
        return queued

    def save(self, claimant: str, results: list, now: float) -> int:
        """As SQLite's; the common case, new faces for files whose claim is ours, in set statements."""
        with self._write() as c:
            owned = {r[0] for r in c.raw.execute(
                "SELECT file_id FROM pending WHERE file_id = ANY(%s) AND claimed_by = %s FOR UPDATE",
                ([r.file_id for r in results], claimant))}
            mine = [r for r in results if r.file_id in owned]
            detected = [r for r in mine if plan_save(r) == DETECTED]
            for r in mine:
                if plan_save(r) != DETECTED:
                    source = self._status(c, r.source_id) if r.source_id is not None else None
                    self._apply(c, plan_save(r, source), r, now)
            if detected:
                self._detected(c.raw, detected, now)
        return len(mine)

    @staticmethod
    def _detected(raw, results: list, now: float) -> None:
        """DETECTED for many files at once: what SQLiteStore._apply and _done do for one."""
        ids = [r.file_id for r in results]
        before: dict = {}
        for file_id, *rest in raw.execute("SELECT file_id, x, y, w, h, person_id FROM faces "
                                          "WHERE file_id = ANY(%s) AND person_id IS NOT NULL", (ids,)):
            before.setdefault(file_id, []).append(tuple(rest))
        raw.execute("DELETE FROM pending WHERE file_id = ANY(%s)", (ids,))
        raw.execute("DELETE FROM faces WHERE file_id = ANY(%s)", (ids,))
        faces = [(r.file_id, i, f.score, *f.bbox, json.dumps([list(k) for k in f.keypoints]),
                  same_person(f.bbox, before.get(r.file_id, [])), *embedding_columns(r, i), f.xmp_name)
                 for r in results for i, f in enumerate(r.faces)]
        if faces:
            columns = list(zip(*faces))
            raw.execute("INSERT INTO faces (file_id, idx, score, x, y, w, h, keypoints, person_id, embedding, "
                        "embed_state, embed_error, xmp_name) "
                        "SELECT * FROM unnest(%s::int8[], %s::int4[], %s::float8[], %s::int4[], %s::int4[], "
                        "%s::int4[], %s::int4[], %s::text[], %s::int8[], %s::bytea[], %s::text[], %s::text[], "
                        "%s::text[])",
                        [list(col) for col in columns])
        raw.execute("UPDATE files f SET status = 'done', error = NULL, size = n.s, mtime_ns = n.m, ctime_ns = n.t, "
                    "content_hash = n.h, width = n.w, height = n.ht, face_count = n.c, processed_at = %s, "
                    "updated_at = %s FROM unnest(%s::int8[], %s::int8[], %s::int8[], %s::int8[], %s::text[], "
                    "%s::int4[], %s::int4[], %s::int4[]) AS n(id, s, m, t, h, w, ht, c) WHERE f.file_id = n.id",
                    (iso(now), iso(now), ids, [r.size for r in results], [r.mtime_ns for r in results],
                     [r.ctime_ns for r in results], [r.content_hash for r in results], [r.width for r in results],
                     [r.height for r in results], [len(r.faces) for r in results]))
        raw.execute("INSERT INTO processed_files (file_id, worker_id, status, processed_timestamp, runs) "
                    "SELECT id, w, k, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 1 "
                    "FROM unnest(%s::int8[], %s::int8[], %s::text[]) AS n(id, w, k) ON CONFLICT (file_id) DO UPDATE "
                    "SET worker_id = excluded.worker_id, status = excluded.status, "
                    "processed_timestamp = excluded.processed_timestamp, runs = processed_files.runs + 1",
                    (ids, [r.worker_id for r in results], [r.kind for r in results]))

    # queue: row locks, never two claimants on one file -----------------------------------------
    def claim(self, claimant: str, limit: int, now: float, lease_s: float) -> list[Claim]:
        with self._write() as c:
            rows = c.execute(
                "WITH ready AS (SELECT file_id FROM pending WHERE claimed_by IS NULL AND not_before <= ? "
                "ORDER BY enqueued_at, file_id LIMIT ? FOR UPDATE SKIP LOCKED) "
                "UPDATE pending p SET claimed_by = ?, claimed_until = ? FROM ready "
                "WHERE p.file_id = ready.file_id RETURNING p.file_id, p.attempts, p.enqueued_at",
                (now, limit, claimant, now + lease_s)).fetchall()
            ids = [r[0] for r in rows]
            if not ids:
                return []
            c.execute("UPDATE files SET status = 'processing' WHERE file_id = ANY(?)", (ids,))
            files = {r[0]: (r[1], r[2]) for r in c.execute(
                "SELECT file_id, path, content_hash FROM files WHERE file_id = ANY(?)", (ids,))}
        rows.sort(key=lambda r: (r[2], r[0]))
        return [Claim(r[0], _s(files[r[0]][0]), files[r[0]][1], r[1]) for r in rows]

    def release_stale(self, now: float) -> int:
        """Expired leases, and the claims of hosts that stopped heartbeating, go back to the queue."""
        released = super().release_stale(now)
        if now != float("inf"):
            released += self.release_dead(now)
        return released

    def daemon_started(self, daemon) -> None:
        super().daemon_started(daemon)
        if self._holder is not None:  # while this connection holds the writers' lock, the daemon lives
            with self._write() as c:
                c.execute("UPDATE daemons SET backend_pid = ? WHERE name = ?",
                          (self._holder.info.backend_pid, daemon.name))

    def daemons(self) -> list:
        """As registered; one whose lock connection is gone (killed) has no heartbeat, whatever it wrote last."""
        from dataclasses import replace
        rows = super().daemons()
        holders = {r[0]: r[1] for r in self.conn.execute(
            "SELECT name, backend_pid IS NULL OR backend_pid IN (SELECT pid FROM pg_locks WHERE "
            "locktype = 'advisory' AND classid = 0 AND objid = ? AND granted) FROM daemons", (WRITERS_LOCK,))}
        return [d if holders.get(d.name, True) else replace(d, heartbeat_at=None) for d in rows]

    def release_dead(self, now: float) -> int:
        """Claims of daemons that died go back to the queue: a daemon is dead once the connection
        holding its share of the writers' lock is gone (a killed process's at once, a lost host's
        when the server notices) or once it stops heartbeating."""
        dead = ("(SELECT name FROM daemons WHERE stopped_at IS NOT NULL OR heartbeat_at IS NULL "
                "OR heartbeat_at <= ? OR backend_pid IS NULL OR backend_pid NOT IN (SELECT pid FROM pg_locks "
                "WHERE locktype = 'advisory' AND classid = 0 AND objid = ? AND granted))")
        args = (now - HEARTBEAT_STALE_S, WRITERS_LOCK)
        with self._write() as c:
            ids = [r[0] for r in c.execute(
                f"SELECT file_id FROM pending WHERE claimed_by IN {dead} FOR UPDATE SKIP LOCKED", args)]
            if ids:
                c.execute("UPDATE pending SET claimed_by = NULL, claimed_until = NULL WHERE file_id = ANY(?)", (ids,))
                c.execute("UPDATE files SET status = 'pending' WHERE file_id = ANY(?)", (ids,))
            c.execute(f"UPDATE faces SET embed_claimed_by = NULL, embed_claimed_until = NULL "
                      f"WHERE embed_claimed_by IN {dead}", args)
        return len(ids)

    def _after_load(self, c) -> None:
        """Rows came in with their ids: the identity sequences go on after the largest."""
        for table, column in (("files", "file_id"), ("faces", "face_id"), ("persons", "person_id"),
                              ("checkpoints", "checkpoint_id")):
            c.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                      f"(SELECT COALESCE(max({column}), 0) + 1 FROM {table}), false)")

    # upkeep -----------------------------------------------------------------------------------
    def maintain(self) -> None:
        """Nothing to do: PostgreSQL's autovacuum keeps the tables."""

    def check(self, full: bool = False) -> list[str]:
        problems = []
        try:
            self._check_columns()
        except StoreUnusable as exc:
            return [f"schema: {exc}"]
        problems += [f"index: {what}: {count}" for what, sql in _CONSISTENCY
                     for (count,) in self.conn.execute(sql) if count]
        return problems

    def backup(self, out: str) -> Stats:
        raise StoreError(f"back up the PostgreSQL index {self.display} with pg_dump (see the README)")

