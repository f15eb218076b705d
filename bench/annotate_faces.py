"""The face boxes of bench/real_faces.json: proposed by tools, checked by hand, kept once.

    python bench/annotate_faces.py propose OUT_DIR     # numbered proposals drawn on each photo
    python bench/annotate_faces.py draw OUT_DIR        # the boxes kept in real_faces.json, drawn

`propose` draws, on each of sources.REAL_PHOTOS (EXIF orientation applied, as facewatch sees it),
what three detectors find: MediaPipe with small_faces always on the full-size picture (green,
"m"), MediaPipe once over the whole full-size picture (blue, "l", where not already a green box)
and OpenCV's Haar cascades, frontal and profile (red, "h", where no MediaPipe box is). It writes
OUT_DIR/proposals.json. A person then looks at every picture and writes real_faces.json: the
proposals that are faces, by number, and boxes drawn by hand ("add") for faces no tool found.
A face is a human face whose eyes or nose can be seen, however small, turned or partly hidden;
faces in pictures hung on a wall or printed on clothes are not counted, nor are animals.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from sources import REAL_PHOTOS, real_photo  # noqa: E402

TRUTH = HERE / "real_faces.json"
MAX_PIXELS = 200_000_000


def decoded(name: str) -> np.ndarray:
    """The photo as facewatch decodes it at full size: RGB, EXIF orientation applied."""
    from facewatch.analysis.decode import decode
    data = real_photo(name)
    if data is None:
        raise SystemExit(f"{name}: its registry could not be reached")
    picture = decode(data, MAX_PIXELS, min_side=10 ** 6)
    return picture.rgb


def sha256(name: str) -> str:
    return hashlib.sha256(real_photo(name)).hexdigest()


def _same(a, b) -> bool:
    from facewatch.analysis.tiles import same_face
    return same_face(tuple(a), tuple(b))


def propose(out: Path) -> None:
    import mediapipe as mp
    from facewatch.analysis.detect import MediaPipeDetector
    out.mkdir(parents=True, exist_ok=True)
    always = MediaPipeDetector("full_range", 0.5, "always")
    loop = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
    cascades = [cv2.CascadeClassifier(cv2.data.haarcascades + f) for f in
                ("haarcascade_frontalface_alt2.xml", "haarcascade_profileface.xml")]
    proposals = {}
    for name in REAL_PHOTOS:
        rgb = decoded(name)
        h, w = rgb.shape[:2]
        found = [("m", list(f.bbox)) for f in always.tiles(rgb, w, h, 1, _levels(w, h)) +
                 always.detect(rgb, w, h, 1)]
        found = _unique(found)
        for d in loop.process(rgb).detections or ():
            b = d.location_data.relative_bounding_box
            box = [round(b.xmin * w), round(b.ymin * h), round(b.width * w), round(b.height * h)]
            if not any(_same(box, f) for _, f in found):
                found.append(("l", box))
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        for cascade in cascades:
            for flip in (False, True):
                picture = grey[:, ::-1] if flip else grey
                for x, y, bw, bh in cascade.detectMultiScale(np.ascontiguousarray(picture), 1.1, 4, minSize=(12, 12)):
                    box = [int(w - x - bw) if flip else int(x), int(y), int(bw), int(bh)]
                    if not any(_same(box, f) for _, f in found):
                        found.append(("h", box))
        proposals[name] = {"size": [w, h], "sha256": sha256(name),
                           "proposals": [{"n": i, "by": by, "box": box} for i, (by, box) in enumerate(found)]}
        _draw(out / f"{Path(name).stem}.png", rgb, [(f"{by}{i}", box, by) for i, (by, box) in enumerate(found)])
        print(f"{name}: {len(found)} proposals")
    (out / "proposals.json").write_text(json.dumps(proposals, indent=1))


def _levels(width: int, height: int) -> list:
    from facewatch.analysis.tiles import levels, min_face
    return levels(width, height, min_face(width, height))


def _unique(found: list) -> list:
    kept = []
    for by, box in found:
        if not any(_same(box, k) for _, k in kept):
            kept.append((by, box))
    return kept


COLOURS = {"m": (0, 200, 0), "l": (0, 120, 255), "h": (255, 0, 0), "t": (255, 0, 255)}


def _draw(path: Path, rgb: np.ndarray, boxes: list) -> None:
    canvas = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    thick = max(1, round(max(rgb.shape[:2]) / 800))
    for label, (x, y, w, h), by in boxes:
        colour = COLOURS[by][::-1]
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, thick)
        cv2.putText(canvas, label, (x, max(10, y - 3)), cv2.FONT_HERSHEY_PLAIN, thick, colour, thick)
    cv2.imwrite(str(path), canvas)


def truth() -> dict:
    """{name: {"half", "size", "faces": [[x, y, w, h], ...]}} from real_faces.json."""
    return json.loads(TRUTH.read_text())["photos"]


def draw(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, entry in truth().items():
        _draw(out / f"{Path(name).stem}.png", decoded(name), [(str(i), box, "t") for i, box in enumerate(entry["faces"])])
    print(f"drawn in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["propose", "draw"])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    propose(args.out) if args.command == "propose" else draw(args.out)


if __name__ == "__main__":
    main()
