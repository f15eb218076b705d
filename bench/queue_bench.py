"""The queue alone, no detection: enqueue, claim+save with concurrent claimers, and `status`,
on SQLite and on PostgreSQL, in one run.

    python bench/queue_bench.py [--files 100000] [--claimers 4] [--postgres postgresql://user@host/db]

The PostgreSQL database given is emptied (its tables dropped) first: use a throwaway one.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from facewatch.store import Face, FileStat, Result, open_store  # noqa: E402

FACE = Face(0.9, (10, 20, 30, 40), ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)))


def claimer(database: str, n: int, batch: int, results) -> None:
    """Claim and save until the queue is empty; report the ids claimed."""
    mine = open_store(database)
    name, ids = f"bench:{n}", []
    while True:
        claims = mine.claim(name, batch, now=2.0, lease_s=600)
        if not claims:
            break
        ids += [c.file_id for c in claims]
        mine.save(name, [Result(c.file_id, "done", size=1, mtime_ns=1, ctime_ns=1, content_hash=f"h{c.file_id}",
                                width=4000, height=3000, faces=(FACE,)) for c in claims], now=3.0)
    mine.close()
    results.put(ids)


def run(database: str, files: int, claimers: int, batch: int) -> None:
    store = open_store(database)
    stats = [FileStat(f"/srv/photos/{i // 1000:04d}/img_{i:07d}.jpg", 4_000_000 + i, 10**18 + i, 10**18 + i)
             for i in range(files)]
    started = time.perf_counter()
    for i in range(0, files, 500):  # as reconcile writes them: 500 a transaction
        store.enqueue(stats[i:i + 500], now=1.0)
    enqueue_s = time.perf_counter() - started
    import multiprocessing
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=claimer, args=(database, n, batch, results)) for n in range(claimers)]
    started = time.perf_counter()
    for p in processes:  # separate processes, as separate daemons and hosts are
        p.start()
    claimed: Counter = Counter()
    for _ in processes:
        claimed.update(results.get())
    for p in processes:
        p.join()
    claim_s = time.perf_counter() - started
    doubles = sum(1 for n in claimed.values() if n > 1)
    done = store.stats().by_status.get("done", 0)
    store.close()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(f"watch:\n  paths: [{tmp}]\ndatabase: {database}\n")
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "facewatch", "--config", str(config), "status", "--json"],
                           check=True, capture_output=True)
            timings.append(time.perf_counter() - started)
    kind = "PostgreSQL" if "://" in database else "SQLite"
    print(f"{kind:>10}: enqueue {files / enqueue_s:9,.0f} files/s; claim+save with {claimers} claimers "
          f"{files / claim_s:8,.0f} files/s ({done:,} done, {doubles} claimed twice); "
          f"`facewatch status` at {files:,} files {min(timings):.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--claimers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--postgres", default=os.environ.get("FACEWATCH_TEST_POSTGRES"),
                        help="a throwaway PostgreSQL database's URL (its tables are dropped first)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(os.path.join(tmp, "fw.db"), args.files, args.claimers, args.batch)
    if args.postgres:
        import psycopg
        with psycopg.connect(args.postgres, autocommit=True) as c:
            c.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        run(args.postgres, args.files, args.claimers, args.batch)
    else:
        print("PostgreSQL: skipped (pass --postgres URL or set FACEWATCH_TEST_POSTGRES)")


if __name__ == "__main__":
    main()
