"""Face embeddings as the store keeps them (DIMENSIONS little-endian float32, 512 bytes), and a
copy of every embedded face's vector in a file beside the index, for searches over all of them.

`find --like` compares a photo's faces with every embedded face. Read from the database, a
million embeddings take seconds (a row and a blob each); read from this file (a memory map) they
take a fraction of one. The file is never the source of truth: it holds the vectors of faces
the database held when it was last brought up to date, is brought up to date from the database
before every use (the faces embedded since), and every face it names is checked against the
database before it is shown (a face deleted since is not). A missing, damaged or mostly stale
file is rebuilt from the database. Face ids are never reused (the store's migration 0006), so a
face id names one vector for good.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional

import numpy as np

from facewatch import cache_folder
from facewatch.store import DIMENSIONS, is_url

MAGIC = b"FWVECS01"
HEADER = 64  # bytes: MAGIC, the watermark, then room
RECORD = np.dtype([("face_id", "<i8"), ("vector", "<f4", (DIMENSIONS,))])


def vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


def vector_file_path(database: str) -> Path:
    """Beside an SQLite index (`facewatch.db.vectors`); for a PostgreSQL one, in this user's cache
    (each host keeps its own)."""
    if not is_url(database):
        return Path(database + ".vectors")
    return cache_folder() / (hashlib.sha256(database.encode()).hexdigest()[:16] + ".vectors")


class VectorFile:
    """The vectors of the embedded faces, up to date with the store: `ids` and `vectors`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.ids = np.zeros(0, np.int64)
        self.vectors = np.zeros((0, DIMENSIONS), np.float32)
        self.watermark = 0  # every face embedded with an id up to this is in the file
        self.rebuilt = False

    def update(self, store) -> "VectorFile":
        """Read the file, add what the store embedded since, and save it when it can be written."""
        done, first_waiting, last_id = store.embedding_marks()
        records = self._read()
        if records is None or len(records) > 2 * done + 10_000:  # absent, damaged, or mostly faces gone since
            records, self.watermark, self.rebuilt = np.zeros(0, RECORD), 0, True
        known = set(records["face_id"][records["face_id"] > self.watermark].tolist())
        new = [(f.face_id, vector(f.embedding)) for f in store.indexed_faces(self.watermark)
               if f.face_id not in known]
        added = np.zeros(len(new), RECORD)
        if new:
            added["face_id"] = [face_id for face_id, _ in new]
            added["vector"] = np.stack([v for _, v in new])
        # faces still waiting may be embedded later: the watermark stays below the first of them
        watermark = last_id if first_waiting is None else min(last_id, first_waiting - 1)
        self._save(records, added, max(watermark, self.watermark))
        everything = np.concatenate([np.asarray(records), added]) if new else records
        self.ids, self.vectors = everything["face_id"], everything["vector"]
        return self

    def _read(self) -> Optional[np.ndarray]:
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                header = f.read(HEADER)
        except OSError:
            return None
        if len(header) < HEADER or header[:8] != MAGIC or (size - HEADER) % RECORD.itemsize:
            return None
        self.watermark = int.from_bytes(header[8:16], "little")
        if size == HEADER:
            return np.zeros(0, RECORD)
        return np.memmap(self.path, RECORD, "r", offset=HEADER)

    def _save(self, records: np.ndarray, added: np.ndarray, watermark: int) -> None:
        """Append the new records, then the watermark (a crash between leaves a watermark that
        under-promises: the next update finds those faces again and skips them). A file that
        cannot be written is not an error: the search works from memory."""
        try:
            if self.rebuilt or not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
                with open(tmp, "wb") as f:
                    f.write(MAGIC + watermark.to_bytes(8, "little") + bytes(HEADER - 16))
                    f.write(added.tobytes())
                os.replace(tmp, self.path)
            else:
                with open(self.path, "r+b") as f:
                    f.seek(0, os.SEEK_END)
                    f.write(added.tobytes())
                    f.flush()
                    f.seek(8)
                    f.write(watermark.to_bytes(8, "little"))
            self.watermark = watermark
        except OSError:
            pass

    def nearest(self, queries: np.ndarray, limit: float, block: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
        """(face ids, distances) of the faces closer than `limit` to any of `queries`, each with
        its distance to the nearest query."""
        queries = np.asarray(queries, np.float32)
        q_norms = np.einsum("ij,ij->i", queries, queries)
        found_ids, found_d = [], []
        for begin in range(0, len(self.ids), block):
            v = np.asarray(self.vectors[begin:begin + block])
            squared = np.einsum("ij,ij->i", v, v)[:, None] + q_norms[None, :] - 2.0 * (v @ queries.T)
            nearest = squared.min(axis=1)
            close = np.flatnonzero(nearest < limit * limit)
            found_ids.append(np.asarray(self.ids[begin:begin + block])[close])
            found_d.append(np.sqrt(np.maximum(nearest[close], 0)))
        if not found_ids:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate(found_ids), np.concatenate(found_d)
