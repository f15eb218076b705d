"""The daemon: wiring, reload, and an ordered shutdown; sd_notify throughout."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable, Optional

import structlog

from facewatch.config import Config, ConfigError, load_config
from facewatch.service.jobs import SIDECARS_S, Chores, Jobs
from facewatch.service.notify import Notifier
from facewatch.service.signals import Signals
from facewatch.store import DaemonInfo, StoreError, StoreUnusable, iso, open_store
from facewatch.intake.watcher import Watcher
from facewatch.service.worker import Worker

log = structlog.get_logger("facewatch.service.daemon")

JOBS_STOP_TIMEOUT_S = 10.0


class _OverflowHandler(logging.Handler):
    """watchdog logs a lost-events warning on inotify overflow: answer it with a reconcile."""

    def __init__(self, on_overflow: Callable[[], None]):
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.on_overflow()


class Wake(threading.Event):
    """The worker loop's wake-up, set whenever work may have arrived (queued here or by another
    host, claims released); counts those times, so the status line knows when to recount."""

    def __init__(self):
        super().__init__()
        self.times_set = 0

    def set(self) -> None:
        self.times_set += 1
        super().set()


class Daemon:
    """`facewatch run`: watch, reconcile and analyse until stopped. With `worker_only`, only
    analyse from the shared queue (a host lending its cores to a server database)."""

    def __init__(self, config: Config, worker_only: bool = False, clock: Callable[[], float] = time.time):
        self.config = config
        self.worker_only = worker_only
        self.clock = clock
        self.pid = os.getpid()
        self.wake = Wake()
        self.signals = Signals(self.wake)
        self.notifier = Notifier()
        self.store = None
        self.worker: Optional[Worker] = None
        self.watcher: Optional[Watcher] = None
        self.jobs = Jobs(on_fatal=self.fail)
        self.chores = Chores(self)
        self.pulse = self.chores.pulse()
        self.metrics = None  # facewatch.results.metrics.Metrics when metrics.textfile or metrics.listen is set
        self._metrics_server = None
        self._web = None  # facewatch.web.server.WebServer when web.listen is set
        self.tick = clock()
        self.fatal: Optional[StoreError] = None
        now = clock()
        self.identity = DaemonInfo(f"{socket.gethostname()}:{self.pid}:{now:.3f}", socket.gethostname(), self.pid,
                                   iso(now), now, None, worker_only)
        self._overflow = _OverflowHandler(self._events_lost)

    # start ------------------------------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM or SIGINT; StoreUnusable (after an ordered stop) if the database fails
        in a way no wait heals, DatabaseInUse if another process holds it."""
        self.store = open_store(self.config.database)
        try:
            self.store.lock(exclusive=False)
        except BaseException:
            self.store.close()
            raise
        self.signals.install()
        self.store.daemon_started(self.identity)
        log.info("daemon_starting", pid=self.pid, database=self.store.display, worker_only=self.worker_only,
                 watch=[] if self.worker_only else list(self.config.watch.paths))
        self.store.on_enqueued(self.wake.set)  # other hosts' work, on a shared database
        self.worker = Worker(self.store, self.config, claimant=self.identity.name)
        m = self.config.metrics
        if m.textfile or m.listen:
            from facewatch.results.metrics import Metrics
            self.metrics = Metrics(m.textfile, self.clock())
            self.worker.on_saved = lambda batch: self.metrics.saved(batch.results)
            if m.listen:
                try:
                    self._metrics_server = self.metrics.serve(m.listen)
                except OSError as exc:  # taken, or not an address of this host: say so, go on without
                    log.error("metrics_not_served", listen=m.listen, error=exc.strerror or str(exc))
        self.worker.start()
        if self.config.web.listen:
            self._serve_web(self.config.web.listen)
        if not self.worker_only:
            self.watcher = Watcher(self.store, self.config, on_enqueued=self.wake.set, clock=self.clock,
                                   on_fatal=self.fail)
            self.watcher.start()
            logging.getLogger("watchdog").addHandler(self._overflow)
        self.chores.schedule(self.jobs, watching=not self.worker_only)
        self.jobs.start()
        self.pulse.start()
        self.notifier.send(ready=1, status=self.chores.status_line())
        log.info("daemon_ready", workers=self.config.processing.worker_count)
        try:
            self.worker.work(self.signals.stop, self.wake, before_step=self._before_step)
        except StoreUnusable as exc:
            self.fatal = exc
        finally:
            self._shutdown()
        if self.fatal is not None:
            raise self.fatal
        return 0

    def _serve_web(self, listen: str) -> None:
        """web.listen: the web interface from this daemon, over its store (a thread of its own)."""
        from facewatch.web.server import WebServer
        try:
            self._web = WebServer(self.config, self.store, listen)
        except OSError as exc:  # taken, or not an address of this host: say so, go on without
            log.error("web_not_served", listen=listen, error=exc.strerror or str(exc))
            return
        self._web.start()
        log.info("web_serving", listen=f"{self._web.host}:{self._web.port}")

    def _before_step(self, now: float) -> None:
        if self.signals.reload:
            self.reload()
        self.tick = now

    def fail(self, exc: StoreError) -> None:
        """A database no wait can heal, met by a job or the watcher: stop, and say why."""
        if self.fatal is None:
            self.fatal = exc
            log.error("database_unusable", error=str(exc), reason="the daemon stops")
        self.signals.stop.set()
        self.wake.set()

    def _events_lost(self) -> None:
        self.chores.full_reconcile_due = True
        self.jobs.run_soon("reconcile")

    # reload -----------------------------------------------------------------------------------
    def reload(self) -> None:
        self.signals.reload = False
        self.notifier.send(reloading=1, monotonic_usec=int(time.monotonic() * 1e6))
        try:
            new = load_config(self.config.source)
        except ConfigError as exc:
            log.error("reload_rejected", error=str(exc), reason="the previous configuration stays in force")
            self.notifier.send(ready=1, status=self.chores.status_line())
            return
        if (new.database, new.detector, new.processing.workers) != \
                (self.config.database, self.config.detector, self.config.processing.workers):
            log.warning("reload_needs_restart", reason="database, detector and workers change on restart")
        added = self.watcher.set_config(new) if self.watcher else []
        self.config = self.worker.config = new
        self.jobs.reschedule("reconcile", new.schedule.reconcile_interval_s)
        self.jobs.reschedule("checkpoint", new.schedule.checkpoint_interval_s)
        self.jobs.reschedule("sidecars", SIDECARS_S if new.metadata.write_xmp == "sidecar" else 600.0)
        log.info("config_reloaded", watch=list(new.watch.paths), added=added)
        if added:
            threading.Thread(target=self.chores.reconcile, args=(added,), name="reconcile-added",
                             daemon=True).start()
        self.notifier.send(ready=1, status=self.chores.status_line())

    # stop -------------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        at_once = self.signals.at_once
        log.info("daemon_stopping", at_once=at_once)
        self.notifier.send(stopping=1, status="stopping")
        logging.getLogger("watchdog").removeHandler(self._overflow)
        if self.watcher:
            self.watcher.stop()
        self.pulse.stop()
        self.jobs.shutdown(timeout_s=0.5 if at_once else JOBS_STOP_TIMEOUT_S)
        self.worker.stop(drain=not at_once and self.fatal is None, abort=lambda: self.signals.at_once)
        self._last_words()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        if self._web is not None:
            self._web.close()
        self.store.unlock()
        self.store.close()
        self.notifier.close()
        log.info("daemon_stopped")

    def _last_words(self) -> None:
        """The final checkpoint and the daemon's stop, if the database still takes them."""
        try:
            self.chores.checkpoint("completed" if self.store.queue_size() == 0 else "in_progress")
            self.store.daemon_stopped(self.identity.name, self.clock())
        except StoreError as exc:
            log.warning("final_checkpoint_failed", error=str(exc))
