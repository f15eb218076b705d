"""Checkpoints: resumable progress, in a JSON file or in the database's `checkpoints` table."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional, Union

import structlog

from facewatch.store import CHECKPOINT_STATUSES, StoreError, as_store, checkpoint_status

log = structlog.get_logger("facewatch.checkpoint")

STATUSES = CHECKPOINT_STATUSES
CHECKPOINT_FILE = "checkpoint.json"


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class CheckpointState:
    batch_number: int = 0
    processed_files_count: int = 0
    total_files: int = 0
    current_threshold: Optional[float] = None
    last_processed_file: Optional[str] = None
    timestamp: str = field(default_factory=_now_iso)
    status: str = "in_progress"

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")


class CheckpointManager:
    """File-based checkpoints: one human-readable JSON file, replaced atomically."""

    def __init__(self, directory: Union[str, Path]):
        self.directory = Path(directory)
        self.path = self.directory / CHECKPOINT_FILE

    def save_checkpoint(self, state: CheckpointState) -> bool:
        """Write `state`; a crash at any moment leaves the previous checkpoint intact."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".json", dir=self.directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(asdict(state), f, indent=2)
                    f.write("\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
            _fsync_dir(self.directory)
        except OSError as exc:
            log.error("checkpoint_save_failed", path=str(self.path), error=exc.strerror or str(exc))
            return False
        _log_saved(state)
        return True

    record = save_checkpoint

    def load_checkpoint(self) -> Optional[CheckpointState]:
        """The saved state, or None when there is none or it is unreadable (logged)."""
        try:
            state = _state_from(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("checkpoint_unreadable", path=str(self.path), error=str(exc),
                        reason="corrupt or truncated; treated as absent")
            return None
        _log_loaded(state.batch_number, state.processed_files_count, state.total_files, state.status)
        return state

    def has_checkpoint(self) -> bool:
        return self.load_checkpoint() is not None

    def create_checkpoint(self, batch_number: int, processed_files_count: int, total_files: int,
                          current_threshold: Optional[float] = None, last_processed_file: Optional[str] = None,
                          status: str = "in_progress") -> CheckpointState:
        """Build a state stamped now, and save it."""
        state = CheckpointState(batch_number, processed_files_count, total_files, current_threshold,
                                last_processed_file, _now_iso(), status)
        self.save_checkpoint(state)
        return state

    @staticmethod
    def get_progress_percentage(state: CheckpointState) -> float:
        if state.total_files <= 0:
            return 100.0 if state.status == "completed" else 0.0
        return max(0.0, min(100.0, 100.0 * state.processed_files_count / state.total_files))

    @staticmethod
    def get_remaining_files(state: CheckpointState, all_files: Iterable[str]) -> list[str]:
        """The files after the last processed one, in the order of `all_files`."""
        files = list(all_files)
        if state.last_processed_file in files:
            return files[files.index(state.last_processed_file) + 1:]
        return files[state.processed_files_count:]

    def resume_from_checkpoint(self) -> Optional[CheckpointState]:
        """The state to resume from, or None: no checkpoint, completed, or nothing left."""
        state = self.load_checkpoint()
        if state is None or state.status == "completed":
            return None
        if state.total_files and state.processed_files_count >= state.total_files:
            return None
        return state

    def mark_completed(self) -> Optional[CheckpointState]:
        state = self.load_checkpoint()
        if state is None:
            return None
        state.status, state.timestamp = "completed", _now_iso()
        self.save_checkpoint(state)
        return state


# what each field of a saved CheckpointState may hold
_FIELD_TYPES = {"batch_number": (int,), "processed_files_count": (int,), "total_files": (int,),
                "current_threshold": (int, float, type(None)), "last_processed_file": (str, type(None)),
                "timestamp": (str,), "status": (str,)}


def _state_from(raw) -> CheckpointState:
    """A CheckpointState from parsed JSON; ValueError or TypeError for anything else."""
    if not isinstance(raw, dict):
        raise TypeError(f"expected a JSON object, found {type(raw).__name__}")
    values = {}
    for name, types in _FIELD_TYPES.items():
        if name not in raw:
            continue
        value = raw[name]
        if not isinstance(value, types) or isinstance(value, bool):
            raise TypeError(f"{name} is {value!r}, not a {' or '.join(t.__name__ for t in types)}")
        values[name] = value
    if values.get("batch_number", 0) < 0 or values.get("processed_files_count", 0) < 0 \
            or values.get("total_files", 0) < 0:
        raise ValueError("negative counts")
    return CheckpointState(**values)


def _log_saved(state: CheckpointState) -> None:
    log.info("checkpoint_saved", message=f"Checkpoint saved: batch={state.batch_number}, "
             f"processed={state.processed_files_count}/{state.total_files}",
             batch=state.batch_number, processed=state.processed_files_count, total=state.total_files)


def _log_loaded(batch: int, processed: int, total: Optional[int], status: Optional[str]) -> None:
    log.info("checkpoint_loaded", message=f"Checkpoint loaded: batch={batch}, processed={processed}"
             f"{'' if total is None else f'/{total}'}, status={status}",
             batch=batch, processed=processed, total=total, status=status)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DatabaseCheckpointManager:
    """Checkpoints in the store's `checkpoints` and `processed_files` tables.

    `db` is a store, a database setting (an SQLite file's path, a postgresql:// URL), or an open
    sqlite3 connection to a facewatch database. `kind` keeps the daemon's checkpoints apart from
    those of one-shot scans, which `facewatch resume` continues from."""

    def __init__(self, db, kind: str = "scan"):
        self.store = as_store(db)
        self.kind = kind

    def save_checkpoint(self, batch_number: int, processed_count: int, status: str = "in_progress",
                        metadata: Optional[dict] = None) -> Optional[int]:
        """Record progress; returns the checkpoint's id (None if the database would not take it).
        ValueError for a status other than in_progress, completed or error."""
        checkpoint_status(status)  # a caller's mistake: raised, not logged as a database error
        try:
            checkpoint_id = self.store.save_checkpoint(batch_number, processed_count, status, metadata, self.kind)
        except StoreError as exc:
            log.error("database_checkpoint_failed", batch=batch_number, processed=processed_count,
                      status=status, error=str(exc))
            return None
        log.info("database_checkpoint_saved", message=f"Database checkpoint saved: batch={batch_number}, "
                 f"processed={processed_count}, status={status}", checkpoint_id=checkpoint_id,
                 batch=batch_number, processed=processed_count, status=status)
        return checkpoint_id

    def record(self, state: CheckpointState) -> Optional[int]:
        """Save a tracker's state (the metadata keeps what the table has no column for)."""
        checkpoint_id = self.save_checkpoint(state.batch_number, state.processed_files_count, state.status,
                                             metadata=asdict(state))
        if checkpoint_id is not None:
            _log_saved(state)
        return checkpoint_id

    def load_checkpoint(self):
        """The latest checkpoint of this kind (a CheckpointRecord, readable as a dict too), or None."""
        try:
            checkpoint = self.store.latest_checkpoint(self.kind)
        except StoreError as exc:
            log.error("database_checkpoint_unreadable", kind=self.kind, error=str(exc))
            return None
        if checkpoint is not None:
            _log_loaded(checkpoint.batch_number, checkpoint.processed_files_count,
                        checkpoint.metadata.get("total_files"), checkpoint.status)
        return checkpoint

    def get_remaining_files(self, checkpoint_batch: int) -> list[str]:
        """The files of the checkpoint saved with batch number `checkpoint_batch` (the newest such)
        that are not processed yet.

        The files of a checkpoint are those the index held when it was saved (not those found
        since; missing ones never count). A file is processed once a processed_files row says so
        (an analysis, or `update_processed_files(id, worker, "processed")`; "error" does not), until
        it is queued again because its bytes changed. Unknown batch: logged, []."""
        try:
            checkpoint = self.store.latest_checkpoint(self.kind, batch_number=checkpoint_batch)
            if checkpoint is None:
                log.warning("checkpoint_batch_unknown", batch=checkpoint_batch, kind=self.kind)
                return []
            remaining = self.store.remaining_files(checkpoint.id)
        except StoreError as exc:
            log.error("remaining_files_failed", batch=checkpoint_batch, error=str(exc))
            return []
        _log_remaining(len(remaining), checkpoint_batch)
        return remaining

    def count_remaining_files(self, checkpoint_batch: int) -> Optional[int]:
        """How many files `get_remaining_files` would return, without listing them."""
        try:
            checkpoint = self.store.latest_checkpoint(self.kind, batch_number=checkpoint_batch)
            if checkpoint is None:
                return None
            count = self.store.count_remaining(checkpoint.id)
        except StoreError as exc:
            log.error("remaining_files_failed", batch=checkpoint_batch, error=str(exc))
            return None
        _log_remaining(count, checkpoint_batch)
        return count

    def update_processed_files(self, file_id: int, worker_id: Optional[int], status: str) -> bool:
        """Record that `worker_id` processed file `file_id` (status `processed`, `done`, `failed`, ...)."""
        try:
            self.store.update_processed_file(file_id, worker_id, status)
            return True
        except StoreError as exc:
            log.error("processed_file_update_failed", file_id=file_id, worker_id=worker_id, status=status,
                      error=str(exc))
            return False

    def get_checkpoint_with_files(self) -> tuple[Optional[object], list[str]]:
        checkpoint = self.load_checkpoint()
        if checkpoint is None:
            return None, []
        return checkpoint, self.get_remaining_files(checkpoint["batch_number"])

    def mark_checkpoint_completed(self, checkpoint_id: int) -> bool:
        """Mark a checkpoint completed; False when there is no such checkpoint or the database refused."""
        try:
            marked = self.store.set_checkpoint_status(checkpoint_id, "completed")
        except StoreError as exc:
            log.error("checkpoint_complete_failed", checkpoint_id=checkpoint_id, error=str(exc))
            return False
        if not marked:
            log.warning("checkpoint_unknown", checkpoint_id=checkpoint_id)
        return marked

    def mark_completed(self):
        checkpoint = self.load_checkpoint()
        if checkpoint is not None:
            self.mark_checkpoint_completed(checkpoint["id"])
        return checkpoint

    def prune(self, keep: int) -> int:
        """Delete this kind's checkpoints but the newest `keep`; the newest one is always kept."""
        try:
            return self.store.prune_checkpoints(self.kind, keep)
        except StoreError as exc:
            log.warning("checkpoint_prune_failed", kind=self.kind, error=str(exc))
            return 0

    def get_statistics(self) -> dict:
        try:
            return self.store.checkpoint_statistics()
        except StoreError as exc:
            log.error("checkpoint_statistics_failed", error=str(exc))
            return {}


def _log_remaining(count: int, batch: int) -> None:
    log.info("remaining_files_found", message=f"Found {count} remaining files from checkpoint batch {batch}",
             remaining=count, batch=batch)



class CheckpointTracker:
    """Counts processed files and saves a checkpoint every `checkpoint_interval` of them."""

    def __init__(self, checkpoint_manager, total_files: int, checkpoint_interval: int = 100,
                 batch_number: int = 0, processed_files_count: int = 0,
                 current_threshold: Optional[float] = None):
        self.manager = checkpoint_manager
        self.total_files = total_files
        self.checkpoint_interval = max(1, checkpoint_interval)
        self.batch_number = batch_number
        self.processed = processed_files_count
        self.last_file: Optional[str] = None
        self.threshold = current_threshold
        self._since_save = 0

    def update(self, file_path: str, current_threshold: Optional[float] = None) -> bool:
        """Count one processed file; returns True when this update saved a checkpoint."""
        self.processed += 1
        self._since_save += 1
        self.last_file = file_path
        if current_threshold is not None:
            self.threshold = current_threshold
        if self.should_save_checkpoint():
            self.save()
            return True
        return False

    def should_save_checkpoint(self) -> bool:
        return self._since_save >= self.checkpoint_interval

    def state(self, status: str = "in_progress") -> CheckpointState:
        return CheckpointState(self.batch_number, self.processed, self.total_files, self.threshold,
                               self.last_file, _now_iso(), status)

    def save(self, status: str = "in_progress") -> CheckpointState:
        self.batch_number += 1
        self._since_save = 0
        state = self.state(status)
        self.manager.record(state)
        return state

    def mark_completed(self) -> CheckpointState:
        return self.save("completed")

    def get_progress(self) -> float:
        """Percentage of the files processed, from 0 to 100."""
        if self.total_files <= 0:
            return 100.0
        return max(0.0, min(100.0, 100.0 * self.processed / self.total_files))

    def progress_details(self) -> dict:
        return {"processed": self.processed, "total": self.total_files,
                "percentage": round(self.get_progress(), 2), "batch_number": self.batch_number,
                "last_processed_file": self.last_file, "current_threshold": self.threshold}
