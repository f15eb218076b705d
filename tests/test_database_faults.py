"""A database that cannot be used: one clear line and a documented exit status from every command,
fast and without a busy loop; `check` finds what is wrong; `backup` copies a live index."""
import hashlib
import json
import os
import random
import sqlite3
import subprocess

import pytest

from conftest import (FACEWATCH, NO_DAC, assert_refused, facewatch, make_variants, peek, status,
                      wait_until, write_config)

IS_ROOT = os.geteuid() == 0
WRITERS = {"retry", "scan", "resume", "run"}


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "photos").mkdir()
    database = tmp_path / "state" / "facewatch.db"
    database.parent.mkdir()
    return write_config(tmp_path, database=str(database)), database


def test_random_bytes(setup):
    config, database = setup
    database.write_bytes(random.Random(1).randbytes(100_000))
    assert_refused(config, database, "is not a facewatch database (not an SQLite file)")


def test_a_folder(setup):
    config, database = setup
    database.mkdir()
    assert_refused(config, database, "is a folder, not a file")


@pytest.mark.skipif(not NO_DAC and IS_ROOT, reason="needs setpriv to drop root's file access")
def test_an_unreadable_file(setup):
    config, database = setup
    facewatch(config, "retry", "--all")  # makes the database
    database.chmod(0)
    assert_refused(config, database, "cannot be read: Permission denied", prefix=NO_DAC,
                   commands=[("status",), ("export",), ("scan",)])


def test_another_programs_database(setup):
    config, database = setup
    other = sqlite3.connect(database)
    other.execute("CREATE TABLE files (id INTEGER PRIMARY KEY, name TEXT, owner TEXT)")
    other.execute("INSERT INTO files (name, owner) VALUES ('budget.xls', 'anna')")
    other.commit()
    other.close()
    digest = hashlib.sha256(database.read_bytes()).hexdigest()
    assert_refused(config, database, "is another program's database")
    assert hashlib.sha256(database.read_bytes()).hexdigest() == digest, "another program's database was changed"


def test_our_tables_without_our_columns(setup):
    config, database = setup
    facewatch(config, "retry", "--all")
    db = sqlite3.connect(database)
    db.execute("ALTER TABLE processed_files DROP COLUMN runs")  # the column the old review found missing
    db.commit()
    db.close()
    assert_refused(config, database, "table processed_files lacks runs")


def test_a_newer_facewatchs_schema_is_refused_and_left_as_it_is(setup):
    config, database = setup
    facewatch(config, "retry", "--all")
    db = sqlite3.connect(database)
    db.execute("INSERT INTO schema_migrations VALUES ('0099_from_the_future', '2030-01-01')")
    db.commit()
    db.close()
    digest = hashlib.sha256(database.read_bytes()).hexdigest()
    assert_refused(config, database, "was made by a newer facewatch")
    assert hashlib.sha256(database.read_bytes()).hexdigest() == digest


def _index_with_files(config, database, count=3000):
    """A real index of `count` files (no photos needed: the store's own API), cleanly closed."""
    from facewatch.store import FileStat, Result, open_store
    store = open_store(str(database))
    store.enqueue([FileStat(f"/photos/{i:05d}-{'x' * 80}.jpg", 1000 + i, i) for i in range(count)], now=1)
    claims = store.claim("w", count, now=1, lease_s=60)
    store.save("w", [Result(c.file_id, "done", size=1, mtime_ns=1, ctime_ns=1, width=4000, height=3000,
                            content_hash=f"h{c.file_id}") for c in claims], now=2)
    store.maintain()
    store.close()
    db = sqlite3.connect(database)
    db.execute("PRAGMA journal_mode=DELETE")  # no -wal or -shm file left beside it
    db.close()


def test_a_database_damaged_in_the_middle(setup):
    config, database = setup
    _index_with_files(config, database)
    size = database.stat().st_size
    with open(database, "r+b") as f:  # overwrite pages in the middle, as a failing disk would
        f.seek(size // 2 - 16384)
        f.write(random.Random(2).randbytes(32768))
    assert_refused(config, database, "is damaged", commands=[("status",), ("export",), ("scan",)])
    out = subprocess.run([*FACEWATCH, "--config", str(config), "check"], capture_output=True, text=True)
    assert out.returncode in (1, 4) and "Traceback" not in out.stderr
    assert "malformed" in out.stdout + out.stderr or "integrity:" in out.stdout


def test_damaged_text_is_quoted_on_one_line(setup):
    # a page whose bytes are sound to SQLite but whose text is not UTF-8 and holds line breaks, as
    # random damage left it once: SQLite quotes the bytes, and the one line must stay one line
    config, database = setup
    _index_with_files(config, database, count=20)
    db = sqlite3.connect(database)
    db.execute("UPDATE files SET content_hash = CAST(X'0a30ff0d0a1b5b306d' AS TEXT) WHERE file_id = 7")
    db.commit()
    db.close()
    assert_refused(config, database, "is damaged or another program's", commands=[("export",)])


def test_damage_where_a_run_would_not_read_is_refused_before_it_writes(setup):
    # a page of people corrections: a scan of these files never reads it, so only a check of
    # every page at the start stops a writer from working on (and around) a damaged file
    config, database = setup
    _index_with_files(config, database, count=50)
    db = sqlite3.connect(database)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name='person_rejections'").fetchone()
    db.close()
    with open(database, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(random.Random(3).randbytes(page_size))
    assert_refused(config, database, "is damaged", commands=[("scan",), ("resume",), ("run",)])


@pytest.mark.skipif(not IS_ROOT, reason="mounting a read-only filesystem needs root")
def test_a_read_only_filesystem(setup, tmp_path):
    config, _ = setup
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)], check=True)
    try:
        database = disk / "facewatch.db"
        config = write_config(tmp_path, database=str(database))
        _index_with_files(config, database, count=50)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        assert status(config)["files"]["done"] == 50  # reading needs no writing
        assert_refused(config, database, "read-only", commands=[("scan",), ("run",), ("retry", "--all")])
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_check_finds_what_is_wrong_with_the_index(setup):
    config, database = setup
    _index_with_files(config, database, count=20)
    ok = facewatch(config, "check")
    assert ok.stdout.startswith(f"ok: {database} (quick check): 20 files")
    assert facewatch(config, "check", "--full").stdout.startswith(f"ok: {database} (full check)")
    db = sqlite3.connect(database)
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("INSERT INTO faces (file_id, idx, score, x, y, w, h, keypoints) VALUES (9999, 0, 1, 0, 0, 1, 1, '[]')")
    db.execute("UPDATE files SET status='pending' WHERE file_id IN (1, 2)")  # never to be analysed
    db.execute("UPDATE files SET face_count=3 WHERE file_id=5")
    db.commit()
    db.close()
    found = facewatch(config, "check", check=False)
    assert found.returncode == 1
    assert "problem: index: faces of files that do not exist: 1" in found.stdout
    assert "problem: index: pending or processing files not in the queue (they would never be analysed): 2" \
        in found.stdout
    assert "problem: index: files whose face count disagrees with their faces: 1" in found.stdout


@pytest.mark.slow
def test_backup_of_a_live_index_while_the_daemon_works(tmp_path, photo_dir, daemon):
    # full-size decodes of 6 MP photos: the backlog takes several seconds even on a fast machine
    config = write_config(tmp_path, processing={"batch_size": 8, "min_decode_side": 100000})
    make_variants(photo_dir, tmp_path / "photos", 150, seed=21, side=2400)
    d = daemon(config)
    # every file known (reconcile queues them while the first batches run) and the backlog under way
    wait_until(lambda: peek(config, "SELECT count(*) FROM files WHERE status = 'done'") >= 16
               and peek(config, "SELECT count(*) FROM files") == 150, timeout=60, interval=0.01,
               message="a backlog under way")
    out = facewatch(config, "backup", str(tmp_path / "copy.db"))
    assert status(config)["files"]["done"] < 150, "the backlog was done before the backup: use more photos"
    copy_config = write_config(tmp_path / "restore", database=str(tmp_path / "copy.db"))
    copied = status(copy_config)
    assert f"backed up {copied['files']['total']} files and {copied['faces']} faces to" in out.stdout
    assert 16 <= copied["files"]["done"] <= 150 and copied["files"]["total"] == 150
    assert sqlite3.connect(tmp_path / "copy.db").execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert facewatch(copy_config, "check").returncode == 0
    assert [n for n in os.listdir(tmp_path) if n.startswith(".facewatch-backup")] == []
    wait_until(lambda: status(config)["files"]["done"] == 150, timeout=120, message="the backlog")
    assert d.stop() == 0
    exported = {json.loads(line)["path"] for line in facewatch(copy_config, "export").stdout.splitlines()}
    assert len(exported) == 150
