"""The store's contract: the `Store` protocol every backend implements, its dataclasses, and the
decisions made once for both backends (`plan_save`, `needs_analysis`, ...)."""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Iterator, NamedTuple, Optional, Protocol
from urllib.parse import urlsplit, urlunsplit

STATUSES = ("pending", "processing", "done", "failed", "missing")
CHECKPOINT_STATUSES = ("in_progress", "completed", "error")
# what a processed_files row may say of a file for it to count as processed (checkpoint API)
PROCESSED = ("processed", "completed", "done", "failed", "unchanged", "reused", "moved", "skipped")
HEARTBEAT_STALE_S = 15.0  # a daemon whose heartbeat is older than this is not running
DIMENSIONS = 128  # of a face embedding as it is stored: little-endian float32 (dlib's ResNet's output)
# faces embedded per analyser job (a face found before the analysers embedded faces themselves, or
# while people.enabled was false): 8 take about 40 ms, so a photo arriving waits for little
# (bench/latency.py --people-backlog); each analyser keeps its last decoded picture for the next job
FACES_PER_JOB = 8


# the tables a copy between backends carries, parents first, with their columns
COPIED = {
    "files": ["file_id", "path", "dir", "size", "mtime_ns", "ctime_ns", "status", "width", "height",
              "face_count", "content_hash", "error", "processed_at", "updated_at"],
    "pending": ["file_id", "enqueued_at", "not_before", "attempts", "claimed_by", "claimed_until"],
    "persons": ["person_id", "name", "created_at", "hidden"],
    "faces": ["face_id", "file_id", "idx", "score", "x", "y", "w", "h", "keypoints", "embedding", "embed_state",
              "embed_error", "embed_attempts", "embed_not_before", "embed_claimed_by", "embed_claimed_until",
              "person_id", "xmp_name"],
    "person_conflicts": ["face_id", "person_id", "name"],
    "person_rejections": ["person_id", "face_id", "embedding"],
    "checkpoints": ["checkpoint_id", "batch_number", "processed_files_count", "status", "metadata", "created_at",
                    "kind", "last_file_id"],
    "processed_files": ["file_id", "worker_id", "status", "processed_timestamp", "runs"],
    "folder_marks": ["dir", "mtime_ns"],
}


def iso(ts: float) -> str:
    """A time in seconds since the epoch as the store writes times: ISO 8601, UTC, whole seconds."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def is_url(database: str) -> bool:
    """Whether a `database` setting names a PostgreSQL server rather than an SQLite file."""
    return database.startswith(("postgresql://", "postgres://"))


def masked(database: str) -> str:
    """A `database` setting as it may be shown: a URL's password, if any, replaced by ***."""
    parts = urlsplit(database)
    if not is_url(database) or parts.password is None:
        return database
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class FileStat(NamedTuple):
    """What the filesystem says of a file, as the watcher or the walk saw it."""
    path: str
    size: int
    mtime_ns: int
    ctime_ns: int = 0


class Known(NamedTuple):
    """What the store remembers of a file, to tell whether it changed."""
    size: Optional[int]
    mtime_ns: Optional[int]
    ctime_ns: Optional[int]
    status: str


class Source(NamedTuple):
    """An analysed file with given bytes."""
    file_id: int
    path: str


@dataclass(frozen=True)
class Claim:
    """A queued file leased to one claimant."""
    file_id: int
    path: str
    content_hash: Optional[str]
    attempts: int  # failed tries so far (transient errors, analyser crashes); a killed daemon's are not


@dataclass(frozen=True)
class Face:
    score: float
    bbox: tuple  # x, y, w, h in pixels of the displayed full-resolution image
    keypoints: tuple  # ((x, y), ...)
    person: Optional[tuple] = None  # (person id, name or None) once the people stage placed it
    xmp_name: Optional[str] = None  # the name its region has in the photo's XMP (another tool's tagging)

    def as_dict(self) -> dict:
        person = None if self.person is None else {"id": self.person[0], "name": self.person[1]}
        return {"score": round(self.score, 4), "bbox": list(self.bbox),
                "keypoints": [list(k) for k in self.keypoints], "person": person}


# the people stage ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceJob:
    """Faces of one file waiting for their embeddings, leased to one claimant."""
    file_id: int
    path: str
    content_hash: Optional[str]  # the bytes the faces were found in
    faces: tuple  # ((face id, (x, y, w, h)), ...)
    attempts: int  # failed tries so far, the most of its faces'
    embeddings: tuple = ()  # with the faces embedded when they were found: each face's embedding
    names: tuple = ()  # each face's name in its photo's XMP, or None


@dataclass(frozen=True)
class Embedded:
    """What embedding one face produced. kind: done (`embedding` set), failed (this face cannot be
    embedded: `error` says why), retry (transient: waits `retry_after_s`), stale (the file changed
    since its faces were found: detection replaces them, nothing to do)."""
    face_id: int
    kind: str
    embedding: Optional[bytes] = None
    error: Optional[str] = None
    retry_after_s: float = 0.0


@dataclass(frozen=True)
class IndexedFace:
    """An embedded face as the people stage sees it."""
    face_id: int
    file_id: int
    person_id: Optional[int]
    embedding: bytes


@dataclass(frozen=True)
class Person:
    person_id: int
    name: Optional[str]
    faces: int
    photos: int
    cover: Optional[str]  # path of the photo of its best face
    cover_face: Optional[int] = None  # that face's id
    hidden: bool = False  # hidden by the user (a stranger in the background)

    def as_dict(self) -> dict:
        return {"id": self.person_id, "name": self.name, "faces": self.faces, "photos": self.photos,
                "cover": self.cover, "hidden": self.hidden}


@dataclass(frozen=True)
class PersonFace:
    """One face of a person, where it is."""
    face_id: int
    path: str
    index: int
    score: float
    bbox: tuple
    file_id: int = 0


class PeopleChanged(Exception):
    """A user named, merged or unassigned people while placements were being decided: decide again."""


class PeopleError(Exception):
    """A people command that cannot be done as asked; the message is for users."""


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
    # with people.enabled, one (embedding, None) or (None, why it cannot be embedded) per face
    embeddings: tuple = ()
    worker_id: Optional[int] = None  # the analyser process that read it
    seconds: Optional[float] = None  # the analyser's time on it


# What saving one result does, decided by plan_save; a backend carries it out in its transaction.
BACK_OFF = "back_off"  # back to the queue, ready again after retry_after_s (a retry counts an attempt)
MISSING = "missing"  # the file is gone: keep its results, mark it missing
FAILED = "failed"  # drop its faces, record why
DETECTED = "detected"  # replace its faces with the new ones; processed_at = now
COPY = "copy"  # the same bytes are analysed at another path: copy those faces and their processed_at
ADOPT = "adopt"  # the same bytes vanished from another path: that row moves here, results and all
REQUEUE = "requeue"  # the row to copy from is gone since: analyse the file after all
UNCHANGED = "unchanged"  # the bytes analysed already: only size and times change


def plan_save(result: Result, source_status: Optional[str] = None) -> str:
    """What saving `result` does; `source_status` is the status of `result.source_id`'s row now
    (None when there is no such row)."""
    kind = result.kind
    if kind in ("retry", "deferred"):
        return BACK_OFF
    if kind in ("missing", "failed", "unchanged"):
        return {"missing": MISSING, "failed": FAILED, "unchanged": UNCHANGED}[kind]
    if kind == "done":
        return DETECTED
    if kind in ("reused", "moved"):
        if source_status is None:
            return REQUEUE
        return ADOPT if kind == "moved" or source_status == "missing" else COPY
    raise ValueError(f"unknown result kind {kind!r}")


def group_jobs(rows, limit: int, per_job: int = FACES_PER_JOB) -> list[tuple[int, list, int]]:
    """Waiting faces (face id, file id, x, y, w, h, attempts), oldest first -> at most `limit` jobs
    (file id, [(face id, box), ...], attempts) of at most `per_job` faces of one file each."""
    jobs: list = []
    open_jobs: dict = {}
    for face_id, file_id, x, y, w, h, attempts in rows:
        job = open_jobs.get(file_id)
        if job is None or len(job[1]) >= per_job:
            if len(jobs) >= limit:
                continue
            job = open_jobs[file_id] = [file_id, [], 0]
            jobs.append(job)
        job[1].append((face_id, (x, y, w, h)))
        job[2] = max(job[2], attempts)
    return [tuple(job) for job in jobs]


def embedding_columns(result: Result, index: int) -> tuple:
    """(embedding, embed_state, embed_error) of a detected face as it is stored: embedded when found
    (waiting to be placed), failed when it cannot be embedded, or waiting for its embedding."""
    if index >= len(result.embeddings):
        return None, "waiting", None
    blob, error = result.embeddings[index]
    return (blob, "waiting", None) if blob is not None else (None, "failed", error)


def same_person(bbox: tuple, before: list) -> Optional[int]:
    """The person of the face among `before` ((x, y, w, h, person id), ...) found in the same place
    as `bbox` (IoU >= 0.5): an edited photo's faces keep their people."""
    x, y, w, h = bbox
    best, person = 0.5, None
    for bx, by, bw, bh, pid in before:
        ix = max(0, min(x + w, bx + bw) - max(x, bx))
        iy = max(0, min(y + h, by + bh) - max(y, by))
        inter = ix * iy
        union = w * h + bw * bh - inter
        if union > 0 and inter / union >= best:
            best, person = inter / union, pid
    return person


def pick_person(people: list, id_or_name: str):
    """The person `id_or_name` names among `people`: a number is an id, anything else a name
    (case-insensitive). PeopleError when there is none, or when a name is several people's."""
    text = str(id_or_name).strip()
    if text.isdigit():
        found = [p for p in people if p.person_id == int(text)]
    else:
        found = [p for p in people if p.name is not None and p.name.casefold() == text.casefold()]
    if not found:
        raise PeopleError(f"no person {'with id ' + text if text.isdigit() else 'named ' + repr(text)}: "
                          "`facewatch people` lists them")
    if len(found) > 1:
        raise PeopleError(f"{len(found)} people are named {text!r} (ids "
                          f"{', '.join(str(p.person_id) for p in found)}): use an id")
    return found[0]


def checkpoint_status(status: str) -> str:
    """`status` if a checkpoint may have it; ValueError otherwise."""
    if status not in CHECKPOINT_STATUSES:
        raise ValueError(f"checkpoint status must be one of {', '.join(CHECKPOINT_STATUSES)}, not {status!r}")
    return status


def needs_analysis(known: Known, st: FileStat) -> bool:
    """Whether a file the store knows as `known` must be queued, the filesystem now saying `st`."""
    if known.status == "missing" or (known.size, known.mtime_ns) != (st.size, st.mtime_ns):
        return True
    return known.status == "failed" and known.ctime_ns != st.ctime_ns  # e.g. made readable by chmod


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


@dataclass(frozen=True)
class Stats:
    """Counts for `status`: the queue, the files by status, the faces."""
    pending: int = 0  # queued and not claimed
    processing: int = 0  # claimed
    by_status: dict = field(default_factory=dict)
    with_faces: int = 0
    faces: int = 0
    analyses: int = 0  # detections run
    persons: int = 0  # people with at least one face, or a name
    named: int = 0
    faces_waiting: int = 0  # faces not embedded yet (ready or leased)
    faces_failed: int = 0  # faces that cannot be embedded

    def as_dict(self) -> dict:
        files = {s: self.by_status.get(s, 0) for s in ("done", "failed", "missing")}
        return {"queue": {"pending": self.pending, "processing": self.processing},
                "files": {"total": sum(self.by_status.values()), **files, "with_faces": self.with_faces},
                "faces": self.faces, "analyses": self.analyses,
                "people": {"persons": self.persons, "named": self.named, "faces_waiting": self.faces_waiting,
                           "faces_failed": self.faces_failed}}


@dataclass(frozen=True)
class DaemonInfo:
    """A daemon as it registered itself: one row per start."""
    name: str  # host:pid:start, unique
    host: str
    pid: int
    started_at: Optional[str]
    heartbeat_at: Optional[float]  # seconds since the epoch; None once stopped
    stopped_at: Optional[str]
    worker_only: bool = False

    def fresh(self, now: float) -> bool:
        return self.heartbeat_at is not None and now - self.heartbeat_at < HEARTBEAT_STALE_S


@dataclass(frozen=True)
class CheckpointRecord:
    """One row of `checkpoints`; readable as a mapping too (`cp["status"]`), as the API's users do."""
    id: int
    batch_number: int
    processed_files_count: int
    status: Optional[str]
    metadata: dict
    created_at: Optional[str]
    kind: str

    def __getitem__(self, key: str):
        return getattr(self, key)

    def get(self, key: str, default=None):
        return getattr(self, key, default)


class Store(Protocol):
    """What the rest of facewatch may ask of a backend.

    Every backend guarantees:
    - each method is atomic: it happens whole or not at all, whatever the process suffers;
    - a claim is a lease: a file is leased to one claimant at a time, and a lease not saved before
      it expires is given back by `release_stale`; `save` drops results whose lease was lost;
    - `save` writes a whole batch in one transaction, so a file never has two sets of faces;
    - errors are the store's own: StoreBusy or StoreUnavailable for what waiting can heal (locked,
      busy, full, I/O, server away), StoreUnusable for what it cannot (not a database, another
      program's, a newer schema, damaged), each naming the database and saying what to do.
    """
    database: str  # the setting, as given (a URL's password is never shown: see `display`)
    display: str  # the database as logs, errors and `status` may show it

    # one writer: the daemon or a one-shot run
    def lock(self, exclusive: bool) -> None:
        """Hold the database: `exclusive` for one-shot runs, shared for daemons (a backend with one
        writer makes both exclusive). Raises DatabaseInUse, saying who holds it."""
    def unlock(self) -> None: ...
    def lock_held(self) -> Optional[bool]:
        """Whether some process holds the daemons' lock now; None when that cannot be told."""
    def root_lock(self, root: str) -> AbstractContextManager[bool]:
        """While held (True), no other host reconciles `root`; False: another host does now."""
    def on_enqueued(self, callback) -> None:
        """Call `callback()` when another process queues work (a no-op where none can)."""
    def held_elsewhere(self) -> bool:
        """A writer of this process waits, beyond a moment, for another process to let go of the
        database (always False where writers do not exclude each other)."""

    # queue
    def enqueue(self, stats: Iterable[FileStat], now: float, force: bool = False) -> int: ...
    def claim(self, claimant: str, limit: int, now: float, lease_s: float) -> list[Claim]: ...
    def save(self, claimant: str, results: list[Result], now: float) -> int: ...
    def release(self, claimant: str) -> int: ...
    def release_stale(self, now: float) -> int:
        """Expired leases go back to the queue; takes no write lock when none has expired."""
    def queue_size(self, now: Optional[float] = None) -> int: ...
    def next_ready_at(self) -> Optional[float]: ...
    # the filesystem's view
    def rename(self, src: str, dst: str, now: float) -> bool: ...
    def rename_dir(self, src: str, dst: str, now: float) -> int: ...
    def mark_missing(self, paths: Iterable[str], now: float) -> int: ...
    def mark_missing_under(self, folder: str, now: float) -> int: ...
    def known_in_dir(self, folder: str) -> dict[str, Known]: ...
    def known_dirs_under(self, root: str) -> Iterator[str]: ...
    def find_by_hash(self, content_hash: str, exclude_id: int) -> Optional[Source]: ...
    def folder_marks(self, root: str) -> dict[str, int]: ...
    def save_folder_marks(self, marks: list, forget: list) -> None: ...
    # reading
    def stats(self) -> Stats: ...
    def iter_files(self, flt: ExportFilter = ExportFilter()) -> Iterator[FileRecord]: ...
    def file_record(self, path: str) -> Optional[FileRecord]: ...
    def retry_failed(self, paths: Optional[Iterable[str]], now: float) -> int: ...
    # daemons
    def daemon_started(self, daemon: DaemonInfo) -> None: ...
    def heartbeat(self, name: str, now: float) -> None:
        """Waits for the database about a second at most (StoreBusy after): a beat is skipped,
        not waited for."""
    def daemon_stopped(self, name: str, now: float) -> None: ...
    def daemons(self) -> list[DaemonInfo]: ...
    # checkpoints (the specification's tables)
    def save_checkpoint(self, batch_number: int, processed_count: int, status: str,
                        metadata: Optional[dict] = None, kind: str = "scan") -> int: ...
    def latest_checkpoint(self, kind: Optional[str] = None, batch_number: Optional[int] = None
                          ) -> Optional[CheckpointRecord]: ...
    def set_checkpoint_status(self, checkpoint_id: int, status: str) -> bool: ...
    def prune_checkpoints(self, kind: str, keep: int) -> int: ...
    def update_processed_file(self, file_id: int, worker_id: Optional[int], status: str) -> None: ...
    def remaining_files(self, checkpoint_id: Optional[int] = None) -> list[str]: ...
    def count_remaining(self, checkpoint_id: Optional[int] = None) -> int: ...
    def checkpoint_statistics(self) -> dict: ...
    # the people stage
    def claim_faces(self, claimant: str, limit: int, now: float, lease_s: float,
                    embedded: bool = False) -> list[FaceJob]:
        """Lease waiting faces, oldest first: with `embedded`, up to `limit` faces embedded when
        they were found, which only need placing (their embeddings in the jobs, a job per file);
        else the faces of up to `limit` jobs that need embedding, FACES_PER_JOB at most per job
        (a group photo may be several jobs)."""
    def faces_ready(self, now: float) -> tuple[int, Optional[float]]:
        """(waiting faces of done files ready now and not leased, when the next one waiting longer is)."""
    def people_version(self) -> int:
        """Bumped by every change a user makes to people (name, merge, unassign)."""
    def indexed_faces(self, after_face_id: int = 0) -> Iterator[IndexedFace]:
        """Every embedded face with a face id above `after_face_id`, in face id order."""
    def embedding_marks(self) -> tuple[int, Optional[int], int]:
        """(embedded faces, the id of the first face waiting for its embedding or None, the highest
        face id): what a copy of the embeddings needs to tell what it lacks."""
    def faces_now(self, face_ids: list[int]) -> dict[int, tuple]:
        """{face id: (file id, person id)} of those of `face_ids` that still exist."""
    def persons_in_file(self, file_id: int) -> set[int]: ...
    def rejections(self) -> list[tuple[int, int, bytes]]:
        """(person id, face id, embedding) of every face a user took out of a person."""
    def save_embeddings(self, claimant: str, outcomes: list[Embedded], placements: dict[int, int],
                        now: float, version: int, names: Optional[dict] = None,
                        conflicts: tuple = ()) -> dict[int, int]:
        """Store embeddings and people in one transaction; `placements` maps face ids to person ids,
        negative ids naming people to create. Returns {negative id: new person id}. Raises
        PeopleChanged if people_version() is no longer `version`. Outcomes whose lease was lost
        are dropped, and so are their placements. `names`: {person id: the name a face's XMP gives
        it}, given only to people without one; `conflicts`: (face id, person id, name) of faces
        named otherwise in their XMP than the person they looked like."""
    def hide_person(self, person_id: int, hidden: bool = True) -> None:
        """Hide a person from the people page (or show it again); PeopleError if there is none."""
    def face(self, face_id: int) -> Optional[PersonFace]:
        """One face, where it is (any face, in a person or not), or None."""
    def file_by_id(self, file_id: int) -> Optional[FileRecord]: ...
    def named_persons(self) -> list[tuple[int, str]]:
        """(person id, name) of every named person."""
    def conflicts(self) -> list[tuple]:
        """(person id, the other name, path, face index) of faces their XMP names otherwise."""
    def sidecars_due(self, limit: int, placed_only: bool = False) -> list[tuple[int, Optional[str]]]:
        """(file id, path or None when the file is gone) of files whose XMP sidecar is out of date;
        with `placed_only`, not those with faces still waiting for the people stage."""
    def sidecars_written(self, file_ids: list[int]) -> None: ...
    def forget_sidecars_due(self) -> int:
        """Sidecars are not written (metadata.write_xmp: off): nothing is due."""
    def release_faces(self, claimant: str) -> int: ...
    def persons(self) -> list[Person]: ...
    def person(self, id_or_name: str) -> Person:
        """By id or by name (case-insensitive); PeopleError if there is none or the name is ambiguous."""
    def person_faces(self, person_id: int, limit: Optional[int] = None) -> list[PersonFace]: ...
    def person_photos(self, person_id: int) -> list[str]:
        """Paths of the analysed photos holding a face of this person, in path order."""
    def paths_of(self, file_ids: list[int]) -> dict[int, str]:
        """{file id: path} of those of `file_ids` that are analysed files now."""
    def name_person(self, person_id: int, name: Optional[str]) -> None: ...
    def merge_persons(self, person_id: int, into_id: int) -> int:
        """Every face of `person_id` joins `into_id`; PeopleError if a photo holds both."""
    def unassign_face(self, path: str, index: int) -> int:
        """Face `index` of `path` leaves its person for good; returns the person it left."""

    # upkeep
    def maintain(self) -> None:
        """Periodic upkeep (SQLite: fold the write-ahead log back into the database)."""
    def check(self, full: bool = False) -> list[str]:
        """Problems found in the database and the index, in sentences; safe while others write."""
    def backup(self, out: str) -> Stats:
        """A consistent copy of the live index at `out`, atomically; what the copy holds."""
    def close(self) -> None: ...
