"""End to end: `facewatch run` as a subprocess on real folders, real photos and the real model."""
import json
import os
import random
import shutil
import signal
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import (KILL_MOMENTS, drop, export, facewatch, iou, kill_at, make_variants, peek, reference_faces,
                      status, wait_until, write_config)

pytestmark = pytest.mark.slow


def all_settled(config, count):
    s = status(config)
    return s["files"]["done"] + s["files"]["failed"] == count and s["queue"] == {"pending": 0, "processing": 0}


def test_photos_dropped_into_a_running_daemon_are_indexed(tmp_path, daemon, photo_dir, hand_loop):
    config = write_config(tmp_path)
    photos = tmp_path / "photos"
    d = daemon(config)
    assert status(config)["daemon"]["running"] is True
    drop(photo_dir / "astronaut.jpg", photos, how="copy")
    drop(photo_dir / "two_astronauts.jpg", photos, how="rename")
    drop(photo_dir / "sideways.jpg", photos, how="rename")
    drop(photo_dir / "coffee.png", photos, how="copy")
    data = (photo_dir / "cameraman.jpg").read_bytes()
    with open(photos / "slow.jpg", "wb") as f:  # a slow upload: written in chunks over ~1.5 s
        for i in range(0, len(data), len(data) // 10 + 1):
            f.write(data[i:i + len(data) // 10 + 1])
            f.flush()
            time.sleep(0.15)
    wait_until(lambda: all_settled(config, 5), timeout=30, message="all five photos done")

    results = export(config)
    for name, source in [("astronaut.jpg", "astronaut.jpg"), ("two_astronauts.jpg", "two_astronauts.jpg"),
                         ("sideways.jpg", "upright.jpg"), ("coffee.png", "coffee.png"),
                         ("slow.jpg", "cameraman.jpg")]:
        record = results[str(photos / name)]
        expected, width, height = reference_faces(hand_loop, photo_dir / source)
        assert record["status"] == "done" and record["error"] is None
        assert (record["width"], record["height"]) == (width, height), name
        assert len(record["faces"]) == len(expected), name
        for face in record["faces"]:
            assert max(iou(face["bbox"], box) for box, _ in expected) >= 0.8, name
            assert len(face["keypoints"]) == 6
    s = status(config)
    assert s["files"] == {"total": 5, "done": 5, "failed": 0, "missing": 0, "with_faces": 4}
    assert s["faces"] == 5
    assert s["analyses"] == 5, "the slow upload was analysed more than once"

    assert d.stop(timeout=60) == 0  # the timeout only stops a daemon that would not stop
    after = status(config)
    assert after["daemon"]["running"] is False
    assert after["queue"] == {"pending": 0, "processing": 0}
    assert after["checkpoint"]["kind"] == "daemon"
    assert "Traceback" not in d.log_path.read_text()


def test_sigterm_mid_batch_finishes_the_batch_in_flight_and_nothing_stays_claimed(tmp_path, daemon, photo_dir):
    # full-size decodes of 9 MP photos: a batch of 16 takes about half a second on two cores
    config = write_config(tmp_path, processing={"batch_size": 16, "min_decode_side": 100000})
    make_variants(photo_dir, tmp_path / "photos", 60, side=3000)
    d = daemon(config)
    in_flight = wait_until(lambda: (lambda s: s if s["queue"]["processing"] else None)(status(config)),
                           timeout=30, message="a batch in flight")
    assert d.stop(timeout=15) == 0
    s = status(config)
    assert s["queue"]["processing"] == 0
    assert s["files"]["done"] + s["queue"]["pending"] == s["files"]["total"]
    # the batch that was in flight was finished and saved, not given back
    assert s["files"]["done"] >= in_flight["files"]["done"] + in_flight["queue"]["processing"]
    events = [e["event"] for e in d.events()]
    assert "claims_released" not in events and "drain_cut_short" not in events
    db = sqlite3.connect(str(tmp_path / "state" / "facewatch.db"))
    assert db.execute("SELECT count(*) FROM pending WHERE claimed_by IS NOT NULL").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM files WHERE status='processing'").fetchone()[0] == 0
    daemon(config)  # the rest, and whatever was still settling at the stop, is done after a restart
    wait_until(lambda: all_settled(config, 60), timeout=60, message="the rest after a restart")
    assert status(config)["analyses"] == 60, "a batch finished at the stop ran twice"


def test_changes_while_stopped_are_reconciled_at_start(tmp_path, daemon, photo_dir):
    config = write_config(tmp_path)
    photos = tmp_path / "photos"
    for name in ("astronaut.jpg", "cameraman.jpg", "coffee.png"):
        shutil.copy(photo_dir / name, photos / name)
    facewatch(config, "scan")
    assert status(config)["files"]["done"] == 3
    # while stopped: one added, one edited (now two faces), one deleted
    shutil.copy(photo_dir / "upright.jpg", photos / "added.jpg")
    shutil.copy(photo_dir / "two_astronauts.jpg", photos / "astronaut.jpg")
    os.unlink(photos / "coffee.png")
    daemon(config)
    wait_until(lambda: status(config)["files"]["done"] == 3 and status(config)["files"]["missing"] == 1
               and status(config)["queue"]["pending"] == 0, timeout=60, message="the reconcile")
    results = export(config)
    assert len(results[str(photos / "astronaut.jpg")]["faces"]) == 2
    assert results[str(photos / "coffee.png")]["status"] == "missing"
    assert results[str(photos / "added.jpg")]["status"] == "done"


def test_a_root_renamed_away_marks_nothing_missing(tmp_path, daemon, photo_dir):
    config = write_config(tmp_path, schedule={"reconcile_interval_s": 0.5})
    photos = tmp_path / "photos"
    shutil.copy(photo_dir / "astronaut.jpg", photos / "a.jpg")
    d = daemon(config)
    wait_until(lambda: status(config)["files"]["done"] == 1, timeout=20)
    os.rename(photos, tmp_path / "elsewhere")
    time.sleep(2)  # several reconciles and root checks
    assert status(config)["files"]["missing"] == 0
    os.rename(tmp_path / "elsewhere", photos)
    shutil.copy(photo_dir / "cameraman.jpg", photos / "b.jpg")  # arrived during the outage
    wait_until(lambda: status(config)["files"]["done"] == 2, timeout=20, message="the root to come back")
    assert d.proc.poll() is None


def test_a_frozen_daemon_reads_as_not_running_until_it_is_thawed(tmp_path, daemon):
    """A frozen daemon keeps its lock but stops heartbeating: `status` reads it as running until its
    heartbeat is HEARTBEAT_STALE_S old, then as not running (asked with a controlled clock)."""
    from facewatch.config import load_config
    from facewatch.results.status import collect_status, format_status
    from facewatch.store import HEARTBEAT_STALE_S
    config = write_config(tmp_path)
    d = daemon(config)
    assert status(config)["daemon"]["running"] is True
    d.signal(signal.SIGSTOP)  # it keeps its lock, and stops heartbeating
    try:
        beat = datetime.fromisoformat(status(config)["daemon"]["heartbeat_at"]).timestamp()  # whole seconds
        settings = load_config(str(config))
        fresh = collect_status(settings, beat + HEARTBEAT_STALE_S - 1)
        assert fresh["daemon"]["running"] is True and fresh["daemon"]["pid"] == d.proc.pid
        stale = collect_status(settings, beat + HEARTBEAT_STALE_S + 1)
        s = stale["daemon"]
        assert s["running"] is False and s["pid"] is None and s["last_pid"] == d.proc.pid and s["stopped_at"] is None
        assert "stopped heartbeating" in format_status(stale)
    finally:
        d.signal(signal.SIGCONT)
    wait_until(lambda: status(config)["daemon"]["running"] is True, timeout=30, message="running again")
    assert status(config)["daemon"]["pid"] == d.proc.pid


def test_status_never_reads_a_killed_daemon_as_running(tmp_path, daemon):
    config = write_config(tmp_path)
    d = daemon(config)
    assert status(config)["daemon"]["running"] is True
    assert status(config)["daemon"]["pid"] == d.proc.pid
    d.kill()
    s = status(config)
    assert s["daemon"]["running"] is False and s["daemon"]["pid"] is None


def test_a_second_daemon_or_a_scan_is_refused(tmp_path, daemon):
    config = write_config(tmp_path)
    daemon(config)
    scan = facewatch(config, "scan", check=False)
    assert scan.returncode == 3 and "in use by facewatch" in scan.stderr
    second = facewatch(config, "run", check=False)
    assert second.returncode == 3


def test_kill_9_at_random_moments_loses_and_duplicates_nothing(tmp_path, daemon, photo_dir, hand_loop):
    config = write_config(tmp_path, processing={"batch_size": 16})
    paths = make_variants(photo_dir, tmp_path / "photos", 400, side=1600)
    rng = random.Random(7)
    kills, progress = 0, []
    claimed = lambda: peek(config, "SELECT count(*) FROM pending WHERE claimed_by IS NOT NULL")  # noqa: E731
    for moment in [*KILL_MOMENTS, *rng.choices(KILL_MOMENTS, k=8)]:  # at start-up, mid-batch, after a save
        kill_at(daemon(config, wait_ready=False), moment, claimed)
        kills += 1
        progress.append(status(config)["files"]["done"])
    assert progress[-1] < len(paths), "the work finished before the kills were done: use more photos"
    d = daemon(config)
    wait_until(lambda: all_settled(config, len(paths)), timeout=120, message="everything done after the kills")
    d.stop()
    db = sqlite3.connect(str(tmp_path / "state" / "facewatch.db"))
    per_file = dict(db.execute("SELECT f.path, count(x.face_id) FROM files f LEFT JOIN faces x USING (file_id) "
                               "GROUP BY f.file_id"))
    assert len(per_file) == len(paths)
    sample = rng.sample(paths, 40)
    for path in sample:
        expected, _, _ = reference_faces(hand_loop, path)
        assert per_file[os.fsencode(str(path))] == len(expected), path
    assert db.execute("SELECT count(*) FROM files WHERE status != 'done'").fetchone()[0] == 0
    analyses = db.execute("SELECT sum(runs) FROM processed_files").fetchone()[0]
    # only batches in flight at a kill run twice: at most two batches of 16 per kill
    assert len(paths) <= analyses <= len(paths) + kills * 2 * 16


def test_scan_killed_halfway_is_finished_by_resume(tmp_path, photo_dir):
    config = write_config(tmp_path, processing={"batch_size": 8})
    make_variants(photo_dir, tmp_path / "photos", 150, seed=3)
    nothing = facewatch(config, "resume", check=False)
    assert nothing.returncode == 1
    assert "No checkpoint found. Run `facewatch scan` first." in nothing.stderr
    import subprocess
    from conftest import FACEWATCH
    proc = subprocess.Popen([*FACEWATCH, "--config", str(config), "scan", "--checkpoint-every", "10"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    wait_until(lambda: peek(config, "SELECT max(processed_files_count) FROM checkpoints") >= 20,
               timeout=60, interval=0.01, message="a few checkpoints")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s = status(config)
    assert s["checkpoint"]["status"] == "in_progress" and s["files"]["done"] < 150
    done_before = s["files"]["done"]
    resumed = facewatch(config, "resume")
    assert "150 done" in resumed.stdout
    s = status(config)
    assert s["files"]["done"] == 150 and s["checkpoint"]["status"] == "completed"
    assert s["analyses"] <= 150 + 16  # only the batches in flight at the kill ran again
    assert done_before > 0
    again = facewatch(config, "resume", check=False)
    assert again.returncode == 1


def test_a_second_sigterm_stops_at_once_and_gives_the_batch_back(tmp_path, daemon, photo_dir):
    # full-size decodes of 9 MP photos: a batch of 32 takes a second or more, far longer than the
    # tenth of a second between the two signals
    config = write_config(tmp_path, processing={"batch_size": 32, "min_decode_side": 100000})
    make_variants(photo_dir, tmp_path / "photos", 80, seed=5, side=3000)
    d = daemon(config)
    wait_until(lambda: status(config)["queue"]["processing"] > 0, timeout=30, message="a batch in flight")
    d.signal(signal.SIGTERM)
    time.sleep(0.1)  # two SIGTERMs sent together are one: the kernel does not queue them
    d.signal(signal.SIGTERM)
    assert d.proc.wait(timeout=60) == 0
    s = status(config)
    assert s["queue"]["processing"] == 0 and s["files"]["done"] < 80
    events = {e["event"]: e for e in d.events()}
    assert events["drain_cut_short"]["files"] > 0 and events["claims_released"]["files"] > 0


def _descendants(pid: int) -> set:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            children = {int(c) for t in os.listdir(f"/proc/{p}/task")
                        for c in open(f"/proc/{p}/task/{t}/children").read().split()}
        except OSError:
            continue
        found |= children
        todo += children
    return found


def test_kill_9_leaves_no_analyser_process_behind(tmp_path, daemon):
    config = write_config(tmp_path)
    d = daemon(config)
    helpers = _descendants(d.proc.pid)
    assert len(helpers) >= 3, "expected the fork server and two analysers"
    d.kill()
    wait_until(lambda: not any(_alive(p) for p in helpers), timeout=30, message="the analysers to exit with their daemon")


def _alive(pid: int) -> bool:
    """Running, not a zombie (a process may vanish between the two looks)."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_a_file_that_kills_the_analyser_is_failed_and_only_it(tmp_path, photo_dir):
    """The analyser reading one file dies each time (a real SIGKILL, as a crashing decoder would)."""
    from facewatch.config import load_config
    from facewatch.intake.reconcile import reconcile
    from facewatch.store import open_store
    from facewatch.service.worker import Worker
    config = load_config(str(write_config(tmp_path, processing={"max_attempts": 2, "batch_size": 4})))
    photos = tmp_path / "photos"
    paths = make_variants(photo_dir, photos, 12, seed=9, side=2400)
    os.rename(paths[3], photos / "poison.jpg")
    store = open_store(config.database)
    reconcile(store, config.watch.paths, config.watch, time.time())
    poison = store.file_record(str(photos / "poison.jpg")).file_id
    worker = Worker(store, config)
    worker.start()
    killed = set()
    try:
        deadline = time.monotonic() + 90
        while store.queue_size() or worker.busy or store.next_ready_at() is not None:
            assert time.monotonic() < deadline, "the queue did not drain"
            for pid, file_id in worker.analysers.reading():
                if file_id == poison and pid not in killed:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
            worker.step(time.time())
            worker.wait(0.005)
    finally:
        worker.stop()
    records = {os.path.basename(r.path): r for r in store.iter_files()}
    assert len(killed) >= 2
    assert records["poison.jpg"].status == "failed"
    assert "crashed or hung the analyser (gave up after 2 attempts)" in records["poison.jpg"].error
    assert all(r.status == "done" for name, r in records.items() if name != "poison.jpg")
    store.close()


def test_the_daemon_prunes_its_old_checkpoints_and_records_the_threshold(tmp_path, daemon, photo_dir):
    config = write_config(tmp_path, schedule={"checkpoint_interval_s": 0.1, "keep_checkpoints": 3},
                          detector={"min_confidence": 0.6})
    shutil.copy(photo_dir / "astronaut.jpg", tmp_path / "photos" / "a.jpg")
    facewatch(config, "scan")  # a scan's checkpoints: the daemon leaves them alone
    d = daemon(config)
    db = sqlite3.connect(str(tmp_path / "state" / "facewatch.db"))

    def daemon_checkpoints():
        return db.execute("SELECT checkpoint_id, metadata FROM checkpoints WHERE kind='daemon' "
                          "ORDER BY checkpoint_id").fetchall()
    wait_until(lambda: daemon_checkpoints() and daemon_checkpoints()[-1][0] >= 12, timeout=20,
               message="a dozen daemon checkpoints")
    assert len(daemon_checkpoints()) <= 4  # three kept, and one saved since the last prune
    assert db.execute("SELECT count(*) FROM checkpoints WHERE kind='scan'").fetchone()[0] == 2
    assert json.loads(daemon_checkpoints()[-1][1])["current_threshold"] == 0.6
    scan_state = json.loads(db.execute("SELECT metadata FROM checkpoints WHERE kind='scan' "
                                       "ORDER BY checkpoint_id DESC").fetchone()[0])
    assert scan_state["current_threshold"] == 0.6 and scan_state["total_files"] == 1
    d.stop()
    db.close()


def test_the_status_line_recounts_only_after_work_at_a_bounded_cost(tmp_path):
    """Its counts scan the index (0.3 s with a million files): the pulse recounts after something
    happened, at most STATUS_SHARE of the time, and every STATUS_RECOUNT_S for other hosts' work."""
    from types import SimpleNamespace

    from facewatch.config import load_config
    from facewatch.service.daemon import Wake
    from facewatch.service.jobs import STATUS_RECOUNT_S, STATUS_SHARE, Chores
    from facewatch.store import FileStat, open_store
    from facewatch.service.worker import Progress
    config = load_config(str(write_config(tmp_path)))
    store = open_store(config.database)
    now, counts = [1000.0], []
    real_stats = store.stats

    def stats():  # the real counts, taking half a second of the (fake) clock
        counts.append(now[0])
        now[0] += 0.5
        return real_stats()
    store.stats = stats
    d = SimpleNamespace(store=store, wake=Wake(), worker=SimpleNamespace(progress=Progress()), watcher=None,
                        config=config, clock=time.time)
    chores = Chores(d)
    chores.monotonic = lambda: now[0]
    try:
        assert chores.status_line().startswith("analysing for others: 0 pending, 0 done") and len(counts) == 1
        now[0] += 10
        chores.status_line()
        assert len(counts) == 1, "recounted with nothing done"
        store.enqueue([FileStat("/p/a.jpg", 100, 1)], now=1)
        d.wake.set()  # what the watcher does when it queues a file
        chores.status_line()
        assert len(counts) == 1, "recounted sooner than the cost allows"
        now[0] += 0.5 / STATUS_SHARE
        assert "1 pending" in chores.status_line() and len(counts) == 2
        now[0] += STATUS_RECOUNT_S - 1
        chores.status_line()
        assert len(counts) == 2
        now[0] += 2
        chores.status_line()
        assert len(counts) == 3, "never recounted for work done elsewhere"
    finally:
        store.close()
