"""The SQLite store: WAL, one write transaction at a time, claims are leases that expire."""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterable, Iterator, Optional

from facewatch.store import Claim, ExportFilter, Face, FileRecord, FileStat, Result, needs_analysis
from facewatch.store.schema import MIGRATIONS

BUSY_TIMEOUT_MS = 30_000
HEARTBEAT_STALE_S = 15.0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _b(path: str) -> bytes:
    return os.fsencode(path)


def _s(blob: bytes) -> str:
    return os.fsdecode(bytes(blob))


def _under(folder: str) -> tuple[bytes, bytes]:
    """The BLOB range [lo, hi) holding every path strictly below `folder`."""
    base = _b(folder.rstrip("/")) + b"/"
    return base, base[:-1] + b"0"  # '0' sorts right after '/'


class SQLiteStore:
    def __init__(self, database: str, readonly: bool = False):
        self.database = os.path.abspath(database)
        self.readonly = readonly
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if readonly:
            if not os.path.exists(self.database):
                raise FileNotFoundError(f"no database at {self.database}")
        else:
            os.makedirs(os.path.dirname(self.database), exist_ok=True)
            self.migrate()

    # connections ------------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.readonly:
                conn = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True,
                                       isolation_level=None, check_same_thread=False)
            else:
                conn = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _write(self):
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

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

    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded; returns their names."""
        conn = self.conn
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        applied = []
        for name, statements in MIGRATIONS:
            with self._write() as c:
                if c.execute("SELECT 1 FROM schema_migrations WHERE name=?", (name,)).fetchone():
                    continue
                for sql in statements:
                    c.execute(sql)
                c.execute("INSERT INTO schema_migrations VALUES (?, ?)",
                          (name, datetime.now(timezone.utc).isoformat(timespec="seconds")))
                applied.append(name)
        return applied

    def migrations(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM schema_migrations ORDER BY name")]

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
        file_id, size, mtime_ns, _, status = row
        if status in ("pending", "processing"):
            if (size, mtime_ns) != (st.size, st.mtime_ns) or force:
                # whatever a worker is reading now is stale: take the claim back
                c.execute("UPDATE pending SET claimed_by=NULL, claimed_until=NULL, not_before=0 "
                          "WHERE file_id=?", (file_id,))
                c.execute("UPDATE files SET size=?, mtime_ns=?, ctime_ns=?, status='pending', updated_at=? "
                          "WHERE file_id=?", (st.size, st.mtime_ns, st.ctime_ns, iso(now), file_id))
            return 0
        if not force and not needs_analysis(row[1:], st):
            return 0
        c.execute("UPDATE files SET size=?, mtime_ns=?, ctime_ns=?, status='pending', updated_at=? "
                  "WHERE file_id=?", (st.size, st.mtime_ns, st.ctime_ns, iso(now), file_id))
        c.execute("INSERT OR REPLACE INTO pending (file_id, enqueued_at) VALUES (?, ?)", (file_id, now))
        return 1

    def claim(self, worker: str, limit: int, now: float, lease_s: float) -> list[Claim]:
        """Lease up to `limit` ready files to `worker`, oldest first."""
        with self._write() as c:
            rows = c.execute(
                "SELECT p.file_id, f.path, f.content_hash, p.attempts FROM pending p "
                "JOIN files f ON f.file_id = p.file_id "
                "WHERE p.claimed_by IS NULL AND p.not_before <= ? "
                "ORDER BY p.enqueued_at, p.file_id LIMIT ?", (now, limit)).fetchall()
            ids = [(r[0],) for r in rows]
            c.executemany("UPDATE pending SET claimed_by=?, claimed_until=? WHERE file_id=?",
                          [(worker, now + lease_s, i) for (i,) in ids])
            c.executemany("UPDATE files SET status='processing' WHERE file_id=?", ids)
        return [Claim(r[0], _s(r[1]), r[2], r[3]) for r in rows]

    def save(self, worker: str, results: list[Result], now: float) -> int:
        """Store a batch of results in one transaction; results whose claim was lost are dropped."""
        saved = 0
        with self._write() as c:
            for r in results:
                owned = c.execute("SELECT 1 FROM pending WHERE file_id=? AND claimed_by=?",
                                  (r.file_id, worker)).fetchone()
                if owned:
                    self._save_one(c, r, now)
                    saved += 1
        return saved

    def _save_one(self, c, r: Result, now: float) -> None:
        if r.kind in ("retry", "deferred"):
            failed_try = 1 if r.kind == "retry" else 0  # an outage is not the file's fault
            c.execute("UPDATE pending SET claimed_by=NULL, claimed_until=NULL, not_before=?, "
                      "attempts=attempts+? WHERE file_id=?", (now + r.retry_after_s, failed_try, r.file_id))
            c.execute("UPDATE files SET status='pending', error=?, updated_at=? WHERE file_id=?",
                      (r.error, iso(now), r.file_id))
            return
        c.execute("DELETE FROM pending WHERE file_id=?", (r.file_id,))
        if r.kind == "missing":
            c.execute("UPDATE files SET status='missing', updated_at=? WHERE file_id=?", (iso(now), r.file_id))
            return
        if r.kind == "failed":
            c.execute("DELETE FROM faces WHERE file_id=?", (r.file_id,))
            c.execute("UPDATE files SET status='failed', error=?, size=COALESCE(?, size), "
                      "mtime_ns=COALESCE(?, mtime_ns), ctime_ns=COALESCE(?, ctime_ns), width=?, height=?, "
                      "face_count=0, content_hash=?, processed_at=?, updated_at=? WHERE file_id=?",
                      (r.error, r.size, r.mtime_ns, r.ctime_ns, r.width, r.height, r.content_hash,
                       iso(now), iso(now), r.file_id))
            self._log_processed(c, r)
            return
        width, height, count, processed_at = r.width, r.height, len(r.faces), iso(now)
        if r.kind == "done":
            c.execute("DELETE FROM faces WHERE file_id=?", (r.file_id,))
            c.executemany(
                "INSERT INTO faces (file_id, idx, score, x, y, w, h, keypoints) VALUES (?,?,?,?,?,?,?,?)",
                [(r.file_id, i, f.score, *f.bbox, json.dumps([list(k) for k in f.keypoints]))
                 for i, f in enumerate(r.faces)])
            self._log_processed(c, r)
        elif r.kind in ("reused", "moved") and self._source_status(c, r.source_id) is None:
            # the row we would take the results from is gone: analyse the file after all
            c.execute("INSERT INTO pending (file_id, enqueued_at) VALUES (?, ?)", (r.file_id, now))
            return
        elif r.kind == "moved" or self._source_status(c, r.source_id) == "missing":
            self._adopt(c, r, now)  # the same bytes vanished elsewhere: a move we did not see
            return
        elif r.kind == "reused":
            c.execute("DELETE FROM faces WHERE file_id=?", (r.file_id,))
            c.execute("INSERT INTO faces (file_id, idx, score, x, y, w, h, keypoints) "
                      "SELECT ?, idx, score, x, y, w, h, keypoints FROM faces WHERE file_id=?",
                      (r.file_id, r.source_id))
            width, height, count, processed_at = c.execute(
                "SELECT width, height, face_count, processed_at FROM files WHERE file_id=?", (r.source_id,)).fetchone()
        else:  # unchanged: the bytes are those already analysed
            width, height, count, processed_at = c.execute(
                "SELECT width, height, face_count, processed_at FROM files WHERE file_id=?", (r.file_id,)).fetchone()
        # processed_at is when these faces were computed: a copy has its source's, a touch keeps its own
        c.execute("UPDATE files SET status='done', error=NULL, size=?, mtime_ns=?, ctime_ns=?, content_hash=?, "
                  "width=?, height=?, face_count=?, processed_at=?, updated_at=? WHERE file_id=?",
                  (r.size, r.mtime_ns, r.ctime_ns, r.content_hash, width, height, count,
                   processed_at, iso(now), r.file_id))

    @staticmethod
    def _source_status(c, file_id: int) -> Optional[str]:
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
    def _log_processed(c, r: Result) -> None:
        c.execute("INSERT INTO processed_files (file_id, worker_id, status, processed_timestamp) "
                  "VALUES (?, ?, ?, CURRENT_TIMESTAMP) ON CONFLICT (file_id) DO UPDATE SET "
                  "worker_id=excluded.worker_id, status=excluded.status, "
                  "processed_timestamp=excluded.processed_timestamp, runs=runs+1",
                  (r.file_id, r.worker_id, r.kind))

    def release(self, worker: str) -> int:
        """Give a worker's claims back to the queue."""
        with self._write() as c:
            ids = [(r[0],) for r in c.execute("SELECT file_id FROM pending WHERE claimed_by=?", (worker,))]
            c.executemany("UPDATE pending SET claimed_by=NULL, claimed_until=NULL WHERE file_id=?", ids)
            c.executemany("UPDATE files SET status='pending' WHERE file_id=?", ids)
        return len(ids)

    def release_stale(self, now: float) -> int:
        """Expired leases go back to the queue."""
        with self._write() as c:
            ids = [(r[0],) for r in c.execute(
                "SELECT file_id FROM pending WHERE claimed_by IS NOT NULL AND claimed_until < ?", (now,))]
            c.executemany("UPDATE pending SET claimed_by=NULL, claimed_until=NULL WHERE file_id=?", ids)
            c.executemany("UPDATE files SET status='pending' WHERE file_id=?", ids)
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
        # a worker reading the old path would report it missing: make it read the new one
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

    def known_in_dir(self, folder: str) -> dict:
        """path -> (size, mtime_ns, ctime_ns, status) for the files recorded directly in `folder`."""
        rows = self.conn.execute("SELECT path, size, mtime_ns, ctime_ns, status FROM files WHERE dir=?",
                                 (_b(folder),)).fetchall()
        return {_s(r[0]): tuple(r[1:]) for r in rows}

    def known_dirs_under(self, root: str) -> Iterator[str]:
        """Folders at or below `root` that hold files not yet marked missing."""
        lo, hi = _under(root)
        rows = self.conn.execute(
            "SELECT DISTINCT dir FROM files WHERE (dir = ? OR (dir >= ? AND dir < ?)) AND status != 'missing'",
            (_b(root.rstrip("/")), lo, hi)).fetchall()
        return iter(_s(r[0]) for r in rows)

    def folder_marks(self, root: str) -> dict:
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

    def find_by_hash(self, content_hash: str, exclude_id: int) -> Optional[tuple[int, str]]:
        """(file_id, path) of an analysed file with these bytes, preferring one still present."""
        row = self.conn.execute(
            "SELECT file_id, path FROM files WHERE content_hash=? AND file_id != ? AND status IN ('done', 'missing') "
            "AND width IS NOT NULL ORDER BY status = 'done' DESC LIMIT 1", (content_hash, exclude_id)).fetchone()
        return (row[0], _s(row[1])) if row else None

    # reading ----------------------------------------------------------------------------------
    def stats(self) -> dict:
        with self._read() as c:
            by_status = dict(c.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall())
            pending, claimed = c.execute("SELECT count(*), count(claimed_by) FROM pending").fetchone()
            with_faces = c.execute("SELECT count(*) FROM files WHERE face_count > 0").fetchone()[0]
            faces = c.execute("SELECT count(*) FROM faces").fetchone()[0]
            runs = c.execute("SELECT COALESCE(sum(runs), 0) FROM processed_files").fetchone()[0]
        return {
            "queue": {"pending": pending - claimed, "processing": claimed},
            "files": {"total": sum(by_status.values()), "done": by_status.get("done", 0),
                      "failed": by_status.get("failed", 0), "missing": by_status.get("missing", 0),
                      "with_faces": with_faces},
            "faces": faces,
            "analyses": runs,
        }

    def iter_files(self, flt: ExportFilter = ExportFilter()) -> Iterator[FileRecord]:
        """Every file matching `flt` with its faces, streamed in file order from one snapshot."""
        where, args = ["1"], []
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
            faces = conn.execute("SELECT file_id, score, x, y, w, h, keypoints FROM faces ORDER BY file_id, idx")
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
            "SELECT file_id, score, x, y, w, h, keypoints FROM faces WHERE file_id=? ORDER BY idx", (row[0],))]
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

    # daemon -----------------------------------------------------------------------------------
    def daemon_started(self, pid: int, now: float) -> None:
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO daemon (id, pid, host, started_at, heartbeat_at, stopped_at) "
                      "VALUES (1, ?, ?, ?, ?, NULL)", (pid, socket.gethostname(), iso(now), now))

    def heartbeat(self, now: float) -> None:
        with self._write() as c:
            c.execute("UPDATE daemon SET heartbeat_at=? WHERE id=1", (now,))

    def daemon_stopped(self, now: float) -> None:
        with self._write() as c:
            c.execute("UPDATE daemon SET stopped_at=?, heartbeat_at=NULL WHERE id=1", (iso(now),))

    def daemon_info(self) -> Optional[dict]:
        row = self.conn.execute("SELECT pid, host, started_at, heartbeat_at, stopped_at FROM daemon").fetchone()
        if row is None:
            return None
        return {"pid": row[0], "host": row[1], "started_at": row[2],
                "heartbeat_at": row[3], "stopped_at": row[4]}

    # checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, batch_number: int, processed_count: int, status: str,
                        metadata: Optional[dict] = None, kind: str = "scan") -> int:
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO checkpoints (batch_number, processed_files_count, status, metadata, created_at, kind) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (batch_number, processed_count, status, json.dumps(metadata or {}),
                 datetime.now(timezone.utc).isoformat(timespec="seconds"), kind))
            return cur.lastrowid

    def latest_checkpoint(self, kind: Optional[str] = None) -> Optional[dict]:
        sql = ("SELECT checkpoint_id, batch_number, processed_files_count, status, metadata, created_at, kind "
               "FROM checkpoints")
        args: tuple = ()
        if kind:
            sql, args = sql + " WHERE kind=?", (kind,)
        row = self.conn.execute(sql + " ORDER BY checkpoint_id DESC LIMIT 1", args).fetchone()
        if row is None:
            return None
        return {"id": row[0], "batch_number": row[1], "processed_files_count": row[2], "status": row[3],
                "metadata": json.loads(row[4]) if row[4] else {}, "created_at": row[5], "kind": row[6]}

    def set_checkpoint_status(self, checkpoint_id: int, status: str) -> None:
        with self._write() as c:
            c.execute("UPDATE checkpoints SET status=? WHERE checkpoint_id=?", (status, checkpoint_id))

    def update_processed_file(self, file_id: int, worker_id: int, status: str) -> None:
        with self._write() as c:
            self._log_processed(c, Result(file_id, status, worker_id=worker_id))

    def remaining_files(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT path FROM files WHERE status IN ('pending', 'processing') ORDER BY file_id").fetchall()
        return [_s(r[0]) for r in rows]

    def checkpoint_statistics(self) -> dict:
        with self._read() as c:
            by_status = dict(c.execute("SELECT status, count(*) FROM checkpoints GROUP BY status").fetchall())
            processed = dict(c.execute("SELECT status, count(*) FROM processed_files GROUP BY status").fetchall())
        return {"checkpoints": sum(by_status.values()), "checkpoints_by_status": by_status,
                "processed_files": sum(processed.values()), "processed_by_status": processed}

    def wal_checkpoint(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _face(row) -> Face:
    return Face(score=row[1], bbox=(row[2], row[3], row[4], row[5]),
                keypoints=tuple(tuple(k) for k in json.loads(row[6])))
