"""The analyser processes: decode and detect, one model per process, forked from a preloaded server."""
from __future__ import annotations

import os
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Optional

import structlog

from facewatch.analysis import pool
from facewatch.config import Config
from facewatch.store import Claim

log = structlog.get_logger("facewatch.analysis.analysers")


def pool_processes(executor: ProcessPoolExecutor) -> list:
    """The processes of a ProcessPoolExecutor (a private attribute; tests fail if it goes away)."""
    return list(executor._processes.values())


def pool_broken(executor: ProcessPoolExecutor) -> bool:
    """Whether one of its processes died (a private attribute; tests fail if it goes away)."""
    return bool(executor._broken)


class Analysers:
    """A pool of analyser processes, with what each one is reading, so a crash or a hang is blamed
    on that file only."""

    def __init__(self, config: Config):
        self.config = config
        self._pool: Optional[ProcessPoolExecutor] = None
        self._reading = None  # shared with the analysers: (pid, file id) of what each one reads

    @property
    def count(self) -> int:
        return self.config.processing.worker_count

    def start(self, wait: bool = True) -> None:
        """Start the processes; with `wait`, until each has loaded its model."""
        p, d = self.config.processing, self.config.detector
        context = pool.analyser_context()
        self._reading = context.Array("q", 2 * self.count)
        self._pool = ProcessPoolExecutor(
            max_workers=self.count, mp_context=context, initializer=pool.init_process,
            initargs=(self.config.database, d.model, d.min_confidence, d.small_faces, p.max_pixels,
                      p.min_decode_side, self.config.people.enabled, self.config.metadata.read_xmp, os.getpid(),
                      self._reading))
        warming = [self._pool.submit(pool.ready) for _ in range(self.count)]
        if wait:
            for f in warming:
                f.result()

    @property
    def started(self) -> bool:
        return self._pool is not None

    def submit(self, claim: Claim) -> Future:
        assert self._pool is not None, "Analysers.start() was not called"
        return self._pool.submit(pool.analyse, claim)

    def submit_faces(self, job) -> Future:
        assert self._pool is not None, "Analysers.start() was not called"
        return self._pool.submit(pool.embed, job)

    def reading(self) -> list[tuple[int, int]]:
        """(pid, file id) of each analyser: what it is reading now (-1: nothing, 0: stopped)."""
        slots = list(self._reading) if self._reading is not None else []
        return list(zip(slots[0::2], slots[1::2]))

    def restart(self) -> set[int]:
        """After a crash: start new processes; returns the ids of the files the dead ones were reading."""
        if self._pool is None or not pool_broken(self._pool):
            return set()
        for process in pool_processes(self._pool):
            process.join(timeout=2.0)  # the pool told the others to stop: let them say so
        # an analyser that was told to stop cleared its file id: those left are what it died on
        culprits = {file_id for _, file_id in self.reading() if file_id > 0}
        log.warning("analyser_restarted", reason="an analyser process died", files=sorted(culprits))
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        self.start()
        return culprits

    def kill_hung(self) -> None:
        """Stop every analyser; one that will not stop (hung in a decoder) is killed, which breaks
        the pool, and `restart` then blames the file it was reading."""
        if self._pool is None:
            return
        processes = pool_processes(self._pool)
        for process in processes:
            process.terminate()  # a working analyser clears its slot and exits; a hung one cannot
        for process in processes:
            process.join(timeout=2.0)
            if process.is_alive():
                process.kill()

    def shutdown(self, wait: bool) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None
