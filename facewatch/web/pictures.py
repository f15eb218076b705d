"""Pictures for the web interface, made once per content and kept in the cache folder: a photo's
thumbnail and large picture (the gallery's, from the same reduced decode, named by the content's
hash) and face crops (named by face and content). Only files of the index are ever read: a
request names a file or face id, never a path."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Optional

from facewatch.people.crops import face_crops, jpeg
from facewatch.results.gallery import make_pictures, thumb_name
from facewatch.store import FileRecord, PersonFace

CROP = 160  # pixels across a face crop


class Pictures:
    def __init__(self, folder: Path, max_pixels: int):
        self.folder = Path(folder)
        self.max_pixels = max_pixels
        for kind in ("thumbs", "large", "crops"):
            (self.folder / kind).mkdir(parents=True, exist_ok=True)

    def photo(self, record: FileRecord, kind: str) -> Optional[Path]:
        """The thumbnail ("thumbs") or large picture ("large") of an indexed photo, made if need be;
        None when the photo cannot be read now."""
        name = thumb_name(record)
        if name is None:
            return None
        path = self.folder / kind / name
        if not path.exists() and make_pictures(record, str(self.folder), self.max_pixels) is None:
            return None
        return path if path.exists() else None

    def crop(self, face: PersonFace, content_hash: Optional[str]) -> Optional[Path]:
        """A square crop of one face, made if need be; None when its photo cannot be read now."""
        path = self.folder / "crops" / f"{face.face_id}-{(content_hash or 'x').replace(':', '-')[:24]}.jpg"
        if path.exists():
            return path
        made = face_crops([face], self.max_pixels, CROP)
        if not made:
            return None
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # two requests at once
        tmp.write_bytes(jpeg(made[0][1]))
        tmp.replace(path)
        return path
