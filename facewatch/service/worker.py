"""step(): claim a batch -> analyse its files in the analyser processes -> save it in one transaction.

`work()` is the one loop around it, for the daemon (until stopped) and for one-shot runs (burst:
until nothing is left), as rq's worker is.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import structlog

from facewatch.analysis.analysers import Analysers
from facewatch.config import Config
from facewatch.intake.files import available, inside
from facewatch.store import TRANSIENT, Claim, Embedded, FaceJob, PeopleChanged, Result, Store, StoreError

log = structlog.get_logger("facewatch.service.worker")

LEASE_S = 600.0  # a claim not saved by then goes back to the queue (release_stale)
OUTAGE_RETRY_S = 30.0  # a file whose watched folder is unavailable is tried again this much later
PIPELINE_DEPTH = 2  # batches in flight, so the analysers never wait for a save
HANG_S = 120.0  # a batch in flight this long has a file the analysers will not finish
# an idle loop looks at the queue at least this often: work queued here wakes it, and the daemon's
# pulse wakes it for work queued by other processes (a `facewatch retry`)
IDLE_WAIT_S = 60.0
STORE_RETRY_S = 5.0  # an idle loop that could not read the queue (an I/O error, the server away) looks again
DRAIN_POLL_S = 0.05  # how soon a stop that cannot wait (a second SIGTERM) cuts a drain short
PLACE_FACES = 256  # faces embedded by the analysers, placed into people per step (one transaction)


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
class FaceBatch:
    """Embedding jobs in flight (one per analyser at most: detection never waits behind many)."""
    job: FaceJob
    future: Future
    started_at: float
    outcomes: Optional[list[Embedded]] = None


@dataclass
class Progress:
    batches: int = 0
    files: int = 0  # files whose result was saved
    failed: int = 0
    faces_embedded: int = 0
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


def backoff_s(tries: int) -> float:
    """How long a file waits after its `tries`-th transient failure."""
    return min(2.0 ** tries, 300.0)


class Worker:
    """Feeds the analysers from the queue and stores what they return."""

    def __init__(self, store: Store, config: Config, claimant: Optional[str] = None,
                 analysers: Optional[Analysers] = None, on_saved: Optional[Callable[[Batch], None]] = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.config = config
        self.claimant = claimant or f"{socket.gethostname()}:{os.getpid()}"
        self.analysers = analysers if analysers is not None else Analysers(config)
        self.on_saved = on_saved
        self.on_faces_saved: Optional[Callable[[int], None]] = None  # called with the faces settled
        self.clock = clock
        self.inflight: deque[Batch] = deque()
        self.progress = Progress()
        self._save_backoff_until = 0.0
        self._save_failures = 0
        self._culprits: set = set()
        self.face_jobs: deque[FaceBatch] = deque()
        self._people = None  # the people stage, made when it first has work (it needs numpy)
        self._placeable = True  # faces embedded by the analysers may wait to be placed
        self.waiting = False  # idle, asleep until woken: not hung, however long

    def start(self, wait: bool = True) -> None:
        """Start the analysers; with `wait`, until each has loaded its model."""
        self.analysers.start(wait)

    # the loop -----------------------------------------------------------------------------------
    def work(self, stop: threading.Event, wake: threading.Event, burst: bool = False,
             before_step: Callable[[float], None] = lambda now: None) -> None:
        """Claim, analyse and save until `stop` is set; with `burst`, until nothing is left to do.

        `wake` is set by whoever queues work; a wake-up with less than a batch waiting waits
        `processing.max_batch_wait_s` more, so a burst of arrivals is analysed as one batch."""
        p = self.config.processing
        while not stop.is_set():
            now = self.clock()
            before_step(now)
            self.step(now)
            if self.busy:
                self.wait(0.2)
                continue
            pause = self._idle_pause(now, burst)
            if pause is None:
                return  # burst: everything is done or failed
            self.waiting = True
            try:
                woke = wake.wait(pause)
            finally:
                self.waiting = False
            wake.clear()
            if woke and self._ready(self.clock()) < p.batch_size:
                stop.wait(p.max_batch_wait_s)

    def _idle_pause(self, now: float, burst: bool) -> Optional[float]:
        """How long an idle loop may sleep: until a retry backing off is due, at most IDLE_WAIT_S
        (new work sets `wake`); None in burst mode when nothing is left at all."""
        pause = IDLE_WAIT_S
        if self._save_backoff_until > now:
            return min(pause, self._save_backoff_until - now)
        try:
            if burst and self.store.queue_size(now):
                return 0.05
            later = [self.store.next_ready_at()]
            if self.config.people.enabled:
                ready, face_later = self.store.faces_ready(now)
                if burst and ready:
                    return 0.05
                later.append(face_later)
        except TRANSIENT:
            return STORE_RETRY_S
        later = [t for t in later if t is not None]
        if burst:
            return min(pause, max(min(later) - now, 0.05)) if later else None
        due = [t - now for t in later if t > now]  # what is due now was claimed, or cannot be yet
        return min([pause, *due])

    def work_ready(self, now: float) -> bool:
        """Files or faces waiting, ready now (to wake an idle loop for work it was not told of)."""
        return bool(self.store.queue_size(now) or (self.config.people.enabled and self.store.faces_ready(now)[0]))

    def _ready(self, now: float) -> int:
        try:
            return self.store.queue_size(now)
        except TRANSIENT:
            return 0  # the next claim will say what is wrong, and back off

    @property
    def people(self):
        """The people stage (None when people.enabled is false)."""
        if self._people is None and self.config.people.enabled:
            from facewatch.people.stage import PeopleIndex, PeopleStage
            p = self.config.people
            self._people = PeopleStage(self.store, PeopleIndex(self.store, p.match_distance, p.min_faces))
        return self._people

    @property
    def busy(self) -> bool:
        return bool(self.inflight or self.face_jobs)

    def step(self, now: float) -> int:
        """Save finished batches, then claim one more if the pipeline has room; returns files saved.
        Faces are embedded only when no file waits for detection, one job per analyser at most."""
        self._kill_hung_analysers(now)
        saved = self._collect(now)
        self._collect_faces(now)
        if now < self._save_backoff_until:
            return saved
        claims = []
        if len(self.inflight) < PIPELINE_DEPTH:
            try:
                claims = self.store.claim(self.claimant, self.config.processing.batch_size, now, LEASE_S)
            except TRANSIENT as exc:
                self._store_failed(exc, now)
                return saved
            if claims:
                self._submit(claims, now)
        idle = not claims and not self.inflight
        if self.config.people.enabled and (self._placeable or idle) and self.people.ready():
            if not self._claim_embedded(now):
                return saved
        if self.config.people.enabled and idle and self.people.ready():
            room = self.analysers.count - sum(not b.future.done() for b in self.face_jobs)
            try:
                jobs = self.store.claim_faces(self.claimant, room, now, LEASE_S) if room > 0 else []
            except TRANSIENT as exc:
                self._store_failed(exc, now)
                return saved
            for job in jobs:
                self.face_jobs.append(FaceBatch(job, self.analysers.submit_faces(job), now))
        return saved

    def _claim_embedded(self, now: float) -> bool:
        """Lease faces the analysers embedded as they found them: they only need placing, which
        the next step does with the other finished face jobs (no analyser needed). False when the
        store would not answer."""
        try:
            jobs = self.store.claim_faces(self.claimant, PLACE_FACES, now, LEASE_S, embedded=True)
        except TRANSIENT as exc:
            self._store_failed(exc, now)
            return False
        if sum(len(job.faces) for job in jobs) < PLACE_FACES:
            self._placeable = False  # until a save brings more
        for job in jobs:
            placed: Future = Future()
            placed.set_result([Embedded(face_id, "done", embedding=blob)
                               for (face_id, _), blob in zip(job.faces, job.embeddings)])
            self.face_jobs.append(FaceBatch(job, placed, now))
        return True

    def wait(self, timeout: float) -> None:
        """Block until an in-flight file or face finishes, at most `timeout` seconds."""
        pending = [f for b in self.inflight for f in b.futures if not f.done()]
        pending += [b.future for b in self.face_jobs if not b.future.done()]
        if pending:
            wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)

    def oldest_inflight_age(self, now: float) -> float:
        started = [b.started_at for b in self.inflight] + [b.started_at for b in self.face_jobs]
        return now - min(started) if started else 0.0

    def stop(self, drain: bool = True, abort: Callable[[], bool] = lambda: False) -> None:
        """Finish what is in flight (unless `abort` says stop at once) and give back the rest."""
        while drain and self.busy and self.analysers.started and not abort():
            self.wait(DRAIN_POLL_S)  # short: a second SIGTERM cuts in
            now = self.clock()
            self._collect(now)
            self._collect_faces(now)
            if self.busy and self._save_backoff_until > now:
                break  # the database will not take them now: the next start analyses them again
        if self.inflight and abort():
            log.info("drain_cut_short", batches=len(self.inflight),
                     files=sum(len(b.claims) for b in self.inflight))
        try:
            released = self.store.release(self.claimant)
            if released:
                log.info("claims_released", files=released)
            if self.config.people.enabled:
                faces = self.store.release_faces(self.claimant)
                if faces:
                    log.info("face_claims_released", faces=faces)
        except StoreError as exc:  # their leases expire; the next start takes them back sooner
            log.warning("claims_not_released", error=str(exc))
        self.inflight.clear()
        self.face_jobs.clear()
        self.analysers.shutdown(wait=drain and not abort())

    # a batch ------------------------------------------------------------------------------------
    def _submit(self, claims: list[Claim], now: float) -> None:
        self.progress.batches += 1
        futures = [self.analysers.submit(claim) for claim in claims]
        self.inflight.append(Batch(self.progress.batches, claims, futures, now))
        log.debug("batch_claimed", batch=self.progress.batches, files=len(claims))

    def _collect(self, now: float) -> int:
        saved = 0
        while self.inflight and self.inflight[0].finished() and now >= self._save_backoff_until:
            batch = self.inflight[0]
            if batch.results is None:
                batch.results = [self._result_of(c, f) for c, f in zip(batch.claims, batch.futures)]
            try:
                self.store.save(self.claimant, batch.results, now)
            except TRANSIENT as exc:
                self._store_failed(exc, now)
                break
            if self._save_failures:
                log.info("database_writable_again", after_failures=self._save_failures)
                self._save_failures = 0
            self.inflight.popleft()
            saved += len(batch.results)
            self._account(batch, now)
        return saved

    def _collect_faces(self, now: float) -> int:
        """Save every finished embedding job, with the people its faces join, in one transaction."""
        done = [b for b in self.face_jobs if b.future.done()]
        if not done or now < self._save_backoff_until or not self.config.people.enabled:
            return 0
        for b in done:
            if b.outcomes is None:
                b.outcomes = self._outcomes_of(b)
        outcomes = [o for b in done for o in b.outcomes]
        try:
            self.people.save(self.claimant, [b.job for b in done], outcomes, now)
        except TRANSIENT as exc:
            self._store_failed(exc, now)
            return 0
        except PeopleChanged:  # users edited people three times while we placed: next time
            return 0
        for b in done:
            self.face_jobs.remove(b)
            for o in b.outcomes:
                if o.kind == "failed":
                    log.warning("face_not_embedded", path=b.job.path, face_id=o.face_id, error=o.error)
        embedded = sum(o.kind == "done" for o in outcomes)
        self.progress.faces_embedded += embedded
        log.info("faces_embedded", faces=embedded, jobs=len(done))
        if self.on_faces_saved:
            self.on_faces_saved(len(outcomes))
        return len(outcomes)

    def _outcomes_of(self, batch: FaceBatch) -> list[Embedded]:
        job = batch.job
        try:
            outcomes = batch.future.result()
        except BrokenProcessPool:
            self._culprits |= self.analysers.restart()
            if job.file_id not in self._culprits:
                return [Embedded(f, "deferred", error="an analyser process died") for f, _ in job.faces]
            self._culprits.discard(job.file_id)
            outcomes = [Embedded(f, "retry", error="embedding this file's faces crashed or hung the analyser")
                        for f, _ in job.faces]
        except Exception as exc:  # a bug, not bad input: say so, keep going
            log.error("embed_crashed", path=job.path, error=repr(exc))
            return [Embedded(f, "failed", error=f"internal error while embedding: {exc!r}") for f, _ in job.faces]
        tries = job.attempts + 1
        judged = []
        for o in outcomes:
            if o.kind == "retry" and tries >= self.config.processing.max_attempts:
                o = replace(o, kind="failed", error=f"{o.error} (gave up after {tries} attempts)")
            elif o.kind == "retry":
                o = replace(o, retry_after_s=backoff_s(tries))
            judged.append(o)
        return judged

    def _result_of(self, claim: Claim, future: Future) -> Result:
        try:
            result = future.result()
        except BrokenProcessPool:
            self._culprits |= self.analysers.restart()
            if claim.file_id not in self._culprits:  # queued behind the file that broke it
                return Result(claim.file_id, "deferred", error="an analyser process died", retry_after_s=0)
            self._culprits.discard(claim.file_id)
            result = Result(claim.file_id, "retry", error="analysing this file crashed or hung the analyser")
        except Exception as exc:  # a bug, not bad input: say so, keep going
            log.error("analyse_crashed", path=claim.path, error=repr(exc))
            result = Result(claim.file_id, "failed", error=f"internal error while analysing: {exc!r}")
        return self._judged(claim, result)

    def _judged(self, claim: Claim, result: Result) -> Result:
        """Outages are not the file's fault; transient errors back off, then give up."""
        if result.kind == "missing" and not root_available(claim.path, self.config.watch.paths):
            # the file's watched folder is gone (an unmounted share): an outage, not a deletion
            return replace(result, kind="deferred", error="its watched folder is unavailable",
                           retry_after_s=OUTAGE_RETRY_S)
        if result.kind == "retry":
            tries = claim.attempts + 1
            if tries >= self.config.processing.max_attempts:
                return replace(result, kind="failed", error=f"{result.error} (gave up after {tries} attempts)")
            return replace(result, retry_after_s=backoff_s(tries))
        return result

    def _kill_hung_analysers(self, now: float) -> None:
        """A batch that takes this long has a file the decoder or the model will not finish."""
        if not self.analysers.started or self.oldest_inflight_age(now) < HANG_S:
            return
        log.error("analyser_hung", seconds=round(self.oldest_inflight_age(now)),
                  reason="its processes are restarted; the file it was reading is retried")
        self.analysers.kill_hung()  # the pool breaks, and _result_of blames what it was reading

    def _store_failed(self, exc: Exception, now: float) -> None:
        self._save_failures += 1
        delay = min(0.5 * 2 ** min(self._save_failures, 6), 30.0)
        self._save_backoff_until = now + delay
        if self._save_failures == 1 or self._save_failures % 20 == 0:
            log.warning("database_write_failed", error=str(exc), retry_in_s=delay,
                        failures=self._save_failures)

    def _account(self, batch: Batch, now: float) -> None:
        p = self.progress
        p.files += len(batch.results)
        p.history.append((now, len(batch.results)))
        for claim, result in zip(batch.claims, batch.results):
            p.last_file = claim.path
            if result.embeddings:
                self._placeable = True
                for i, (_, error) in enumerate(result.embeddings):
                    if error:
                        log.info("face_not_embedded", path=claim.path, face=i, error=error)
            if result.kind == "failed":
                p.failed += 1
                log.warning("file_failed", path=claim.path, error=result.error)
            elif result.kind == "missing":
                log.info("file_vanished", path=claim.path)
        log.info("batch_saved", batch=batch.number, files=len(batch.results),
                 seconds=round(now - batch.started_at, 3))
        if self.on_saved:
            self.on_saved(batch)
