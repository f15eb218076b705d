"""`facewatch show --draw`: the picture as a viewer shows it, with its faces drawn on."""
from __future__ import annotations

import os
import tempfile

import cv2

from facewatch.analysis.decode import DecodeError, decode
from facewatch.store import FileRecord


def draw_faces(record: FileRecord, output: str, max_pixels: int = 10**9) -> tuple[int, int]:
    """Write the image at `record.path` with boxes, scores and keypoints to `output`; returns its size."""
    try:
        with open(record.path, "rb") as f:
            picture = decode(f.read(), max_pixels, min_side=10**6)  # full size, as shown: any format
    except (OSError, DecodeError) as exc:
        raise ValueError(f"{record.path}: cannot be read as an image ({getattr(exc, 'strerror', None) or exc})")
    image = cv2.cvtColor(picture.rgb, cv2.COLOR_RGB2BGR)
    if picture.scale != 1:  # a RAW file without a full-size preview: its half-size picture, enlarged
        image = cv2.resize(image, (picture.width, picture.height), interpolation=cv2.INTER_LINEAR)
    thickness = max(2, round(max(image.shape[:2]) / 400))
    for face in record.faces:
        x, y, w, h = face.bbox
        cv2.rectangle(image, (x, y), (x + w, y + h), (0, 255, 0), thickness)
        cv2.putText(image, f"{face.score:.2f}", (x, max(y - 2 * thickness, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    thickness / 3, (0, 255, 0), max(1, thickness // 2))
        for kx, ky in face.keypoints:
            cv2.circle(image, (kx, ky), thickness * 2, (0, 0, 255), -1)
    ext = os.path.splitext(output)[1] or ".jpg"
    folder = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(prefix=".facewatch-draw-", suffix=ext, dir=folder)
    os.close(fd)
    try:
        if not cv2.imwrite(tmp, image):
            raise ValueError(f"{output}: cannot write an image with this extension")
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return image.shape[1], image.shape[0]
