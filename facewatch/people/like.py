"""`facewatch find --like PHOTO`: indexed photos with faces most like the faces of a photo."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facewatch.config import Config
from facewatch.store import PeopleError, Store

LIKE_DISTANCE = 0.6  # dlib's own same-person threshold: a looser bar than placing faces needs


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
    from facewatch.analysis.analyse import Unreadable, quiet_stderr, read_file, without_matplotlib
    from facewatch.analysis.faces import find_faces
    from facewatch.analysis.decode import DecodeError, decode
    from facewatch.analysis.embed import decode_for, embed
    from facewatch.people.vectors import vector
    without_matplotlib()
    from facewatch.analysis.detect import MediaPipeDetector
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

    from facewatch.people.vectors import vector
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
