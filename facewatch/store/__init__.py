"""The store: one small contract for the queue, the results and the checkpoints.

SQLite is the embedded default (`store/sqlite.py`); a server backend implements the same
methods with its own SQL, and nothing outside this package needs to change for it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, NamedTuple, Optional, Protocol

STATUSES = ("pending", "processing", "done", "failed", "missing")


class FileStat(NamedTuple):
    """What the filesystem says of a file, as the watcher or the walk saw it."""
    path: str
    size: int
    mtime_ns: int
    ctime_ns: int = 0


@dataclass(frozen=True)
class Claim:
    """A queued file leased to one worker."""
    file_id: int
    path: str
    content_hash: Optional[str]
    attempts: int  # failed tries so far (transient errors, analyser crashes); a killed daemon's are not


@dataclass(frozen=True)
class Face:
    score: float
    bbox: tuple  # x, y, w, h in pixels of the displayed full-resolution image
    keypoints: tuple  # ((x, y), ...)

    def as_dict(self) -> dict:
        return {"score": round(self.score, 4), "bbox": list(self.bbox),
                "keypoints": [list(k) for k in self.keypoints]}


@dataclass(frozen=True)
class Result:
    """What analysing one claimed file produced.

    kind: done (detected), reused (same bytes as `source_id`, copy its faces), moved (same bytes as
    `source_id`, whose file is gone: that row takes this path, results and all), unchanged (same
    bytes as last time), failed (permanent), retry (transient; back to the queue later),
    deferred (an outage: back to the queue, the attempt not counted), missing (the file is gone).
    """
    file_id: int
    kind: str
    size: Optional[int] = None
    mtime_ns: Optional[int] = None
    ctime_ns: Optional[int] = None
    content_hash: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    faces: tuple = ()
    error: Optional[str] = None
    source_id: Optional[int] = None
    retry_after_s: float = 0.0
    worker_id: Optional[int] = None  # the process that analysed it


@dataclass(frozen=True)
class ExportFilter:
    statuses: tuple = ()
    min_faces: int = 0
    since: Optional[str] = None  # ISO time: processed at or after


@dataclass
class FileRecord:
    file_id: int
    path: str
    status: str
    size: Optional[int]
    width: Optional[int]
    height: Optional[int]
    error: Optional[str]
    processed_at: Optional[str]
    content_hash: Optional[str] = None
    attempts: int = 0
    faces: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"path": self.path, "status": self.status, "width": self.width, "height": self.height,
                "faces": [f.as_dict() for f in self.faces], "error": self.error,
                "processed_at": self.processed_at}


def needs_analysis(known: tuple, st: FileStat) -> bool:
    """Whether a file the store knows as `known` (size, mtime_ns, ctime_ns, status) must be queued."""
    size, mtime_ns, ctime_ns, status = known
    if status == "missing" or (size, mtime_ns) != (st.size, st.mtime_ns):
        return True
    return status == "failed" and ctime_ns != st.ctime_ns  # e.g. made readable by chmod


class Store(Protocol):
    """What the rest of facewatch may ask of a backend."""

    # queue
    def enqueue(self, stats: Iterable[FileStat], now: float, force: bool = False) -> int: ...
    def claim(self, worker: str, limit: int, now: float, lease_s: float) -> list[Claim]: ...
    def save(self, worker: str, results: list[Result], now: float) -> int: ...
    def release(self, worker: str) -> int: ...
    def release_stale(self, now: float) -> int: ...
    def queue_size(self, now: Optional[float] = None) -> int: ...
    def next_ready_at(self) -> Optional[float]: ...
    # the filesystem's view
    def rename(self, src: str, dst: str, now: float) -> bool: ...
    def rename_dir(self, src: str, dst: str, now: float) -> int: ...
    def mark_missing(self, paths: Iterable[str], now: float) -> int: ...
    def mark_missing_under(self, folder: str, now: float) -> int: ...
    def known_in_dir(self, folder: str) -> dict: ...
    def known_dirs_under(self, root: str) -> Iterator[str]: ...
    def find_by_hash(self, content_hash: str, exclude_id: int) -> Optional[tuple[int, str]]: ...
    def folder_marks(self, root: str) -> dict: ...
    def save_folder_marks(self, marks: list, forget: list) -> None: ...
    # reading
    def stats(self) -> dict: ...
    def iter_files(self, flt: ExportFilter = ExportFilter()) -> Iterator[FileRecord]: ...
    def file_record(self, path: str) -> Optional[FileRecord]: ...
    def retry_failed(self, paths: Optional[Iterable[str]], now: float) -> int: ...
    # daemon
    def daemon_started(self, pid: int, now: float) -> None: ...
    def heartbeat(self, now: float) -> None: ...
    def daemon_stopped(self, now: float) -> None: ...
    def daemon_info(self) -> Optional[dict]: ...
    # checkpoints (the seed's tables)
    def save_checkpoint(self, batch_number: int, processed_count: int, status: str,
                        metadata: Optional[dict] = None, kind: str = "scan") -> int: ...
    def latest_checkpoint(self, kind: Optional[str] = None) -> Optional[dict]: ...
    def set_checkpoint_status(self, checkpoint_id: int, status: str) -> None: ...
    def update_processed_file(self, file_id: int, worker_id: int, status: str) -> None: ...
    def remaining_files(self) -> list[str]: ...
    def checkpoint_statistics(self) -> dict: ...
    def wal_checkpoint(self) -> None: ...
    def close(self) -> None: ...


def open_store(database: str, readonly: bool = False) -> Store:
    """The backend for a `database` setting: a path means SQLite."""
    from facewatch.store.sqlite import SQLiteStore
    return SQLiteStore(database, readonly=readonly)
