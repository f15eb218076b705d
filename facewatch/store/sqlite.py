"""The SQLite store: WAL, one write transaction at a time, claims are leases that expire."""
from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterable, Iterator, Optional

from facewatch.store.lock import FileLock, is_held
from facewatch.store.contract import (ADOPT, BACK_OFF, COPY, DETECTED, FAILED, MISSING, PROCESSED, REQUEUE,
                                      CheckpointRecord, Claim, DaemonInfo, ExportFilter, Face, FileRecord,
                                      FileStat, Known, Result, Source, Stats, checkpoint_status, embedding_columns, iso,
                                      needs_analysis, plan_save, same_person)
from facewatch.store.errors import StoreUnusable, refuse_newer
from facewatch.store.sql_people import PeopleQueries, _b, _s
from facewatch.store.errors import translating
from facewatch.store.sqlite_errors import SQLITE_BUSY, code_of, damaged, mapped
from facewatch.store.sqlite_schema import EXPECTED, MIGRATIONS, SPEC_TABLES
from facewatch.store.wal_lock import WriterWatch

BUSY_TIMEOUT_MS = 30_000
# a writer waiting for another process: SQLite's own busy wait this long (looks 1 to 100 ms apart),
# then asleep until it lets go (or, where that cannot be, a look after a pause that doubles from
# WRITE_RETRY_MIN_S to WRITE_RETRY_MAX_S); woken WRITE_WAKES_MISSED times in a row and still shut
# out (a third writer was quicker each time, or the lock is not WAL's), the pauses take over
WRITE_WAKES_MISSED = 3
WRITE_WAIT_QUICK_MS = 1000
WRITE_RETRY_MIN_S = 0.25
WRITE_RETRY_MAX_S = 4.0
HEARTBEAT_WAIT_S = 1.0  # a beat is skipped, not waited for: the daemon's pulse goes on meanwhile
DAEMON_ROWS_KEPT = 20
SQLITE_MAGIC = b"SQLite format 3\0"


def _under(folder: str) -> tuple[bytes, bytes]:
    """The BLOB range [lo, hi) holding every path strictly below `folder`."""
    base = _b(folder.rstrip("/")) + b"/"
    return base, base[:-1] + b"0"  # '0' sorts right after '/'


@translating(mapped)
class SQLiteStore(PeopleQueries):
    _held_elsewhere = False  # see held_elsewhere()

    def __init__(self, database: str, readonly: bool = False):
        self.database = os.path.abspath(database)
        self.display = self.database
        self.readonly = readonly
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writing = threading.RLock()  # one write transaction at a time in this process
        self._file_lock = FileLock(self.database + ".lock")
        self._writer_watch = WriterWatch(self.database)
        self._check_file()
        if not readonly:
            try:
                os.makedirs(os.path.dirname(self.database), exist_ok=True)
            except OSError as exc:
                raise StoreUnusable(f"the database {self.database} cannot be created: "
                                    f"{exc.strerror or exc} ({os.path.dirname(self.database)})") from None
        self._check_schema()
        if not readonly:
            self.migrate()
            return
        if self._unapplied():
            SQLiteStore(database).close()  # an older facewatch made it: bring it up to date first
        self._check_columns()

    def _check_file(self) -> None:
        """Refuse, before SQLite sees it, what is plainly not a database we can use."""
        path = self.database
        if os.path.isdir(path):
            raise StoreUnusable(f"the database {path} is a folder, not a file: set `database` to a file's path")
        if not os.path.exists(path):
            if self.readonly:
                raise StoreUnusable(f"there is no database at {path} yet: run `facewatch scan` or start the daemon")
            return
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise StoreUnusable(f"the database {path} cannot be read: {exc.strerror or exc}; "
                                "check its owner and permissions") from None
        if head and head != SQLITE_MAGIC:
            raise StoreUnusable(f"{path} is not a facewatch database (not an SQLite file): "
                                "point `database` at a new file, or move this one aside")

    def _check_schema(self) -> None:
        """Refuse another program's database and a newer facewatch's, touching nothing."""
        if not os.path.exists(self.database):
            return
        c = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, isolation_level=None)
        try:
            self._check_tables(c)
        finally:
            c.close()

    def _check_tables(self, c: sqlite3.Connection) -> None:
        c.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                          "AND name NOT LIKE 'sqlite_%'")}
        if "schema_migrations" not in tables:
            foreign = sorted(tables - SPEC_TABLES)
            if foreign:
                raise StoreUnusable(f"{self.database} is another program's database (it has tables facewatch "
                                    f"did not make: {', '.join(foreign[:5])}): point `database` at a new file")
            return
        refuse_newer(self.database, {r[0] for r in c.execute("SELECT name FROM schema_migrations")}, MIGRATIONS)

    def _check_columns(self) -> None:
        for table, columns in EXPECTED.items():
            have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            if not have or not columns <= have:
                lacking = ", ".join(sorted(columns - have)) or "the whole table"
                raise StoreUnusable(f"the database {self.database} is damaged or another program's: table "
                                    f"{table} lacks {lacking}; point `database` at a new file, or restore a backup")

    # connections ------------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            conn = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if not self.readonly:
                if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                    raise StoreUnusable(f"the database {self.database} cannot use a write-ahead log "
                                        "(is it on a network filesystem?): put it on a local disk")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _write(self, wait_s: Optional[float] = None):
        """A write transaction: this process's turn, then the database's write lock, each waited
        for up to `wait_s` (BUSY_TIMEOUT_MS by default; then StoreBusy)."""
        wait_s = BUSY_TIMEOUT_MS / 1000 if wait_s is None else wait_s
        with self._turn(wait_s):
            conn = self.conn
            self._begin_write(conn, wait_s)
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _turn(self, wait_s: float):
        """SQLite has one writer at a time, so this process's threads take turns at a lock of their
        own first: a thread waiting for another wakes the moment it is done, and while another
        process holds the database only one of them polls for it."""
        if not self._writing.acquire(timeout=wait_s):
            raise sqlite3.OperationalError("database is locked (another thread of facewatch waited for it)")
        try:
            yield
        finally:
            self._writing.release()

    def _begin_write(self, conn: sqlite3.Connection, wait_s: float) -> None:
        """BEGIN IMMEDIATE, waiting up to `wait_s` while another process writes: SQLite's own wait
        for the first WRITE_WAIT_QUICK_MS (the writers of several processes take turns fast that
        way), then asleep until that process lets go of its write lock (WriterWatch), where SQLite
        would go on retrying ten times a second for as long as the other process holds it. Where
        that sleep is not possible, or did not let this writer in, a look after a pause that
        doubles up to WRITE_RETRY_MAX_S."""
        deadline = time.monotonic() + wait_s
        pause, watching, missed = WRITE_RETRY_MIN_S, True, 0
        conn.execute(f"PRAGMA busy_timeout={int(min(WRITE_WAIT_QUICK_MS, wait_s * 1000))}")
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if code_of(exc) != SQLITE_BUSY or time.monotonic() + WRITE_RETRY_MIN_S > deadline:
                        raise
                if not self._held_elsewhere:
                    self._held_elsewhere = True
                    conn.execute("PRAGMA busy_timeout=0")  # from now on one look at a time
                elif watching:
                    missed += 1  # woken, and still shut out
                    watching = missed < WRITE_WAKES_MISSED
                released = watching and self._writer_watch.wait(deadline - time.monotonic())
                if released is None:
                    watching = False
                elif released:
                    continue
                if not watching:
                    time.sleep(max(min(pause, deadline - time.monotonic()), 0))
                    pause = min(pause * 2, WRITE_RETRY_MAX_S)
        finally:
            self._held_elsewhere = False
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def held_elsewhere(self) -> bool:
        """A writer of this process is waiting (past SQLite's quick wait) for another process to
        let go of the database."""
        return self._held_elsewhere

    @contextmanager
    def _read(self):
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    def _unapplied(self) -> list[str]:
        try:
            applied = {r[0] for r in self.conn.execute("SELECT name FROM schema_migrations")}
        except sqlite3.OperationalError:  # no such table: nothing applied yet
            applied = set()
        return [name for name, _ in MIGRATIONS if name not in applied]

    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded, each in one transaction; returns their names."""
        conn = self.conn
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        conn.execute("PRAGMA foreign_keys=OFF")  # a table rebuilt keeps its rows (SQLite's own recipe)
        applied = []
        try:
            for name, steps in MIGRATIONS:
                with self._write() as c:
                    if c.execute("SELECT 1 FROM schema_migrations WHERE name=?", (name,)).fetchone():
                        continue
                    for step in steps:
                        step(c) if callable(step) else c.execute(step)
                    c.execute("INSERT INTO schema_migrations VALUES (?, ?)",
                              (name, datetime.now(timezone.utc).isoformat(timespec="seconds")))
                    applied.append(name)
        finally:
            conn.execute("PRAGMA foreign_keys=ON")
        self._check_columns()
        return applied

    def migrations(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM schema_migrations ORDER BY name")]

    # one writer ---------------------------------------------------------------------------------
    def lock(self, exclusive: bool) -> None:
        """An flock beside the file: one daemon or one one-shot run at a time, exclusive either way.
        Holding it, every claim in the queue is a dead process's: they go back to the queue."""
        try:
            self._file_lock.acquire(f"the database {self.database}")
        except OSError as exc:
            raise StoreUnusable(f"the database {self.database} cannot be locked: {exc.strerror or exc} "
                                f"({self._file_lock.path}): facewatch needs to write beside it") from None
        self._refuse_damage()
        self.release_stale(float("inf"))  # one writer, and it is us: every claim left is a dead one's

    def _refuse_damage(self) -> None:
        """A writer starts only on a sound file: SQLite's quick check of every page (about 0.6 s a
        GB), so that damage the run would not happen to read is not written around and spread."""
        found = self.conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        if found != "ok":
            raise damaged(self.database, " ".join(found.replace("*** in database main ***", "").split()))

    def unlock(self) -> None:
        self._file_lock.release()

    def lock_held(self) -> Optional[bool]:
        return is_held(self.database + ".lock")

    @contextmanager
    def root_lock(self, root: str):
        yield True  # one writer process: nobody else reconciles

    def on_enqueued(self, callback) -> None:
        pass  # only the process holding the lock queues work, and it wakes itself

    # queue ------------------------------------------------------------------------------------
    def enqueue(self, stats: Iterable[FileStat], now: float, force: bool = False) -> int:
        """Queue new and changed files; unchanged done or failed files are left alone."""
        queued = 0
        with self._write() as c:
            for st in stats:
                queued += self._enqueue_one(c, st, now, force)
        return queued

    def _enqueue_one(self, c, st: FileStat, now: float, force: bool) -> int:
        path = _b(st.path)
        row = c.execute("SELECT file_id, size, mtime_ns, ctime_ns, status FROM files WHERE path=?",
                        (path,)).fetchone()
        if row is None:
            cur = c.execute(
                "INSERT INTO files (path, dir, size, mtime_ns, ctime_ns, status, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                (path, _b(os.path.dirname(st.path)), st.size, st.mtime_ns, st.ctime_ns, iso(now)))
            c.execute("INSERT INTO pending (file_id, enqueued_at) VALUES (?, ?)", (cur.lastrowid, now))
            return 1
        file_id, known = row[0], Known(*row[1:])
        if known.status in ("pending", "processing"):
            if (known.size, known.mtime_ns) != (st.size, st.mtime_ns) or force:
                # whatever a claimant is reading now is stale: take the claim back
                c.execute("UPDATE pending SET claimed_by=NULL, claimed_until=NULL, not_before=0 "
                          "WHERE file_id=?", (file_id,))
                c.execute("UPDATE files SET size=?, mtime_ns=?, ctime_ns=?, status='pending', updated_at=? "
                          "WHERE file_id=?", (st.size, st.mtime_ns, st.ctime_ns, iso(now), file_id))
            return 0
        if not force and not needs_analysis(known, st):
            return 0
        c.execute("UPDATE files SET size=?, mtime_ns=?, ctime_ns=?, status='pending', updated_at=? "
                  "WHERE file_id=?", (st.size, st.mtime_ns, st.ctime_ns, iso(now), file_id))
        c.execute("INSERT OR REPLACE INTO pending (file_id, enqueued_at) VALUES (?, ?)", (file_id, now))
        c.execute("UPDATE processed_files SET status='queued' WHERE file_id=?", (file_id,))
        return 1

    def claim(self, claimant: str, limit: int, now: float, lease_s: float) -> list[Claim]:
        """Lease up to `limit` ready files to `claimant`, oldest first."""
        with self._write() as c:
            rows = c.execute(
                "SELECT p.file_id, f.path, f.content_hash, p.attempts FROM pending p "
                "JOIN files f ON f.file_id = p.file_id "
                "WHERE p.claimed_by IS NULL AND p.not_before <= ? "
                "ORDER BY p.enqueued_at, p.file_id LIMIT ?", (now, limit)).fetchall()
            ids = [(r[0],) for r in rows]
            c.executemany("UPDATE pending SET claimed_by=?, claimed_until=? WHERE file_id=?",
                          [(claimant, now + lease_s, i) for (i,) in ids])
            c.executemany("UPDATE files SET status='processing' WHERE file_id=?", ids)
        return [Claim(r[0], _s(r[1]), r[2], r[3]) for r in rows]

    def save(self, claimant: str, results: list[Result], now: float) -> int:
        """Store a batch of results in one transaction; results whose claim was lost are dropped."""
        saved = 0
        with self._write() as c:
            for r in results:
                owned = c.execute("SELECT 1 FROM pending WHERE file_id=? AND claimed_by=?",
                                  (r.file_id, claimant)).fetchone()
                if owned:
                    source = self._status(c, r.source_id) if r.source_id is not None else None
                    self._apply(c, plan_save(r, source), r, now)
                    saved += 1
        return saved

    def _apply(self, c, step: str, r: Result, now: float) -> None:
        """Carry out what plan_save decided for `r`."""
        if step == BACK_OFF:
            failed_try = 1 if r.kind == "retry" else 0  # an outage is not the file's fault
            c.execute("UPDATE pending SET claimed_by=NULL, claimed_until=NULL, not_before=?, "
                      "attempts=attempts+? WHERE file_id=?", (now + r.retry_after_s, failed_try, r.file_id))
            c.execute("UPDATE files SET status='pending', error=?, updated_at=? WHERE file_id=?",
                      (r.error, iso(now), r.file_id))
            return
        if step == REQUEUE:
            c.execute("UPDATE pending SET claimed_by=NULL, claimed_until=NULL WHERE file_id=?", (r.file_id,))
            c.execute("UPDATE files SET status='pending' WHERE file_id=?", (r.file_id,))
            return
        c.execute("DELETE FROM pending WHERE file_id=?", (r.file_id,))
        if step == MISSING:
            c.execute("UPDATE files SET status='missing', updated_at=? WHERE file_id=?", (iso(now), r.file_id))
        elif step == FAILED:
            c.execute("DELETE FROM faces WHERE file_id=?", (r.file_id,))
            c.execute("UPDATE files SET status='failed', error=?, size=COALESCE(?, size), "
                      "mtime_ns=COALESCE(?, mtime_ns), ctime_ns=COALESCE(?, ctime_ns), width=?, height=?, "
                      "face_count=0, content_hash=?, processed_at=?, updated_at=? WHERE file_id=?",
                      (r.error, r.size, r.mtime_ns, r.ctime_ns, r.width, r.height, r.content_hash,
                       iso(now), iso(now), r.file_id))
            self._log_processed(c, r, detection=True)
        elif step == ADOPT:
            self._adopt(c, r, now)
        else:
            self._done(c, step, r, now)

    def _done(self, c, step: str, r: Result, now: float) -> None:
        """DETECTED, COPY or UNCHANGED: the file is done, with new, copied or its own faces."""
        if step == DETECTED:
            before = c.execute("SELECT x, y, w, h, person_id FROM faces WHERE file_id=? AND person_id IS NOT NULL",
                               (r.file_id,)).fetchall()
            c.execute("DELETE FROM faces WHERE file_id=?", (r.file_id,))
            c.executemany(
                "INSERT INTO faces (file_id, idx, score, x, y, w, h, keypoints, person_id, embedding, embed_state, "
                "embed_error, xmp_name) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(r.file_id, i, f.score, *f.bbox, json.dumps([list(k) for k in f.keypoints]),
                  same_person(f.bbox, before), *embedding_columns(r, i), f.xmp_name) for i, f in enumerate(r.faces)])
            width, height, count, processed_at = r.width, r.height, len(r.faces), iso(now)
        else:
            if step == COPY:
                c.execute("DELETE FROM faces WHERE file_id=?", (r.file_id,))
                c.execute("INSERT INTO faces (file_id, idx, score, x, y, w, h, keypoints, embedding, embed_state, "
                          "embed_error, person_id, xmp_name) SELECT ?, idx, score, x, y, w, h, keypoints, embedding, "
                          "embed_state, embed_error, person_id, xmp_name FROM faces WHERE file_id=?",
                          (r.file_id, r.source_id))
            # processed_at is when these faces were computed: a copy has its source's, a touch keeps its own
            width, height, count, processed_at = c.execute(
                "SELECT width, height, face_count, processed_at FROM files WHERE file_id=?",
                (r.source_id if step == COPY else r.file_id,)).fetchone()
        c.execute("UPDATE files SET status='done', error=NULL, size=?, mtime_ns=?, ctime_ns=?, content_hash=?, "
                  "width=?, height=?, face_count=?, processed_at=?, updated_at=? WHERE file_id=?",
                  (r.size, r.mtime_ns, r.ctime_ns, r.content_hash, width, height, count,
                   processed_at, iso(now), r.file_id))
        self._log_processed(c, r, detection=step == DETECTED)

    @staticmethod
    def _status(c, file_id: int) -> Optional[str]:
        row = c.execute("SELECT status FROM files WHERE file_id=?", (file_id,)).fetchone()
        return row[0] if row else None

    @staticmethod
    def _adopt(c, r: Result, now: float) -> None:
        """The missing row `r.source_id` takes over `r.file_id`'s path, keeping its results and history."""
        path, folder = c.execute("SELECT path, dir FROM files WHERE file_id=?", (r.file_id,)).fetchone()
        c.execute("DELETE FROM files WHERE file_id=?", (r.file_id,))
        c.execute("UPDATE files SET path=?, dir=?, status='done', size=?, mtime_ns=?, ctime_ns=?, error=NULL, "
                  "updated_at=? WHERE file_id=?",
                  (path, folder, r.size, r.mtime_ns, r.ctime_ns, iso(now), r.source_id))

    @staticmethod
    def _log_processed(c, r: Result, detection: bool) -> None:
        _record_processed(c, r.file_id, r.worker_id, r.kind, runs=int(detection))

    def release(self, claimant: str) -> int:
        """Give a claimant's claims back to the queue."""
        with self._write() as c:
            ids = [(r[0],) for r in c.execute("SELECT file_id FROM pending WHERE claimed_by=?", (claimant,))]
            c.executemany("UPDATE pending SET claimed_by=NULL, claimed_until=NULL WHERE file_id=?", ids)
            c.executemany("UPDATE files SET status='pending' WHERE file_id=?", ids)
        return len(ids)

    def release_stale(self, now: float) -> int:
        """Expired leases go back to the queue; a read first, so a database held by another process
        is not waited for when there is nothing to release (the daemon looks every minute)."""
        expired = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pending WHERE claimed_by IS NOT NULL AND claimed_until < ?) "
            "OR EXISTS (SELECT 1 FROM faces WHERE embed_claimed_by IS NOT NULL AND embed_claimed_until < ?)",
            (now, now)).fetchone()[0]
        if not expired:
            return 0
        with self._write() as c:
            ids = [(r[0],) for r in c.execute(
                "SELECT file_id FROM pending WHERE claimed_by IS NOT NULL AND claimed_until < ?", (now,))]
            c.executemany("UPDATE pending SET claimed_by=NULL, claimed_until=NULL WHERE file_id=?", ids)
            c.executemany("UPDATE files SET status='pending' WHERE file_id=?", ids)
            c.execute("UPDATE faces SET embed_claimed_by=NULL, embed_claimed_until=NULL "
                      "WHERE embed_claimed_by IS NOT NULL AND embed_claimed_until < ?", (now,))
        return len(ids)

    def queue_size(self, now: Optional[float] = None) -> int:
        """Files waiting and ready (not claimed, not backing off until after `now`)."""
        sql = "SELECT count(*) FROM pending WHERE claimed_by IS NULL"
        if now is None:
            return self.conn.execute(sql).fetchone()[0]
        return self.conn.execute(sql + " AND not_before <= ?", (now,)).fetchone()[0]

    def next_ready_at(self) -> Optional[float]:
        row = self.conn.execute("SELECT min(not_before) FROM pending WHERE claimed_by IS NULL").fetchone()
        return row[0]

    # the filesystem's view ----------------------------------------------------------------------
    def rename(self, src: str, dst: str, now: float) -> bool:
        """Move a file's row and results to a new path; False when `src` is unknown."""
        with self._write() as c:
            return self._rename_one(c, _b(src), _b(dst), now)

    def _rename_one(self, c, src: bytes, dst: bytes, now: float) -> bool:
        row = c.execute("SELECT file_id FROM files WHERE path=?", (src,)).fetchone()
        if row is None:
            return False
        c.execute("DELETE FROM files WHERE path=?", (dst,))  # replaced by the move
        c.execute("UPDATE files SET path=?, dir=?, updated_at=? WHERE file_id=?",
                  (dst, os.path.dirname(dst), iso(now), row[0]))
        # a claimant reading the old path would report it missing: make it read the new one
        c.execute("UPDATE pending SET claimed_by=NULL, claimed_until=NULL WHERE file_id=?", (row[0],))
        return True

    def rename_dir(self, src: str, dst: str, now: float) -> int:
        """Move every row below folder `src` to folder `dst`."""
        lo, hi = _under(src)
        new_base = _b(dst.rstrip("/")) + b"/"
        with self._write() as c:
            rows = c.execute("SELECT path FROM files WHERE path >= ? AND path < ?", (lo, hi)).fetchall()
            for (path,) in rows:
                self._rename_one(c, bytes(path), new_base + bytes(path)[len(lo):], now)
        return len(rows)

    def mark_missing(self, paths: Iterable[str], now: float) -> int:
        n = 0
        with self._write() as c:
            for path in paths:
                row = c.execute("SELECT file_id FROM files WHERE path=? AND status != 'missing'",
                                (_b(path),)).fetchone()
                if row:
                    self._mark_missing_id(c, row[0], now)
                    n += 1
        return n

    def mark_missing_under(self, folder: str, now: float) -> int:
        lo, hi = _under(folder)
        with self._write() as c:
            ids = [r[0] for r in c.execute(
                "SELECT file_id FROM files WHERE path >= ? AND path < ? AND status != 'missing'", (lo, hi))]
            for file_id in ids:
                self._mark_missing_id(c, file_id, now)
        return len(ids)

    @staticmethod
    def _mark_missing_id(c, file_id: int, now: float) -> None:
        c.execute("DELETE FROM pending WHERE file_id=?", (file_id,))
        c.execute("UPDATE files SET status='missing', updated_at=? WHERE file_id=?", (iso(now), file_id))

    def known_in_dir(self, folder: str) -> dict[str, Known]:
        """What the store knows of each file recorded directly in `folder`."""
        rows = self.conn.execute("SELECT path, size, mtime_ns, ctime_ns, status FROM files WHERE dir=?",
                                 (_b(folder),)).fetchall()
        return {_s(r[0]): Known(*r[1:]) for r in rows}

    def known_dirs_under(self, root: str) -> Iterator[str]:
        """Folders at or below `root` that hold files not yet marked missing."""
        lo, hi = _under(root)
        rows = self.conn.execute(
            "SELECT DISTINCT dir FROM files WHERE (dir = ? OR (dir >= ? AND dir < ?)) AND status != 'missing'",
            (_b(root.rstrip("/")), lo, hi)).fetchall()
        return iter(_s(r[0]) for r in rows)

    def folder_marks(self, root: str) -> dict[str, int]:
        """folder -> mtime_ns recorded by the last walk that read it whole, at or below `root`."""
        lo, hi = _under(root)
        rows = self.conn.execute("SELECT dir, mtime_ns FROM folder_marks WHERE dir = ? OR (dir >= ? AND dir < ?)",
                                 (_b(root.rstrip("/")), lo, hi)).fetchall()
        return {_s(r[0]): r[1] for r in rows}

    def save_folder_marks(self, marks: list, forget: list) -> None:
        with self._write() as c:
            c.executemany("INSERT OR REPLACE INTO folder_marks (dir, mtime_ns) VALUES (?, ?)",
                          [(_b(d), m) for d, m in marks])
            c.executemany("DELETE FROM folder_marks WHERE dir=?", [(_b(d),) for d in forget])

    def find_by_hash(self, content_hash: str, exclude_id: int) -> Optional[Source]:
        """An analysed file with these bytes, preferring one still present."""
        row = self.conn.execute(
            "SELECT file_id, path FROM files WHERE content_hash=? AND file_id != ? AND status IN ('done', 'missing') "
            "AND width IS NOT NULL ORDER BY status = 'done' DESC LIMIT 1", (content_hash, exclude_id)).fetchone()
        return Source(row[0], _s(row[1])) if row else None

    # reading ----------------------------------------------------------------------------------
    def stats(self) -> Stats:
        with self._read() as c:  # one pass over each table
            by_status, with_faces = {}, 0
            for status, count, faced in c.execute(
                    "SELECT status, count(*), count(*) FILTER (WHERE face_count > 0) FROM files GROUP BY status"):
                by_status[status] = count
                with_faces += faced
            pending, claimed = c.execute("SELECT count(*), count(claimed_by) FROM pending").fetchone()
            faces, *states = c.execute(
                "SELECT count(*), count(*) FILTER (WHERE embed_state = 'waiting'), "
                "count(*) FILTER (WHERE embed_state = 'failed') FROM faces").fetchone()
            waiting = {"waiting": states[0], "failed": states[1]}
            runs = c.execute("SELECT COALESCE(sum(runs), 0) FROM processed_files").fetchone()[0]
            persons, named = c.execute(
                "SELECT count(*), count(name) FROM persons p WHERE name IS NOT NULL "
                "OR EXISTS (SELECT 1 FROM faces x WHERE x.person_id = p.person_id)").fetchone()
        return Stats(pending - claimed, claimed, by_status, with_faces, faces, runs, persons, named,
                     waiting.get("waiting", 0), waiting.get("failed", 0))

    def iter_files(self, flt: ExportFilter = ExportFilter()) -> Iterator[FileRecord]:
        """Every file matching `flt` with its faces, streamed in file order from one snapshot."""
        where, args = ["1=1"], []
        if flt.statuses:
            where.append("status IN (%s)" % ",".join("?" * len(flt.statuses)))
            args += list(flt.statuses)
        if flt.min_faces:
            where.append("face_count >= ?")
            args.append(flt.min_faces)
        if flt.since:
            where.append("processed_at >= ?")
            args.append(flt.since)
        conn = self._fresh_reader()
        try:
            conn.execute("BEGIN")
            files = conn.execute(
                "SELECT file_id, path, status, size, width, height, error, processed_at, content_hash "
                f"FROM files WHERE {' AND '.join(where)} ORDER BY file_id", args)
            faces = conn.execute(f"SELECT {_FACE_COLUMNS} FROM faces x LEFT JOIN persons p USING (person_id) "
                                 "ORDER BY x.file_id, x.idx")
            face = faces.fetchone()
            for row in files:
                record = FileRecord(row[0], _s(row[1]), *row[2:])
                while face is not None and face[0] < record.file_id:
                    face = faces.fetchone()
                while face is not None and face[0] == record.file_id:
                    record.faces.append(_face(face))
                    face = faces.fetchone()
                yield record
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _fresh_reader(self) -> sqlite3.Connection:
        """A connection of its own, so a long export never holds a shared one."""
        uri = f"file:{self.database}?mode=ro" if self.readonly else self.database
        conn = sqlite3.connect(uri, uri=self.readonly, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return conn

    def file_record(self, path: str) -> Optional[FileRecord]:
        row = self.conn.execute(
            "SELECT f.file_id, f.path, f.status, f.size, f.width, f.height, f.error, f.processed_at, "
            "f.content_hash, COALESCE(p.attempts, 0) FROM files f LEFT JOIN pending p USING (file_id) "
            "WHERE f.path=?", (_b(path),)).fetchone()
        if row is None:
            return None
        record = FileRecord(row[0], _s(row[1]), *row[2:])
        record.faces = [_face(f) for f in self.conn.execute(
            f"SELECT {_FACE_COLUMNS} FROM faces x LEFT JOIN persons p USING (person_id) "
            "WHERE x.file_id=? ORDER BY x.idx", (row[0],))]
        return record

    def retry_failed(self, paths: Optional[Iterable[str]], now: float) -> int:
        """Put failed files (all of them, or those named) back in the queue."""
        with self._write() as c:
            if paths is None:
                ids = [r[0] for r in c.execute("SELECT file_id FROM files WHERE status='failed'")]
            else:
                ids = [r[0] for p in paths for r in c.execute(
                    "SELECT file_id FROM files WHERE status='failed' AND path=?", (_b(p),))]
            for file_id in ids:
                c.execute("UPDATE files SET status='pending', updated_at=? WHERE file_id=?", (iso(now), file_id))
                c.execute("INSERT OR REPLACE INTO pending (file_id, enqueued_at) VALUES (?, ?)", (file_id, now))
        return len(ids)

    # daemons ----------------------------------------------------------------------------------
    def daemon_started(self, daemon: DaemonInfo) -> None:
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO daemons (name, host, pid, started_at, heartbeat_at, stopped_at, "
                      "worker_only) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                      (daemon.name, daemon.host, daemon.pid, daemon.started_at, daemon.heartbeat_at,
                       int(daemon.worker_only)))
            c.execute("DELETE FROM daemons WHERE stopped_at IS NOT NULL AND name NOT IN "
                      "(SELECT name FROM daemons ORDER BY started_at DESC LIMIT ?)", (DAEMON_ROWS_KEPT,))

    def heartbeat(self, name: str, now: float) -> None:
        with self._write(wait_s=HEARTBEAT_WAIT_S) as c:
            c.execute("UPDATE daemons SET heartbeat_at=? WHERE name=?", (now, name))

    def daemon_stopped(self, name: str, now: float) -> None:
        with self._write() as c:
            c.execute("UPDATE daemons SET stopped_at=?, heartbeat_at=NULL WHERE name=?", (iso(now), name))

    def daemons(self) -> list[DaemonInfo]:
        rows = self.conn.execute("SELECT name, host, pid, started_at, heartbeat_at, stopped_at, worker_only "
                                 "FROM daemons ORDER BY started_at DESC, name").fetchall()
        return [DaemonInfo(*r[:6], worker_only=bool(r[6])) for r in rows]

    # checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, batch_number: int, processed_count: int, status: str,
                        metadata: Optional[dict] = None, kind: str = "scan") -> int:
        checkpoint_status(status)
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO checkpoints (batch_number, processed_files_count, status, metadata, created_at, kind, "
                "last_file_id) VALUES (?, ?, ?, ?, ?, ?, (SELECT COALESCE(max(file_id), 0) FROM files))",
                (batch_number, processed_count, status, json.dumps(metadata or {}),
                 datetime.now(timezone.utc).isoformat(timespec="seconds"), kind))
            return cur.lastrowid

    def latest_checkpoint(self, kind: Optional[str] = None, batch_number: Optional[int] = None
                          ) -> Optional[CheckpointRecord]:
        """The newest checkpoint (of that kind, with that batch number)."""
        where, args = [], []
        if kind:
            where.append("kind=?")
            args.append(kind)
        if batch_number is not None:
            where.append("batch_number=?")
            args.append(batch_number)
        row = self.conn.execute(
            "SELECT checkpoint_id, batch_number, processed_files_count, status, metadata, created_at, kind "
            f"FROM checkpoints {'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY checkpoint_id DESC LIMIT 1", args).fetchone()
        return None if row is None else _checkpoint(row)

    def set_checkpoint_status(self, checkpoint_id: int, status: str) -> bool:
        checkpoint_status(status)
        with self._write() as c:
            return c.execute("UPDATE checkpoints SET status=? WHERE checkpoint_id=?",
                             (status, checkpoint_id)).rowcount > 0

    def prune_checkpoints(self, kind: str, keep: int) -> int:
        """Delete the checkpoints of `kind` but the newest `keep` (at least the newest one)."""
        with self._write() as c:
            return c.execute("DELETE FROM checkpoints WHERE kind=? AND checkpoint_id NOT IN (SELECT checkpoint_id "
                             "FROM checkpoints WHERE kind=? ORDER BY checkpoint_id DESC LIMIT ?)",
                             (kind, kind, max(keep, 1))).rowcount

    def update_processed_file(self, file_id: int, worker_id: Optional[int], status: str) -> None:
        with self._write() as c:
            _record_processed(c, file_id, worker_id, status, runs=0)

    _REMAINING = ("FROM files f WHERE f.status != 'missing' AND f.file_id <= ? AND NOT EXISTS (SELECT 1 "
                  "FROM processed_files p WHERE p.file_id = f.file_id AND p.status IN (%s))"
                  % ",".join("?" * len(PROCESSED)))

    def _remaining_args(self, checkpoint_id: Optional[int]) -> tuple:
        """The newest file of that checkpoint (None: of the index now), and the processed statuses."""
        last = None
        if checkpoint_id is not None:
            row = self.conn.execute("SELECT last_file_id FROM checkpoints WHERE checkpoint_id=?",
                                    (checkpoint_id,)).fetchone()
            last = row[0] if row else 0
        return (2 ** 62 if last is None else last, *PROCESSED)

    def remaining_files(self, checkpoint_id: Optional[int] = None) -> list[str]:
        """The files of that checkpoint (those the index held when it was saved; None: all) that are
        not processed now, nor missing."""
        rows = self.conn.execute(f"SELECT f.path {self._REMAINING} ORDER BY f.file_id",
                                 self._remaining_args(checkpoint_id)).fetchall()
        return [_s(r[0]) for r in rows]

    def count_remaining(self, checkpoint_id: Optional[int] = None) -> int:
        return self.conn.execute(f"SELECT count(*) {self._REMAINING}",
                                 self._remaining_args(checkpoint_id)).fetchone()[0]

    def checkpoint_statistics(self) -> dict:
        with self._read() as c:
            by_status = dict(c.execute("SELECT status, count(*) FROM checkpoints GROUP BY status").fetchall())
            processed = dict(c.execute("SELECT status, count(*) FROM processed_files GROUP BY status").fetchall())
        return {"checkpoints": sum(by_status.values()), "checkpoints_by_status": by_status,
                "processed_files": sum(processed.values()), "processed_by_status": processed}

    # upkeep -----------------------------------------------------------------------------------
    def maintain(self) -> None:
        """Fold the write-ahead log back into the database, as far as no reader needs it."""
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def check(self, full: bool = False) -> list[str]:
        """What is wrong, in sentences (none: nothing): SQLite's own check (quick, or whole with
        `full`), the schema against the migrations, and the index against itself. Reads only."""
        c = self._fresh_reader()
        try:
            c.execute("BEGIN")
            try:
                problems = [f"integrity: {r[0]}" for r in c.execute(
                    f"PRAGMA {'integrity_check' if full else 'quick_check'}(20)") if r[0] != "ok"]
            except sqlite3.DatabaseError as exc:  # too damaged to check page by page
                problems = [f"integrity: {exc}"]
            if problems:
                return problems  # the rest would only repeat it
            try:
                self._check_columns()
            except StoreUnusable as exc:
                problems.append(f"schema: {exc}")
            problems += [f"index: {what}: {count}" for what, sql in _CONSISTENCY
                         for (count,) in c.execute(sql) if count]
            c.execute("COMMIT")
        finally:
            c.close()
        return problems

    def backup(self, out: str) -> Stats:
        """A consistent copy of the live database at `out`, written atomically and verified by
        opening it; returns what the copy holds. Writers go on meanwhile (SQLite's backup API
        reads one snapshot)."""
        out = os.path.abspath(out)
        fd, tmp = tempfile.mkstemp(prefix=".facewatch-backup-", suffix=".db", dir=os.path.dirname(out))
        os.close(fd)
        try:
            src, dst = self._fresh_reader(), sqlite3.connect(tmp, isolation_level=None)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                if dst.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    raise StoreUnusable(f"the backup of {self.database} did not verify: not written")
            finally:
                src.close()
                dst.close()
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            copy = SQLiteStore(tmp, readonly=True)
            try:
                stats = copy.stats()
            finally:
                copy.close()
            os.chmod(tmp, 0o600)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return stats


# the index against itself: each query counts rows that should not be
_CONSISTENCY = [
    ("faces of files that do not exist",
     "SELECT count(*) FROM faces x WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.file_id = x.file_id)"),
    ("queue entries of files that do not exist",
     "SELECT count(*) FROM pending p WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.file_id = p.file_id)"),
    ("queue entries of files that are missing, done or failed",
     "SELECT count(*) FROM pending p JOIN files f USING (file_id) WHERE f.status IN ('missing', 'done', 'failed')"),
    ("pending or processing files not in the queue (they would never be analysed)",
     "SELECT count(*) FROM files f WHERE f.status IN ('pending', 'processing') "
     "AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.file_id = f.file_id)"),
    ("files whose face count disagrees with their faces",
     "SELECT count(*) FROM files f WHERE f.face_count != (SELECT count(*) FROM faces x WHERE x.file_id = f.file_id)"),
    ("done files without a size (analysed without being read)",
     "SELECT count(*) FROM files WHERE status = 'done' AND width IS NULL"),
]


def _record_processed(c, file_id: int, worker_id: Optional[int], status: str, runs: int) -> None:
    """Who processed a file and how it ended; `runs` detections more (0: read, or recorded by hand)."""
    c.execute("INSERT INTO processed_files (file_id, worker_id, status, processed_timestamp, runs) "
              "VALUES (?, ?, ?, CURRENT_TIMESTAMP, ?) ON CONFLICT (file_id) DO UPDATE "
              "SET worker_id=excluded.worker_id, status=excluded.status, "
              "processed_timestamp=excluded.processed_timestamp, runs=processed_files.runs+excluded.runs",
              (file_id, worker_id, status, runs))


_FACE_COLUMNS = "x.file_id, x.score, x.x, x.y, x.w, x.h, x.keypoints, x.person_id, p.name"


def _face(row) -> Face:
    return Face(score=row[1], bbox=(row[2], row[3], row[4], row[5]),
                keypoints=tuple(tuple(k) for k in json.loads(row[6])),
                person=None if row[7] is None else (row[7], row[8]))


def _checkpoint(row) -> CheckpointRecord:
    try:
        metadata = json.loads(row[4]) if row[4] else {}
    except ValueError:
        metadata = {"unreadable": row[4]}
    return CheckpointRecord(row[0], row[1], row[2], row[3], metadata if isinstance(metadata, dict) else {},
                            row[5], row[6])


