"""Face detection: the Detector protocol and the MediaPipe BlazeFace detector."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from facewatch.store import Face

MODELS = {"short_range": 0, "full_range": 1}


class Detector(Protocol):
    def detect(self, rgb: np.ndarray, width: int, height: int) -> list[Face]:
        """Faces in `rgb`, in pixels of a `width` x `height` picture of the same scene."""


class MediaPipeDetector:
    """MediaPipe's legacy face-detection solution; its models ship in the mediapipe wheel."""

    def __init__(self, model: str = "full_range", min_confidence: float = 0.5):
        # `import mediapipe` costs half a second (it imports every solution and matplotlib), but
        # importing the face-detection module alone leaves some graph options unregistered and
        # its non-maximum suppression silently off: measured, duplicate faces. Import it whole.
        import mediapipe as mp

        self._solution = mp.solutions.face_detection.FaceDetection(
            model_selection=MODELS[model], min_detection_confidence=min_confidence)

    def detect(self, rgb: np.ndarray, width: int, height: int) -> list[Face]:
        result = self._solution.process(rgb)
        return [_to_face(d, width, height) for d in result.detections or ()]

    def close(self) -> None:
        self._solution.close()


def _to_face(detection, width: int, height: int) -> Face:
    # MediaPipe answers in fractions of the picture it saw, so scaling to the full-resolution
    # size is exact whatever scale the picture was decoded at.
    box = detection.location_data.relative_bounding_box
    x0, y0 = _clamp(box.xmin * width, width), _clamp(box.ymin * height, height)
    x1 = _clamp((box.xmin + box.width) * width, width)
    y1 = _clamp((box.ymin + box.height) * height, height)
    keypoints = tuple((_clamp(k.x * width, width), _clamp(k.y * height, height))
                      for k in detection.location_data.relative_keypoints)
    return Face(score=float(detection.score[0]), bbox=(x0, y0, x1 - x0, y1 - y0), keypoints=keypoints)


def _clamp(value: float, limit: int) -> int:
    return int(round(min(max(value, 0.0), float(limit))))
