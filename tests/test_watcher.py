"""The watcher on real inotify (and polling) over a temp folder, writing to a real SQLite store."""
import os
import shutil
import threading
import time

import pytest

from conftest import wait_until, write_config
from facewatch.config import load_config
from facewatch.store import open_store
from facewatch.intake.watcher import Watcher


@pytest.fixture
def setup(tmp_path):
    made = []

    def make(**overrides):
        config = load_config(str(write_config(tmp_path, **overrides)))
        store = open_store(config.database)
        enqueued = threading.Event()
        watcher = Watcher(store, config, on_enqueued=enqueued.set)
        watcher.start()
        made.append((watcher, store))
        return watcher, store, tmp_path / "photos"

    yield make
    for watcher, store in made:
        watcher.stop()
        store.close()


def queued(store):
    return {r.path: r.status for r in store.iter_files()}


def test_a_file_is_queued_on_close_after_write(setup, photo_dir):
    watcher, store, photos = setup()
    shutil.copy(photo_dir / "astronaut.jpg", photos / "a.jpg")
    wait_until(lambda: queued(store).get(str(photos / "a.jpg")) == "pending", timeout=5)


def test_only_watched_extensions_case_insensitive(setup, photo_dir):
    watcher, store, photos = setup()
    shutil.copy(photo_dir / "astronaut.jpg", photos / "UPPER.JPG")
    (photos / "notes.txt").write_text("not a photo")
    os.mkdir(photos / "folder.jpg")  # a folder named like an image
    wait_until(lambda: str(photos / "UPPER.JPG") in queued(store), timeout=5)
    time.sleep(0.3)
    assert set(queued(store)) == {str(photos / "UPPER.JPG")}


def test_a_slow_writer_is_queued_once_when_complete(setup, photo_dir):
    watcher, store, photos = setup()
    enqueued = []  # every FileStat the watcher hands the store
    real_enqueue = store.enqueue
    store.enqueue = lambda stats, now, force=False: real_enqueue(enqueued.extend(stats) or stats, now, force)
    data = (photo_dir / "astronaut.jpg").read_bytes()
    target = photos / "slow.jpg"
    with open(target, "wb") as f:
        for i in range(0, len(data), 2048):  # for about twice settle_s in all
            f.write(data[i:i + 2048])
            f.flush()
            time.sleep(0.02)  # a chunk well within settle_s: only the close says it is complete
            assert queued(store) == {} and enqueued == [], f"queued after {i + 2048} bytes, before the close"
    wait_until(lambda: str(target) in queued(store), timeout=5)
    time.sleep(1.0)  # longer than settle_s: a settle timer left running would queue it again
    assert [(s.path, s.size) for s in enqueued] == [(str(target), len(data))], "queued more than once"
    assert store.file_record(str(target)).size == len(data)


def test_an_atomic_rename_from_outside_is_queued_at_once(setup, photo_dir, tmp_path):
    watcher, store, photos = setup(processing={"settle_s": 30})  # no waiting for a settle timer
    tmp = tmp_path / "incoming.tmp"
    shutil.copy(photo_dir / "astronaut.jpg", tmp)
    os.replace(tmp, photos / "renamed.jpg")
    wait_until(lambda: str(photos / "renamed.jpg") in queued(store), timeout=3)


def test_a_folder_moved_in_is_walked_and_then_watched(setup, photo_dir, tmp_path):
    watcher, store, photos = setup()
    outside = tmp_path / "album"
    (outside / "inner").mkdir(parents=True)
    shutil.copy(photo_dir / "astronaut.jpg", outside / "1.jpg")
    shutil.copy(photo_dir / "astronaut.jpg", outside / "inner" / "2.jpg")
    os.rename(outside, photos / "album")
    wait_until(lambda: len(queued(store)) == 2, timeout=5)
    shutil.copy(photo_dir / "astronaut.jpg", photos / "album" / "inner" / "3.jpg")
    wait_until(lambda: str(photos / "album" / "inner" / "3.jpg") in queued(store), timeout=5)


def test_a_rename_inside_the_tree_moves_the_row(setup, photo_dir):
    watcher, store, photos = setup()
    shutil.copy(photo_dir / "astronaut.jpg", photos / "a.jpg")
    wait_until(lambda: str(photos / "a.jpg") in queued(store), timeout=5)
    os.rename(photos / "a.jpg", photos / "b.jpg")
    wait_until(lambda: set(queued(store)) == {str(photos / "b.jpg")}, timeout=5)


def test_deleted_files_become_missing(setup, photo_dir):
    watcher, store, photos = setup()
    (photos / "sub").mkdir()
    for name in ("a.jpg", "sub/b.jpg"):
        shutil.copy(photo_dir / "astronaut.jpg", photos / name)
    wait_until(lambda: len(queued(store)) == 2, timeout=5)
    os.unlink(photos / "a.jpg")
    shutil.rmtree(photos / "sub")
    wait_until(lambda: set(queued(store).values()) == {"missing"}, timeout=5)


def test_a_vanished_root_marks_nothing_missing(setup, photo_dir, tmp_path):
    watcher, store, photos = setup()
    shutil.copy(photo_dir / "astronaut.jpg", photos / "a.jpg")
    wait_until(lambda: str(photos / "a.jpg") in queued(store), timeout=5)
    os.rename(photos, tmp_path / "unmounted")  # the share went away
    time.sleep(0.5)
    assert queued(store) == {str(photos / "a.jpg"): "pending"}
    assert watcher.check_roots() == []
    os.rename(tmp_path / "unmounted", photos)  # and came back
    assert watcher.check_roots() == [str(photos)]


def test_polling_queues_a_file_after_it_settles(setup, photo_dir):
    watcher, store, photos = setup(watch={"polling": True}, processing={"settle_s": 0.3})
    shutil.copy(photo_dir / "astronaut.jpg", photos / "polled.jpg")
    wait_until(lambda: str(photos / "polled.jpg") in queued(store), timeout=10)


def test_a_root_that_appears_later_is_watched(setup, photo_dir, tmp_path):
    later = tmp_path / "later"
    watcher, store, photos = setup(watch={"paths": [str(later)]})
    shutil.rmtree(later)
    watcher.unwatch(str(later))
    assert watcher.check_roots() == []
    later.mkdir()
    assert watcher.check_roots() == [str(later)]
    shutil.copy(photo_dir / "astronaut.jpg", later / "a.jpg")
    wait_until(lambda: str(later / "a.jpg") in queued(store), timeout=5)


def test_an_idle_flusher_sleeps_until_a_note_or_a_settling_file_is_due(setup, photo_dir):
    """It used to look every 20 ms, idle or not: 50 wake-ups a second from a daemon with nothing to do."""
    watcher, store, photos = setup()
    flushes = []
    real_flush = watcher._flush
    watcher._flush = lambda: flushes.append(time.monotonic()) or real_flush()
    time.sleep(2)
    assert len(flushes) <= 1, f"an idle flusher woke {len(flushes)} times in 2 s"
    flushes.clear()
    shutil.copy(photo_dir / "astronaut.jpg", photos / "a.jpg")
    wait_until(lambda: queued(store).get(str(photos / "a.jpg")) == "pending", timeout=5)
    time.sleep(1)
    # the notes of the copy, then the file's settle time: a handful of wake-ups, not one per 20 ms
    assert 1 <= len(flushes) <= 6, f"{len(flushes)} flushes for one file"
