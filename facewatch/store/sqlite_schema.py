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
    ("0005_people", [
        """CREATE TABLE persons (
            person_id INTEGER PRIMARY KEY,
            name TEXT,
            created_at TEXT)""",
        # every face, old and new, waits for its embedding: a second queue, leased as the first is
        "ALTER TABLE faces ADD COLUMN embedding BLOB",  # 128 little-endian float32
        "ALTER TABLE faces ADD COLUMN embed_state TEXT NOT NULL DEFAULT 'waiting' "
        "CHECK (embed_state IN ('waiting', 'done', 'failed'))",
        "ALTER TABLE faces ADD COLUMN embed_error TEXT",
        "ALTER TABLE faces ADD COLUMN embed_attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE faces ADD COLUMN embed_not_before REAL NOT NULL DEFAULT 0",
        "ALTER TABLE faces ADD COLUMN embed_claimed_by TEXT",
        "ALTER TABLE faces ADD COLUMN embed_claimed_until REAL",
        "ALTER TABLE faces ADD COLUMN person_id INTEGER REFERENCES persons(person_id) ON DELETE SET NULL",
        "CREATE INDEX faces_waiting ON faces(face_id) WHERE embed_state = 'waiting'",
        "CREATE INDEX faces_claimed ON faces(embed_claimed_until) WHERE embed_claimed_by IS NOT NULL",
        # covering what `facewatch people` reads, so it never reads the faces' rows (embeddings are large)
        "CREATE INDEX faces_person ON faces(person_id, file_id, w, h, score) WHERE person_id IS NOT NULL",
        # a face a user took out of a person never goes back: by its id, and by its embedding (the
        # same face found again after an edit of its file has a new id)
        """CREATE TABLE person_rejections (
            person_id INTEGER NOT NULL REFERENCES persons(person_id) ON DELETE CASCADE,
            face_id INTEGER NOT NULL,
            embedding BLOB NOT NULL)""",
        # bumped by every change a user makes to people, so a daemon deciding placements sees it
        "CREATE TABLE people_meta (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
        "INSERT INTO people_meta VALUES (1, 0)",
    ]),
    # A face's id is never given to another face (AUTOINCREMENT): without it SQLite gives the ids of
    # the newest faces, deleted when their photo is analysed again, to the next ones, and a copy of
    # the embeddings kept outside the database (`find --like`'s, people/vectors.py) could not tell a
    # new face from the one it replaced. SQLite cannot change a primary key in place: the table is
    # rebuilt, every row and id kept. The embedded faces get an index of their own.
    ("0006_face_ids_never_reused", [
        """CREATE TABLE faces_new (
            face_id INTEGER PRIMARY KEY AUTOINCREMENT,
            file_id INTEGER NOT NULL REFERENCES files(file_id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            score REAL NOT NULL,
            x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
            keypoints TEXT NOT NULL,            -- JSON [[x, y], ...]
            embedding BLOB,                     -- 128 little-endian float32
            embed_state TEXT NOT NULL DEFAULT 'waiting' CHECK (embed_state IN ('waiting', 'done', 'failed')),
            embed_error TEXT,
            embed_attempts INTEGER NOT NULL DEFAULT 0,
            embed_not_before REAL NOT NULL DEFAULT 0,
            embed_claimed_by TEXT,
            embed_claimed_until REAL,
            person_id INTEGER REFERENCES persons(person_id) ON DELETE SET NULL,
            UNIQUE (file_id, idx))""",
        "INSERT INTO faces_new (face_id, file_id, idx, score, x, y, w, h, keypoints, embedding, embed_state, "
        "embed_error, embed_attempts, embed_not_before, embed_claimed_by, embed_claimed_until, person_id) "
        "SELECT face_id, file_id, idx, score, x, y, w, h, keypoints, embedding, embed_state, embed_error, "
        "embed_attempts, embed_not_before, embed_claimed_by, embed_claimed_until, person_id FROM faces",
        "DROP TABLE faces",
        "ALTER TABLE faces_new RENAME TO faces",
        "CREATE INDEX faces_waiting ON faces(face_id) WHERE embed_state = 'waiting'",
        "CREATE INDEX faces_claimed ON faces(embed_claimed_until) WHERE embed_claimed_by IS NOT NULL",
        "CREATE INDEX faces_person ON faces(person_id, file_id, w, h, score) WHERE person_id IS NOT NULL",
        "CREATE INDEX faces_done ON faces(face_id) WHERE embed_state = 'done'",
    ]),
    ("0007_xmp", [
        # the name a face's region has in the photo's XMP (another tool's tagging), read at analysis
        "ALTER TABLE faces ADD COLUMN xmp_name TEXT",
        # a face named in its XMP that looked like a person of another name: it starts its own person
        # (names never merge), and `facewatch people` says so
        """CREATE TABLE person_conflicts (
            face_id INTEGER PRIMARY KEY REFERENCES faces(face_id) ON DELETE CASCADE,
            person_id INTEGER NOT NULL REFERENCES persons(person_id) ON DELETE CASCADE,
            name TEXT NOT NULL)""",
        # files whose XMP sidecar no longer says what the index does: new faces, a face's person,
        # a person's name, a new path (metadata.write_xmp: sidecar writes them, a batch at a time)
        "CREATE TABLE sidecars_due (file_id INTEGER PRIMARY KEY)",
        "CREATE TRIGGER sidecar_face_added AFTER INSERT ON faces BEGIN "
        "INSERT OR IGNORE INTO sidecars_due (file_id) VALUES (NEW.file_id); END",
        "CREATE TRIGGER sidecar_face_gone AFTER DELETE ON faces BEGIN "
        "INSERT OR IGNORE INTO sidecars_due (file_id) VALUES (OLD.file_id); END",
        "CREATE TRIGGER sidecar_face_person AFTER UPDATE OF person_id ON faces BEGIN "
        "INSERT OR IGNORE INTO sidecars_due (file_id) VALUES (NEW.file_id); END",
        "CREATE TRIGGER sidecar_person_name AFTER UPDATE OF name ON persons BEGIN "
        "INSERT OR IGNORE INTO sidecars_due (file_id) SELECT file_id FROM faces WHERE person_id = NEW.person_id; END",
        "CREATE TRIGGER sidecar_file_moved AFTER UPDATE OF path ON files BEGIN "
        "INSERT OR IGNORE INTO sidecars_due (file_id) VALUES (NEW.file_id); END",
    ]),
    # a person the user hid (not someone to name: a stranger in the background); the web interface
    # leaves them out of the people page unless asked
    ("0008_hidden_people", [
        "ALTER TABLE persons ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0",
    ]),
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
    "faces": {"face_id", "file_id", "idx", "score", "x", "y", "w", "h", "keypoints", "embedding", "embed_state",
              "embed_error", "embed_attempts", "embed_not_before", "embed_claimed_by", "embed_claimed_until",
              "person_id", "xmp_name"},
    "person_conflicts": {"face_id", "person_id", "name"},
    "sidecars_due": {"file_id"},
    "persons": {"person_id", "name", "created_at", "hidden"},
    "person_rejections": {"person_id", "face_id", "embedding"},
    "people_meta": {"id", "version"},
    "checkpoints": {"checkpoint_id", "batch_number", "processed_files_count", "status", "metadata",
                    "created_at", "kind", "last_file_id"},
    "processed_files": {"file_id", "worker_id", "status", "processed_timestamp", "runs"},
    "folder_marks": {"dir", "mtime_ns"},
    "daemons": {"name", "host", "pid", "started_at", "heartbeat_at", "stopped_at", "worker_only"},
}
# the specification's own tables: a database holding only these is upgraded in place
SPEC_TABLES = {"checkpoints", "processed_files"}
