"""Scale: reconcile of a 100,000-file tree against `find`, the daemon's memory with a large
backlog, and how long `facewatch status` takes with 100,000 files in the database.

    python bench/scale.py [--files 100000]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from facewatch.config import WatchConfig  # noqa: E402
from facewatch.intake.reconcile import reconcile  # noqa: E402
from facewatch.store import open_store  # noqa: E402


def make_tree(root: Path, files: int, per_folder: int = 200) -> None:
    """`files` small JPEGs (all the same tiny photo) in folders of `per_folder`."""
    import cv2
    import numpy as np
    ok, jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
    data = jpeg.tobytes()
    for i in range(files):
        folder = root / f"{i // per_folder // 50:03d}" / f"{i // per_folder:05d}"
        if i % per_folder == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{i:07d}.jpg").write_bytes(data)


def timed(func) -> tuple[float, object]:
    started = time.perf_counter()
    result = func()
    return time.perf_counter() - started, result


def find_seconds(root: Path) -> float:
    cmd = f"find {root} -type f | wc -l"
    subprocess.run(cmd, shell=True, check=True, capture_output=True)  # warm the cache
    return min(timed(lambda: subprocess.run(cmd, shell=True, check=True, capture_output=True))[0]
               for _ in range(3))


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(the daemon's own peak RSS, with its child processes) in MB, from /proc."""
    def hwm(p: int) -> float:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    own = hwm(pid)
    total = own + sum(hwm(int(c)) for c in children if Path(f"/proc/{c}").exists())
    return own, total


def daemon_memory(root: Path, work: Path, observe_s: float = 20.0) -> tuple[float, float, int]:
    """Run the daemon over `root` (all of it new) for `observe_s`; its peak RSS and the backlog seen."""
    db_path = work / f"mem-{root.name}.db"
    config = work / f"mem-{root.name}.yaml"
    config.write_text(f"watch:\n  paths: [{root}]\ndatabase: {db_path}\nlogging: {{level: warning}}\n")
    daemon = subprocess.Popen([sys.executable, "-m", "facewatch", "--config", str(config), "run"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backlog, peak = 0, (0.0, 0.0)
    try:
        started = time.monotonic()
        while time.monotonic() - started < observe_s:
            time.sleep(0.5)
            peak = max(peak, peak_rss_mb(daemon.pid))
            if db_path.exists():
                try:
                    store = open_store(str(db_path), readonly=True)
                    backlog = max(backlog, store.queue_size())
                    store.close()
                except Exception:
                    pass
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    return peak[0], peak[1], backlog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        big, small = work / "big", work / "small"
        print(f"making {args.files} files ...", flush=True)
        make_tree(big, args.files)
        make_tree(small, args.files // 10)
        find_s = find_seconds(big)
        store = open_store(str(work / "reconcile.db"))
        watch = WatchConfig(paths=(str(big),))
        now = time.time() + 10  # as if a little time passed: the folders just made count as settled
        first_s, first = timed(lambda: reconcile(store, [str(big)], watch, now))
        full_s, full = timed(lambda: reconcile(store, [str(big)], watch, now))
        second_s, second = timed(lambda: reconcile(store, [str(big)], watch, now, quick=True))
        store.close()
        print(f"find -type f | wc -l      {find_s:6.2f} s")
        print(f"first reconcile (all new) {first_s:6.2f} s  {first.queued / first_s:8.0f} files/s queued "
              f"(target >= 20000)")
        print(f"second reconcile, quick   {second_s:6.2f} s  {second_s / find_s:5.1f}x find (target <= 3x); "
              f"{second.queued} queued (what the daemon runs every reconcile_interval_s)")
        print(f"second reconcile, full    {full_s:6.2f} s  {full_s / find_s:5.1f}x find; {full.queued} queued "
              f"(stats every file: at start-up and once a day)")

        status_s = min(timed(lambda: subprocess.run(
            [sys.executable, "-m", "facewatch", "--config", str(_status_config(work, big)), "status"],
            check=True, capture_output=True))[0] for _ in range(3))
        print(f"facewatch status with {first.seen} files in the database: {status_s:.2f} s (target <= 0.5 s)")

        own_small, total_small, backlog_small = daemon_memory(small, work)
        own_big, total_big, backlog_big = daemon_memory(big, work)
        print(f"daemon peak RSS, {backlog_small:6d} pending: {own_small:5.0f} MB "
              f"({total_small:.0f} MB with its analyser processes)")
        print(f"daemon peak RSS, {backlog_big:6d} pending: {own_big:5.0f} MB "
              f"({total_big:.0f} MB with its analyser processes)  (target <= 500 MB, flat with the backlog)")


def _status_config(work: Path, root: Path) -> Path:
    config = work / "status.yaml"
    config.write_text(f"watch:\n  paths: [{root}]\ndatabase: {work / 'reconcile.db'}\n")
    return config


if __name__ == "__main__":
    main()
