"""What `facewatch people sheet` and `facewatch find --like` do: the work behind the commands."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facewatch.config import Config
from facewatch.files import write_atomically
from facewatch.store import PeopleError, Store

TILE = 160  # pixels of one face on a contact sheet
COLUMNS = 8
LIKE_DISTANCE = 0.6  # dlib's own same-person threshold: a looser bar than placing faces needs


def face_crops(faces: list, max_pixels: int, side: int) -> list[tuple]:
    """(face, its crop: a square RGB array `side` wide, with some room around the face) of each
    face whose photo can be read now."""
    import cv2
    from facewatch.analyse import Unreadable, read_file
    from facewatch.decode import DecodeError
    from facewatch.embed import decode_for
    crops = []
    for face in faces:
        try:
            data, _ = read_file(face.path)
            picture = decode_for(data, max_pixels, [face.bbox])
        except (Unreadable, DecodeError, MemoryError):
            continue
        x, y, w, h = (v / picture.scale for v in face.bbox)
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


@dataclass(frozen=True)
class Match:
    path: str
    distance: float  # of its face most like one of the query's faces
    person_id: object

    def as_dict(self) -> dict:
        return {"path": self.path, "distance": round(self.distance, 4), "person": self.person_id}


def faces_in(config: Config, photo: str) -> list[np.ndarray]:
    """The embeddings of the faces in `photo`, a file that need not be in the index; PeopleError
    naming the file when it cannot be read or holds no face."""
    from facewatch.analyse import Unreadable, quiet_stderr, find_faces, read_file, without_matplotlib
    from facewatch.decode import DecodeError, decode
    from facewatch.embed import decode_for, embed
    from facewatch.vectors import vector
    without_matplotlib()
    from facewatch.detect import MediaPipeDetector
    try:
        data, _ = read_file(photo)
        picture = decode(data, config.processing.max_pixels, config.processing.min_decode_side)
    except Unreadable as exc:
        raise PeopleError(f"{photo}: {exc.error or 'no such file'}") from None
    except DecodeError as exc:
        raise PeopleError(f"{photo}: {exc}") from None
    d = config.detector
    with quiet_stderr():  # TensorFlow Lite greets stderr as it loads: not for a user's terminal
        detector = MediaPipeDetector(d.model, d.min_confidence, d.small_faces)
        faces = find_faces(detector, data, picture, config.processing.max_pixels)
    if not faces:
        raise PeopleError(f"{photo}: no face found in it")
    full = decode_for(data, config.processing.max_pixels, [f.bbox for f in faces])
    vectors = [vector(blob) for blob, _ in (embed(full, f.bbox) for f in faces) if blob]
    if not vectors:
        raise PeopleError(f"{photo}: its faces are too small or too blurred to recognise")
    return vectors


def like(store: Store, queries: list[np.ndarray], limit: int, exclude: str = "") -> list[Match]:
    """Indexed photos whose faces are most like any of `queries`, best first, within LIKE_DISTANCE."""
    best: dict[int, tuple[float, object]] = {}
    files, persons, chunk = [], [], []

    def flush():
        if not chunk:
            return
        matrix = np.stack(chunk)
        distances = np.min(np.linalg.norm(matrix[:, None, :] - np.stack(queries)[None], axis=2), axis=1)
        for file_id, person, d in zip(files, persons, distances.tolist()):
            if d < LIKE_DISTANCE and (file_id not in best or d < best[file_id][0]):
                best[file_id] = (d, person)
        files.clear(), persons.clear(), chunk.clear()

    from facewatch.vectors import vector
    for face in store.indexed_faces(0):
        files.append(face.file_id)
        persons.append(face.person_id)
        chunk.append(vector(face.embedding))
        if len(chunk) >= 65536:
            flush()
    flush()
    paths = store.paths_of(list(best))
    ranked = sorted((d, paths[f], p) for f, (d, p) in best.items() if f in paths and paths[f] != exclude)
    return [Match(path, d, p) for d, path, p in ranked[:limit]]
