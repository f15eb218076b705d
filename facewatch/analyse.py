"""One claimed file -> Result: read, hash, decode, detect. Runs in the analyser processes."""
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

from facewatch import embed
from facewatch.decode import MIN_LONG_SIDE, DecodeError, Decoded, decode
from facewatch.detect import Detector
from facewatch.store import Claim, Embedded, Face, FaceJob, Result
from facewatch.tiles import (LOOP_MAY_SEE, MIN_DETAIL, WHOLE_SEES, closer_look, hint_of, levels, merge, quarter,
                             same_face)

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


_state: Optional[_ProcessState] = None


def init_process(database: str, model: str, min_confidence: float, small_faces: str, max_pixels: int,
                 min_side: int, owner_pid: int, reading) -> None:
    """Pool initializer: one detector and one read-only store connection per process."""
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
    from facewatch.detect import MediaPipeDetector
    from facewatch.store import open_store

    without_matplotlib()
    with quiet_stderr():  # TensorFlow Lite greets stderr on load: not news for our logs
        detector = MediaPipeDetector(model, min_confidence, small_faces)
        blank = np.zeros((64, 64, 3), np.uint8)
        detector.detect(blank, 64, 64)
        if small_faces != "off":  # the tiles' own model greets stderr at its first picture too
            detector.tiles(blank, 64, 64, 1, [64])
    store = open_store(database, readonly=True)
    _state = _ProcessState(detector, store.find_by_hash, max_pixels, min_side, reading, slot)


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
    result = analyse_file(claim, _state.detector, _state.find_by_hash, _state.max_pixels, _state.min_side)
    _state.reading[_state.slot] = -1
    return replace(result, seconds=time.perf_counter() - started)


def content_id(data: bytes) -> str:
    """What identifies a file's bytes: their length and their 128-bit XXH3 hash."""
    return f"{len(data)}:{xxhash.xxh3_128_hexdigest(data)}"


def analyse_file(claim: Claim, detector: Detector, find_by_hash: Callable[[str, int], Optional[tuple]],
                 max_pixels: int, min_side: int = MIN_LONG_SIDE) -> Result:
    """Everything one file needs, with every failure turned into a Result that says why."""
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
        picture = decode(data, max_pixels, min_side)
    except DecodeError as exc:
        return Result(claim.file_id, "failed", error=str(exc), **seen)
    except MemoryError:
        return Result(claim.file_id, "failed", error="not enough memory to decode this image", **seen)
    faces = find_faces(detector, data, picture, max_pixels)
    return Result(claim.file_id, "done", content_hash=content_hash, width=picture.width,
                  height=picture.height, faces=tuple(faces), **seen)


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
        return embed_faces(job, _state.max_pixels)
    finally:
        _state.reading[_state.slot] = -1


_last_picture: dict = {}  # the last picture decoded for embeddings: a group photo is several jobs


def embed_faces(job: FaceJob, max_pixels: int) -> list[Embedded]:
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
    if picture is None or picture.scale > embed.reduction_for(boxes):  # none, or too coarse for these faces
        try:
            picture = embed.decode_for(data, max_pixels, boxes)
        except DecodeError as exc:
            return [Embedded(face_id, "failed", error=str(exc)) for face_id, _ in job.faces]
        except MemoryError:
            return [Embedded(face_id, "failed", error="not enough memory to decode this image")
                    for face_id, _ in job.faces]
        _last_picture.clear()
        _last_picture[job.content_hash] = picture
    outcomes = []
    for face_id, box in job.faces:
        blob, error = embed.embed(picture, box)
        outcomes.append(Embedded(face_id, "done", embedding=blob) if blob else
                        Embedded(face_id, "failed", error=error))
    return outcomes


def find_faces(detector: Detector, data: bytes, picture: Decoded, max_pixels: int) -> list:
    """The whole-picture pass on the reduced decode; then (detector.small_faces) a closer look at
    each face it was unsure of, and where it shows signs of faces too small for it, overlapping
    tiles of a decode with enough detail for them."""
    width, height, rgb, scale = picture.width, picture.height, picture.rgb, picture.scale
    long_side = max(width, height)
    sure, hints = detector.whole(rgb, width, height, scale)
    if detector.small_faces == "off":
        return sure
    full_size = FullSizePass(detector, data, max_pixels, picture)
    faces = merge(sure, confirmed_hints(detector, picture, hints, full_size))
    if detector.small_faces == "auto":
        if not sure and not any(f.bbox[2] >= WHOLE_SEES * long_side for f in faces):
            # no face the whole pass was sure of, nor one its hints showed that is plain to it:
            # faces near its limit can still be plain in a quarter of the picture (four
            # overlapping tiles of the same decode)
            found = detector.tiles(rgb, width, height, scale, [quarter(width, height)], known=faces)
            faces = merge(faces, [drawn_as(hints, f, picture) for f in found])
    smallest = closer_look(faces, width, height, detector.small_faces)
    if smallest is not None:
        finest = max(k for k in (1, 2, 4, 8) if k == 1 or smallest / k >= MIN_DETAIL)
        detail = picture  # the first decode, unless too coarse for faces this small
        if scale > finest:
            detail = decode(data, max_pixels, min_side=-(-long_side // finest))
        found = detector.tiles(detail.rgb, width, height, detail.scale, levels(width, height, smallest),
                               known=faces)
        faces = merge(faces, [drawn_as(hints, f, picture) for f in found])
    if not sure and scale > 1:
        # what closer looks found in a picture whose reduced decode showed no face, from the size one
        # full-size pass may see, and not drawn from a hint: boxed as that pass boxes them (it draws
        # a face near its limit larger and lower than a closer look does), where it finds them at all
        drawn = {h.bbox for h in hints}
        unboxed = [f for f in faces if f.bbox[2] >= LOOP_MAY_SEE * long_side and f.bbox not in drawn]
        if unboxed:
            faces = [next((s for s in full_size.faces() if same_face(s.bbox, f.bbox)), f) if f in unboxed else f
                     for f in faces]
    return faces


def confirmed_hints(detector: Detector, picture: Decoded, hints: list, full_size: "FullSizePass") -> list:
    """The faces among the whole-picture pass's hints (what the reduced decode showed below the
    model's floor: the full-size pass finds most of them), each seen again in a square of four face
    widths around it. Seen there at the hint's size, it is a face, drawn as the hint is; seen much
    smaller, it may be a blur the upscaling made a face of (a galaxy, measured) or a face near the
    full-size pass's limit, which that pass draws 1.6 times wider than a closer look: that pass,
    on a full-size decode, decides. Hints with fewer than MIN_DETAIL decoded pixels across are not
    looked at: smaller than any face the full-size pass finds."""
    width, height, scale = picture.width, picture.height, picture.scale
    faces, doubtful = [], []
    for hint in hints:
        if hint.bbox[2] / scale < MIN_DETAIL:
            continue
        look = detector.confirmed(picture.rgb, width, height, scale, hint)
        if look is None:
            continue
        if hint_of([hint], look, max(width, height)):
            faces.append(drawn_as([hint], look, picture))
        else:
            doubtful.append(hint)
    if doubtful and scale > 1:  # at full size, the whole pass was the full-size pass: they are not its
        faces += [s for s in full_size.faces() if any(same_face(s.bbox, h.bbox) for h in doubtful)]
    return faces


def drawn_as(hints: list, face: Face, picture: Decoded) -> Face:
    """A face found by a closer look, drawn with the box and landmarks of its hint where it has one
    and the picture was decoded reduced: as one pass over the full-size picture draws them (a
    closer look draws a face near that pass's limit up to 1.5 times narrower), with the closer
    look's score. (At full size the hint is that pass's own, below its floor: nothing to match.)"""
    hint = hint_of(hints, face, max(picture.width, picture.height)) if picture.scale > 1 else None
    return face if hint is None else replace(face, bbox=hint.bbox, keypoints=hint.keypoints)


class FullSizePass:
    """The faces of one pass over the full-size picture of a photo decoded reduced, as the
    hand-written loop finds them: decoded at full size only when asked for (a few photos in a
    hundred), and once."""

    def __init__(self, detector: Detector, data: bytes, max_pixels: int, picture: Decoded):
        self._detector, self._data, self._max_pixels = detector, data, max_pixels
        self._width, self._height = picture.width, picture.height
        self._faces: Optional[list] = None

    def faces(self) -> list:
        if self._faces is None:
            full = decode(self._data, self._max_pixels, min_side=max(self._width, self._height))
            self._faces = self._detector.detect(full.rgb, self._width, self._height, full.scale)
        return self._faces
