"""SQLite schema changes, as named migrations; each one is applied in one transaction."""

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
]
