"""One-shot runs: `scan` queues paths and drains the queue; `resume` finishes an interrupted scan."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Optional

import structlog

from facewatch.checkpoint import CheckpointTracker, DatabaseCheckpointManager
from facewatch.config import Config
from facewatch.service.progress import ProgressBar, Terminal
from facewatch.intake.reconcile import reconcile
from facewatch.service.signals import Signals
from facewatch.store import Stats, StoreUnusable, open_store
from facewatch.service.worker import Batch, Worker

log = structlog.get_logger("facewatch.service.scan")

NO_CHECKPOINT = "No checkpoint found. Run `facewatch scan` first."
RESUMABLE = ("in_progress", "error")


class NothingToResume(Exception):
    pass


class Interrupted(Exception):
    pass


@contextmanager
def exclusive(config: Config):
    """A store holding the database to itself, for one one-shot run (DatabaseInUse if a daemon holds it)."""
    store = open_store(config.database)
    try:
        store.lock(exclusive=True)  # every claim left is from a dead run: the lock gives them back
        try:
            yield store
        finally:
            store.unlock()
    finally:
        store.close()


def scan(config: Config, paths: Optional[list], checkpoint_every: int, terminal: Optional[Terminal]) -> Stats:
    """Queue `paths` (default: the watched roots) and process until the queue is empty."""
    with exclusive(config) as store:
        # The analyser server (started by the `facewatch` command) imports MediaPipe while the
        # folders are walked; starting the analysers waits for it, so walk first.
        roots = paths or list(config.watch.paths)
        report = reconcile(store, roots, config.watch, time.time())
        worker = Worker(store, config)
        worker.start(wait=False)
        total = store.queue_size()
        tracker = CheckpointTracker(DatabaseCheckpointManager(store, "scan"), total, checkpoint_every,
                                    current_threshold=config.detector.min_confidence)
        tracker.save()  # resumable from the very start
        log.info("scan_started", paths=roots, queued=total, seen=report.seen)
        return _drain(worker, store, tracker, config, terminal)


def resume(config: Config, checkpoint_every: int, terminal: Optional[Terminal]) -> Stats:
    """Continue the last interrupted scan (or one stopped by an error) from its checkpoint and the queue."""
    with exclusive(config) as store:
        manager = DatabaseCheckpointManager(store, "scan")
        checkpoint = manager.load_checkpoint()
        if checkpoint is None or checkpoint.status not in RESUMABLE:
            raise NothingToResume(NO_CHECKPOINT)
        manager.count_remaining_files(checkpoint.batch_number)
        remaining = store.queue_size()
        total = max(int(checkpoint.metadata.get("total_files") or 0), remaining)
        tracker = CheckpointTracker(manager, total, checkpoint_every, batch_number=checkpoint.batch_number,
                                    processed_files_count=total - remaining,
                                    current_threshold=config.detector.min_confidence)
        log.info("scan_resumed", checkpoint_id=checkpoint.id, batch=checkpoint.batch_number,
                 remaining=remaining, total=total)
        worker = Worker(store, config)
        worker.start(wait=False)
        return _drain(worker, store, tracker, config, terminal)


def _drain(worker: Worker, store, tracker: CheckpointTracker, config: Config, terminal: Optional[Terminal]) -> Stats:
    signals = Signals(threading.Event())
    signals.install(reload=False)
    bar = ProgressBar(tracker.total_files, tracker.processed, terminal) if terminal else None

    def on_saved(batch: Batch) -> None:
        for claim in batch.claims:
            if bar:  # before the update: a checkpoint line it prints is redrawn under a current bar
                bar.show(tracker.processed + 1)
            tracker.update(claim.path)

    faces = {"settled": 0, "bar": None}

    def on_faces_saved(count: int) -> None:
        """The people stage follows detection: say so once, then show its own bar."""
        nonlocal bar
        if faces["settled"] == 0:
            waiting = store.stats().faces_waiting + count
            if bar:
                bar.close()
                bar = None
            log.info("recognising_faces", message=f"Recognising {waiting} faces (people.enabled: false turns "
                     "this off)", faces=waiting)
            if terminal:
                faces["bar"] = ProgressBar(waiting, count, terminal, unit="faces")
        faces["settled"] += count
        if faces["bar"]:
            faces["bar"].total = max(faces["bar"].total, faces["settled"])
            faces["bar"].show(faces["settled"])

    worker.on_saved = on_saved
    worker.on_faces_saved = on_faces_saved
    if bar:
        bar.show(tracker.processed)
    failure: Optional[StoreUnusable] = None
    try:
        worker.work(signals.stop, signals.wake, burst=True)
    except StoreUnusable as exc:
        failure = exc
    finally:
        worker.stop(drain=not signals.at_once and failure is None, abort=lambda: signals.at_once)
        for shown in (bar, faces["bar"]):
            if shown:
                shown.close()
    if failure is not None:
        log.error("scan_failed", error=str(failure), processed=tracker.processed, total=tracker.total_files)
        tracker.save("error")  # if the database still takes it: `facewatch resume` continues from it
        raise failure
    if signals.stop.is_set():
        tracker.save()
        raise Interrupted(f"interrupted after {tracker.processed} of {tracker.total_files} files; "
                          "run `facewatch resume` to continue")
    tracker.mark_completed()
    DatabaseCheckpointManager(store, "scan").prune(config.schedule.keep_checkpoints)
    log.info("scan_finished", processed=worker.progress.files, failed=worker.progress.failed)
    return store.stats()
