"""People: faces join people as their embeddings arrive, incrementally, as Immich's do.

How a new face is placed (in face id order, so the same faces in the same order give the same people):
1. Its neighbours: embedded faces of other photos closer than `MATCH_DISTANCE` (Euclidean, dlib's
   128-D space, where 0.6 is dlib's own same-person threshold), the nearest `NEIGHBOURS` of them.
2. It joins the person most of those neighbours belong to (ties: the nearest), unless that
   person is already in its photo (two faces of one photo are two people) or a user took this
   face, or one just like it, out of that person.
3. Otherwise, if it and its unplaced neighbours are at least `MIN_FACES` faces of as many
   photos, they become a new person. Otherwise it waits, alone, for a neighbour to arrive.

Placed faces are never moved again by the stage: names, merges and corrections are the user's and
stay. The embeddings live in memory (numpy, brute force: bench/people.py measures it at 100,000
and 1,000,000 faces); the database has the last word on every neighbour before a face joins it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import structlog

from facewatch.people.vectors import DIMENSIONS, vector
from facewatch.store import Embedded, PeopleChanged, Store, StoreError

log = structlog.get_logger("facewatch.people.stage")

MATCH_DISTANCE = 0.5  # measured on real labelled faces: bench/people.py
MIN_FACES = 2
NEIGHBOURS = 16
SAME_FACE = 0.15  # closer than this to a face a user took out of a person: the same face, found again
NO_PERSON = -1  # in the index: a face in no person
BLOCK = 16384  # rows of the index measured against a batch of new faces in one matrix product


@dataclass
class Placed:
    """What placing a batch decided: {face id: person id}, {person id: name from XMP}, and
    (face id, person id, name) of faces their XMP names otherwise than the person they look like."""
    placements: dict
    names: dict
    conflicts: list


class _Names:
    """Named people, by name (case-insensitive; a name several people have names none) and by id."""

    def __init__(self, named: list[tuple[int, str]]):
        self.by_id = dict(named)
        counts: dict[str, list] = {}
        for person, name in named:
            counts.setdefault(name.casefold(), []).append(person)
        self.by_name = {key: ids[0] for key, ids in counts.items() if len(ids) == 1}

    def person(self, name: str) -> Optional[int]:
        return self.by_name.get(name.casefold())

    def name(self, person: int) -> Optional[str]:
        return self.by_id.get(person)

    def add(self, person: int, name: str) -> None:
        self.by_id[person] = name
        self.by_name.setdefault(name.casefold(), person)


class PeopleIndex:
    """Every embedded face, in memory: where new faces find their neighbours."""

    def __init__(self, store: Store, match_distance: float = MATCH_DISTANCE, min_faces: int = MIN_FACES):
        self.store = store
        self.match_distance = match_distance
        self.min_faces = min_faces
        self.version = -1
        self.last_face_id = 0
        self.count = 0
        self.ids = np.zeros(0, np.int64)
        self.files = np.zeros(0, np.int64)
        self.persons = np.zeros(0, np.int64)  # NO_PERSON, a person's id, or a person to create (< -1)
        self.vectors = np.zeros((0, DIMENSIONS), np.float32)
        self.norms = np.zeros(0, np.float32)
        self.alive = np.zeros(0, bool)
        self.row_of: dict[int, int] = {}
        self.rejected: list[tuple[int, int, np.ndarray]] = []

    # keeping up with the database -----------------------------------------------------------------
    def refresh(self) -> None:
        """Take in faces embedded elsewhere (copies of photos, another daemon) and users' changes."""
        version = self.store.people_version()
        if version != self.version:
            self.reload()
            return
        for face in self.store.indexed_faces(self.last_face_id):
            self._add(face.face_id, face.file_id, face.person_id, vector(face.embedding))

    def reload(self) -> None:
        self.version = self.store.people_version()
        self.count, self.last_face_id = 0, 0
        self.row_of.clear()
        for face in self.store.indexed_faces(0):
            self._add(face.face_id, face.file_id, face.person_id, vector(face.embedding))
        self.rejected = [(person, face_id, vector(blob)) for person, face_id, blob in self.store.rejections()]

    def _add(self, face_id: int, file_id: int, person_id: Optional[int], embedding: np.ndarray) -> None:
        if face_id in self.row_of:  # placed by us already, or its person changed: take the database's word
            self.persons[self.row_of[face_id]] = NO_PERSON if person_id is None else person_id
            return
        if self.count == len(self.ids):
            self._grow(max(1024, 2 * len(self.ids)))
        row = self.count
        self.ids[row], self.files[row] = face_id, file_id
        self.persons[row] = NO_PERSON if person_id is None else person_id
        self.vectors[row] = embedding
        self.norms[row] = float(embedding @ embedding)
        self.alive[row] = True
        self.row_of[face_id] = row
        self.count += 1
        self.last_face_id = max(self.last_face_id, face_id)

    def _grow(self, size: int) -> None:
        def grown(a, shape):
            b = np.zeros(shape, a.dtype)
            b[:len(a)] = a
            return b
        self.ids, self.files, self.persons = (grown(a, size) for a in (self.ids, self.files, self.persons))
        self.norms, self.alive = grown(self.norms, size), grown(self.alive, size)
        self.vectors = grown(self.vectors, (size, DIMENSIONS))

    # placing faces -----------------------------------------------------------------------------
    def neighbours(self, embedding: np.ndarray, limit: float, exclude_file: Optional[int] = None,
                   k: int = NEIGHBOURS, measured: Optional[tuple] = None, start: int = 0) -> list[tuple[float, int]]:
        """(distance, row) of the `k` nearest live faces closer than `limit`, nearest first.
        `measured`: (rows, squared distances) of the faces closer than `limit` among the first
        `start` rows, measured already (`close_rows`, for a batch at once)."""
        n = self.count
        rows, squared = measured if measured is not None else (np.zeros(0, np.int64), np.zeros(0, np.float32))
        if n > start:
            rest = self.norms[start:n] + float(embedding @ embedding) - 2.0 * (self.vectors[start:n] @ embedding)
            close = np.flatnonzero(rest < limit * limit)
            rows, squared = np.concatenate([rows, close + start]), np.concatenate([squared, rest[close]])
        keep = self.alive[rows]
        if exclude_file is not None:
            keep &= self.files[rows] != exclude_file
        rows, squared = rows[keep], squared[keep]
        if len(rows) > k:
            nearest = np.argpartition(squared, k)[:k]
            rows, squared = rows[nearest], squared[nearest]
        return sorted(zip(np.sqrt(np.maximum(squared, 0)).tolist(), rows.tolist()))

    def close_rows(self, embeddings: np.ndarray, limit: float, upto: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each of `embeddings`, (rows, squared distances) of the faces closer than `limit`
        among the first `upto` rows: one matrix product per block of the index for the whole
        batch, rather than a pass over every embedding for each face."""
        norms = np.einsum("ij,ij->i", embeddings, embeddings)
        found: list = [([], []) for _ in range(len(embeddings))]
        for begin in range(0, upto, BLOCK):
            end = min(begin + BLOCK, upto)
            squared = self.norms[begin:end] + norms[:, None] - 2.0 * (embeddings @ self.vectors[begin:end].T)
            faces, rows = np.nonzero(squared < limit * limit)
            for face, row in zip(faces.tolist(), rows.tolist()):
                found[face][0].append(begin + row)
                found[face][1].append(squared[face, row])
        return [(np.array(rows, np.int64), np.array(values, np.float32)) for rows, values in found]

    def _verify(self, rows: list[int], since: int) -> None:
        """The database's word on these faces: gone ones leave the index, moved ones follow. Rows
        from `since` on were placed by this batch, which the database does not hold yet: kept."""
        rows = [r for r in rows if r < since]
        now = self.store.faces_now([int(self.ids[r]) for r in rows])
        for r in rows:
            found = now.get(int(self.ids[r]))
            if found is None:
                self.alive[r] = False
            else:
                self.files[r] = found[0]
                self.persons[r] = NO_PERSON if found[1] is None else found[1]

    def _rejects(self, face_id: int, embedding: np.ndarray) -> set[int]:
        return {person for person, rejected_id, v in self.rejected
                if rejected_id == face_id or float(np.linalg.norm(v - embedding)) < SAME_FACE}

    def place(self, faces: list[tuple]) -> Placed:
        """Place new faces (face id, file id, person id carried over or None, embedding[, the name its
        XMP gives it]), adding them to the index. Negative person ids are people to create."""
        placed = Placed({}, {}, [])
        in_file: dict[int, set] = {}  # persons placed in each file by this batch
        self._new_person = NO_PERSON  # people to create are -2, -3, ...
        faces = sorted(faces, key=lambda f: f[0])
        named = _Names(self.store.named_persons()) if any(len(f) > 4 and f[4] for f in faces) else None
        start = self.count  # the faces indexed before this batch are measured against it at once
        measured = self.close_rows(np.stack([f[3] for f in faces]).astype(np.float32), self.match_distance, start) \
            if faces and start else [None] * len(faces)
        for face, seen in zip(faces, measured):
            face_id, file_id, carried, embedding = face[:4]
            name = face[4] if len(face) > 4 else None
            if carried is not None:  # an edited photo's face, found where a placed face was
                self._add(face_id, file_id, carried, embedding)
                continue
            near = self.neighbours(embedding, self.match_distance, exclude_file=file_id, measured=seen,
                                   start=start if seen is not None else 0)
            self._verify([r for _, r in near], since=start)
            near = [(d, r) for d, r in near if self.alive[r] and self.files[r] != file_id]
            taken = self.store.persons_in_file(file_id) | in_file.get(file_id, set())
            refused = taken | self._rejects(face_id, embedding)
            votes: dict[int, tuple[int, float]] = {}
            for d, r in near:
                person = int(self.persons[r])
                if person != NO_PERSON and person not in refused:
                    count, nearest = votes.get(person, (0, d))
                    votes[person] = (count + 1, min(nearest, d))
            voted = min(votes, key=lambda p: (-votes[p][0], votes[p][1], p)) if votes else None
            group: list = []  # the unplaced neighbours (of other photos) that join a person made now
            if name:
                person = self._named(face_id, name, voted, refused, named, placed)
                if person < NO_PERSON:
                    group = self._unplaced(near, file_id)
            elif voted is not None:
                person = voted
            else:
                group = self._unplaced(near, file_id)
                if 1 + len(group) < self.min_faces:
                    self._add(face_id, file_id, None, embedding)
                    continue
                person = self._create()
            for r in group:
                placed.placements[int(self.ids[r])] = person
                self.persons[r] = person
                in_file.setdefault(int(self.files[r]), set()).add(person)
            placed.placements[face_id] = person
            in_file.setdefault(file_id, set()).add(person)
            self._add(face_id, file_id, person, embedding)
        return placed

    def _unplaced(self, near: list, file_id: int) -> list[int]:
        """Rows of the faces among `near` in no person, one per photo, none of `file_id`'s."""
        group, files = [], {file_id}
        for _, r in near:
            if self.persons[r] == NO_PERSON and int(self.files[r]) not in files:
                group.append(r)
                files.add(int(self.files[r]))
        return group

    def _create(self) -> int:
        self._new_person -= 1
        return self._new_person

    def _named(self, face_id: int, name: str, voted: Optional[int], refused: set, named: "_Names",
               placed: "Placed") -> int:
        """The person of a face its XMP names: the person of that name; else the one it looks like,
        who takes the name if it has none; a person of another name never (a new person of this
        name, and the conflict is kept for `facewatch people`)."""
        existing = named.person(name)
        if existing is not None and existing not in refused:
            return existing
        if voted is not None:
            other = named.name(voted)
            if other is None:
                named.add(voted, name)
                placed.names[voted] = name
                return voted
            if other.casefold() == name.casefold():
                return voted
            placed.conflicts.append((face_id, voted, name))
        person = self._create()
        named.add(person, name)
        placed.names[person] = name
        return person

    def created(self, mapping: dict[int, int]) -> None:
        """The people `place` named by negative ids were created with these ids (those not created,
        their faces' leases lost, are no one's)."""
        persons = self.persons[:self.count]
        for temporary, real in mapping.items():
            persons[persons == temporary] = real
        persons[persons < NO_PERSON] = NO_PERSON


class PeopleStage:
    """Turns finished embedding jobs into saved embeddings and people, in one transaction each time."""

    LOAD_RETRY_S = 30.0

    def __init__(self, store: Store, index: Optional[PeopleIndex] = None):
        self.store = store
        self.index = index or PeopleIndex(store)
        self._loaded = threading.Event()
        self._loader: Optional[threading.Thread] = None
        self._failed_at = float("-inf")

    def ready(self) -> bool:
        """Whether the index is in memory. If not, it is loaded in a thread of its own (a million
        faces take 15 s here), so detection never waits for it; no face is placed meanwhile."""
        if self._loaded.is_set():
            return True
        if (self._loader is None or not self._loader.is_alive()) and \
                time.monotonic() - self._failed_at > self.LOAD_RETRY_S:
            self._loader = threading.Thread(target=self._load, name="people-index", daemon=True)
            self._loader.start()
        return False

    def _load(self) -> None:
        started = time.monotonic()
        try:
            self.index.reload()
        except StoreError as exc:
            self._failed_at = time.monotonic()
            log.warning("people_index_not_loaded", error=str(exc), retry_in_s=self.LOAD_RETRY_S)
            return
        log.info("people_index_loaded", faces=self.index.count, seconds=round(time.monotonic() - started, 2))
        self._loaded.set()

    def save(self, claimant: str, jobs: list, outcomes: list[Embedded], now: float) -> int:
        """Place the faces embedded now and store everything; returns faces saved."""
        file_of = {face_id: job.file_id for job in jobs for face_id, _ in job.faces}
        name_of = {face_id: name for job in jobs for (face_id, _), name in zip(job.faces, job.names) if name}
        for attempt in range(3):
            self.index.refresh()
            # a face already in a person (an edited photo's, found where a placed face was) keeps it
            carried = {face_id: found[1] for face_id, found in self.store.faces_now(list(file_of)).items()
                       if found[1] is not None}
            new = [(o.face_id, file_of[o.face_id], carried.get(o.face_id), vector(o.embedding), name_of.get(o.face_id))
                   for o in outcomes if o.kind == "done"]
            placed = self.index.place(new)
            try:
                created = self.store.save_embeddings(claimant, outcomes, placed.placements, now, self.index.version,
                                                     placed.names, tuple(placed.conflicts))
            except PeopleChanged:
                log.info("people_changed_while_placing", attempt=attempt + 1)
                self.index.version = -1  # reload: a user named, merged or unassigned meanwhile
                continue
            except BaseException:
                self.index.version = -1  # what was placed in memory was not saved: start again from the database
                raise
            self.index.created(created)
            return len(outcomes)
        raise PeopleChanged()
