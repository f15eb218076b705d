"""watchdog events -> complete image files -> store.enqueue(); nothing else.

Handlers only note what happened; one flusher thread turns a burst of notes into one store
transaction. A file is complete on close-after-write or when moved into place; a file that gets
neither (polling, or a writer we cannot see close) is queued once it has been unchanged for
`processing.settle_s`.
"""
from __future__ import annotations

import ctypes
import errno
import os
import queue
import threading
import time
from typing import Callable, Optional

import structlog
from watchdog.observers.inotify import InotifyObserver
from watchdog.observers.polling import PollingObserver

from facewatch.config import Config
from facewatch.intake.handlers import NoteTaker
from facewatch.intake.files import inside, is_image_name, stat_file, walk
from facewatch.store import TRANSIENT, FileStat, Store, StoreError, StoreUnusable

log = structlog.get_logger("facewatch.intake.watcher")

FLUSH_INTERVAL_S = 0.02  # in a burst of events, the flusher applies them at most this often
WAKE = None  # put on the notes queue to wake the flusher (to stop)
FALLBACK_POLL_S = 10.0  # polling a tree costs a stat of every file: not every second


def _watched_folders(observer) -> Optional[int]:
    """How many folders an inotify observer really watches (None if watchdog hides it)."""
    try:
        return sum(len(e._inotify._active_callbacks_by_path) for e in observer.emitters)
    except AttributeError:
        return None


def _watch_limit_reached(path: str) -> bool:
    """Ask the kernel directly: can this user add one more inotify watch?"""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return ctypes.get_errno() in (errno.EMFILE, errno.ENOSPC)
    try:
        return libc.inotify_add_watch(fd, os.fsencode(path), 0x100) < 0 and ctypes.get_errno() == errno.ENOSPC
    finally:
        os.close(fd)


def _observing(observer) -> bool:
    """The observer thread and every emitter thread under it are running."""
    return observer.is_alive() and all(e.is_alive() for e in observer.emitters)


class Watcher:
    """Observers for the watched roots, a settle list, and the flusher that writes to the store."""

    def __init__(self, store: Store, config: Config, on_enqueued: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time,
                 on_fatal: Callable[[Exception], None] = lambda exc: None):
        self.store = store
        self.on_fatal = on_fatal  # a database no wait can heal
        self.config = config
        self.on_enqueued = on_enqueued
        self.clock = clock
        self.notes: queue.SimpleQueue = queue.SimpleQueue()
        self.observers: dict = {}  # root -> observer
        self.settling: dict = {}  # path -> (FileStat or None, unchanged since, its root)
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._run, name="facewatch-flusher", daemon=True)
        self._absent_logged: set = set()
        self._carry: list = []  # notes not yet applied (the store was locked or full)
        self._complete: list[FileStat] = []  # complete files not yet written to the store
        self._last_flush = float("-inf")  # when the flusher last woke for a note (monotonic)

    # observers ----------------------------------------------------------------------------------
    def start(self) -> None:
        for root in self.config.watch.paths:
            self.watch(root)
        self._flusher.start()

    def watch(self, root: str) -> bool:
        """Start observing `root`; False (and logged once) while it is absent or unreadable."""
        if root in self.observers:
            return True
        if not os.path.isdir(root) or not os.access(root, os.R_OK | os.X_OK):
            if root not in self._absent_logged:
                log.warning("watch_root_unavailable", path=root,
                            reason="absent or unreadable; watched once it appears")
                self._absent_logged.add(root)
            return False
        observer = self._start_observer(root, polling=self.config.watch.polling)
        if observer is None:
            return False
        self.observers[root] = observer
        self._absent_logged.discard(root)
        log.info("watch_started", path=root, mode="polling" if self.config.watch.polling or
                 isinstance(observer, PollingObserver) else "inotify")
        return True

    def _start_observer(self, root: str, polling: bool, poll_every_s: float = 1.0):
        observer = PollingObserver(timeout=poll_every_s) if polling else InotifyObserver(generate_full_events=True)
        observer.schedule(NoteTaker(self.notes, root), root, recursive=self.config.watch.recursive)
        observer.daemon = True
        try:
            observer.start()
        except OSError as exc:
            observer.stop()
            if exc.errno == errno.ENOSPC and not polling:
                self._log_watch_limit(root)
                return self._start_observer(root, polling=True, poll_every_s=FALLBACK_POLL_S)
            log.warning("watch_failed", path=root, error=exc.strerror or str(exc))
            return None
        return observer

    def check_coverage(self, root: str, folders: int) -> bool:
        """After a walk found `folders` folders: if inotify could not watch them all because the
        watch limit is reached (watchdog drops that error for subfolders), poll the root instead.
        True when it switched: what arrived meanwhile needs another walk."""
        observer = self.observers.get(root)
        if not isinstance(observer, InotifyObserver) or not self.config.watch.recursive:
            return False
        watched = _watched_folders(observer)
        if watched is None or watched >= folders or not _watch_limit_reached(root):
            return False
        self._log_watch_limit(root, watched=watched, folders=folders)
        self.unwatch(root)
        observer = self._start_observer(root, polling=True, poll_every_s=FALLBACK_POLL_S)
        if observer is not None:
            self.observers[root] = observer
        return True

    def _log_watch_limit(self, root: str, **counts) -> None:
        log.error("inotify_limit_reached", path=root, **counts,
                  reason="the kernel's inotify watch limit (fs.inotify.max_user_watches) is reached; this "
                         "folder is polled instead and reconciled; raise the limit for instant updates")

    def unwatch(self, root: str) -> None:
        observer = self.observers.pop(root, None)
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
            log.info("watch_stopped", path=root)

    def set_config(self, config: Config) -> list[str]:
        """Follow a reloaded config: watch new roots, drop removed ones; returns the added roots."""
        old = set(self.config.watch.paths)
        self.config = config
        for root in old - set(config.watch.paths):
            self.unwatch(root)
        added = [r for r in config.watch.paths if r not in old]
        for root in added:
            self.watch(root)
        return added

    def roots_changed(self) -> bool:
        """A cheap look (a stat of each root): did a root vanish or come back, or an observer stop?
        Then `check_roots` has something to do."""
        for root in self.config.watch.paths:
            observer = self.observers.get(root)
            if (observer is None) == os.path.isdir(root) or (observer is not None and not _observing(observer)):
                return True
        return False

    def check_roots(self) -> list[str]:
        """Re-watch roots that came back (or appeared); returns them, for a reconcile."""
        came_back = []
        for root in self.config.watch.paths:
            observer = self.observers.get(root)
            if observer is not None and not os.path.isdir(root):
                log.warning("watch_root_lost", path=root, reason="the folder vanished; treated as an outage")
                self.unwatch(root)
            elif observer is not None and not _observing(observer):
                log.warning("watch_restarted", path=root, reason="the observer stopped (inotify limit?)")
                self.unwatch(root)
            if root not in self.observers and self.watch(root):
                came_back.append(root)
        return came_back

    def alive(self) -> bool:
        return self._flusher.is_alive() and all(_observing(o) for o in self.observers.values())

    def stop(self) -> None:
        for root in list(self.observers):
            self.unwatch(root)
        self._stop.set()
        self.notes.put(WAKE)
        if self._flusher.is_alive():
            self._flusher.join(timeout=10)
        try:
            self._flush()  # what was noted before the observers stopped
        except StoreError as exc:  # the next start's reconcile finds those files
            log.warning("enqueue_failed", error=str(exc), reason="the next start's reconcile queues them")

    # the flusher --------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wait_for_work()
            try:
                self._flush()
            except TRANSIENT as exc:  # the store is locked or full: the notes wait
                log.warning("enqueue_failed", error=str(exc), reason="kept in memory; retrying")
                self._stop.wait(1.0)
            except StoreUnusable as exc:
                self.on_fatal(exc)
                self._stop.wait(1.0)

    def _wait_for_work(self) -> None:
        """Sleep until a note arrives or a settling file is due (an idle daemon wakes for nothing).
        A note after a quiet spell is applied at once; in a burst, one flush per FLUSH_INTERVAL_S
        (one transaction for many files). Returns at once with work left over."""
        if self._carry or self._complete:
            return
        timeout = None
        if self.settling:
            settle = self.config.processing.settle_s
            due = min(since for _, since, _ in self.settling.values()) + settle
            timeout = min(max(due - self.clock(), 0.0), settle)
        try:
            self._carry.append(self.notes.get(timeout=timeout))
        except queue.Empty:
            return  # a settling file is due
        rest = self._last_flush + FLUSH_INTERVAL_S - time.monotonic()
        if rest > 0:
            self._stop.wait(rest)
        self._last_flush = time.monotonic()

    def _flush(self) -> None:
        """Apply the notes gathered since the last flush; on a store error keep what is left."""
        notes, self._carry = self._carry, []
        while True:
            try:
                notes.append(self.notes.get_nowait())
            except queue.Empty:
                break
        notes = [note for note in notes if note is not WAKE]
        for i, note in enumerate(notes):
            try:
                self._apply(note, self._complete)
            except Exception:
                self._carry = notes[i:]
                raise
        self._complete += self._settled()
        if self._complete:
            queued = self.store.enqueue(self._complete, self.clock())
            self._complete = []
            if queued:
                log.debug("files_queued", files=queued)
                self.on_enqueued()

    def _apply(self, note: tuple, ready: list) -> None:
        kind, src, dest, is_dir, root = note
        now = self.clock()
        if kind == "closed" and not is_dir:
            self.settling.pop(src, None)
            self._ready(src, root, ready)
        elif kind == "attrib" and not is_dir and src not in self.settling:
            self._ready(src, root, ready)  # a chmod may make a failed file readable; unchanged ones stay
        elif kind in ("created", "modified") and not is_dir:
            if is_image_name(src, self.config.watch.extensions):
                self.settling[src] = (None, now, root)
        elif kind == "created" and is_dir:
            self._walk_into(src, ready)
        elif kind == "moved":
            self._moved(src, dest, is_dir, root, ready)
        elif kind == "deleted":
            self._deleted(src, is_dir, root)

    def _moved(self, src: str, dest: str, is_dir: bool, root: str, ready: list) -> None:
        now = self.clock()
        dest_inside = bool(dest) and inside(dest, root)
        if is_dir:
            if src and dest_inside:
                self.store.rename_dir(src, dest, now)
            elif src:
                self._deleted(src, True, root)
            if dest_inside:
                self._walk_into(dest, ready)  # its files were there before: no event will name them
            return
        self.settling.pop(src, None)
        renamed = bool(src) and dest_inside and is_image_name(dest, self.config.watch.extensions) \
            and self.store.rename(src, dest, now)
        if src and not renamed:
            self._deleted(src, False, root)
        if dest_inside:
            self._ready(dest, root, ready)  # a rename keeps its results unless the bytes changed

    def _deleted(self, path: str, is_dir: bool, root: str) -> None:
        if not os.path.isdir(root):
            return  # the root itself went away: an outage, not a deletion
        self.settling.pop(path, None)
        if is_dir:
            self.store.mark_missing_under(path, self.clock())
        self.store.mark_missing([path], self.clock())

    def _ready(self, path: str, root: str, ready: list) -> None:
        st = stat_file(path, self.config.watch, root)
        if st is not None:
            ready.append(st)

    def _walk_into(self, folder: str, ready: list) -> None:
        for found in walk(folder, self.config.watch):
            ready.extend(found.files)

    def _settled(self) -> list[FileStat]:
        """Files whose size and mtime have not changed for settle_s."""
        now, settle = self.clock(), self.config.processing.settle_s
        done = []
        for path, (last, since, root) in list(self.settling.items()):
            if now - since < settle:
                continue
            st = stat_file(path, self.config.watch, root)
            if st is None:
                del self.settling[path]
            elif st == last or now - st.mtime_ns / 1e9 >= settle:
                del self.settling[path]
                done.append(st)
            else:
                self.settling[path] = (st, now, root)
        return done

    def defer(self, st: FileStat) -> None:
        """Take a file still being written (seen by a walk) into the settle list."""
        root = next((r for r in self.config.watch.paths if inside(st.path, r)), None)
        self.notes.put(("modified", st.path, "", False, root))
