"""Walk the roots, compare with the store, queue what changed and mark what vanished.

The safety net under the watcher: it catches what happened while the daemon was stopped and
whatever inotify dropped. A root that is absent or unreadable is an outage: nothing under it is
marked missing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import structlog

from facewatch.config import WatchConfig
from facewatch.intake.files import available, inside, walk
from facewatch.store import FileStat, Store, needs_analysis

log = structlog.get_logger("facewatch.intake.reconcile")

WRITE_BATCH = 2000
MARK_AFTER_S = 2.0  # a folder changed this recently is not marked unchanged: mtimes have ticks


@dataclass
class ReconcileReport:
    seen: int = 0
    queued: int = 0
    missing: int = 0
    deferred: int = 0
    outages: list = field(default_factory=list)
    folders: dict = field(default_factory=dict)  # root -> folders walked
    seconds: float = 0.0


def reconcile(store: Store, roots: Iterable[str], watch: WatchConfig, now: float, settle_s: float = 0.0,
              defer: Optional[Callable[[FileStat], None]] = None, quick: bool = False) -> ReconcileReport:
    """Bring the store in line with the roots; files modified within `settle_s` go to `defer`.

    A full reconcile stats every file. A quick one skips the files of folders whose mtime is the
    one recorded when a walk last read them whole: no entry was added, removed or renamed there
    since. (A file rewritten in place keeps its folder's mtime: while the daemon runs, inotify
    reports those, and the daemon still runs a full reconcile at start and once a day.)
    """
    report = ReconcileReport()
    started = time.perf_counter()
    for root in roots:
        if not available(root):
            log.warning("reconcile_outage", path=root, reason="absent or unreadable; nothing marked missing")
            report.outages.append(root)
            continue
        with store.root_lock(root) as ours:
            if not ours:  # several hosts share the database: one reconciles a root at a time
                log.info("reconcile_skipped", path=root, reason="another host is reconciling it")
                continue
            _reconcile_root(store, root, watch, now, settle_s, defer, quick, report)
    report.seconds = time.perf_counter() - started
    log.info("reconcile_finished", quick=quick, seen=report.seen, queued=report.queued, missing=report.missing,
             deferred=report.deferred, outages=len(report.outages), seconds=round(report.seconds, 3))
    return report


def _reconcile_root(store, root, watch, now, settle_s, defer, quick, report) -> None:
    marks = store.folder_marks(root)
    seen_dirs, unreadable, new_marks = set(), [], []
    batch: list[FileStat] = []
    vanished: list[str] = []
    unchanged = (lambda path, mtime_ns: marks.get(path) == mtime_ns) if quick else (lambda path, mtime_ns: False)
    for folder in walk(root, watch, unchanged):
        seen_dirs.add(folder.path)
        report.folders[root] = report.folders.get(root, 0) + 1
        if not folder.complete:
            unreadable.append(folder.path)
        if folder.files is None:
            continue  # unchanged since the last walk read it
        known = store.known_in_dir(folder.path)
        for st in folder.files:
            report.seen += 1
            previous = known.pop(st.path, None)
            if previous is not None and not needs_analysis(previous, st):
                continue
            if defer is not None and now - st.mtime_ns / 1e9 < settle_s:
                defer(st)  # still being written, perhaps: the watcher's settle timer decides
                report.deferred += 1
            else:
                batch.append(st)
        if folder.complete:
            vanished += [p for p, k in known.items() if k[3] != "missing"]
            if now - folder.mtime_ns / 1e9 > MARK_AFTER_S:  # a change in the same clock tick stays visible
                new_marks.append((folder.path, folder.mtime_ns))
        if len(batch) >= WRITE_BATCH:
            report.queued += store.enqueue(batch, now)
            batch = []
        if len(vanished) >= WRITE_BATCH and available(root):
            report.missing += store.mark_missing(vanished, now)
            vanished = []
    report.queued += store.enqueue(batch, now) if batch else 0
    if not available(root):  # it went away during the walk: an outage after all
        report.outages.append(root)
        return
    for folder in store.known_dirs_under(root):
        if folder in seen_dirs or any(inside(folder, u) for u in unreadable):
            continue
        if not watch.recursive and folder != root:
            continue
        vanished += [p for p, k in store.known_in_dir(folder).items() if k[3] != "missing"]
    if vanished:
        report.missing += store.mark_missing(vanished, now)
    store.save_folder_marks(new_marks, forget=[d for d in marks if d not in seen_dirs])
