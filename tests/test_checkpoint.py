"""The seed's checkpoint API: file-based, database-backed, and the tracker, on real files and SQLite."""
import json

import pytest
import structlog

from facewatch.checkpoint import (CheckpointManager, CheckpointState, CheckpointTracker,
                                  DatabaseCheckpointManager)
from facewatch.store import FileStat, Result, open_store


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "fw.db"))
    yield s
    s.close()


@pytest.fixture
def logs():
    with structlog.testing.capture_logs() as captured:
        yield captured


# file-based -----------------------------------------------------------------------------------
def test_create_load_and_progress(tmp_path, logs):
    manager = CheckpointManager(tmp_path / "cp")
    assert not manager.has_checkpoint() and manager.load_checkpoint() is None
    state = manager.create_checkpoint(batch_number=1, processed_files_count=100, total_files=17000,
                                      current_threshold=0.5, last_processed_file="/p/100.jpg")
    loaded = manager.load_checkpoint()
    assert loaded == state and loaded.status == "in_progress"
    assert "T" in loaded.timestamp and loaded.timestamp.endswith("+00:00")
    assert manager.get_progress_percentage(loaded) == pytest.approx(100 / 170)
    messages = [e.get("message") for e in logs]
    assert "Checkpoint saved: batch=1, processed=100/17000" in messages
    assert "Checkpoint loaded: batch=1, processed=100/17000, status=in_progress" in messages
    on_disk = json.loads((tmp_path / "cp" / "checkpoint.json").read_text())
    assert on_disk["processed_files_count"] == 100  # human-readable JSON


def test_remaining_files_and_resume(tmp_path):
    manager = CheckpointManager(tmp_path)
    files = [f"/p/{i}.jpg" for i in range(10)]
    state = manager.create_checkpoint(batch_number=2, processed_files_count=4, total_files=10,
                                      last_processed_file="/p/3.jpg")
    assert manager.get_remaining_files(state, files) == files[4:]
    assert manager.resume_from_checkpoint() == state
    manager.create_checkpoint(batch_number=5, processed_files_count=10, total_files=10)
    assert manager.resume_from_checkpoint() is None  # everything processed
    manager.create_checkpoint(batch_number=3, processed_files_count=6, total_files=10)
    assert manager.mark_completed().status == "completed"
    assert manager.resume_from_checkpoint() is None
    assert manager.get_progress_percentage(CheckpointState(total_files=0, status="completed")) == 100


def test_truncated_or_corrupt_checkpoint_is_treated_as_absent(tmp_path, logs):
    manager = CheckpointManager(tmp_path)
    manager.create_checkpoint(batch_number=1, processed_files_count=1, total_files=2)
    text = manager.path.read_text()
    manager.path.write_text(text[: len(text) // 2])
    assert manager.load_checkpoint() is None
    assert manager.resume_from_checkpoint() is None
    assert any(e["event"] == "checkpoint_unreadable" for e in logs)


@pytest.mark.parametrize("content", ["[1, 2, 3]", "null", "42", '"text"',
                                     '{"batch_number": "one", "processed_files_count": 1, "total_files": 2}',
                                     '{"batch_number": 1, "processed_files_count": 1, "total_files": 2, "status": 7}',
                                     '{"batch_number": 1, "processed_files_count": null, "total_files": 2}',
                                     '{"batch_number": 1, "current_threshold": "high"}',
                                     '{"batch_number": 1, "status": "paused"}',
                                     '{"batch_number": -1}'])
def test_valid_json_that_is_not_a_checkpoint_is_treated_as_absent(tmp_path, logs, content):
    manager = CheckpointManager(tmp_path)
    manager.path.write_text(content)
    assert manager.load_checkpoint() is None
    assert manager.has_checkpoint() is False and manager.resume_from_checkpoint() is None
    assert manager.mark_completed() is None
    assert any(e["event"] == "checkpoint_unreadable" and e["log_level"] == "warning" for e in logs)


def test_tracker_progress_is_a_percentage(tmp_path):
    tracker = CheckpointTracker(CheckpointManager(tmp_path), total_files=8, checkpoint_interval=100)
    assert tracker.get_progress() == 0.0
    for i in range(3):
        tracker.update(f"/p/{i}.jpg")
    assert tracker.get_progress() == pytest.approx(37.5)
    assert CheckpointTracker(CheckpointManager(tmp_path), total_files=0).get_progress() == 100.0


def test_a_crash_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path)
    manager.create_checkpoint(batch_number=1, processed_files_count=10, total_files=20)

    def crash(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("os.replace", crash)
    assert manager.save_checkpoint(CheckpointState(2, 15, 20)) is False
    monkeypatch.undo()
    assert manager.load_checkpoint().batch_number == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.json"]  # no temporary left behind


def test_invalid_status_is_rejected():
    with pytest.raises(ValueError):
        CheckpointState(status="paused")


# database-backed ------------------------------------------------------------------------------
def test_database_manager_round_trip(store, logs):
    store.enqueue([FileStat(f"/p/{i}.jpg", 1, 1) for i in range(4)], now=1)
    db = DatabaseCheckpointManager(store)
    cid = db.save_checkpoint(1, 100, "in_progress")
    assert "Database checkpoint saved: batch=1, processed=100, status=in_progress" in [e.get("message") for e in logs]
    assert db.load_checkpoint()["id"] == cid
    claims = store.claim("w", 2, now=2, lease_s=60)
    store.save("w", [Result(c.file_id, "done", width=1, height=1) for c in claims], now=3)
    remaining = db.get_remaining_files(1)
    assert remaining == ["/p/2.jpg", "/p/3.jpg"]
    assert "Found 2 remaining files from checkpoint batch 1" in [e.get("message") for e in logs]
    checkpoint, files = db.get_checkpoint_with_files()
    assert checkpoint["id"] == cid and files == remaining
    assert db.update_processed_files(claims[0].file_id, 7, "done")
    assert db.mark_checkpoint_completed(cid)
    assert db.load_checkpoint()["status"] == "completed"
    stats = db.get_statistics()
    assert stats["checkpoints"] == 1 and stats["processed_files"] == 2
    assert db.update_processed_files(999, 7, "done") is False  # the foreign key holds; logged, not raised


def test_processed_files_are_no_longer_remaining(tmp_path, logs):
    db = DatabaseCheckpointManager(str(tmp_path / "fw.db"))  # a database's path will do
    db.store.enqueue([FileStat(f"/p/{i}.jpg", 1, 1) for i in range(5)], now=1)
    ids = {r.path: r.file_id for r in db.store.iter_files()}
    cid = db.save_checkpoint(1, 0, "in_progress")
    assert len(db.get_remaining_files(1)) == 5
    assert db.update_processed_files(ids["/p/1.jpg"], 3, "processed")
    assert db.update_processed_files(ids["/p/3.jpg"], 4, "processed")
    assert db.get_remaining_files(1) == ["/p/0.jpg", "/p/2.jpg", "/p/4.jpg"]
    assert "Found 3 remaining files from checkpoint batch 1" in [e.get("message") for e in logs]
    db.store.enqueue([FileStat("/p/5.jpg", 1, 1)], now=2)  # found after checkpoint 1: not one of its files
    db.save_checkpoint(2, 2, "in_progress")
    assert db.get_remaining_files(1) == ["/p/0.jpg", "/p/2.jpg", "/p/4.jpg"]
    assert db.get_remaining_files(2) == ["/p/0.jpg", "/p/2.jpg", "/p/4.jpg", "/p/5.jpg"]
    assert db.get_remaining_files(9) == []  # no such batch: logged
    assert any(e["event"] == "checkpoint_batch_unknown" for e in logs)
    assert db.mark_checkpoint_completed(cid) is True
    assert db.mark_checkpoint_completed(cid + 100) is False
    with pytest.raises(ValueError):
        db.save_checkpoint(3, 3, "done")
    assert db.load_checkpoint()["batch_number"] == 2
    db.store.close()


def test_database_errors_are_logged_not_raised(tmp_path, logs):
    s = open_store(str(tmp_path / "fw.db"))
    s.conn.execute("DROP TABLE checkpoints")
    db = DatabaseCheckpointManager(s)
    assert db.save_checkpoint(1, 1, "in_progress") is None
    assert db.load_checkpoint() is None
    assert any(e["event"] == "database_checkpoint_failed" for e in logs)
    s.close()


# the tracker ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["file", "database"])
def test_tracker_saves_every_interval(tmp_path, store, kind):
    manager = CheckpointManager(tmp_path / "cp") if kind == "file" else DatabaseCheckpointManager(store)
    tracker = CheckpointTracker(manager, total_files=250, checkpoint_interval=100)
    saved = [tracker.update(f"/p/{i}.jpg", current_threshold=0.5) for i in range(250)]
    assert saved.count(True) == 2 and saved[99] and saved[199]
    assert not tracker.should_save_checkpoint()
    assert tracker.get_progress() == 100.0
    assert tracker.progress_details() == {"processed": 250, "total": 250, "percentage": 100.0, "batch_number": 2,
                                          "last_processed_file": "/p/249.jpg", "current_threshold": 0.5}
    tracker.mark_completed()
    latest = manager.load_checkpoint()
    if kind == "file":
        assert (latest.status, latest.processed_files_count, latest.batch_number) == ("completed", 250, 3)
        assert manager.resume_from_checkpoint() is None
    else:
        assert (latest["status"], latest["processed_files_count"], latest["batch_number"]) == ("completed", 250, 3)
        assert latest["metadata"]["last_processed_file"] == "/p/249.jpg"
