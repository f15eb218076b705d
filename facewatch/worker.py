"""step(): claim a batch -> analyse its files in the analyser processes -> save it in one transaction."""
from __future__ import annotations

import os
import socket
import sqlite3
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import structlog

from facewatch import pool
from facewatch.config import Config
from facewatch.files import available, inside
from facewatch.store import Claim, Result, Store

log = structlog.get_logger("facewatch.worker")

LEASE_S = 600.0  # a claim not saved by then goes back to the queue (release_stale)
OUTAGE_RETRY_S = 30.0  # a file whose watched folder is unavailable is tried again this much later
PIPELINE_DEPTH = 2  # batches in flight, so the pool never waits for a save
HANG_S = 120.0  # a batch in flight this long has a file the analysers will not finish


@dataclass
class Batch:
    number: int
    claims: list[Claim]
    futures: list[Future]
    started_at: float
    results: Optional[list[Result]] = None

    def finished(self) -> bool:
        return all(f.done() for f in self.futures)


@dataclass
class Progress:
    batches: int = 0
    files: int = 0  # files whose result was saved
    failed: int = 0
    last_file: Optional[str] = None
    history: deque = field(default_factory=lambda: deque(maxlen=64))  # (time, files) samples

    def rate(self, now: float, window_s: float = 30.0) -> float:
        """Files saved per second over the last `window_s`."""
        recent = [(t, n) for t, n in self.history if now - t <= window_s]
        if not recent:
            return 0.0
        span = max(now - min(t for t, _ in recent), 1.0)
        return sum(n for _, n in recent) / span


def root_available(path: str, roots) -> bool:
    """Whether the watched root holding `path` (if any) can be listed now."""
    return all(available(root) for root in roots if inside(path, root))


class Worker:
    """Feeds the process pool from the queue and stores what it returns."""

    def __init__(self, store: Store, config: Config, name: Optional[str] = None,
                 on_saved: Optional[Callable[[Batch], None]] = None):
        self.store = store
        self.config = config
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.on_saved = on_saved
        self.inflight: deque[Batch] = deque()
        self.progress = Progress()
        self._pool: Optional[ProcessPoolExecutor] = None
        self._save_backoff_until = 0.0
        self._save_failures = 0
        self._reading = None  # shared with the analysers: (pid, file id) of what each one reads
        self._culprits: set = set()

    # the pool -----------------------------------------------------------------------------------
    def start(self, wait: bool = True) -> None:
        """Start the analyser processes; with `wait`, until each has loaded its model."""
        p, d = self.config.processing, self.config.detector
        context = pool.analyser_context()
        # what each analyser is reading (file ids), so a crash or a hang is blamed on that file only
        self._reading = context.Array("q", 2 * p.worker_count)
        self._pool = ProcessPoolExecutor(
            max_workers=p.worker_count, mp_context=context,
            initializer=pool.init_process,
            initargs=(self.config.database, d.model, d.min_confidence, p.max_pixels, p.min_decode_side,
                      os.getpid(), self._reading))
        warming = [self._pool.submit(pool.ready) for _ in range(p.worker_count)]
        if wait:
            for f in warming:
                f.result()

    def stop(self, now: float, drain: bool = True, abort: Callable[[], bool] = lambda: False) -> None:
        """Finish what is in flight (unless `abort` says stop at once) and give back the rest."""
        if drain:
            while self.inflight and self._pool is not None and not abort():
                wait(self.inflight[0].futures, timeout=0.5)
                self._collect(now)
                if self.inflight and self._save_backoff_until > now:
                    break
            if self.inflight and abort():
                log.info("drain_cut_short", batches=len(self.inflight))
        try:
            released = self.store.release(self.name)
            if released:
                log.info("claims_released", files=released)
        except sqlite3.Error as exc:  # the next start takes them back: it holds the lock
            log.warning("claims_not_released", error=str(exc))
        self.inflight.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=drain, cancel_futures=True)
            self._pool = None

    # the loop -----------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self.inflight)

    def step(self, now: float) -> int:
        """Save finished batches, then claim one more if the pipeline has room; returns files saved."""
        self._kill_hung_analysers(now)
        saved = self._collect(now)
        if len(self.inflight) < PIPELINE_DEPTH and now >= self._save_backoff_until:
            try:
                claims = self.store.claim(self.name, self.config.processing.batch_size, now, LEASE_S)
            except sqlite3.OperationalError as exc:
                self._save_failed(exc, now)
                return saved
            if claims:
                self._submit(claims, now)
        return saved

    def wait(self, timeout: float) -> None:
        """Block until an in-flight file finishes, at most `timeout` seconds."""
        pending = [f for b in self.inflight for f in b.futures if not f.done()]
        if pending:
            wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)

    def oldest_inflight_age(self, now: float) -> float:
        return now - self.inflight[0].started_at if self.inflight else 0.0

    def _submit(self, claims: list[Claim], now: float) -> None:
        assert self._pool is not None, "Worker.start() was not called"
        self.progress.batches += 1
        futures = [self._pool.submit(pool.analyse, claim) for claim in claims]
        self.inflight.append(Batch(self.progress.batches, claims, futures, now))
        log.debug("batch_claimed", batch=self.progress.batches, files=len(claims))

    def _collect(self, now: float) -> int:
        saved = 0
        while self.inflight and self.inflight[0].finished() and now >= self._save_backoff_until:
            batch = self.inflight[0]
            if batch.results is None:
                batch.results = [self._result_of(c, f) for c, f in zip(batch.claims, batch.futures)]
            try:
                self.store.save(self.name, batch.results, now)
            except sqlite3.OperationalError as exc:
                self._save_failed(exc, now)
                break
            if self._save_failures:
                log.info("database_writable_again", after_failures=self._save_failures)
                self._save_failures = 0
            self.inflight.popleft()
            saved += len(batch.results)
            self._account(batch, now)
        return saved

    def _result_of(self, claim: Claim, future: Future) -> Result:
        try:
            result = future.result()
        except BrokenProcessPool:
            self._restart_pool()
            if claim.file_id not in self._culprits:  # queued behind the file that broke it
                return Result(claim.file_id, "deferred", error="an analyser process died", retry_after_s=0)
            result = Result(claim.file_id, "retry", error="analysing this file crashed or hung the analyser")
        except Exception as exc:  # a bug, not bad input: say so, keep going
            log.error("analyse_crashed", path=claim.path, error=repr(exc))
            result = Result(claim.file_id, "failed", error=f"internal error while analysing: {exc!r}")
        if result.kind == "missing" and not root_available(claim.path, self.config.watch.paths):
            # the file's watched folder is gone (an unmounted share): an outage, not a deletion
            return replace(result, kind="deferred", error="its watched folder is unavailable",
                           retry_after_s=OUTAGE_RETRY_S)
        if result.kind == "retry":
            tries = claim.attempts + 1
            if tries >= self.config.processing.max_attempts:
                return replace(result, kind="failed", error=f"{result.error} (gave up after {tries} attempts)")
            return replace(result, retry_after_s=min(2.0 ** tries, 300.0))
        return result

    def _restart_pool(self) -> None:
        if self._pool is not None and getattr(self._pool, "_broken", False):
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.join(timeout=2.0)  # the pool told the others to stop: let them say so
            # an analyser that was told to stop cleared its file id: those left are what it died on
            self._culprits = {file_id for file_id in self._reading[1::2] if file_id > 0}
            log.warning("analyser_restarted", reason="an analyser process died",
                        files=sorted(self._culprits))
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            self.start()

    def _kill_hung_analysers(self, now: float) -> None:
        """A batch that takes this long has a file the decoder or the model will not finish."""
        if self._pool is None or self.oldest_inflight_age(now) < HANG_S:
            return
        log.error("analyser_hung", seconds=round(self.oldest_inflight_age(now)),
                  reason="its processes are restarted; the file it was reading is retried")
        processes = list(getattr(self._pool, "_processes", {}).values())
        for process in processes:
            process.terminate()  # a working analyser clears its slot and exits; a hung one cannot
        for process in processes:
            process.join(timeout=2.0)
            if process.is_alive():
                process.kill()  # the pool breaks, and _restart_pool blames what it was reading

    def _save_failed(self, exc: Exception, now: float) -> None:
        self._save_failures += 1
        delay = min(0.5 * 2 ** min(self._save_failures, 6), 30.0)
        self._save_backoff_until = now + delay
        if self._save_failures == 1 or self._save_failures % 20 == 0:
            log.warning("database_write_failed", error=str(exc), retry_in_s=delay,
                        failures=self._save_failures, database=self.config.database)

    def _account(self, batch: Batch, now: float) -> None:
        p = self.progress
        p.files += len(batch.results)
        p.history.append((now, len(batch.results)))
        for claim, result in zip(batch.claims, batch.results):
            p.last_file = claim.path
            if result.kind == "failed":
                p.failed += 1
                log.warning("file_failed", path=claim.path, error=result.error)
            elif result.kind == "missing":
                log.info("file_vanished", path=claim.path)
        log.info("batch_saved", batch=batch.number, files=len(batch.results),
                 seconds=round(now - batch.started_at, 3))
        if self.on_saved:
            self.on_saved(batch)
