"""One-shot runs: `scan` queues paths and drains the queue; `resume` finishes an interrupted scan."""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Optional

import structlog

from facewatch.checkpoint import CheckpointTracker, DatabaseCheckpointManager
from facewatch.config import Config
from facewatch.daemon import Signals
from facewatch.lock import DatabaseLock
from facewatch.reconcile import reconcile
from facewatch.store import open_store
from facewatch.worker import Batch, Worker

log = structlog.get_logger("facewatch.scan")

NO_CHECKPOINT = "No checkpoint found. Run `facewatch scan` first."


class NothingToResume(Exception):
    pass


class Interrupted(Exception):
    pass


@contextmanager
def _exclusive(config: Config):
    """The database's lock and a store, for one one-shot run; DatabaseBusy if a daemon holds it."""
    lock = DatabaseLock(config.database)
    lock.acquire()
    try:
        store = open_store(config.database)
        try:
            store.release_stale(float("inf"))  # we hold the lock: any claim left is from a dead run
            yield store
        finally:
            store.close()
    finally:
        lock.release()


def scan(config: Config, paths: Optional[list], checkpoint_every: int, progress: bool) -> dict:
    """Queue `paths` (default: the watched roots) and process until the queue is empty."""
    with _exclusive(config) as store:
        # The analyser server (started by the `facewatch` command) imports MediaPipe while the
        # folders are walked; starting the pool waits for it, so walk first.
        roots = paths or list(config.watch.paths)
        report = reconcile(store, roots, config.watch, time.time())
        worker = Worker(store, config)
        worker.start(wait=False)
        total = store.queue_size()
        tracker = CheckpointTracker(DatabaseCheckpointManager(store, "scan"), total, checkpoint_every)
        tracker.save()  # resumable from the very start
        log.info("scan_started", paths=roots, queued=total, seen=report.seen)
        return _drain(worker, store, tracker, progress)


def resume(config: Config, checkpoint_every: int, progress: bool) -> dict:
    """Continue the last interrupted scan from its checkpoint and the queue."""
    with _exclusive(config) as store:
        checkpoint = DatabaseCheckpointManager(store, "scan").load_checkpoint()
        if checkpoint is None or checkpoint["status"] != "in_progress":
            raise NothingToResume(NO_CHECKPOINT)
        remaining = store.queue_size()
        total = max(int(checkpoint["metadata"].get("total_files") or 0), remaining)
        tracker = CheckpointTracker(DatabaseCheckpointManager(store, "scan"), total, checkpoint_every,
                                    batch_number=checkpoint["batch_number"],
                                    processed_files_count=total - remaining)
        log.info("scan_resumed", checkpoint_id=checkpoint["id"], batch=checkpoint["batch_number"],
                 remaining=remaining, total=total)
        worker = Worker(store, config)
        worker.start(wait=False)
        return _drain(worker, store, tracker, progress)


def _drain(worker: Worker, store, tracker: CheckpointTracker, progress: bool) -> dict:
    signals = Signals(threading.Event())
    signals.install()
    bar = ProgressBar(tracker.total_files, tracker.processed) if progress else None

    def on_saved(batch: Batch) -> None:
        for claim in batch.claims:
            tracker.update(claim.path)
        if bar:
            bar.show(tracker.processed)

    worker.on_saved = on_saved
    try:
        while not signals.stop.is_set():
            now = time.time()
            worker.step(now)
            if worker.busy:
                worker.wait(0.2)
                continue
            if store.queue_size(now) == 0:
                later = store.next_ready_at()
                if later is None:
                    break  # everything is done or failed
                signals.stop.wait(min(max(later - now, 0.05), 1.0))  # a retry backing off
            else:
                signals.stop.wait(0.05)  # files wait, but the database said no: the worker backs off
    finally:
        worker.stop(time.time(), drain=not signals.at_once)
        if bar:
            bar.close()
    if signals.stop.is_set():
        tracker.save()
        raise Interrupted(f"interrupted after {tracker.processed} of {tracker.total_files} files; "
                          "run `facewatch resume` to continue")
    tracker.mark_completed()
    stats = store.stats()
    log.info("scan_finished", processed=worker.progress.files, failed=worker.progress.failed)
    return stats


class ProgressBar:
    """A one-line bar with rate and ETA, for a terminal."""

    def __init__(self, total: int, done: int = 0, stream=sys.stderr, clock: Callable[[], float] = time.time):
        self.total, self.start_done = total, done
        self.stream, self.clock = stream, clock
        self.started = clock()

    def show(self, done: int) -> None:
        elapsed = max(self.clock() - self.started, 1e-6)
        rate = (done - self.start_done) / elapsed
        left = max(self.total - done, 0)
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        width = 30
        filled = int(width * done / self.total) if self.total else width
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                          f"{rate:.1f} files/s ETA {eta}   ")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
