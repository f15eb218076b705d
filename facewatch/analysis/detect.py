"""Face detection: the Detector protocol and the MediaPipe BlazeFace detector."""
from __future__ import annotations

from typing import Optional, Protocol

import cv2
import numpy as np

from facewatch.analysis.blazeface import FullRangeWithHints
from facewatch.store import Face
from facewatch.analysis.tiles import FACE_IN_TILE, cut_by_edge, grid, merge, same_face

MODELS = {"short_range": 0, "full_range": 1}
INPUT_SIDE = {"short_range": 128, "full_range": 192}  # the square each model looks at

# A JPEG decoded at 1/8 scale keeps only each 8x8 block's mean (its DC coefficient), at 1/4 the
# block's 2x2 lowest frequencies, at 1/2 its 4x4: smoother than the single pixels MediaPipe would
# sample from a full decode. Sharpen by this much, per scale, to come closer to those (measured
# against the full-size loop on the benchmark corpora, 12 MP and 1080p: see the README).
SHARPENING = {1: 0.0, 2: 0.0, 4: 0.25, 8: 0.5}
# each pixel plus `a` times its difference from the mean of its four neighbours
_SHARPEN = {scale: np.array([[0, -a / 4, 0], [-a / 4, 1 + a, -a / 4], [0, -a / 4, 0]], np.float32)
            for scale, a in SHARPENING.items() if a}
# A tile face scoring this much is kept without the second look: measured with small_faces
# always on the tuning half of the real photos and 77 face-free ones, every tile face of 0.8 or
# more was a face (45 of 45), and every false one scored under 0.8 (36, 34 of them under 0.75).
SURE_IN_TILE = 0.8


class Detector(Protocol):
    min_confidence: float
    small_faces: str  # off | auto | always

    def detect(self, rgb: np.ndarray, width: int, height: int, scale: int = 1) -> list[Face]:
        """Faces in `rgb`, a picture of `width` x `height` decoded at 1/`scale`, in full-size pixels."""

    def whole(self, rgb: np.ndarray, width: int, height: int, scale: int = 1) -> tuple[list[Face], list[Face]]:
        """The whole-picture pass: its faces, and (unless small_faces is off) its hints: what it
        saw below min_confidence, down to blazeface.HINT_SCORE."""

    def tiles(self, rgb: np.ndarray, width: int, height: int, scale: int, sides: list[int],
              known: list[Face] = ()) -> list[Face]:
        """Faces found in overlapping tiles of those sides (full-size pixels), but those `known`
        already."""

    def confirmed(self, rgb: np.ndarray, width: int, height: int, scale: int, face: Face) -> Optional[Face]:
        """The face seen again, closer, or None."""


class MediaPipeDetector:
    """MediaPipe's legacy face-detection solution, or with small_faces on, the same graph with hints
    (blazeface.py); the models ship in the mediapipe wheel."""

    def __init__(self, model: str = "full_range", min_confidence: float = 0.5, small_faces: str = "off"):
        # `import mediapipe` costs half a second (it imports every solution and matplotlib), but
        # importing the face-detection module alone leaves some graph options unregistered and
        # its non-maximum suppression silently off: measured, duplicate faces. Import it whole.
        import mediapipe as mp

        self.min_confidence = min_confidence
        self.small_faces = small_faces
        self._side = INPUT_SIDE[model]
        # full range, unless off: the same graph as the solution's, which also says what it is unsure of
        self._with_hints = FullRangeWithHints() if small_faces != "off" and model == "full_range" else None
        self._solution = None if self._with_hints else mp.solutions.face_detection.FaceDetection(
            model_selection=MODELS[model], min_detection_confidence=min_confidence)
        self._tile_solution = None if small_faces == "off" else mp.solutions.face_detection.FaceDetection(
            model_selection=MODELS["full_range"], min_detection_confidence=min_confidence)

    def detect(self, rgb: np.ndarray, width: int, height: int, scale: int = 1) -> list[Face]:
        return self.whole(rgb, width, height, scale)[0]

    def whole(self, rgb: np.ndarray, width: int, height: int, scale: int = 1) -> tuple[list[Face], list[Face]]:
        square = model_input(rgb, width, height, scale, self._side)
        if self._with_hints is None:
            seen, unsure = self._solution.process(square).detections or (), ()
        else:
            seen, unsure = self._with_hints.process(square)
        seen = [_to_face(d, width, height) for d in seen]
        faces = [f for f in seen if f.score >= self.min_confidence]
        hints = [f for f in seen if f.score < self.min_confidence]
        for hint in (_to_face(d, width, height) for d in unsure):
            if not any(same_face(hint.bbox, f.bbox) for f in seen + hints):
                hints.append(hint)
        return faces, hints

    def tiles(self, rgb: np.ndarray, width: int, height: int, scale: int, sides: list[int],
              known: list[Face] = ()) -> list[Face]:
        """Faces in overlapping tiles, each under SURE_IN_TILE confirmed by a second look (see
        `confirmed`), but those `known` already (the whole-picture pass's, which tiles see again:
        no look spent on them)."""
        found = []
        for side in sides:
            smallest = 0.7 * side / FACE_IN_TILE  # smaller boxes are textures the upscaling made faces of
            for tile in grid(width, height, side):
                found += [f for f in self._in_tile(rgb, width, height, scale, tile)
                          if f.bbox[2] >= smallest and not cut_by_edge(f.bbox, tile, width, height, 2 * scale)]
        new = [f for f in merge([], found) if not any(same_face(f.bbox, k.bbox) for k in known)]
        kept = []
        for face in new:
            if face.score < SURE_IN_TILE:
                face = self.confirmed(rgb, width, height, scale, face)
            if face is not None:
                kept.append(face)
        return kept

    def confirmed(self, rgb: np.ndarray, width: int, height: int, scale: int, face: Face) -> Optional[Face]:
        """The face again, seen in a square of four face widths around it (a face is a face at any
        scale and framing; a texture that looked like one in one tile rarely is in another), or None."""
        x, y, w, h = face.bbox
        side = 4 * max(w, h)
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
        view = (x0, y0, min(side, width - x0), min(side, height - y0))
        again = [f for f in self._in_tile(rgb, width, height, scale, view) if same_face(f.bbox, face.bbox)]
        return max(again, key=lambda f: f.score) if again else None

    def _in_tile(self, rgb: np.ndarray, width: int, height: int, scale: int, tile: tuple) -> list[Face]:
        x, y, w, h = tile
        x0, y0 = x // scale, y // scale
        crop = np.ascontiguousarray(rgb[y0:-(-(y + h) // scale), x0:-(-(x + w) // scale)])
        ch, cw = crop.shape[:2]
        if ch < 8 or cw < 8:
            return []
        result = self._tile_solution.process(crop)

        def point(rx: float, ry: float) -> tuple:  # a decoded pixel spans [j, j + 1): full size * scale
            return _clamp((x0 + rx * cw) * scale, width), _clamp((y0 + ry * ch) * scale, height)

        faces = []
        for d in result.detections or ():
            box = d.location_data.relative_bounding_box
            bx0, by0 = point(box.xmin, box.ymin)
            bx1, by1 = point(box.xmin + box.width, box.ymin + box.height)
            keypoints = tuple(point(k.x, k.y) for k in d.location_data.relative_keypoints)
            if bx1 > bx0 and by1 > by0 and d.score[0] >= self.min_confidence:
                faces.append(Face(score=float(d.score[0]), bbox=(bx0, by0, bx1 - bx0, by1 - by0),
                                  keypoints=keypoints))
        return faces

    def close(self) -> None:
        (self._with_hints or self._solution).close()
        if self._tile_solution is not None:
            self._tile_solution.close()


def model_input(rgb: np.ndarray, width: int, height: int, scale: int, side: int) -> np.ndarray:
    """The `side` x `side` picture MediaPipe would give its model from the full-size decode.

    MediaPipe letterboxes the whole picture into the model's square and fills each of its pixels
    by bilinear interpolation at one point of the full-size picture (cv2.warpPerspective, pixel
    indices as coordinates). Handing it exactly that square, at exactly those points, makes a
    reduced decode see what a full decode would, short of detail finer than a decoded pixel:
    - pixel j of a decode at 1/scale covers full-size pixels scale*j .. scale*j + scale - 1, so
      it stands for the point scale*j + (scale - 1)/2, not scale*j. Letting MediaPipe resize the
      reduced picture itself misplaces every sample by (scale - 1)/2 full-size pixels. Measured
      against the full-size loop, that alone left 54% of faces 6% of a 12 MP frame wide at IoU
      >= 0.8 (77% placed right), and lost 6% of the faces of 1080p photos (2% placed right).
    - at 1/4 and 1/8 that pixel is smoother than the single pixel MediaPipe would sample: a light
      sharpening brings it closer (SHARPENING; bench/throughput.py prints the resulting overlap).
    MediaPipe then sees a picture exactly its size, which it passes to the model unchanged.
    At scale 1 this is MediaPipe's own sampling, and the faces are the full-size loop's exactly.
    """
    long_side, pad_x, pad_y = _letterbox(width, height)
    step = long_side / side  # full-size pixels per model pixel
    # model pixel (u, v) <- full-size point (u*step - pad_x, v*step - pad_y) <- decoded point
    offset = (scale - 1) / 2
    to_decoded = np.array([[step / scale, 0, (-pad_x - offset) / scale],
                           [0, step / scale, (-pad_y - offset) / scale]])
    if scale in _SHARPEN:
        rgb = cv2.filter2D(rgb, -1, _SHARPEN[scale], borderType=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(rgb, to_decoded, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _to_face(detection, width: int, height: int) -> Face:
    # MediaPipe answers in fractions of the square it saw, which is the letterboxed full picture
    long_side, pad_x, pad_y = _letterbox(width, height)

    def point(x: float, y: float) -> tuple:
        return _clamp(x * long_side - pad_x, width), _clamp(y * long_side - pad_y, height)

    box = detection.location_data.relative_bounding_box
    x0, y0 = point(box.xmin, box.ymin)
    x1, y1 = point(box.xmin + box.width, box.ymin + box.height)
    keypoints = tuple(point(k.x, k.y) for k in detection.location_data.relative_keypoints)
    return Face(score=float(detection.score[0]), bbox=(x0, y0, x1 - x0, y1 - y0), keypoints=keypoints)


def _letterbox(width: int, height: int) -> tuple:
    """The full picture centred in a square: its side, and the picture's offsets inside it."""
    long_side = max(width, height)
    return long_side, (long_side - width) / 2, (long_side - height) / 2


def _clamp(value: float, limit: int) -> int:
    return int(round(min(max(value, 0.0), float(limit))))
