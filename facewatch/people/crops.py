"""Face crops from the photos, at the detail each face needs: contact sheets and the gallery's people pages."""
from __future__ import annotations

import numpy as np

from facewatch.config import Config
from facewatch.intake.files import write_atomically
from facewatch.store import PeopleError, Store

TILE = 160  # pixels of one face on a contact sheet
COLUMNS = 8


def face_crops(faces: list, max_pixels: int, side: int) -> list[tuple]:
    """(face, its crop: a square RGB array `side` wide, with some room around the face) of each
    face whose photo can be read now."""
    import cv2
    from facewatch.analysis.analyse import Unreadable, read_file
    from facewatch.analysis.decode import DecodeError
    from facewatch.analysis.embed import decode_for
    crops = []
    for face in faces:
        try:
            data, _ = read_file(face.path)
            picture = decode_for(data, max_pixels, [face.bbox])
        except (Unreadable, DecodeError, MemoryError):
            continue
        x, y, w, h = ((face.bbox[0] - picture.left) / picture.scale, *(v / picture.scale for v in face.bbox[1:]))
        pad = 0.3 * max(w, h)
        height, width = picture.rgb.shape[:2]
        x0, y0 = int(max(0, x - pad)), int(max(0, y - pad))
        x1, y1 = int(min(width, x + w + pad)), int(min(height, y + h + pad))
        if x1 <= x0 or y1 <= y0:
            continue
        crop = picture.rgb[y0:y1, x0:x1]
        square = np.full((max(crop.shape[:2]),) * 2 + (3,), 40, np.uint8)
        oy, ox = (square.shape[0] - crop.shape[0]) // 2, (square.shape[1] - crop.shape[1]) // 2
        square[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
        crops.append((face, cv2.resize(square, (side, side), interpolation=cv2.INTER_AREA)))
    return crops


def jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    import cv2
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise PeopleError("a picture could not be encoded as JPEG")
    return encoded.tobytes()


def contact_sheet(store: Store, config: Config, person_id: int, out: str, limit: int = 48) -> int:
    """A JPEG of the person's best faces (crops with some room around), written atomically to `out`;
    returns how many faces it shows. Faces whose photo cannot be read now are left out."""
    faces = store.person_faces(person_id, limit)
    tiles = [crop for _, crop in face_crops(faces, config.processing.max_pixels, TILE)]
    if not tiles:
        raise PeopleError(f"none of person {person_id}'s photos can be read now")
    columns = min(COLUMNS, len(tiles))
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * TILE, columns * TILE, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] = tile
    encoded = jpeg(sheet, 90)
    write_atomically(out, encoded)
    return len(tiles)
