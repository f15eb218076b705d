"""`facewatch find --like PHOTO`: indexed photos with faces most like the faces of a photo."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from facewatch.config import Config
from facewatch.people.vectors import VectorFile, vector_file_path
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
    from facewatch.analysis.decode import DecodeError, Decodes, decode
    from facewatch.analysis.embed import embed_faces
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
        decodes = Decodes(data, config.processing.max_pixels, picture)
        faces = find_faces(detector, data, picture, config.processing.max_pixels, decodes)
        if not faces:
            raise PeopleError(f"{photo}: no face found in it")
        try:
            embedded = embed_faces(decodes, [f.bbox for f in faces])
        except (DecodeError, MemoryError) as exc:
            raise PeopleError(f"{photo}: {exc or 'not enough memory to decode it'}") from None
    vectors = [np.frombuffer(blob, "<f4") for blob, _ in embedded if blob]
    if not vectors:
        raise PeopleError(f"{photo}: its faces are too small or too blurred to recognise")
    return vectors


def like(store: Store, queries: list[np.ndarray], limit: int, exclude: str = "",
         vectors: Optional[VectorFile] = None) -> list[Match]:
    """Indexed photos whose faces are most like any of `queries`, best first, within LIKE_DISTANCE.
    The embeddings come from `vectors` (the file beside the index, brought up to date from the
    store); every face found there is looked up in the store, so a face gone since is not shown."""
    if vectors is None:
        vectors = VectorFile(vector_file_path(store.database)).update(store)
    face_ids, distances = vectors.nearest(np.stack(queries), LIKE_DISTANCE)
    now = store.faces_now(face_ids.tolist())  # {face id: (file id, person id)} of those still there
    best: dict[int, tuple[float, object]] = {}
    for face_id, d in zip(face_ids.tolist(), distances.tolist()):
        if face_id in now:
            file_id, person = now[face_id]
            if file_id not in best or d < best[file_id][0]:
                best[file_id] = (d, person)
    paths = store.paths_of(list(best))
    ranked = sorted((d, paths[f], p) for f, (d, p) in best.items() if f in paths and paths[f] != exclude)
    return [Match(path, d, p) for d, path, p in ranked[:limit]]
