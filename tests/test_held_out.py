"""Small faces on real photos `auto` was not tuned on: the held-out half of bench/real_faces.json
(group photos from PyPI and npm packages, the 1927 Solvay conference photo from Debian's
visp-images-data, a family's album from Debian's kphotoalbum), with hand-checked face boxes, as
shipped and framed on a 12 MP canvas as a camera frames a group. Nothing here was looked at while
choosing what `auto` does (bench/small_faces.py reports the same figures)."""
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from conftest import iou  # noqa: E402
from facewatch.analysis.decode import decode  # noqa: E402
from facewatch.analysis.detect import MediaPipeDetector  # noqa: E402
from facewatch.analysis.faces import find_faces  # noqa: E402
from facewatch.analysis.tiles import same_face  # noqa: E402

MAX_PIXELS = 200_000_000


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """{path: (faces, ignored)} of the held-out photos with people, and the paths of those without,
    each as shipped and framed on 12 MP."""
    import hashlib
    from annotate_faces import truth
    from make_corpus import make_noise
    from small_faces import TWELVE_MP, frame
    from sources import real_photo
    folder = tmp_path_factory.mktemp("held-out")
    rng = np.random.default_rng(0)
    noise = make_noise(TWELVE_MP, rng)
    photos, free = {}, []
    for name, entry in truth().items():
        if entry["half"] != "held-out":
            continue
        data = real_photo(name)
        if data is None:
            pytest.skip(f"{name} is fetched from its registry (PyPI, npm or Debian), which could not be reached")
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{name} is not the file annotated"
        shipped = folder / name
        shipped.write_bytes(data)
        rgb = decode(data, MAX_PIXELS, min_side=10 ** 6).rgb
        big = folder / f"{Path(name).stem}-12mp.jpg"
        moved = frame(rgb, rng, noise, big)
        if entry["faces"]:
            photos[shipped] = (entry["faces"], entry["ignore"])
            photos[big] = ([moved(b) for b in entry["faces"]], [moved(b) for b in entry["ignore"]])
        else:
            free += [shipped, big]
    return photos, free


@pytest.fixture(scope="module")
def found(held_out):
    """What `auto` and the hand-written loop (MediaPipe once over the full-size picture) find."""
    import mediapipe as mp
    photos, free = held_out
    auto = MediaPipeDetector("full_range", 0.5, "auto")
    loop = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
    results = {"auto": {}, "loop": {}}
    try:
        for path in list(photos) + free:
            data = path.read_bytes()
            results["auto"][path] = [f.bbox for f in find_faces(auto, data, decode(data, MAX_PIXELS), MAX_PIXELS)]
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            h, w = rgb.shape[:2]
            results["loop"][path] = [
                (round(b.xmin * w), round(b.ymin * h), round(b.width * w), round(b.height * h))
                for b in (d.location_data.relative_bounding_box for d in loop.process(rgb).detections or ())]
    finally:
        auto.close()
        loop.close()
    return results


def hits(faces, boxes):
    """Which faces a box finds (IoU >= 0.5, each box one face, best overlaps first)."""
    pairs = sorted(((iou(f, b), i, j) for i, f in enumerate(faces) for j, b in enumerate(boxes)), reverse=True)
    hit, used = [False] * len(faces), set()
    for value, i, j in pairs:
        if value >= 0.5 and not hit[i] and j not in used:
            hit[i], _ = True, used.add(j)
    return hit


def test_a_29_person_conference_photo_as_shipped_and_on_12_mp(held_out, found):
    """1927's Solvay conference: 29 faces of 3-4% of the long side (1280 px, and 1.8-4% on 12 MP),
    which one pass over the picture does not see at all."""
    photos, _ = held_out
    for path in [p for p in photos if p.name.startswith("solvay")]:
        faces, _ = photos[path]
        assert len(faces) == 29
        assert sum(hits(faces, found["loop"][path])) <= 2, "the corpus changed: one pass sees this crowd"
        assert sum(hits(faces, found["auto"][path])) >= 25, (path.name, found["auto"][path])


def test_recall_by_face_size(held_out, found):
    """Faces under 5% of the picture's long side (a crowd's: too small for one pass over it) and
    larger ones, as shipped and on 12 MP. Those missed include faces in photos stored upside down
    or turned a quarter (no EXIF orientation), which no setting finds, and people behind a couple's
    large faces, whom `always` finds."""
    photos, _ = held_out
    for framing, big in (("as shipped", False), ("on 12 MP", True)):
        sizes = {"under 5%": [0, 0], "5% or more": [0, 0]}
        for path, (faces, _) in photos.items():
            if path.name.endswith("-12mp.jpg") != big:
                continue
            long_side = max(cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_8).shape) * 8
            for face, hit in zip(faces, hits(faces, found["auto"][path])):
                bucket = sizes["under 5%" if face[2] < 0.05 * long_side else "5% or more"]
                bucket[0] += hit
                bucket[1] += 1
        recall = {k: v[0] / v[1] for k, v in sizes.items()}
        assert sizes["under 5%"][1] >= 29 and sizes["5% or more"][1] >= 20, sizes
        assert recall["under 5%"] >= 0.75 and recall["5% or more"] >= 0.7, (framing, sizes)


def test_no_face_the_full_size_loop_finds_is_lost(held_out, found):
    photos, free = held_out
    lost = {p.name: [b for b in found["loop"][p] if not any(iou(b, a) >= 0.5 for a in found["auto"][p])]
            for p in list(photos) + free}
    assert sum(len(v) for v in found["loop"].values()) >= 30
    assert not any(lost.values()), lost


def test_no_false_face_in_group_photos_or_face_free_ones(held_out, found):
    """Every box `auto` draws on a photo with people covers one of its faces (or a face in a
    picture on the wall); on the album's photos without people (pets, a fish tank, the sea, snow,
    landscapes), as shipped and on 12 MP, it draws none."""
    photos, free = held_out
    false = {p.name: [b for b in found["auto"][p] if not any(same_face(tuple(b), tuple(f)) for f in faces + ignored)]
             for p, (faces, ignored) in photos.items()}
    assert not any(false.values()), false
    assert len(free) >= 10
    assert not any(found["auto"][p] for p in free), {p.name: found["auto"][p] for p in free if found["auto"][p]}
