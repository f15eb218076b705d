"""What a daemon with nothing to do costs: CPU (its process and every analyser under it) over
--seconds while idle, then while another process holds the database's write lock and five new
photos wait to be queued. Prints each as a share of one core.

    python bench/idle.py [--seconds 30] [--files 1000000]

With --files N the index first holds N analysed files (written straight into the tables, as a
large archive's index would be), so what the daemon reads on its own (status line, checkpoints)
shows at scale.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and all below it, threads included, in seconds (the scheduler's own
    count, /proc/PID/task/TID/schedstat, not clock ticks)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                total += int(Path(f"/proc/{p}/task/{tid}/schedstat").read_text().split()[0]) / 1e9
                todo += [int(c) for c in Path(f"/proc/{p}/task/{tid}/children").read_text().split()]
        except (OSError, IndexError, ValueError):
            pass
    return total


def fill_index(database: str, files: int) -> None:
    """`files` analysed files, two in three with a face, in facewatch's own tables."""
    sys.path.insert(0, str(ROOT))
    from facewatch.store import open_store
    open_store(database).close()  # the schema
    with sqlite3.connect(database) as db:
        db.execute(f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {files})
            INSERT INTO files (file_id, path, dir, size, mtime_ns, status, width, height, face_count, processed_at)
            SELECT i, CAST('/archive/' || (i / 200) || '/img' || i || '.jpg' AS BLOB),
                   CAST('/archive/' || (i / 200) AS BLOB), 3000000, 1, 'done', 4000, 3000, i % 3,
                   '2026-01-01T00:00:00+00:00' FROM n""")
        db.execute("""INSERT INTO faces (file_id, idx, score, x, y, w, h, keypoints, embed_state)
            SELECT file_id, 0, 0.9, 10, 10, 100, 100, '[[1,2],[3,4],[5,6],[7,8],[9,10],[11,12]]', 'done'
            FROM files WHERE face_count > 0""")
        db.execute("INSERT INTO processed_files (file_id, worker_id, status) SELECT file_id, 1, 'processed' FROM files")


def share(pid: int, seconds: float) -> float:
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--files", type=int, default=0, help="analysed files in the index to start with")
    args = parser.parse_args()
    from PIL import Image
    from skimage import data
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "photos").mkdir()
        database = str(work / "state" / "facewatch.db")
        if args.files:
            (work / "state").mkdir()
            started = time.monotonic()
            fill_index(database, args.files)
            print(f"index of {args.files:,} files made in {time.monotonic() - started:.0f} s")
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump({
            "watch": {"paths": [str(work / "photos")]}, "database": database,
            "processing": {"settle_s": 0.5, "workers": 2}, "people": {"enabled": False},
            "logging": {"format": "json"}}))
        Image.fromarray(data.astronaut()).save(work / "face.jpg", quality=92)
        log = open(work / "daemon.log", "w")
        daemon = subprocess.Popen([sys.executable, "-m", "facewatch", "--config", str(config), "run"],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
        try:
            deadline = time.monotonic() + 120
            while "daemon_ready" not in (work / "daemon.log").read_text():
                if daemon.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the daemon did not start:\n{(work / 'daemon.log').read_text()}")
                time.sleep(0.2)
            while share(daemon.pid, 1.0) > 0.02:  # start-up done: reconcile, the analysers' models
                pass
            print(f"idle:   {100 * share(daemon.pid, args.seconds):.2f}% of a core over {args.seconds:.0f} s")
            other = sqlite3.connect(database, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            for i in range(5):
                shutil.copy(work / "face.jpg", work / "photos" / f"new{i}.jpg")
            locked = share(daemon.pid, args.seconds)
            other.execute("COMMIT")
            other.close()
            print(f"locked: {100 * locked:.2f}% of a core over {args.seconds:.0f} s, the database held by "
                  "another process and 5 new photos waiting")
            deadline = time.monotonic() + 60
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
                while db.execute("SELECT count(*) FROM files WHERE dir = ? AND status = 'done'",
                                 (os.fsencode(work / "photos"),)).fetchone()[0] < 5:
                    if time.monotonic() > deadline:
                        sys.exit("the 5 photos were not analysed within 60 s of the lock's end")
                    time.sleep(0.2)
            print("after the lock: the 5 photos analysed")
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
            log.close()


if __name__ == "__main__":
    main()
