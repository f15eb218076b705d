"""The daemon's chores: reconcile, checkpoint, release stale claims and the metrics as APScheduler
jobs; the pulse (watchdog, status line, heartbeat, roots) on a thread of its own."""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Optional

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from facewatch.checkpoint import DatabaseCheckpointManager
from facewatch.intake.reconcile import reconcile
from facewatch.results.sidecars import write_sidecars
from facewatch.store import TRANSIENT, Stats, StoreUnusable

log = structlog.get_logger("facewatch.service.jobs")
# APScheduler warns each time a job falls due while its previous run still waits (for a locked
# database, say): expected, and the job logs why it waits itself, once. Its errors still show.
logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)

# coalesce: a backlog of missed runs is one run; max_instances: never two at once; no misfire
# grace limit: a job that was due while the machine slept or was busy still runs when it can.
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
JOIN_S = 5.0  # how long a stop waits for a beat in progress
PULSE_S = 5.0  # heartbeat, health check, watchdog ping, the STATUS= line systemctl status shows, roots
PULSE_HELD_S = 15.0  # while another process holds the database: no heartbeat, only the ping, line and roots
LOOP_STALL_S = 45.0  # the worker loop silent this long (and not asleep for want of work) is hung
BATCH_HANG_S = 300.0  # a batch in flight this long is hung
STALE_CLAIMS_S = 60.0  # leases last minutes; a dead host's claims come back within this
SIDECARS_S = 5.0  # metadata.write_xmp: sidecar: sidecars follow the index within this
SIDECAR_BATCH = 500
# the counts of the status line and the metrics scan the index (0.3 s with a million files):
# recounted when something changed, at most this share of a core's time, and at least every
# STATUS_RECOUNT_S (other hosts)
STATUS_SHARE = 0.01
STATUS_RECOUNT_S = 300.0


class Jobs:
    def __init__(self, on_fatal: Callable[[Exception], None] = lambda exc: None):
        self.on_fatal = on_fatal  # a database no wait can heal: the daemon must stop and say why
        self.scheduler = BackgroundScheduler(
            job_defaults=JOB_DEFAULTS, executors={"default": ThreadPoolExecutor(4)}, timezone="UTC")
        self._running: set = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def add(self, name: str, func: Callable[[], object], every_s: float, now: bool = False) -> None:
        """Run `func` every `every_s` seconds (and once at start when `now`)."""
        kwargs = {"next_run_time": datetime.now(timezone.utc)} if now else {}
        self.scheduler.add_job(self._guarded(name, func), "interval", seconds=every_s, id=name,
                               name=name, replace_existing=True, **kwargs)

    def once(self, name: str, func: Callable[[], object]) -> None:
        """Run `func` once, now, unless a run of that name is still going."""
        self.scheduler.add_job(self._guarded(name, func), id=name, name=name, replace_existing=True)

    def run_soon(self, name: str) -> None:
        """Bring a job's next run forward to now."""
        job = self.scheduler.get_job(name)
        if job is not None:
            job.modify(next_run_time=datetime.now(timezone.utc))

    def reschedule(self, name: str, every_s: float) -> None:
        if self.scheduler.get_job(name) is not None:
            self.scheduler.reschedule_job(name, trigger="interval", seconds=every_s)

    def _guarded(self, name: str, func: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            with self._lock:
                self._running.add(name)
            try:
                func()
            except TRANSIENT as exc:  # locked, full, the server away: the next run tries again
                log.warning("job_failed", job=name, error=str(exc))
            except StoreUnusable as exc:
                self.on_fatal(exc)
            except Exception as exc:  # a bug: log it whole; the next run is still due
                log.error("job_failed", job=name, error=str(exc), exc_info=True)
            finally:
                with self._lock:
                    self._running.discard(name)
                    self._idle.notify_all()
        return run

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self, timeout_s: float) -> bool:
        """Stop scheduling, wait up to `timeout_s` for running jobs; False if some still ran."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)  # shutdown(wait=True) has no timeout
        with self._lock:
            self._idle.wait_for(lambda: not self._running, timeout=timeout_s)
            if self._running:
                log.warning("jobs_still_running", jobs=sorted(self._running))
            return not self._running


class Pulse:
    """Runs `beat` every `every_s` seconds on a thread of its own, not as an APScheduler job: it is
    the one chore an idle daemon does often, and each wake-up costs (on a virtual machine, 2-4 ms
    of CPU for a bare thread, 9-10 ms for APScheduler's thread and its executor's). A beat never
    waits long for the database, so the watchdog pings go on while another process holds it."""

    def __init__(self, beat: Callable[[], None], every_s: float, on_fatal: Callable[[Exception], None],
                 slow_s: Optional[float] = None, slow: Callable[[], bool] = lambda: False):
        """Beats every `slow_s` instead while `slow()` (the database held by another process:
        there is no heartbeat to write, only the watchdog to ping)."""
        self.beat, self.every_s, self.on_fatal = beat, every_s, on_fatal
        self.slow_s, self.slow = slow_s or every_s, slow
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="facewatch-pulse", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=JOIN_S)

    def _run(self) -> None:
        while not self._stop.wait(self.slow_s if self.slow() else self.every_s):
            try:
                self.beat()
            except TRANSIENT as exc:  # locked, full, the server away: the next beat tries again
                log.debug("pulse_skipped", error=str(exc))
            except StoreUnusable as exc:
                self.on_fatal(exc)
            except Exception as exc:  # a bug: log it whole; the next beat is still due
                log.error("pulse_failed", error=str(exc), exc_info=True)


class Chores:
    """The daemon's periodic chores: reconcile, checkpoint, release stale claims, metrics, pulse.

    `daemon` is the Daemon that wires them (its store, config, worker, watcher, notifier, clock)."""

    def __init__(self, daemon):
        self.d = daemon
        self.unhealthy_reason: Optional[str] = None
        self._last_full_reconcile = float("-inf")
        self.full_reconcile_due = True
        self._embedded_counted = 0
        self._counts: Optional[Stats] = None  # the last counts of the index
        self._counted = (float("-inf"), 0.0, None)  # when (monotonic), what it cost, what had happened
        self.monotonic = time.monotonic

    def schedule(self, jobs: Jobs, watching: bool) -> None:
        d, s = self.d, self.d.config.schedule
        if watching:
            jobs.add("reconcile", self.reconcile, s.reconcile_interval_s, now=True)
        jobs.add("checkpoint", self.checkpoint, s.checkpoint_interval_s)
        jobs.add("release_stale", self.release_stale, STALE_CLAIMS_S)
        jobs.add("sidecars", self.sidecars, SIDECARS_S if d.config.metadata.write_xmp == "sidecar" else 600.0,
                 now=True)
        if d.metrics is not None:
            from facewatch.results.metrics import METRICS_S
            jobs.add("metrics", self.write_metrics, METRICS_S, now=True)

    def pulse(self) -> Pulse:
        watchdog = self.d.notifier.watchdog_interval_s() or float("inf")
        return Pulse(self.beat, min(PULSE_S, watchdog), self.d.fail, slow_s=min(PULSE_HELD_S, watchdog),
                     slow=lambda: self.d.store.held_elsewhere())

    def reconcile(self, roots=None) -> None:
        """Full at start, for roots that came back, after lost events and once a day; else quick."""
        d = self.d
        now = d.clock()
        full = (roots is not None or self.full_reconcile_due
                or now - self._last_full_reconcile >= d.config.schedule.full_reconcile_interval_s)
        if full and roots is None:
            self.full_reconcile_due, self._last_full_reconcile = False, now
        report = reconcile(d.store, roots or d.config.watch.paths, d.config.watch, now,
                           settle_s=d.config.processing.settle_s, defer=d.watcher.defer, quick=not full)
        if d.metrics is not None:
            d.metrics.reconciled(d.clock(), report.seconds)
        if report.queued or report.missing:
            d.wake.set()  # work for the loop, new counts for the status line
        for root, folders in report.folders.items():
            if d.watcher.check_coverage(root, folders):
                self.reconcile([root])  # whatever arrived while the watch was switched

    def check_roots(self) -> None:
        came_back = self.d.watcher.check_roots()
        if came_back:
            log.info("watch_roots_back", paths=came_back)
            self.reconcile(came_back)

    def checkpoint(self, status: str = "in_progress") -> None:
        d = self.d
        progress, now = d.worker.progress, d.clock()
        # the queue's count, not stats(): that scans the index (0.3 s a minute with a million files)
        pending, in_flight = d.store.queue_size(), sum(len(b.claims) for b in list(d.worker.inflight))
        DatabaseCheckpointManager(d.store, kind="daemon").save_checkpoint(
            progress.batches, progress.files, status,
            metadata={"pending": pending, "processing": in_flight,
                      "rate_files_per_s": round(progress.rate(now), 2), "failed": progress.failed,
                      "last_processed_file": progress.last_file, "pid": d.pid,
                      "current_threshold": d.config.detector.min_confidence})
        d.store.prune_checkpoints("daemon", d.config.schedule.keep_checkpoints)
        d.store.maintain()

    def sidecars(self) -> None:
        """metadata.write_xmp: sidecar: bring the sidecars of the photos whose faces or people
        changed in line with the index, SIDECAR_BATCH at a time (off: nothing is due)."""
        d = self.d
        if d.config.metadata.write_xmp != "sidecar":
            d.store.forget_sidecars_due()
            return
        while not d.signals.stop.is_set():
            due = d.store.sidecars_due(SIDECAR_BATCH, placed_only=d.config.people.enabled)
            if not due:
                return
            records = [r for r in (d.store.file_record(path) for _, path in due if path) if r is not None]
            report = write_sidecars(records, d.config.metadata.sidecar_name)
            d.store.sidecars_written([file_id for file_id, _ in due])
            log.info("sidecars_written", written=report.written, unchanged=report.unchanged,
                     problems=len(report.problems))
            if len(due) < SIDECAR_BATCH:
                return

    def write_metrics(self) -> None:
        """Refresh the gauges from the store and rewrite the metrics file."""
        d = self.d
        d.metrics.refresh(self.counts())
        embedded = d.worker.progress.faces_embedded
        d.metrics.faces_embedded.inc(embedded - self._embedded_counted)
        self._embedded_counted = embedded
        d.metrics.write()

    def release_stale(self) -> None:
        released = self.d.store.release_stale(self.d.clock())
        if released:
            log.warning("stale_claims_released", files=released)
            self.d.wake.set()

    def beat(self) -> None:
        """The watchdog ping, the status line (for systemd), a look at the roots, the heartbeat, and
        a look for work other processes queued; ping and heartbeat only while the worker and the
        watcher are healthy. One beat, not five chores: an idle daemon should wake as rarely as it
        can. Never waits long: the heartbeat is skipped while another process holds the database,
        and a root that vanished or came back is handled by a job.
        """
        d = self.d
        reason = self.health(d.clock())
        if reason != self.unhealthy_reason:
            if reason:
                log.error("daemon_unhealthy", reason=reason)
            elif self.unhealthy_reason:
                log.info("daemon_healthy_again")
            self.unhealthy_reason = reason
        if reason:
            d.notifier.send(status=f"unhealthy: {reason}")
            return
        d.notifier.send(watchdog=1)  # healthy even when the disk is full: nothing to restart
        if d.notifier.enabled:  # systemd reads it; counted from a read, fresh while another process writes
            d.notifier.send(status=self.status_line())
        if d.watcher is not None and d.watcher.roots_changed():
            d.jobs.once("check_roots", self.check_roots)
        if not d.store.held_elsewhere():  # else it would only wait a second and give up
            d.store.heartbeat(d.identity.name, d.clock())
            if d.worker.waiting and d.worker.work_ready(d.clock()):
                d.wake.set()  # queued by another process (`facewatch retry`): no one told the loop

    def health(self, now: float) -> Optional[str]:
        """None when healthy, else why not."""
        d = self.d
        if not d.worker.waiting and now - d.tick > LOOP_STALL_S:
            return f"the worker loop has not run for {now - d.tick:.0f} s"
        if d.worker.oldest_inflight_age(now) > BATCH_HANG_S:
            return f"a batch has been in the analysers for {d.worker.oldest_inflight_age(now):.0f} s"
        if d.watcher is not None and not d.watcher.alive():
            return "a watcher thread died"
        return None

    def status_line(self) -> str:
        d = self.d
        stats = self.counts().as_dict()
        f, q = stats["files"], stats["queue"]
        rate = d.worker.progress.rate(d.clock())
        roots = len(d.config.watch.paths)
        what = "analysing for others" if d.watcher is None else \
            f"watching {roots} folder{'s' if roots != 1 else ''}"
        if d.store.held_elsewhere():
            what = f"waiting for the database (another process holds it); {what}"
        return (f"{what}: {q['pending'] + q['processing']} pending, "
                f"{f['done']} done, {f['failed']} failed, {stats['faces']} faces, {rate:.0f} files/s")

    def counts(self) -> Stats:
        """The index's counts (`stats()`), taken again only as STATUS_SHARE and STATUS_RECOUNT_S allow."""
        d = self.d
        happened = (d.worker.progress.files, d.worker.progress.faces_embedded, d.wake.times_set)
        at, cost, before = self._counted
        since = self.monotonic() - at
        if self._counts is None or (since >= cost / STATUS_SHARE
                                    and (happened != before or since >= STATUS_RECOUNT_S)):
            started = self.monotonic()
            self._counts = d.store.stats()
            self._counted = (started, self.monotonic() - started, happened)
        return self._counts
