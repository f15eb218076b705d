"""The daemon: wiring, the worker loop, reload, and an ordered shutdown; sd_notify throughout."""
from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading
import time
from typing import Callable, Optional

import structlog

from facewatch.checkpoint import DatabaseCheckpointManager
from facewatch.config import Config, ConfigError, load_config
from facewatch.jobs import Jobs
from facewatch.lock import DatabaseLock
from facewatch.notify import Notifier
from facewatch.reconcile import reconcile
from facewatch.store import open_store
from facewatch.watcher import Watcher
from facewatch.worker import Worker

log = structlog.get_logger("facewatch.daemon")

PULSE_S = 2.0  # heartbeat, health check and watchdog ping
STATUS_S = 5.0  # the STATUS= line systemctl status shows
LOOP_STALL_S = 45.0  # the worker loop silent this long is hung
BATCH_HANG_S = 300.0  # a batch in flight this long is hung
STALE_CLAIMS_S = 60.0
ROOTS_CHECK_S = 5.0
JOBS_STOP_TIMEOUT_S = 10.0


class Signals:
    """Signal handlers only set flags: the loop acts on them."""

    def __init__(self, wake: threading.Event):
        self.wake = wake
        self.stop = threading.Event()
        self.count = 0
        self.reload = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum, frame) -> None:
        self.count += 1
        self.stop.set()
        self.wake.set()

    def _on_reload(self, signum, frame) -> None:
        self.reload = True
        self.wake.set()

    @property
    def at_once(self) -> bool:
        """A second stop signal: do not wait for the batch in flight."""
        return self.count >= 2


class _OverflowHandler(logging.Handler):
    """watchdog logs a lost-events warning on inotify overflow: answer it with a reconcile."""

    def __init__(self, on_overflow: Callable[[], None]):
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.on_overflow()


class Daemon:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time):
        self.config = config
        self.clock = clock
        self.pid = os.getpid()
        self.lock = DatabaseLock(config.database)
        self.wake = threading.Event()
        self.signals = Signals(self.wake)
        self.notifier = Notifier()
        self.store = None
        self.worker: Optional[Worker] = None
        self.watcher: Optional[Watcher] = None
        self.jobs = Jobs()
        self.tick = clock()
        self.unhealthy_reason: Optional[str] = None
        self._overflow = _OverflowHandler(self._events_lost)
        self._last_full_reconcile = float("-inf")
        self._full_reconcile_due = True

    # start ------------------------------------------------------------------------------------
    def run(self) -> int:
        self.lock.acquire()  # DatabaseBusy propagates: the CLI says who holds it
        self.signals.install()
        self.store = open_store(self.config.database)
        now = self.clock()
        released = self.store.release_stale(float("inf"))  # we hold the lock: those claims are dead
        self.store.daemon_started(self.pid, now)
        log.info("daemon_starting", pid=self.pid, database=self.config.database,
                 watch=list(self.config.watch.paths), claims_recovered=released)
        self.worker = Worker(self.store, self.config)
        self.worker.start()
        self.watcher = Watcher(self.store, self.config, on_enqueued=self.wake.set, clock=self.clock)
        self.watcher.start()
        logging.getLogger("watchdog").addHandler(self._overflow)
        self._schedule()
        self.jobs.start()
        self.notifier.send(ready=1, status=self.status_line())
        log.info("daemon_ready", workers=self.config.processing.worker_count)
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _schedule(self) -> None:
        s = self.config.schedule
        self.jobs.add("reconcile", self.reconcile_job, s.reconcile_interval_s, now=True)
        self.jobs.add("checkpoint", self.checkpoint_job, s.checkpoint_interval_s)
        self.jobs.add("release_stale", self.release_stale_job, STALE_CLAIMS_S)
        self.jobs.add("pulse", self.pulse_job, min(PULSE_S, self.notifier.watchdog_interval_s() or PULSE_S))
        self.jobs.add("status", lambda: self.notifier.send(status=self.status_line()), STATUS_S)
        self.jobs.add("check_roots", self.check_roots_job, ROOTS_CHECK_S)

    # the worker loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        worker, p = self.worker, self.config.processing
        while not self.signals.stop.is_set():
            if self.signals.reload:
                self.reload()
            now = self.clock()
            self.tick = now
            worker.step(now)
            if worker.busy:
                worker.wait(0.2)
                continue
            woke = self.wake.wait(1.0)
            self.wake.clear()
            if woke and self._queue_size() < p.batch_size:
                self.signals.stop.wait(p.max_batch_wait_s)  # let a burst gather into one batch

    def _queue_size(self) -> int:
        try:
            return self.store.queue_size(self.clock())
        except sqlite3.OperationalError:
            return 0  # the worker's next claim will say what is wrong, and back off

    # jobs -------------------------------------------------------------------------------------
    def _events_lost(self) -> None:
        self._full_reconcile_due = True
        self.jobs.run_soon("reconcile")

    def reconcile_job(self, roots=None) -> None:
        """Full at start, for roots that came back, after lost events and once a day; else quick."""
        now = self.clock()
        full = (roots is not None or self._full_reconcile_due
                or now - self._last_full_reconcile >= self.config.schedule.full_reconcile_interval_s)
        if full and roots is None:
            self._full_reconcile_due, self._last_full_reconcile = False, now
        report = reconcile(self.store, roots or self.config.watch.paths, self.config.watch, now,
                           settle_s=self.config.processing.settle_s, defer=self.watcher.defer, quick=not full)
        self.wake.set()
        for root, folders in report.folders.items():
            if self.watcher.check_coverage(root, folders):
                self.reconcile_job([root])  # whatever arrived while the watch was switched

    def check_roots_job(self) -> None:
        came_back = self.watcher.check_roots()
        if came_back:
            log.info("watch_roots_back", paths=came_back)
            self.reconcile_job(came_back)

    def checkpoint_job(self, status: str = "in_progress") -> None:
        progress, now = self.worker.progress, self.clock()
        stats = self.store.stats()
        DatabaseCheckpointManager(self.store, kind="daemon").save_checkpoint(
            progress.batches, progress.files, status,
            metadata={"pending": stats["queue"]["pending"], "processing": stats["queue"]["processing"],
                      "rate_files_per_s": round(progress.rate(now), 2), "failed": progress.failed,
                      "last_processed_file": progress.last_file, "pid": self.pid})
        self.store.wal_checkpoint()

    def release_stale_job(self) -> None:
        released = self.store.release_stale(self.clock())
        if released:
            log.warning("stale_claims_released", files=released)
            self.wake.set()

    def pulse_job(self) -> None:
        """Heartbeat and watchdog ping, only while the worker and the watcher are healthy."""
        reason = self.health(self.clock())
        if reason != self.unhealthy_reason:
            if reason:
                log.error("daemon_unhealthy", reason=reason)
            elif self.unhealthy_reason:
                log.info("daemon_healthy_again")
            self.unhealthy_reason = reason
        if reason:
            self.notifier.send(status=f"unhealthy: {reason}")
            return
        self.notifier.send(watchdog=1)  # healthy even when the disk is full: nothing to restart
        self.store.heartbeat(self.clock())

    def health(self, now: float) -> Optional[str]:
        """None when healthy, else why not."""
        if now - self.tick > LOOP_STALL_S:
            return f"the worker loop has not run for {now - self.tick:.0f} s"
        if self.worker.oldest_inflight_age(now) > BATCH_HANG_S:
            return f"a batch has been in the analysers for {self.worker.oldest_inflight_age(now):.0f} s"
        if not self.watcher.alive():
            return "a watcher thread died"
        return None

    def status_line(self) -> str:
        stats = self.store.stats()
        f, q = stats["files"], stats["queue"]
        rate = self.worker.progress.rate(self.clock()) if self.worker else 0.0
        roots = len(self.config.watch.paths)
        return (f"watching {roots} folder{'s' if roots != 1 else ''}: {q['pending'] + q['processing']} pending, "
                f"{f['done']} done, {f['failed']} failed, {stats['faces']} faces, {rate:.0f} files/s")

    # reload -----------------------------------------------------------------------------------
    def reload(self) -> None:
        self.signals.reload = False
        self.notifier.send(reloading=1, monotonic_usec=int(time.monotonic() * 1e6))
        try:
            new = load_config(self.config.source)
        except ConfigError as exc:
            log.error("reload_rejected", error=str(exc), reason="the previous configuration stays in force")
            self.notifier.send(ready=1, status=self.status_line())
            return
        if (new.database, new.detector, new.processing.workers) != \
                (self.config.database, self.config.detector, self.config.processing.workers):
            log.warning("reload_needs_restart", reason="database, detector and workers change on restart")
        added = self.watcher.set_config(new)
        self.config = self.worker.config = new
        self.jobs.reschedule("reconcile", new.schedule.reconcile_interval_s)
        self.jobs.reschedule("checkpoint", new.schedule.checkpoint_interval_s)
        log.info("config_reloaded", watch=list(new.watch.paths), added=added)
        if added:
            threading.Thread(target=self.reconcile_job, args=(added,), name="reconcile-added",
                             daemon=True).start()
        self.notifier.send(ready=1, status=self.status_line())

    # stop -------------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        at_once = self.signals.at_once
        log.info("daemon_stopping", at_once=at_once)
        self.notifier.send(stopping=1, status="stopping")
        logging.getLogger("watchdog").removeHandler(self._overflow)
        if self.watcher:
            self.watcher.stop()
        self.jobs.shutdown(timeout_s=0.5 if at_once else JOBS_STOP_TIMEOUT_S)
        if self.worker:
            self.worker.stop(self.clock(), drain=not at_once, abort=lambda: self.signals.at_once)
            try:
                self.checkpoint_job("completed" if self.store.queue_size() == 0 else "in_progress")
            except Exception as exc:
                log.warning("final_checkpoint_failed", error=str(exc))
        self.store.daemon_stopped(self.clock())
        self.store.close()
        self.lock.release()
        self.notifier.close()
        log.info("daemon_stopped")
