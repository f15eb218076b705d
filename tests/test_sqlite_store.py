"""What only the SQLite backend has: its migrations, PRAGMAs, foreign keys and single-writer lock,
and the specification's own tables upgraded in place."""
import sqlite3
import subprocess
import sys
import threading

import pytest

from facewatch.checkpoint import DatabaseCheckpointManager
from facewatch.store import DatabaseInUse, Face, FileStat, Result, StoreBusy, open_store
from facewatch.store.sqlite_schema import MIGRATIONS

FACE = Face(score=0.9, bbox=(10, 20, 30, 40), keypoints=((1, 2), (3, 4)))
# the checkpoint specification's DDL, word for word (INTERFACE.md)
SPEC_DDL = ["""CREATE TABLE IF NOT EXISTS checkpoints (
    checkpoint_id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_number INTEGER NOT NULL,
    processed_files_count INTEGER NOT NULL,
    status TEXT DEFAULT 'in_progress',
    metadata TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)""", """CREATE TABLE IF NOT EXISTS processed_files (
    file_id INTEGER PRIMARY KEY,
    worker_id INTEGER,
    status TEXT,
    processed_timestamp DATETIME DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (file_id) REFERENCES files(file_id)
)"""]


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "db" / "facewatch.db"))
    yield s
    s.close()


def test_migrations_are_recorded_and_idempotent(store):
    assert store.migrations() == [name for name, _ in MIGRATIONS]
    assert store.migrate() == []
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"files", "pending", "faces", "daemons", "checkpoints", "processed_files"} <= tables
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_the_foreign_keys_are_enforced(store):
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("INSERT INTO processed_files (file_id, worker_id, status) VALUES (999, 1, 'done')")
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("INSERT INTO faces (file_id, idx, score, x, y, w, h, keypoints) "
                           "VALUES (999, 0, 1, 0, 0, 1, 1, '[]')")


def test_processed_files_records_the_analyser_and_counts_detections(store):
    store.enqueue([FileStat("/p/a.jpg", 100, 1)], now=1)
    for n, worker_id in ((1, 77), (2, 78)):
        (c,) = store.claim("w", 1, now=n * 10, lease_s=60)
        store.save("w", [Result(c.file_id, "done", size=100, mtime_ns=n, ctime_ns=1, width=5, height=5,
                                faces=(FACE,), content_hash=f"h{n}", worker_id=worker_id)], now=n * 10)
        store.enqueue([FileStat("/p/a.jpg", 100, n + 1)], now=n * 10 + 1)
    (c,) = store.claim("w", 1, now=30, lease_s=60)
    store.save("w", [Result(c.file_id, "unchanged", size=100, mtime_ns=3, ctime_ns=1, content_hash="h2",
                            worker_id=79)], now=30)
    row = store.conn.execute("SELECT worker_id, status, runs FROM processed_files").fetchone()
    assert row == (79, "unchanged", 2)  # an unchanged file was read, not detected again


def test_one_writer_at_a_time(tmp_path):
    first, second = (open_store(str(tmp_path / "fw.db")) for _ in range(2))
    first.lock(exclusive=False)
    with pytest.raises(DatabaseInUse, match="in use by facewatch"):
        second.lock(exclusive=True)
    assert second.lock_held() is True
    first.unlock()
    second.lock(exclusive=True)
    second.unlock()
    assert first.lock_held() is False
    first.close()
    second.close()


def test_taking_the_lock_gives_back_a_dead_writers_claims(tmp_path):
    dead = open_store(str(tmp_path / "fw.db"))
    dead.enqueue([FileStat("/p/a.jpg", 1, 1)], now=1)
    dead.claim("dead:1", 1, now=1, lease_s=3600)
    dead.close()  # as a killed daemon leaves it: claimed, lease far from expired
    successor = open_store(str(tmp_path / "fw.db"))
    successor.lock(exclusive=False)
    assert successor.stats().processing == 0 and successor.queue_size() == 1
    successor.unlock()
    successor.close()


def test_a_database_made_with_the_specifications_ddl_is_upgraded_with_nothing_lost(tmp_path):
    path = tmp_path / "spec.db"
    db = sqlite3.connect(path)
    for ddl in SPEC_DDL:
        db.execute(ddl)
    db.execute("INSERT INTO checkpoints (batch_number, processed_files_count, status, metadata) "
               "VALUES (3, 300, 'in_progress', '{\"total_files\": 17000}')")
    db.execute("INSERT INTO processed_files (file_id, worker_id, status) VALUES (41, 2, 'processed')")
    db.commit()
    db.close()

    manager = DatabaseCheckpointManager(str(path))
    loaded = manager.load_checkpoint()
    assert (loaded["batch_number"], loaded["processed_files_count"], loaded["status"]) == (3, 300, "in_progress")
    assert loaded["metadata"] == {"total_files": 17000}
    assert manager.save_checkpoint(4, 400, "in_progress") is not None
    assert manager.load_checkpoint()["batch_number"] == 4
    store = manager.store
    assert store.conn.execute("SELECT file_id, worker_id, status FROM processed_files").fetchall() == \
        [(41, 2, "processed")]
    # and it works as a facewatch index: files, a move onto a file, detections
    store.enqueue([FileStat("/p/a.jpg", 1, 1), FileStat("/p/b.jpg", 1, 1)], now=1)
    claims = store.claim("w", 2, now=1, lease_s=60)
    store.save("w", [Result(c.file_id, "done", size=1, mtime_ns=1, ctime_ns=1, width=1, height=1,
                            faces=(FACE,), content_hash=c.path) for c in claims], now=2)
    assert store.rename("/p/a.jpg", "/p/b.jpg", now=3)  # deletes b's row, and its processed_files row
    assert store.stats().as_dict()["files"]["done"] == 1
    store.close()


def _hold_write_lock(database: str, seconds: float) -> subprocess.Popen:
    """Another process that holds the database's write lock for `seconds` (from when it says so)."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({database!r}, isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "print('held', flush=True)\n"
        f"time.sleep({seconds})\n"
        "c.execute('COMMIT')\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def _count_looks(monkeypatch) -> list:
    """The BEGIN IMMEDIATEs of the store's connections made from now on (each a look at the lock)."""
    import facewatch.store.sqlite as backend
    looks, connect = [], backend.SQLiteStore._connect

    def traced(self):
        conn = connect(self)
        conn.set_trace_callback(lambda sql: looks.append(sql) if sql == "BEGIN IMMEDIATE" else None)
        return conn
    monkeypatch.setattr(backend.SQLiteStore, "_connect", traced)
    return looks


@pytest.mark.parametrize("how", ["within-sqlites-own-wait", "asleep-on-the-lock", "after-growing-pauses"])
def test_writes_wait_for_another_process_and_go_through_when_it_commits(store, monkeypatch, how):
    """Every thread of this process that writes while another process holds the database waits
    (one of them for the database: in SQLite's busy handler at first, then asleep on the WAL's
    write lock, or after pauses that grow where that sleep is not possible) and each write lands
    once the other commits. Asleep, a writer looks at the database twice: before and after."""
    import facewatch.store.sqlite as backend
    from facewatch.store.wal_lock import WriterWatch
    hold_s = {"within-sqlites-own-wait": 0.5}.get(how, 2.5)
    if how == "within-sqlites-own-wait":
        monkeypatch.setattr(backend, "WRITE_WAIT_QUICK_MS", 5000)
    if how == "after-growing-pauses":
        monkeypatch.setattr(WriterWatch, "wait", lambda self, timeout: None)  # no OFD locks here
    looks = _count_looks(monkeypatch)
    holder = _hold_write_lock(store.database, hold_s)
    done, errors = [], []

    def write(i: int) -> None:
        try:
            store.enqueue([FileStat(f"/p/{i}.jpg", 100, 1)], now=1)
            done.append(i)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=write, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=40)
    holder.wait()
    assert not errors and len(done) == 3
    if how == "asleep-on-the-lock":  # woken by the commit itself: no look in between
        assert len(looks) == 2 + 2, looks  # the first writer: before and after; the others: once each
    elif how == "after-growing-pauses":  # a few looks, pauses between: a spin would make hundreds
        assert 4 < len(looks) <= 15, looks
    assert not store.held_elsewhere()
    assert {r.path for r in store.iter_files()} == {"/p/0.jpg", "/p/1.jpg", "/p/2.jpg"}


def test_a_writer_woken_but_still_shut_out_falls_back_to_pauses(store, monkeypatch):
    """A lock that is not the WAL's (the sleep returns at once): a few looks, then pauses, no spin."""
    import facewatch.store.sqlite as backend
    from facewatch.store.wal_lock import WriterWatch
    monkeypatch.setattr(WriterWatch, "wait", lambda self, timeout: True)
    looks = _count_looks(monkeypatch)
    holder = _hold_write_lock(store.database, 2.5)
    writer = threading.Thread(target=store.enqueue, args=([FileStat("/p/a.jpg", 100, 1)], 1))  # a new connection
    writer.start()
    writer.join(timeout=40)
    holder.wait()
    assert [r.path for r in store.iter_files()] == ["/p/a.jpg"]
    # 1 + WRITE_WAKES_MISSED looks at once, then 0.25, 0.5, 1 s pauses (the commit at 2.5 s)
    assert backend.WRITE_WAKES_MISSED + 2 <= len(looks) <= backend.WRITE_WAKES_MISSED + 5, looks


def test_a_write_gives_up_after_the_busy_timeout_with_the_stores_own_error(store, monkeypatch):
    import facewatch.store.sqlite as backend
    monkeypatch.setattr(backend, "BUSY_TIMEOUT_MS", 1000)
    holder = _hold_write_lock(store.database, 4)
    with pytest.raises(StoreBusy, match="locked"):
        store.enqueue([FileStat("/p/a.jpg", 100, 1)], now=1)
    assert holder.poll() is None, "the write waited for the other process instead of giving up after the timeout"
    holder.wait()
    store.enqueue([FileStat("/p/a.jpg", 100, 1)], now=1)  # and the connection is usable afterwards
    assert [r.path for r in store.iter_files()] == ["/p/a.jpg"]


def test_an_index_of_the_previous_schema_keeps_every_face_and_embedding_and_never_reuses_a_face_id(tmp_path):
    """Migration 0006 rebuilds `faces` so a face id is never given again: an index made before it
    keeps every face, id, embedding and person; then the newest photo's faces, replaced by a new
    analysis, leave their ids unused (they used to go to the next faces)."""
    database = str(tmp_path / "old.db")
    before_0006 = [(name, steps) for name, steps in MIGRATIONS if name < "0006"]
    old = sqlite3.connect(database, isolation_level=None)  # the schema as facewatch made it before
    old.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    for name, steps in before_0006:
        for step in steps:
            step(old) if callable(step) else old.execute(step)
        old.execute("INSERT INTO schema_migrations VALUES (?, '2026-11-30T00:00:00+00:00')", (name,))
    old.executemany("INSERT INTO files (file_id, path, dir, status, size, mtime_ns, width, height, face_count) "
                    "VALUES (?, ?, ?, 'done', 1, 1, 9, 9, ?)",
                    [(1, b"/p/a.jpg", b"/p", 2), (2, b"/p/b.jpg", b"/p", 1)])  # paths as the store keeps them
    old.execute("INSERT INTO persons (person_id, name) VALUES (7, 'Ada')")
    old.execute("INSERT INTO faces (file_id, idx, score, x, y, w, h, keypoints, embedding, embed_state, person_id) "
                "VALUES (1, 0, 0.9, 10, 20, 30, 40, '[]', randomblob(512), 'done', 7), "
                "(1, 1, 0.9, 50, 20, 30, 40, '[]', randomblob(512), 'done', 7), "
                "(2, 0, 0.9, 10, 20, 30, 40, '[]', randomblob(512), 'done', 7)")
    before = old.execute("SELECT face_id, file_id, embedding, person_id FROM faces ORDER BY face_id").fetchall()
    old.close()
    store = open_store(database)
    try:
        assert [m for m in store.migrations() if m >= "0006"] == [name for name, _ in MIGRATIONS if name >= "0006"]
        after = store.conn.execute("SELECT face_id, file_id, embedding, person_id FROM faces ORDER BY face_id").fetchall()
        assert after == before and len(after) == 3
        assert "AUTOINCREMENT" in store.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'faces'").fetchone()[0]
        newest = max(face_id for face_id, *_ in after)
        # the newest photo is analysed again: its face is deleted, and a new one comes in
        store.enqueue([FileStat("/p/b.jpg", 2, 2)], now=2)
        (c,) = store.claim("w", 1, now=2, lease_s=60)
        store.save("w", [Result(c.file_id, "done", size=2, mtime_ns=2, ctime_ns=1, width=9, height=9,
                                content_hash="b2", faces=(FACE,))], now=2)
        ids = [r[0] for r in store.conn.execute("SELECT face_id FROM faces ORDER BY face_id")]
        assert newest not in ids and max(ids) > newest, ids
        assert store.check() == []
    finally:
        store.close()
