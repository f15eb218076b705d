"""SQLite schema changes, as named migrations; each one is applied in one transaction.

A step is an SQL statement, or a function of the connection for a change that depends on what
the database holds (a database made with the checkpoint specification's own DDL).
"""
import sqlite3

MIGRATIONS = [
    ("0001_initial", [
        """CREATE TABLE files (
            file_id INTEGER PRIMARY KEY,
            path BLOB NOT NULL UNIQUE,          -- os.fsencode(path): any bytes a name may hold
            dir BLOB NOT NULL,
            size INTEGER,
            mtime_ns INTEGER,
            ctime_ns INTEGER,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'processing', 'done', 'failed', 'missing')),
            width INTEGER,
            height INTEGER,
            face_count INTEGER NOT NULL DEFAULT 0,
            content_hash TEXT,
            error TEXT,
            processed_at TEXT,
            updated_at TEXT)""",
        "CREATE INDEX files_dir ON files(dir)",
        "CREATE INDEX files_status ON files(status)",
        "CREATE INDEX files_hash ON files(content_hash) WHERE content_hash IS NOT NULL",
        """CREATE TABLE pending (
            file_id INTEGER PRIMARY KEY REFERENCES files(file_id) ON DELETE CASCADE,
            enqueued_at REAL NOT NULL,
            not_before REAL NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            claimed_by TEXT,
            claimed_until REAL)""",
        "CREATE INDEX pending_ready ON pending(enqueued_at, file_id) WHERE claimed_by IS NULL",
        "CREATE INDEX pending_claimed ON pending(claimed_until) WHERE claimed_by IS NOT NULL",
        """CREATE TABLE faces (
            face_id INTEGER PRIMARY KEY,
            file_id INTEGER NOT NULL REFERENCES files(file_id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            score REAL NOT NULL,
            x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
            keypoints TEXT NOT NULL,            -- JSON [[x, y], ...]
            UNIQUE (file_id, idx))""",
        """CREATE TABLE daemon (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            pid INTEGER,
            host TEXT,
            started_at TEXT,
            heartbeat_at REAL,
            stopped_at TEXT)""",
        """CREATE TABLE IF NOT EXISTS checkpoints (
            checkpoint_id INTEGER PRIMARY KEY AUTOINCREMENT,
            batch_number INTEGER NOT NULL,
            processed_files_count INTEGER NOT NULL,
            status TEXT DEFAULT 'in_progress',
            metadata TEXT,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            kind TEXT NOT NULL DEFAULT 'scan')""",
        """CREATE TABLE IF NOT EXISTS processed_files (
            file_id INTEGER PRIMARY KEY,
            worker_id INTEGER,
            status TEXT,
            processed_timestamp DATETIME DEFAULT CURRENT_TIMESTAMP,
            runs INTEGER NOT NULL DEFAULT 1,    -- how many times this file was analysed
            FOREIGN KEY (file_id) REFERENCES files(file_id) ON DELETE CASCADE)""",
    ]),
    ("0002_folder_marks", [
        # a folder's mtime when a walk last read it whole: an unchanged folder has the same entries
        """CREATE TABLE folder_marks (
            dir BLOB PRIMARY KEY,
            mtime_ns INTEGER NOT NULL)""",
    ]),
    ("0003_daemons", [
        # one row per daemon start: several daemons share a server database, and a dead one's row
        # says when it last lived
        """CREATE TABLE daemons (
            name TEXT PRIMARY KEY,              -- host:pid:start
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at TEXT,
            heartbeat_at REAL,
            stopped_at TEXT,
            worker_only INTEGER NOT NULL DEFAULT 0)""",
        "INSERT INTO daemons (name, host, pid, started_at, heartbeat_at, stopped_at) "
        "SELECT COALESCE(host, '') || ':' || pid || ':' || COALESCE(started_at, ''), COALESCE(host, ''), pid, "
        "started_at, heartbeat_at, stopped_at FROM daemon WHERE pid IS NOT NULL",
        "DROP TABLE daemon",
    ]),
    ("0004_checkpoint_columns", [lambda c: _checkpoint_columns(c)]),
]


def _columns(c: sqlite3.Connection, table: str) -> set:
    return {r[1] for r in c.execute(f"PRAGMA table_info({table})")}


def _checkpoint_columns(c: sqlite3.Connection) -> None:
    """The columns facewatch adds to the specification's two tables, whoever made them.

    checkpoints gain `kind` (daemon or scan) and `last_file_id` (the newest file the index held
    when it was saved: what "the files of that checkpoint" means). processed_files gains `runs`
    (detections of that file), and its foreign key must cascade, or deleting a file row (a move
    onto it) would fail. SQLite cannot change a foreign key in place: that table is rebuilt, every
    row kept.
    """
    if "kind" not in _columns(c, "checkpoints"):
        c.execute("ALTER TABLE checkpoints ADD COLUMN kind TEXT NOT NULL DEFAULT 'scan'")
    c.execute("ALTER TABLE checkpoints ADD COLUMN last_file_id INTEGER")
    cascades = any(r[2] == "files" and r[6] == "CASCADE" for r in c.execute("PRAGMA foreign_key_list(processed_files)"))
    columns = _columns(c, "processed_files")
    if cascades and "runs" in columns:
        return
    c.execute("ALTER TABLE processed_files RENAME TO processed_files_old")
    c.execute("""CREATE TABLE processed_files (
        file_id INTEGER PRIMARY KEY,
        worker_id INTEGER,
        status TEXT,
        processed_timestamp DATETIME DEFAULT CURRENT_TIMESTAMP,
        runs INTEGER NOT NULL DEFAULT 1,    -- how many times this file was analysed
        FOREIGN KEY (file_id) REFERENCES files(file_id) ON DELETE CASCADE)""")
    runs = "runs" if "runs" in columns else "1"
    c.execute(f"INSERT INTO processed_files (file_id, worker_id, status, processed_timestamp, runs) "
              f"SELECT file_id, worker_id, status, processed_timestamp, {runs} FROM processed_files_old")
    c.execute("DROP TABLE processed_files_old")


# Tables and the columns facewatch reads: a database whose tables of these names lack them is not
# one facewatch made (or it is damaged), and is refused rather than half-used.
EXPECTED = {
    "files": {"file_id", "path", "dir", "size", "mtime_ns", "ctime_ns", "status", "width", "height",
              "face_count", "content_hash", "error", "processed_at", "updated_at"},
    "pending": {"file_id", "enqueued_at", "not_before", "attempts", "claimed_by", "claimed_until"},
    "faces": {"face_id", "file_id", "idx", "score", "x", "y", "w", "h", "keypoints"},
    "checkpoints": {"checkpoint_id", "batch_number", "processed_files_count", "status", "metadata",
                    "created_at", "kind", "last_file_id"},
    "processed_files": {"file_id", "worker_id", "status", "processed_timestamp", "runs"},
    "folder_marks": {"dir", "mtime_ns"},
    "daemons": {"name", "host", "pid", "started_at", "heartbeat_at", "stopped_at", "worker_only"},
}
# the specification's own tables: a database holding only these is upgraded in place
SPEC_TABLES = {"checkpoints", "processed_files"}
