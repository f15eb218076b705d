"""`scan` and `resume` as a user runs them: on a terminal, killed, stopped by a database error."""
import json
import os
import select
import signal
import sqlite3
import subprocess
import time

import pytest

from conftest import FACEWATCH, facewatch, make_variants, peek, status, wait_until, write_config

pytestmark = pytest.mark.slow


def on_terminal(config, *args, timeout=120.0):
    """Run facewatch with its stdout and stderr on a pseudo-terminal; (exit status, what it printed)."""
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen([*FACEWATCH, "--config", str(config), *args], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the other side is closed
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
    return code, out.decode(errors="replace")


def lines_of(text):
    """What a terminal shows, line by line (the bar's carriage returns and erasures taken out)."""
    return [line.split("\r")[-1].replace("\x1b[K", "").strip() for line in text.replace("\r\n", "\n").split("\n")]


def test_scan_on_a_terminal_shows_the_specified_checkpoint_lines(tmp_path, photo_dir):
    config = write_config(tmp_path, logging={"format": "auto"})
    make_variants(photo_dir, tmp_path / "photos", 10, seed=11)
    code, text = on_terminal(config, "scan", "--checkpoint-every", "4")
    assert code == 0, text
    shown = lines_of(text)
    for expected in ("INFO - Checkpoint saved: batch=1, processed=0/10",
                     "INFO - Database checkpoint saved: batch=1, processed=0, status=in_progress",
                     "INFO - Checkpoint saved: batch=2, processed=4/10",
                     "INFO - Database checkpoint saved: batch=2, processed=4, status=in_progress",
                     "INFO - Checkpoint saved: batch=3, processed=8/10",
                     "INFO - Checkpoint saved: batch=4, processed=10/10",
                     "INFO - Database checkpoint saved: batch=4, processed=10, status=completed",
                     "10 done, 0 failed, 0 missing, 10 faces in 10 files"):
        assert expected in shown, f"{expected!r} not shown:\n" + "\n".join(shown)
    assert "10/10" in text and "files/s" in text  # the progress bar, below the lines
    assert not any("batch_saved" in line or "reconcile_finished" in line for line in shown)


def test_resume_on_a_terminal_says_where_it_resumes_from(tmp_path, photo_dir):
    # full-size decodes of 9 MP photos: slow enough to be killed halfway
    config = write_config(tmp_path, processing={"batch_size": 4, "min_decode_side": 100000},
                          logging={"format": "auto"})
    make_variants(photo_dir, tmp_path / "photos", 40, seed=12, side=3000)
    proc = subprocess.Popen([*FACEWATCH, "--config", str(config), "scan", "--checkpoint-every", "5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    wait_until(lambda: peek(config, "SELECT max(batch_number) FROM checkpoints") >= 3, timeout=60,
               interval=0.01, message="a few checkpoints")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = status(config)
    checkpoint, done = before["checkpoint"], before["files"]["done"]
    assert checkpoint["status"] == "in_progress" and done < 40
    code, text = on_terminal(config, "resume")
    assert code == 0, text
    shown = lines_of(text)
    assert (f"INFO - Checkpoint loaded: batch={checkpoint['batch_number']}, "
            f"processed={checkpoint['processed_files_count']}/40, status=in_progress") in shown, text
    assert f"INFO - Found {40 - done} remaining files from checkpoint batch {checkpoint['batch_number']}" in shown
    assert "40 done, 0 failed, 0 missing, 40 faces in 40 files" in shown
    assert status(config)["checkpoint"]["status"] == "completed"


def test_a_scan_stopped_by_a_database_error_leaves_an_error_checkpoint_and_resume_finishes_it(tmp_path, photo_dir):
    config = write_config(tmp_path, processing={"batch_size": 4})
    (tmp_path / "photos").mkdir(exist_ok=True)
    facewatch(config, "scan")  # an empty folder: only creates the database
    db = sqlite3.connect(str(tmp_path / "state" / "facewatch.db"), timeout=30)
    # another program's rule that refuses every result after the eighth: no wait heals that
    db.execute("CREATE TRIGGER refuse BEFORE INSERT ON processed_files "
               "WHEN (SELECT count(*) FROM processed_files) >= 8 "
               "BEGIN SELECT RAISE(ABORT, 'refused by another program'); END")
    db.commit()
    make_variants(photo_dir, tmp_path / "photos", 60, seed=13, side=1600)
    proc = subprocess.Popen([*FACEWATCH, "--config", str(config), "scan", "--checkpoint-every", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err
    assert "refused by another program" in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"facewatch: the database {tmp_path / 'state' / 'facewatch.db'}")
    stopped = status(config)
    assert stopped["checkpoint"]["status"] == "error" and stopped["files"]["done"] < 60
    assert stopped["queue"]["processing"] == 0
    db.execute("DROP TRIGGER refuse")
    db.commit()
    db.close()
    resumed = facewatch(config, "resume")
    assert "60 done" in resumed.stdout
    final = status(config)
    assert final["files"]["done"] == 60 and final["checkpoint"]["status"] == "completed"
    assert final["analyses"] <= 60 + 2 * 4  # only the batches in flight at the error ran again
    assert json.loads(facewatch(config, "status", "--json").stdout)["queue"] == {"pending": 0, "processing": 0}
