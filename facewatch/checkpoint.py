"""Checkpoints: resumable progress, in a JSON file or in the database's `checkpoints` table."""
from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional, Union

import structlog

log = structlog.get_logger("facewatch.checkpoint")

STATUSES = ("in_progress", "completed", "error")
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
        log.info("checkpoint_saved", message=f"Checkpoint saved: batch={state.batch_number}, "
                 f"processed={state.processed_files_count}/{state.total_files}",
                 batch=state.batch_number, processed=state.processed_files_count, total=state.total_files)
        return True

    record = save_checkpoint

    def load_checkpoint(self) -> Optional[CheckpointState]:
        """The saved state, or None when there is none or it is unreadable (logged)."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            known = {f.name for f in fields(CheckpointState)}
            state = CheckpointState(**{k: v for k, v in raw.items() if k in known})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("checkpoint_unreadable", path=str(self.path), error=str(exc),
                        reason="corrupt or truncated; treated as absent")
            return None
        log.info("checkpoint_loaded", message=f"Checkpoint loaded: batch={state.batch_number}, "
                 f"processed={state.processed_files_count}/{state.total_files}, status={state.status}",
                 batch=state.batch_number, processed=state.processed_files_count,
                 total=state.total_files, status=state.status)
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


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DatabaseCheckpointManager:
    """Checkpoints in the store's `checkpoints` and `processed_files` tables."""

    def __init__(self, store, kind: str = "scan"):
        self.store = store
        self.kind = kind

    def save_checkpoint(self, batch_number: int, processed_count: int, status: str = "in_progress",
                        metadata: Optional[dict] = None) -> Optional[int]:
        try:
            checkpoint_id = self.store.save_checkpoint(batch_number, processed_count, status, metadata, self.kind)
        except sqlite3.Error as exc:
            log.error("database_checkpoint_failed", batch=batch_number, error=str(exc))
            return None
        log.info("database_checkpoint_saved", message=f"Database checkpoint saved: batch={batch_number}, "
                 f"processed={processed_count}, status={status}", checkpoint_id=checkpoint_id,
                 batch=batch_number, processed=processed_count, status=status)
        return checkpoint_id

    def record(self, state: CheckpointState) -> Optional[int]:
        """Save a tracker's state (the metadata keeps what the table has no column for)."""
        return self.save_checkpoint(state.batch_number, state.processed_files_count, state.status,
                                    metadata=asdict(state))

    def load_checkpoint(self) -> Optional[dict]:
        """The latest checkpoint of this kind, as a dict, or None."""
        try:
            return self.store.latest_checkpoint(self.kind)
        except sqlite3.Error as exc:
            log.error("database_checkpoint_unreadable", error=str(exc))
            return None

    def get_remaining_files(self, checkpoint_batch: int) -> list[str]:
        """Files not yet processed (queued or claimed) as of now."""
        try:
            remaining = self.store.remaining_files()
        except sqlite3.Error as exc:
            log.error("remaining_files_failed", batch=checkpoint_batch, error=str(exc))
            return []
        log.info("remaining_files_found", message=f"Found {len(remaining)} remaining files from "
                 f"checkpoint batch {checkpoint_batch}", remaining=len(remaining), batch=checkpoint_batch)
        return remaining

    def update_processed_files(self, file_id: int, worker_id: int, status: str) -> bool:
        try:
            self.store.update_processed_file(file_id, worker_id, status)
            return True
        except sqlite3.Error as exc:
            log.error("processed_file_update_failed", file_id=file_id, error=str(exc))
            return False

    def get_checkpoint_with_files(self) -> tuple[Optional[dict], list[str]]:
        checkpoint = self.load_checkpoint()
        if checkpoint is None:
            return None, []
        return checkpoint, self.get_remaining_files(checkpoint["batch_number"])

    def mark_checkpoint_completed(self, checkpoint_id: int) -> bool:
        try:
            self.store.set_checkpoint_status(checkpoint_id, "completed")
            return True
        except sqlite3.Error as exc:
            log.error("checkpoint_complete_failed", checkpoint_id=checkpoint_id, error=str(exc))
            return False

    def mark_completed(self) -> Optional[dict]:
        checkpoint = self.load_checkpoint()
        if checkpoint is not None:
            self.mark_checkpoint_completed(checkpoint["id"])
        return checkpoint

    def get_statistics(self) -> dict:
        try:
            return self.store.checkpoint_statistics()
        except sqlite3.Error as exc:
            log.error("checkpoint_statistics_failed", error=str(exc))
            return {}


class CheckpointTracker:
    """Counts processed files and saves a checkpoint every `checkpoint_interval` of them."""

    def __init__(self, checkpoint_manager, total_files: int, checkpoint_interval: int = 100,
                 batch_number: int = 0, processed_files_count: int = 0):
        self.manager = checkpoint_manager
        self.total_files = total_files
        self.checkpoint_interval = max(1, checkpoint_interval)
        self.batch_number = batch_number
        self.processed = processed_files_count
        self.last_file: Optional[str] = None
        self.threshold: Optional[float] = None
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

    def get_progress(self) -> dict:
        percent = 100.0 * self.processed / self.total_files if self.total_files else 100.0
        return {"processed": self.processed, "total": self.total_files,
                "percentage": round(min(percent, 100.0), 2), "batch_number": self.batch_number,
                "last_processed_file": self.last_file}
