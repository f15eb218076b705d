"""facewatch on a real PostgreSQL: the daemon, kill -9, two hosts sharing one queue, moving an index.

The second host is a second daemon in its own UTS namespace (`unshare --uts`, as root), so it
has a host name of its own, with the same photo folder at the same path, on the same server.
"""
import os
import random
import shutil

import psycopg
import pytest

from conftest import (COMMANDS, KILL_MOMENTS, DaemonProcess, assert_refused, export, facewatch, kill_at, make_variants,
                      status, wait_until, write_config)

pytestmark = pytest.mark.slow


def query(url: str, sql: str, *args):
    with psycopg.connect(url, autocommit=True) as c:
        cursor = c.execute(sql, args or None)
        return cursor.fetchall() if cursor.description else None


def settled(config, total: int) -> bool:
    s = status(config)
    return s["files"]["done"] == total and s["queue"] == {"pending": 0, "processing": 0}


def test_the_daemon_on_postgresql(tmp_path, daemon, photo_dir, postgres_url):
    config = write_config(tmp_path, database=postgres_url.replace("postgres@", "postgres:s3cret@"))
    d = daemon(config)
    make_variants(photo_dir, tmp_path / "photos", 20, seed=1)
    wait_until(lambda: settled(config, 20), timeout=60, message="20 photos done")
    s = status(config)
    assert s["daemon"]["running"] and s["faces"] == 20
    assert "s3cret" not in s["database"] and ":***@" in s["database"]
    assert [x["running"] for x in s["daemons"]] == [True]
    assert "s3cret" not in d.log_path.read_text()
    assert d.stop() == 0
    assert status(config)["daemon"]["running"] is False
    scan = facewatch(config, "check")
    assert scan.returncode == 0 and "20 files, 20 faces" in scan.stdout


def test_kill_9_on_postgresql_loses_and_duplicates_nothing(tmp_path, daemon, photo_dir, postgres_url):
    config = write_config(tmp_path, database=postgres_url, processing={"batch_size": 16})
    paths = make_variants(photo_dir, tmp_path / "photos", 300, side=1600, seed=4)
    rng = random.Random(9)
    kills = 0
    claimed = lambda: query(postgres_url, "SELECT count(*) FROM pending WHERE claimed_by IS NOT NULL")[0][0]  # noqa: E731
    for moment in [*KILL_MOMENTS, *rng.choices(KILL_MOMENTS, k=2)]:
        kill_at(daemon(config, wait_ready=False), moment, claimed)
        kills += 1
    done = query(postgres_url, "SELECT count(*) FROM files WHERE status = 'done'")[0][0]
    assert done < len(paths), "the work finished before the kills were done: use more photos"
    d = daemon(config)
    # the killed daemons' claims come back at once: their lock connections are gone
    wait_until(lambda: settled(config, len(paths)), timeout=90, message="everything done after the kills")
    assert d.stop() == 0
    rows = query(postgres_url, "SELECT f.path, count(x.face_id) FROM files f LEFT JOIN faces x USING (file_id) "
                               "GROUP BY f.file_id")
    assert len(rows) == len(paths) and all(n == 1 for _, n in rows)
    analyses = query(postgres_url, "SELECT sum(runs) FROM processed_files")[0][0]
    assert len(paths) <= analyses <= len(paths) + kills * 2 * 16


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="a second host identity needs root and unshare (a UTS namespace of its own)")
def test_two_hosts_share_one_queue_and_one_killed_loses_nothing(tmp_path, daemon, photo_dir, postgres_url):
    config = write_config(tmp_path, database=postgres_url, processing={"batch_size": 8, "workers": 1})
    a = daemon(config)
    b = DaemonProcess(config, tmp_path / "host-b.log").start(
        prefix=["unshare", "--uts", "sh", "-c", 'hostname facewatch-host-b && exec "$0" "$@"'])
    try:
        hosts = {x["host"] for x in status(config)["daemons"] if x["running"]}
        assert len(hosts) == 2 and "facewatch-host-b" in hosts
        # made aside, then moved in at once: a backlog (made in place, they arrive no faster than two
        # hosts analyse them, and there is never a batch to kill host b in the middle of)
        (tmp_path / "photos").mkdir(exist_ok=True)
        paths = [made.rename(tmp_path / "photos" / made.name)
                 for made in make_variants(photo_dir, tmp_path / "made", 500, side=900, seed=6)]
        wait_until(lambda: query(postgres_url, "SELECT count(*) FROM files WHERE status = 'done'")[0][0] >= 100,
                   timeout=120, interval=0.05, message="a backlog under way")

        def claimants() -> set:  # the hosts holding claims now (a host between two batches holds none)
            return {r[0].split(":")[0] for r in query(postgres_url, "SELECT DISTINCT claimed_by FROM pending "
                                                                    "WHERE claimed_by IS NOT NULL")}
        wait_until(lambda: "facewatch-host-b" in claimants(), timeout=60, interval=0.005,
                   message="host b holding a batch")
        b.kill()  # SIGKILL, mid-backlog, with claims
        wait_until(lambda: settled(config, len(paths)), timeout=180, interval=0.5,
                   message="host a finishing host b's share")
        s = status(config)
        assert {x["host"]: x["running"] for x in s["daemons"]}.get("facewatch-host-b") is False, s["daemons"]
        by_host = query(postgres_url, "SELECT count(DISTINCT worker_id) FROM processed_files")[0][0]
        assert by_host >= 2  # both hosts' analysers did some of the work
    finally:
        if b.proc.poll() is None:
            b.kill()
    assert a.stop() == 0
    rows = query(postgres_url, "SELECT count(*), count(DISTINCT file_id) FROM faces")[0]
    assert rows[0] == rows[1] == len(paths)  # one result set per file
    analyses = query(postgres_url, "SELECT sum(runs) FROM processed_files")[0][0]
    assert len(paths) <= analyses <= len(paths) + 2 * 8  # only host b's batches in flight ran twice
    # the same faces as one host alone, on SQLite
    (tmp_path / "single").mkdir()
    single = write_config(tmp_path / "single", watch={"paths": [str(tmp_path / "photos")]})
    facewatch(single, "scan", timeout=300)
    shared, alone = export(config), export(single)
    assert shared.keys() == alone.keys()
    assert all([f["bbox"] for f in shared[p]["faces"]] == [f["bbox"] for f in alone[p]["faces"]] for p in alone)


def test_db_copy_from_sqlite_to_postgresql_and_back(tmp_path, photo_dir, postgres_url):
    config = write_config(tmp_path)
    make_variants(photo_dir, tmp_path / "photos", 30, seed=2)
    facewatch(config, "scan")
    out = facewatch(config, "db", "copy", "--to", postgres_url)
    assert "copied 30 files" in out.stdout and "30 faces" in out.stdout
    (tmp_path / "pg").mkdir()
    (tmp_path / "back").mkdir()
    on_postgres = write_config(tmp_path / "pg", database=postgres_url, watch={"paths": [str(tmp_path / "photos")]})
    assert export(on_postgres) == export(config)
    again = facewatch(config, "db", "copy", "--to", postgres_url, check=False)
    assert again.returncode == 1 and "not empty" in again.stderr
    back = tmp_path / "back.db"
    facewatch(on_postgres, "db", "copy", "--to", str(back))
    restored = write_config(tmp_path / "back", database=str(back), watch={"paths": [str(tmp_path / "photos")]})
    assert export(restored) == export(config)
    assert status(restored)["checkpoint"]["status"] == "completed"
    # the copy works on: a new photo is analysed and gets a new id
    make_variants(photo_dir, tmp_path / "photos", 31, seed=2)
    facewatch(on_postgres, "scan")
    assert status(on_postgres)["files"]["done"] == 31


def test_an_unreachable_server_is_one_line_and_exit_4(tmp_path):
    config = write_config(tmp_path, database="postgresql://fw:s3cret@127.0.0.1:1/facewatch")
    for command in (["status"], ["scan"], ["export"]):
        out = facewatch(config, *command, check=False)
        assert out.returncode == 4, (command, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot be reached" in lines[0] and "Traceback" not in out.stderr
        assert "s3cret" not in out.stderr and "fw:***@127.0.0.1:1" in lines[0]


def test_db_copy_is_refused_while_a_daemon_holds_the_index(tmp_path, daemon, photo_dir, postgres_url):
    config = write_config(tmp_path)
    make_variants(photo_dir, tmp_path / "photos", 3, seed=8)
    d = daemon(config)
    wait_until(lambda: settled(config, 3), timeout=60, message="three photos done")
    refused = facewatch(config, "db", "copy", "--to", postgres_url, check=False)
    assert refused.returncode == 3 and "in use" in refused.stderr and "Traceback" not in refused.stderr
    assert query(postgres_url, "SELECT count(*) FROM files")[0][0] == 0  # nothing half-copied
    assert d.stop() == 0
    assert "copied 3 files" in facewatch(config, "db", "copy", "--to", postgres_url).stdout


# every command that opens the database but `backup`, which is for SQLite files (PostgreSQL has pg_dump)
ON_POSTGRES = [command for command in COMMANDS if command[0] != "backup"]


def test_another_programs_tables_are_refused_and_left_as_they_are(tmp_path, postgres_url):
    query(postgres_url, "CREATE TABLE files (path TEXT, taken DATE)")
    query(postgres_url, "INSERT INTO files VALUES ('/a.jpg', '2020-01-01')")
    query(postgres_url, "CREATE TABLE orders (id INT)")  # a table of another name alone would be fine
    config = write_config(tmp_path, database=postgres_url)
    assert_refused(config, postgres_url, "is another program's database (it has tables facewatch did not make: files)",
                   commands=ON_POSTGRES)
    assert query(postgres_url, "SELECT to_regclass('schema_migrations')")[0][0] is None
    assert query(postgres_url, "SELECT * FROM files")[0][0] == "/a.jpg"


def test_a_newer_facewatchs_schema_is_refused_by_every_command(tmp_path, photo_dir, postgres_url):
    config = write_config(tmp_path, database=postgres_url)
    make_variants(photo_dir, tmp_path / "photos", 2, seed=3)
    facewatch(config, "scan")
    query(postgres_url, "INSERT INTO schema_migrations VALUES ('0999_from_the_future', 'x')")
    assert_refused(config, postgres_url, "was made by a newer facewatch (schema changes this version does not "
                                         "know: 0999_from_the_future)", commands=ON_POSTGRES)
    assert query(postgres_url, "SELECT count(*) FROM files")[0][0] == 2
