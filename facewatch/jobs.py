"""APScheduler jobs of the daemon: checkpoint, reconcile, release stale claims, pulse."""
from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone
from typing import Callable

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

log = structlog.get_logger("facewatch.jobs")

# coalesce: a backlog of missed runs is one run; max_instances: never two at once; no misfire
# grace limit: a job that was due while the machine slept or was busy still runs when it can.
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}


class Jobs:
    def __init__(self):
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
            except sqlite3.OperationalError as exc:  # locked or full: the next run tries again
                log.warning("job_failed", job=name, error=str(exc))
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
