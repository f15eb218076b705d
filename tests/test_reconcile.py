"""Reconcile: what changed while nobody watched, on real folders and a real store of each backend."""
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import BACKENDS, NO_DAC, write_config
from facewatch.config import load_config
from facewatch.intake.reconcile import reconcile
from facewatch.store import Result, open_store


@pytest.fixture(params=BACKENDS)
def env(request, tmp_path):
    database = request.getfixturevalue("postgres_url") if request.param == "postgres" \
        else str(tmp_path / "state" / "facewatch.db")
    config = load_config(str(write_config(tmp_path, database=database)))
    store = open_store(config.database)
    yield config, store, tmp_path / "photos"
    store.close()


def finish_all(store):
    claims = store.claim("w", 1000, now=1, lease_s=60)
    store.save("w", [Result(c.file_id, "done", size=os.path.getsize(c.path), mtime_ns=os.stat(c.path).st_mtime_ns,
                            ctime_ns=os.stat(c.path).st_ctime_ns, width=1, height=1) for c in claims], now=2)
    return len(claims)


def statuses(store):
    return {os.path.basename(r.path): r.status for r in store.iter_files()}


def test_new_changed_and_deleted_files(env, photo_dir):
    config, store, photos = env
    (photos / "deep" / "er").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "deep/c.jpg", "deep/er/d.jpg"):
        shutil.copy(photo_dir / "astronaut.jpg", photos / name)
    (photos / "readme.txt").write_text("x")
    report = reconcile(store, [str(photos)], config.watch, now=1)
    assert (report.seen, report.queued, report.missing) == (4, 4, 0)
    assert finish_all(store) == 4
    assert reconcile(store, [str(photos)], config.watch, now=3).queued == 0  # nothing changed
    with open(photos / "a.jpg", "ab") as f:
        f.write(b"\0")  # edited
    os.unlink(photos / "b.jpg")
    shutil.rmtree(photos / "deep" / "er")
    shutil.copy(photo_dir / "coffee.png", photos / "new.png")
    report = reconcile(store, [str(photos)], config.watch, now=4)
    assert (report.queued, report.missing) == (2, 2)
    assert statuses(store) == {"a.jpg": "pending", "b.jpg": "missing", "c.jpg": "done",
                               "d.jpg": "missing", "new.png": "pending"}


def test_an_absent_root_is_an_outage_not_a_deletion(env, photo_dir, tmp_path):
    config, store, photos = env
    shutil.copy(photo_dir / "astronaut.jpg", photos / "a.jpg")
    reconcile(store, [str(photos)], config.watch, now=1)
    finish_all(store)
    os.rename(photos, tmp_path / "renamed-away")
    report = reconcile(store, [str(photos)], config.watch, now=2)
    assert report.outages == [str(photos)] and report.missing == 0
    assert statuses(store) == {"a.jpg": "done"}


def test_an_unreadable_subfolder_marks_nothing_missing(env, photo_dir, tmp_path):
    config, store, photos = env
    (photos / "private").mkdir()
    shutil.copy(photo_dir / "astronaut.jpg", photos / "private" / "a.jpg")
    reconcile(store, [str(photos)], config.watch, now=1)
    (photos / "private").chmod(0)
    code = ("import sys; from facewatch.config import load_config; from facewatch.store import open_store; "
            "from facewatch.intake.reconcile import reconcile; c = load_config(sys.argv[1]); "
            "print(reconcile(open_store(c.database), c.watch.paths, c.watch, now=2).missing)")
    try:
        out = subprocess.run([*NO_DAC, sys.executable, "-c", code, str(tmp_path / "config.yaml")],
                             capture_output=True, text=True)
    finally:
        (photos / "private").chmod(0o755)
    assert out.stdout.strip().splitlines()[-1] == "0", out.stderr
    assert "folder_unreadable" in out.stdout + out.stderr
    assert statuses(store) == {"a.jpg": "pending"}


def test_symlinks_out_of_the_root_are_not_followed_and_loops_do_not_hang(env, photo_dir, tmp_path):
    config, store, photos = env
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(photo_dir / "astronaut.jpg", outside / "secret.jpg")
    os.symlink(outside, photos / "link-out")
    os.symlink(outside / "secret.jpg", photos / "file-link-out.jpg")
    os.symlink(photos, photos / "loop")
    shutil.copy(photo_dir / "astronaut.jpg", photos / "a.jpg")
    os.symlink(photos / "a.jpg", photos / "inside-link.jpg")
    report = reconcile(store, [str(photos)], config.watch, now=1)
    assert sorted(statuses(store)) == ["a.jpg", "inside-link.jpg"]
    assert report.seen == 2


def test_files_still_being_written_are_deferred(env, photo_dir):
    config, store, photos = env
    shutil.copy(photo_dir / "astronaut.jpg", photos / "fresh.jpg")
    deferred = []
    mtime = os.stat(photos / "fresh.jpg").st_mtime
    report = reconcile(store, [str(photos)], config.watch, now=mtime + 0.1, settle_s=1.0, defer=deferred.append)
    assert report.deferred == 1 and [d.path for d in deferred] == [str(photos / "fresh.jpg")]
    assert report.queued == 0


def test_many_files_in_batches(env):
    config, store, photos = env
    for d in range(5):
        (photos / f"d{d}").mkdir()
        for i in range(1000):
            (photos / f"d{d}" / f"{i}.jpg").write_bytes(b"x")
    report = reconcile(store, [str(photos)], config.watch, now=1)
    assert report.queued == 5000 and store.queue_size() == 5000
    shutil.rmtree(photos / "d3")
    assert reconcile(store, [str(photos)], config.watch, now=2).missing == 1000


def test_a_quick_reconcile_skips_unchanged_folders_but_sees_new_and_deleted_files(env, photo_dir):
    config, store, photos = env
    for d in ("a", "b"):
        (photos / d).mkdir()
        for i in range(3):
            shutil.copy(photo_dir / "astronaut.jpg", photos / d / f"{i}.jpg")
    old = time.time() - 60
    for d in ("a", "b", ""):
        os.utime(photos / d, (old, old))  # the folders last changed a minute ago
    first = reconcile(store, [str(photos)], config.watch, now=time.time())
    assert first.queued == 6
    finish_all(store)
    quick = reconcile(store, [str(photos)], config.watch, now=time.time(), quick=True)
    assert (quick.seen, quick.queued, quick.missing) == (0, 0, 0)  # no file looked at
    with open(photos / "a" / "0.jpg", "ab") as f:
        f.write(b"\0")  # rewritten in place: its folder's mtime stays
    shutil.copy(photo_dir / "coffee.png", photos / "b" / "new.png")
    os.unlink(photos / "b" / "1.jpg")
    quick = reconcile(store, [str(photos)], config.watch, now=time.time(), quick=True)
    assert (quick.seen, quick.queued, quick.missing) == (3, 1, 1)  # folder b only
    full = reconcile(store, [str(photos)], config.watch, now=time.time())
    assert full.queued == 1  # the full one sees the edit
    assert store.file_record(str(photos / "a" / "0.jpg")).status == "pending"
