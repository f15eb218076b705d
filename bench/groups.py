"""Group photos with known faces, and face-free photos: corpora for small-face recall.

    python bench/groups.py OUT_DIR --count 40 --size 12mp     # group photos + truth.json
    python bench/groups.py OUT_DIR --face-free                 # real photos without faces

A group photo pastes real faces (scikit-image's astronaut and cameraman, Debian opencv-doc's
messi5, and the labelled photos of face_recognition 1.3.0's source package when cached by
bench/sources.py) at widths from 16 to 300 pixels into a real face-free background, several per
picture. Each face's box is known: the one the full-range model finds on its source photo at full
size, moved and scaled with it. truth.json maps each file to its boxes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_corpus import OPENCV_DOC, SIZES  # noqa: E402
from sources import labelled_photos  # noqa: E402

# face-free real photos (Debian's opencv-doc): buildings, fruit, textures, a baboon's face
FACE_FREE = ["building.jpg", "fruits.jpg", "home.jpg", "orange.jpg", "aero1.jpg", "aero3.jpg", "baboon.jpg",
             "board.jpg", "starry_night.jpg", "lena.jpg", "smarties.png", "box_in_scene.png", "graf1.png",
             "leuvenA.jpg", "apple.jpg", "butterfly.jpg", "HappyFish.jpg", "stuff.jpg", "blox.jpg", "pic1.png"]
BACKGROUNDS = ["building.jpg", "home.jpg", "aero3.jpg", "leuvenA.jpg", "board.jpg", "stuff.jpg"]


def face_free_sources() -> list[tuple[str, np.ndarray]]:
    found = []
    for name in FACE_FREE:
        if name != "lena.jpg" and (OPENCV_DOC / name).exists():
            found.append((name, cv2.cvtColor(cv2.imread(str(OPENCV_DOC / name)), cv2.COLOR_BGR2RGB)))
    from skimage import data
    found += [("coffee", data.coffee()), ("chelsea_cat", data.chelsea()), ("rocket", data.rocket()),
              ("hubble", data.hubble_deep_field())]
    return found


def face_sources() -> list[tuple[np.ndarray, tuple]]:
    """(picture, face box) pairs: real photos with one face each, the box as the model finds it."""
    import mediapipe as mp
    from skimage import data
    pictures = [data.astronaut(), np.dstack([data.camera()] * 3)]
    if (OPENCV_DOC / "messi5.jpg").exists():
        pictures.append(cv2.cvtColor(cv2.imread(str(OPENCV_DOC / "messi5.jpg")), cv2.COLOR_BGR2RGB))
    pictures += [rgb for _, rgb in labelled_photos()]
    found = []
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.7) as det:
        for rgb in pictures:
            h, w = rgb.shape[:2]
            for d in det.process(rgb).detections or ():
                b = d.location_data.relative_bounding_box
                found.append((rgb, (b.xmin * w, b.ymin * h, b.width * w, b.height * h)))
    return found


def background(size: tuple, rng: np.random.Generator) -> np.ndarray:
    name = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    rgb = cv2.cvtColor(cv2.imread(str(OPENCV_DOC / name)), cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)


def paste(canvas: np.ndarray, source: np.ndarray, box: tuple, width: int, at: tuple) -> tuple:
    """Paste the head around `box` so that the face is `width` pixels wide at `at`; its new box."""
    bx, by, bw, bh = box
    margin = 0.6
    x0, y0 = max(0, int(bx - margin * bw)), max(0, int(by - margin * bh))
    x1 = min(source.shape[1], int(bx + bw * (1 + margin)))
    y1 = min(source.shape[0], int(by + bh * (1 + margin)))
    f = width / bw
    head = cv2.resize(source[y0:y1, x0:x1], (max(1, round((x1 - x0) * f)), max(1, round((y1 - y0) * f))),
                      interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
    hh, hw = head.shape[:2]
    px, py = at
    ph, pw = min(hh, canvas.shape[0] - py), min(hw, canvas.shape[1] - px)
    if ph <= 0 or pw <= 0:
        return None
    # feather the edges so the paste has no hard border for the model to see
    ramp = np.minimum(np.minimum(np.arange(hw)[None, :], np.arange(hw)[::-1][None, :]),
                      np.minimum(np.arange(hh)[:, None], np.arange(hh)[::-1][:, None]))
    alpha = np.clip(ramp / max(2.0, 0.12 * min(hh, hw)), 0, 1)[:ph, :pw, None]
    region = canvas[py:py + ph, px:px + pw]
    canvas[py:py + ph, px:px + pw] = (alpha * head[:ph, :pw] + (1 - alpha) * region).astype(np.uint8)
    return (px + (bx - x0) * f, py + (by - y0) * f, bw * f, bh * f)


def group_photo(size: tuple, faces: list, rng: np.random.Generator, widths: list) -> tuple:
    canvas = background(size, rng)
    boxes, taken = [], []
    for width in widths:
        source, box = faces[int(rng.integers(len(faces)))]
        extent = int(width * 2.2) + 2
        for _ in range(50):  # a free place
            px = int(rng.integers(0, max(1, size[0] - extent)))
            py = int(rng.integers(0, max(1, size[1] - extent)))
            if all(px + extent < x or x + e < px or py + extent < y or y + e < py for x, y, e in taken):
                break
        else:
            continue
        if rng.random() < 0.5:
            source = source[:, ::-1]
            box = (source.shape[1] - box[0] - box[2], box[1], box[2], box[3])
        new = paste(canvas, source, box, width, (px, py))
        if new is not None:
            taken.append((px, py, extent))
            boxes.append([round(v) for v in new])
    return canvas, boxes


def make_groups(out: Path, count: int, size_name: str, seed: int = 0) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    faces = face_sources()
    size = SIZES[size_name]
    truth = {}
    for i in range(count):
        widths = sorted((np.exp(rng.uniform(np.log(16), np.log(300), int(rng.integers(6, 13))))).astype(int),
                        reverse=True)
        rgb, boxes = group_photo(size, faces, rng, [int(w) for w in widths if w * 2.5 < min(size)])
        path = out / f"group_{size_name}_{i:04d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        truth[str(path)] = boxes
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def make_face_free(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rgb in face_free_sources():
        for size_name in ("12mp", "1080p", "small"):
            path = out / f"{os.path.splitext(name)[0]}_{size_name}.jpg"
            resized = cv2.resize(rgb, SIZES[size_name], interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(path), cv2.cvtColor(resized, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--size", choices=sorted(SIZES), default="12mp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--face-free", action="store_true")
    args = parser.parse_args()
    if args.face_free:
        print(f"{len(make_face_free(args.out))} face-free photos in {args.out}")
    else:
        truth = make_groups(args.out, args.count, args.size, args.seed)
        print(f"{len(truth)} group photos ({sum(map(len, truth.values()))} faces) in {args.out}")


if __name__ == "__main__":
    main()
