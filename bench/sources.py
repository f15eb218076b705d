"""Real photos from the package registries, fetched once with pip and cached.

face_recognition 1.3.0's source package holds tests/test_images/: photos of two known people
(US government photos): obama.jpg, obama2.jpg, obama3.jpg, two partial faces of him, biden.jpg.
Fetched with `pip download --no-binary :all: --no-deps face_recognition==1.3.0`; where that
cannot be done (no network), nothing is returned and callers say so.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np

CACHE = Path(os.environ.get("FACEWATCH_PHOTO_CACHE", Path.home() / ".cache" / "facewatch-photos"))
FACE_RECOGNITION = "face_recognition==1.3.0"
LABELLED = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg",
            "biden.jpg"]


def labelled_dir() -> Path | None:
    """The folder of face_recognition's test photos, fetched if need be; None when it cannot be."""
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
