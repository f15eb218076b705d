"""Latency: a running daemon with no file to detect; one 12 MP JPEG dropped by atomic rename; time
until the index (what `facewatch export` reads) shows it done. Prints p50 and p99 over --drops drops.

    python bench/latency.py [--drops 60] [--people-backlog N]

With --people-backlog N, N real group photos are analysed first and the drops start while the
people stage still embeds their faces: detection must not wait for it.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def percentile(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=60)
    parser.add_argument("--people-backlog", type=int, default=0, metavar="N",
                        help="group photos whose faces the people stage embeds during the drops")
    args = parser.parse_args()
    from make_corpus import make_corpus
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sources = make_corpus(work / "sources", args.drops, "12mp", seed=11)
        photos = work / "photos"
        photos.mkdir()
        db_path = work / "fw.db"
        config = work / "config.yaml"
        # the default settings: the people stage on, embedding each drop's face after it is done
        config.write_text(f"watch:\n  paths: [{photos}]\ndatabase: {db_path}\nlogging: {{level: warning}}\n")
        backlog = make_corpus(work / "groups", args.people_backlog, "1080p", seed=12, group_every=1) \
            if args.people_backlog else []
        daemon = subprocess.Popen([sys.executable, "-m", "facewatch", "--config", str(config), "run"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not (db_path.exists() and _heartbeat(db_path)):
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise SystemExit("the daemon did not start")
                time.sleep(0.1)
            time.sleep(1.0)  # idle
            reader = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
            waiting = "SELECT count(*) FROM faces WHERE embed_state = 'waiting'"
            for i, src in enumerate(backlog):
                os.rename(src, photos / f"group{i:03d}.jpg")
            while backlog and reader.execute("SELECT count(*) FROM files WHERE status = 'done'").fetchone()[0] \
                    < len(backlog):
                time.sleep(0.05)
            waiting_before = reader.execute(waiting).fetchone()[0] if backlog else 0
            latencies = []
            for i, src in enumerate(sources):
                dest = photos / f"drop{i:03d}.jpg"
                started = time.perf_counter()
                os.rename(src, dest)  # atomic: complete when it appears
                while not reader.execute("SELECT 1 FROM files WHERE path=? AND status='done'",
                                         (os.fsencode(str(dest)),)).fetchone():
                    if time.perf_counter() - started > 30:
                        raise SystemExit(f"{dest} was not done within 30 s")
                    time.sleep(0.002)
                latencies.append(time.perf_counter() - started)
                time.sleep(0.2)  # idle again between drops
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            waiting_after = reader.execute(waiting).fetchone()[0] if backlog else 0
    ms = [x * 1000 for x in latencies]
    if backlog:
        print(f"the people stage was busy throughout: {waiting_before} faces waiting when the drops began, "
              f"{waiting_after} when they ended")
    print(f"latency over {len(ms)} drops of a 12 MP JPEG into an idle daemon: "
          f"{'(people stage busy) ' if backlog else ''}p50 {percentile(ms, 50):.0f} ms, p99 {percentile(ms, 99):.0f} ms, max {max(ms):.0f} ms "
          f"(targets: p50 <= 150 ms, p99 <= 500 ms)")


def _heartbeat(db_path: Path) -> bool:
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        row = db.execute("SELECT max(heartbeat_at) FROM daemons").fetchone()
        return bool(row and row[0])
    except sqlite3.Error:
        return False


if __name__ == "__main__":
    main()
