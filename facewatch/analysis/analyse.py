"""One claimed file -> Result: read, hash, decode, find its faces; and a face job -> embeddings.
Runs in the analyser processes, one detector each."""
from __future__ import annotations

import errno
import os
import select
import signal
import stat
import sys
import threading
import time
import types
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np
import xxhash

from facewatch.analysis import embed
from facewatch.analysis.decode import MIN_LONG_SIDE, DecodeError, Decodes, decode, exif_orientation
from facewatch.analysis.detect import Detector
from facewatch.store import Claim, Embedded, FaceJob, Result
from facewatch.analysis.faces import find_faces
from facewatch.analysis.tiles import overlap
from facewatch.metadata.xmp import SIDECARS, named_regions, packet_in, sidecar_path

XMP_MATCH = 0.3  # a face is the region of the photo's XMP it overlaps this much (IoU)
# errors worth another try later: the disk, the mount or the network may come back
TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.ESTALE,
                    errno.ENOMEM, errno.EINTR, errno.ENXIO, errno.EHOSTDOWN, errno.ENOTCONN}


@dataclass
class _ProcessState:
    detector: Detector
    find_by_hash: Callable[[str, int], Optional[tuple]]
    max_pixels: int
    min_side: int
    reading: object  # shared (pid, file id) pairs: what each analyser reads, for blame after a crash
    slot: int
    people: bool = False  # embed each face found, for the people stage
    read_xmp: bool = False  # name faces as the photo's XMP does


_state: Optional[_ProcessState] = None


def init_process(database: str, model: str, min_confidence: float, small_faces: str, max_pixels: int,
                 min_side: int, people: bool, read_xmp: bool, owner_pid: int, reading) -> None:
    """Pool initializer: one detector (and with `people`, one embedder) and one read-only store
    connection per process."""
    global _state
    _exit_with(owner_pid)
    with reading.get_lock():  # a slot of its own in the shared (pid, file id) array
        slot = next(i for i in range(1, len(reading), 2) if reading[i - 1] == 0)
        reading[slot - 1], reading[slot] = os.getpid(), -1

    def stopped(signum, frame):  # told to stop (not crashed): whatever it was reading is not to blame
        reading[slot] = 0
        os._exit(0)
    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from facewatch.analysis.detect import MediaPipeDetector
    from facewatch.store import open_store

    without_matplotlib()
    with quiet_stderr():  # TensorFlow Lite greets stderr on load: not news for our logs
        detector = MediaPipeDetector(model, min_confidence, small_faces)
        blank = np.zeros((64, 64, 3), np.uint8)
        detector.detect(blank, 64, 64)
        if small_faces != "off":  # the tiles' own model greets stderr at its first picture too
            detector.tiles(blank, 64, 64, 1, [64])
        if people:
            embed.warm()
    store = open_store(database, readonly=True)
    _state = _ProcessState(detector, store.find_by_hash, max_pixels, min_side, reading, slot, people, read_xmp)


def _exit_with(pid: int) -> None:
    """End this process when `pid` (the daemon or the scan) ends, however it ends.

    A pool worker waits on a queue whose writing end it holds itself, so a SIGKILL of its owner
    would leave it waiting forever (and its fork server with it)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(0)

    def wait_and_exit() -> None:
        select.select([pidfd], [], [])
        os._exit(0)

    threading.Thread(target=wait_and_exit, name="analyser-owner-watch", daemon=True).start()


def without_matplotlib() -> None:
    """`import mediapipe` imports matplotlib.pyplot (0.3 s per process) for a plotting helper that
    analysers never call. Give these processes a stand-in that says so if anything ever does."""
    if "matplotlib" in sys.modules:
        return

    class _NotHere(types.ModuleType):
        def __getattr__(self, name):
            raise ImportError(f"matplotlib is not loaded in facewatch's analyser processes ({self.__name__}.{name})")

    pyplot = _NotHere("matplotlib.pyplot")
    package = _NotHere("matplotlib")
    package.__path__ = []
    package.pyplot = pyplot
    sys.modules.update({"matplotlib": package, "matplotlib.pyplot": pyplot})


@contextmanager
def quiet_stderr():
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def ready() -> int:
    """A no-op the parent runs once per process, so the first real file waits for no model load."""
    return os.getpid()


def analyse(claim: Claim) -> Result:
    assert _state is not None, "init_process was not run"
    _state.reading[_state.slot] = claim.file_id
    started = time.perf_counter()
    result = analyse_file(claim, _state.detector, _state.find_by_hash, _state.max_pixels, _state.min_side,
                          people=_state.people, read_xmp=_state.read_xmp)
    _state.reading[_state.slot] = -1
    return replace(result, seconds=time.perf_counter() - started)


def content_id(data: bytes) -> str:
    """What identifies a file's bytes: their length and their 128-bit XXH3 hash."""
    return f"{len(data)}:{xxhash.xxh3_128_hexdigest(data)}"


def analyse_file(claim: Claim, detector: Detector, find_by_hash: Callable[[str, int], Optional[tuple]],
                 max_pixels: int, min_side: int = MIN_LONG_SIDE, people: bool = False, read_xmp: bool = False) -> Result:
    """Everything one file needs, with every failure turned into a Result that says why; with
    `people`, each face's embedding too."""
    worker_id = os.getpid()
    try:
        data, st = read_file(claim.path)
    except Unreadable as exc:
        return Result(claim.file_id, exc.kind, error=exc.error, worker_id=worker_id)
    seen = dict(size=st.st_size, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, worker_id=worker_id)
    content_hash = content_id(data)
    if content_hash == claim.content_hash:
        return Result(claim.file_id, "unchanged", content_hash=content_hash, **seen)
    source = find_by_hash(content_hash, claim.file_id)
    if source is not None:  # the same bytes were analysed at another path: a copy, or a move
        kind = "reused" if os.path.lexists(source[1]) else "moved"
        return Result(claim.file_id, kind, content_hash=content_hash, source_id=source[0], **seen)
    try:
        picture = decode(data, max_pixels, min_side)  # a 12 MP JPEG at 1/8; people or not, the same faces
    except DecodeError as exc:
        return Result(claim.file_id, "failed", error=str(exc), **seen)
    except MemoryError:
        return Result(claim.file_id, "failed", error="not enough memory to decode this image", **seen)
    decodes = Decodes(data, max_pixels, picture)  # and finer ones as smaller faces ask for them
    faces = find_faces(detector, data, picture, max_pixels, decodes)
    if read_xmp and faces:
        faces = named_as_in_xmp(faces, data, claim.path, picture)
    embeddings = ()
    if people and faces:
        try:
            embeddings = tuple(embed.embed_faces(decodes, [f.bbox for f in faces]))
        except (DecodeError, MemoryError):  # a finer decode for small faces failed: they wait for the people stage
            embeddings = ()
    return Result(claim.file_id, "done", content_hash=content_hash, width=picture.width,
                  height=picture.height, faces=tuple(faces), embeddings=embeddings, **seen)


def named_as_in_xmp(faces: list, data: bytes, path: str, picture) -> list:
    """The faces, each named as the region it matches (IoU >= 0.3) in the photo's XMP: embedded,
    or in a sidecar (photo.jpg.xmp, photo.xmp). The best matches first; a region names one face."""
    packets = [packet_in(data)]
    for convention in SIDECARS:
        try:
            with open(sidecar_path(path, convention), "rb") as f:
                packets.append(f.read(4 << 20))
        except OSError:
            continue
    packets = [p for p in packets if p]
    if not packets:
        return faces
    orientation = exif_orientation(data)
    regions = [r for p in packets for r in named_regions(p, picture.width, picture.height, orientation)]
    pairs = sorted(((overlap(f.bbox, r.box)[0], i, j) for i, f in enumerate(faces) for j, r in enumerate(regions)),
                   reverse=True)
    names, used = {}, set()
    for iou, i, j in pairs:
        if iou >= XMP_MATCH and i not in names and j not in used:
            names[i] = regions[j].name
            used.add(j)
    return [replace(f, xmp_name=names[i]) if i in names else f for i, f in enumerate(faces)]


class Unreadable(Exception):
    """A file that cannot be read now: kind is missing, failed or retry (transient)."""

    def __init__(self, kind: str, error: Optional[str] = None):
        super().__init__(error or kind)
        self.kind, self.error = kind, error


def read_file(path: str) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file and its stat; Unreadable saying why not."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block us
        with open(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Unreadable("failed", "not a regular file")
            return f.read(), st
    except FileNotFoundError:
        raise Unreadable("missing") from None
    except PermissionError:
        raise Unreadable("failed", "permission denied: the daemon's user cannot read this file") from None
    except IsADirectoryError:
        raise Unreadable("failed", "a folder, not a file") from None
    except OSError as exc:
        kind = "retry" if exc.errno in TRANSIENT_ERRNOS else "failed"
        raise Unreadable(kind, f"cannot read the file: {exc.strerror or exc}") from None


def embed_job(job: FaceJob) -> list[Embedded]:
    """The embeddings of a job's faces (runs in an analyser process)."""
    assert _state is not None, "init_process was not run"
    _state.reading[_state.slot] = job.file_id
    try:
        return embed_job_faces(job, _state.max_pixels)
    finally:
        _state.reading[_state.slot] = -1


_last_picture: dict = {}  # the last picture decoded for embeddings: a group photo is several jobs


def embed_job_faces(job: FaceJob, max_pixels: int) -> list[Embedded]:
    """Read the file, check it holds the bytes its faces were found in, decode it with enough detail
    for its smallest face, and embed each face; every failure is said, face by face."""
    boxes = [box for _, box in job.faces]
    try:
        data, _ = read_file(job.path)
    except Unreadable as exc:
        if exc.kind == "failed":
            return [Embedded(face_id, "failed", error=exc.error) for face_id, _ in job.faces]
        why = exc.error or "the file is not where its faces were found (moved or deleted since)"
        return [Embedded(face_id, "retry", error=why) for face_id, _ in job.faces]
    if content_id(data) != job.content_hash:  # changed since: its new faces replace these
        return [Embedded(face_id, "stale", error="the file changed since its faces were found",
                         retry_after_s=60.0) for face_id, _ in job.faces]
    picture = _last_picture.get(job.content_hash)
    if picture is None or embed.unshown(picture, boxes):  # none, or too coarse or too short for these faces
        try:
            picture = embed.decode_for(data, max_pixels, boxes)
        except DecodeError as exc:
            return [Embedded(face_id, "failed", error=str(exc)) for face_id, _ in job.faces]
        except MemoryError:
            return [Embedded(face_id, "failed", error="not enough memory to decode this image")
                    for face_id, _ in job.faces]
        _last_picture.clear()
        _last_picture[job.content_hash] = picture
    return [Embedded(face_id, "done", embedding=blob) if blob else Embedded(face_id, "failed", error=error)
            for (face_id, _), (blob, error) in zip(job.faces, embed.embedder().embed(
                picture, boxes, Decodes(data, max_pixels).exactly))]
