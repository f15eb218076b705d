"""The people stage's queries and moving an index: plain SQL that both backends run, as a mixin of
SQLiteStore (and through it of PostgresStore), kept apart so each file stays readable."""
from __future__ import annotations

import os
from typing import Iterable, Iterator, Optional

from facewatch.store.contract import (FACES_PER_JOB, Embedded, FaceJob, FileRecord, IndexedFace, PeopleChanged,
                                      PeopleError, Person, PersonFace, group_jobs, iso, pick_person)
from facewatch.store.errors import StoreError


def _b(path: str) -> bytes:
    return os.fsencode(path)


def _s(blob: bytes) -> str:
    return os.fsdecode(bytes(blob))


class PeopleQueries:
    """Needs `_write()`, `_read()`, `_fresh_reader()`, `conn` and `display` from the store."""

    _LOCK_WAITING_FACES = ""  # one writer: the transaction is lock enough (PostgreSQL's locks the rows)

    # the people stage --------------------------------------------------------------------------
    def claim_faces(self, claimant: str, limit: int, now: float, lease_s: float,
                    embedded: bool = False) -> list[FaceJob]:
        """Lease waiting faces of done files: embedded ones to place (`limit` faces, a job per
        file), or those of `limit` jobs to embed (FACES_PER_JOB at most per job)."""
        with self._write() as c:
            rows = c.execute(
                "SELECT x.face_id, x.file_id, x.x, x.y, x.w, x.h, x.embed_attempts FROM faces x "
                "JOIN files f ON f.file_id = x.file_id AND f.status = 'done' "
                "WHERE x.embed_state = 'waiting' AND x.embed_claimed_by IS NULL AND x.embed_not_before <= ? "
                f"AND x.embedding IS {'NOT ' if embedded else ''}NULL "
                f"ORDER BY x.face_id LIMIT ?{self._LOCK_WAITING_FACES}",
                (now, limit if embedded else limit * FACES_PER_JOB)).fetchall()
            jobs = group_jobs(rows, len(rows), per_job=len(rows)) if embedded else group_jobs(rows, limit)
            leased = [(claimant, now + lease_s, face_id) for job in jobs for face_id, _ in job[1]]
            c.executemany("UPDATE faces SET embed_claimed_by=?, embed_claimed_until=? WHERE face_id=?", leased)
            files = {r[0]: (_s(r[1]), r[2]) for job in jobs for r in c.execute(
                "SELECT file_id, path, content_hash FROM files WHERE file_id=?", (job[0],))}
            vectors, names = {}, {}
            ids = [face_id for job in jobs for face_id, _ in job[1]]
            for chunk in range(0, len(ids), 500):
                part = ids[chunk:chunk + 500]
                for face_id, blob, name in c.execute(f"SELECT face_id, embedding, xmp_name FROM faces "
                                                     f"WHERE face_id IN ({','.join('?' * len(part))})", part):
                    vectors[face_id], names[face_id] = (bytes(blob) if blob is not None else None), name
        return [FaceJob(file_id, *files[file_id], tuple(faces), attempts,
                        tuple(vectors[face_id] for face_id, _ in faces) if embedded else (),
                        tuple(names[face_id] for face_id, _ in faces))
                for file_id, faces, attempts in jobs]

    def faces_ready(self, now: float) -> tuple[int, Optional[float]]:
        ready, later = self.conn.execute(
            "SELECT count(*) FILTER (WHERE x.embed_not_before <= ?), min(x.embed_not_before) "
            "FILTER (WHERE x.embed_not_before > ?) FROM faces x JOIN files f ON f.file_id = x.file_id "
            "AND f.status = 'done' WHERE x.embed_state = 'waiting' AND x.embed_claimed_by IS NULL",
            (now, now)).fetchone()
        return ready, later

    def people_version(self) -> int:
        return self.conn.execute("SELECT version FROM people_meta").fetchone()[0]

    def indexed_faces(self, after_face_id: int = 0) -> Iterator[IndexedFace]:
        conn = self._fresh_reader()
        try:
            for row in conn.execute("SELECT face_id, file_id, person_id, embedding FROM faces "
                                    "WHERE embed_state = 'done' AND face_id > ? ORDER BY face_id", (after_face_id,)):
                yield IndexedFace(row[0], row[1], row[2], bytes(row[3]))
        finally:
            conn.close()

    def embedding_marks(self) -> tuple[int, Optional[int], int]:
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM faces WHERE embed_state = 'done'), "
            "(SELECT min(face_id) FROM faces WHERE embed_state = 'waiting'), "
            "(SELECT coalesce(max(face_id), 0) FROM faces)").fetchone()
        return row[0], row[1], row[2]

    def faces_now(self, face_ids: list[int]) -> dict[int, tuple]:
        found = {}
        for chunk in range(0, len(face_ids), 500):
            ids = face_ids[chunk:chunk + 500]
            found.update((r[0], (r[1], r[2])) for r in self.conn.execute(
                f"SELECT face_id, file_id, person_id FROM faces WHERE face_id IN ({','.join('?' * len(ids))})", ids))
        return found

    def persons_in_file(self, file_id: int) -> set[int]:
        return {r[0] for r in self.conn.execute(
            "SELECT person_id FROM faces WHERE file_id=? AND person_id IS NOT NULL", (file_id,))}

    def rejections(self) -> list[tuple[int, int, bytes]]:
        return [(r[0], r[1], bytes(r[2])) for r in self.conn.execute(
            "SELECT person_id, face_id, embedding FROM person_rejections ORDER BY person_id, face_id")]

    def save_embeddings(self, claimant: str, outcomes: list[Embedded], placements: dict[int, int],
                        now: float, version: int, names: Optional[dict] = None,
                        conflicts: tuple = ()) -> dict[int, int]:
        created: dict[int, int] = {}
        with self._write() as c:
            if c.execute("SELECT version FROM people_meta").fetchone()[0] != version:
                raise PeopleChanged()
            owned = {r[0] for o in outcomes for r in c.execute(
                "SELECT face_id FROM faces WHERE face_id=? AND embed_claimed_by=?", (o.face_id, claimant))}
            for o in outcomes:
                if o.face_id not in owned:
                    continue
                if o.kind == "done":
                    c.execute("UPDATE faces SET embedding=?, embed_state='done', embed_error=NULL, "
                              "embed_claimed_by=NULL, embed_claimed_until=NULL WHERE face_id=?",
                              (o.embedding, o.face_id))
                elif o.kind == "failed":
                    c.execute("UPDATE faces SET embed_state='failed', embed_error=?, embed_claimed_by=NULL, "
                              "embed_claimed_until=NULL WHERE face_id=?", (o.error, o.face_id))
                else:  # retry, stale: wait (a stale face is replaced by the file's new detection)
                    c.execute("UPDATE faces SET embed_error=?, embed_attempts=embed_attempts+?, "
                              "embed_not_before=?, embed_claimed_by=NULL, embed_claimed_until=NULL WHERE face_id=?",
                              (o.error, int(o.kind == "retry"), now + o.retry_after_s, o.face_id))
            for face_id, person in sorted(placements.items()):
                if face_id not in owned and not c.execute(
                        "SELECT 1 FROM faces WHERE face_id=? AND embed_state='done'", (face_id,)).fetchone():
                    continue  # its lease was lost, or it is gone
                if person < 0 and person not in created:
                    created[person] = c.execute("INSERT INTO persons (created_at) VALUES (?)",
                                                (iso(now),)).lastrowid
                c.execute("UPDATE faces SET person_id=? WHERE face_id=?", (created.get(person, person), face_id))
            for person, name in (names or {}).items():  # from XMP: never over a name a person has
                if created.get(person, person) > 0:
                    c.execute("UPDATE persons SET name=? WHERE person_id=? AND name IS NULL",
                              (name, created.get(person, person)))
            for face_id, person, name in conflicts:
                if face_id in owned and created.get(person, person) > 0:
                    c.execute("DELETE FROM person_conflicts WHERE face_id=?", (face_id,))
                    c.execute("INSERT INTO person_conflicts (face_id, person_id, name) VALUES (?, ?, ?)",
                              (face_id, created.get(person, person), name))
        return created

    def hide_person(self, person_id: int, hidden: bool = True) -> None:
        with self._write() as c:
            if not c.execute("UPDATE persons SET hidden=? WHERE person_id=?", (int(hidden), person_id)).rowcount:
                raise PeopleError(f"there is no person {person_id}: `facewatch people` lists them")

    def face(self, face_id: int) -> Optional[PersonFace]:
        row = self.conn.execute(
            "SELECT x.face_id, f.path, x.idx, x.score, x.x, x.y, x.w, x.h, x.file_id FROM faces x "
            "JOIN files f USING (file_id) WHERE x.face_id = ?", (face_id,)).fetchone()
        return None if row is None else PersonFace(row[0], _s(row[1]), row[2], row[3], tuple(row[4:8]), row[8])

    def file_by_id(self, file_id: int) -> Optional[FileRecord]:
        row = self.conn.execute("SELECT path FROM files WHERE file_id = ?", (file_id,)).fetchone()
        return None if row is None else self.file_record(_s(row[0]))

    def named_persons(self) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in self.conn.execute(
            "SELECT person_id, name FROM persons WHERE name IS NOT NULL ORDER BY person_id")]

    def conflicts(self) -> list[tuple]:
        return [(r[0], r[1], _s(r[2]), r[3]) for r in self.conn.execute(
            "SELECT c.person_id, c.name, f.path, x.idx FROM person_conflicts c JOIN faces x ON x.face_id = c.face_id "
            "JOIN files f ON f.file_id = x.file_id ORDER BY c.person_id, f.path, x.idx")]

    def sidecars_due(self, limit: int, placed_only: bool = False) -> list[tuple[int, Optional[str]]]:
        waiting = ("AND NOT EXISTS (SELECT 1 FROM faces x WHERE x.file_id = d.file_id AND x.embed_state = 'waiting') "
                   if placed_only else "")
        return [(r[0], None if r[1] is None else _s(r[1])) for r in self.conn.execute(
            "SELECT d.file_id, f.path FROM sidecars_due d LEFT JOIN files f ON f.file_id = d.file_id "
            f"WHERE 1 = 1 {waiting}ORDER BY d.file_id LIMIT ?", (limit,))]

    def sidecars_written(self, file_ids: list[int]) -> None:
        with self._write() as c:
            for chunk in range(0, len(file_ids), 500):
                part = file_ids[chunk:chunk + 500]
                c.execute(f"DELETE FROM sidecars_due WHERE file_id IN ({','.join('?' * len(part))})", part)

    def forget_sidecars_due(self) -> int:
        with self._write() as c:
            return c.execute("DELETE FROM sidecars_due").rowcount

    def release_faces(self, claimant: str) -> int:
        with self._write() as c:
            return c.execute("UPDATE faces SET embed_claimed_by=NULL, embed_claimed_until=NULL "
                             "WHERE embed_claimed_by=?", (claimant,)).rowcount

    def persons(self) -> list[Person]:
        with self._read() as c:
            counts = {r[0]: r[1:] for r in c.execute(
                "SELECT person_id, count(*), count(DISTINCT file_id), max(w * h * score) FROM faces "
                "INDEXED BY faces_person WHERE person_id IS NOT NULL GROUP BY person_id")}
            names, hidden = {}, set()
            for pid, name, hide in c.execute("SELECT person_id, name, hidden FROM persons"):
                names[pid] = name
                if hide:
                    hidden.add(pid)
            # the cover: the photo of its largest, surest face (the first such face, if several)
            best = [(pid, n[2]) for pid, n in counts.items()]
            covers = {}
            for pid, size in best:
                row = c.execute("SELECT f.path, x.face_id FROM faces x INDEXED BY faces_person JOIN files f "
                                "USING (file_id) WHERE x.person_id = ? AND x.w * x.h * x.score = ? "
                                "ORDER BY x.file_id LIMIT 1", (pid, size)).fetchone()
                covers[pid] = (_s(row[0]), row[1]) if row else (None, None)
        people = [Person(pid, names.get(pid), n[0], n[1], *covers.get(pid, (None, None)), pid in hidden)
                  for pid, n in counts.items() if pid in names]
        people += [Person(pid, name, 0, 0, None, None, pid in hidden) for pid, name in names.items()
                   if name is not None and pid not in counts]
        return sorted(people, key=lambda p: (-p.faces, p.person_id))

    def person(self, id_or_name: str) -> Person:
        people = self.persons()
        return pick_person(people, id_or_name)

    def person_faces(self, person_id: int, limit: Optional[int] = None) -> list[PersonFace]:
        rows = self.conn.execute(
            "SELECT x.face_id, f.path, x.idx, x.score, x.x, x.y, x.w, x.h, x.file_id FROM faces x JOIN files f USING (file_id) "
            "WHERE x.person_id = ? AND f.status = 'done' ORDER BY x.w * x.h * x.score DESC, x.face_id LIMIT ?",
            (person_id, 2 ** 62 if limit is None else limit)).fetchall()
        return [PersonFace(r[0], _s(r[1]), r[2], r[3], tuple(r[4:8]), r[8]) for r in rows]

    def person_photos(self, person_id: int) -> list[str]:
        return [_s(r[0]) for r in self.conn.execute(
            "SELECT f.path FROM files f WHERE f.status = 'done' AND EXISTS (SELECT 1 FROM faces x "
            "WHERE x.file_id = f.file_id AND x.person_id = ?) ORDER BY f.path", (person_id,))]

    def paths_of(self, file_ids: list[int]) -> dict[int, str]:
        found = {}
        for chunk in range(0, len(file_ids), 500):
            ids = file_ids[chunk:chunk + 500]
            found.update((r[0], _s(r[1])) for r in self.conn.execute(
                f"SELECT file_id, path FROM files WHERE status = 'done' AND file_id IN ({','.join('?' * len(ids))})",
                ids))
        return found

    def name_person(self, person_id: int, name: Optional[str]) -> None:
        with self._write() as c:
            if not c.execute("UPDATE persons SET name=? WHERE person_id=?", (name, person_id)).rowcount:
                raise PeopleError(f"there is no person {person_id}: `facewatch people` lists them")
            c.execute("UPDATE people_meta SET version = version + 1")

    def merge_persons(self, person_id: int, into_id: int) -> int:
        if person_id == into_id:
            raise PeopleError(f"person {person_id} cannot be merged into itself")
        with self._write() as c:
            for pid in (person_id, into_id):
                if not c.execute("SELECT 1 FROM persons WHERE person_id=?", (pid,)).fetchone():
                    raise PeopleError(f"there is no person {pid}: `facewatch people` lists them")
            both = [_s(r[0]) for r in c.execute(
                "SELECT f.path FROM files f WHERE EXISTS (SELECT 1 FROM faces a WHERE a.file_id = f.file_id AND "
                "a.person_id = ?) AND EXISTS (SELECT 1 FROM faces b WHERE b.file_id = f.file_id AND b.person_id = ?) "
                "ORDER BY f.path LIMIT 3", (person_id, into_id))]
            if both:
                raise PeopleError(f"persons {person_id} and {into_id} are both in {', '.join(both)}: two faces of "
                                  "one photo are two people (take the wrong face out with `facewatch people "
                                  "unassign PATH FACE_INDEX` first)")
            moved = c.execute("UPDATE faces SET person_id=? WHERE person_id=?", (into_id, person_id)).rowcount
            c.execute("UPDATE person_rejections SET person_id=? WHERE person_id=?", (into_id, person_id))
            name, into_name = (c.execute("SELECT name FROM persons WHERE person_id=?", (pid,)).fetchone()[0]
                               for pid in (person_id, into_id))
            if into_name is None and name is not None:
                c.execute("UPDATE persons SET name=? WHERE person_id=?", (name, into_id))
            c.execute("DELETE FROM persons WHERE person_id=?", (person_id,))
            c.execute("UPDATE people_meta SET version = version + 1")
        return moved

    def unassign_face(self, path: str, index: int) -> int:
        with self._write() as c:
            row = c.execute("SELECT x.face_id, x.person_id, x.embedding FROM faces x JOIN files f USING (file_id) "
                            "WHERE f.path=? AND x.idx=?", (_b(path), index)).fetchone()
            if row is None:
                raise PeopleError(f"{path} has no face {index} in the index (faces are numbered from 0, as "
                                  "`facewatch export` lists them)")
            face_id, person_id, embedding = row
            if person_id is None:
                raise PeopleError(f"face {index} of {path} is in no person")
            c.execute("INSERT INTO person_rejections (person_id, face_id, embedding) VALUES (?, ?, ?)",
                      (person_id, face_id, embedding))
            c.execute("UPDATE faces SET person_id=NULL WHERE face_id=?", (face_id,))
            c.execute("UPDATE people_meta SET version = version + 1")
        return person_id

    # moving an index ----------------------------------------------------------------------------
    def dump(self, table: str, columns: list[str]) -> Iterator[tuple]:
        """Every row of `table` (one of COPIED), in key order, from one snapshot."""
        conn = self._fresh_reader()
        try:
            yield from conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {columns[0]}")
        finally:
            conn.close()

    def load(self, tables: Iterable[tuple[str, list[str], Iterable[tuple]]]) -> dict[str, int]:
        """Write the rows of each (table, columns, rows), ids kept, in one transaction into an empty
        index; returns the rows written per table."""
        written = {}
        with self._write() as c:
            if c.execute("SELECT (SELECT count(*) FROM files) + (SELECT count(*) FROM checkpoints)").fetchone()[0]:
                raise StoreError(f"the database {self.display} is not empty: copy into a new one")
            for table, columns, rows in tables:
                sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
                written[table] = 0
                chunk = []
                for row in rows:
                    chunk.append(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row))
                    if len(chunk) >= 1000:
                        c.executemany(sql, chunk)
                        written[table] += len(chunk)
                        chunk = []
                c.executemany(sql, chunk)
                written[table] += len(chunk)
            c.execute("UPDATE people_meta SET version = version + 1")
            self._after_load(c)
        return written

    def _after_load(self, c) -> None:
        """What the backend needs after rows came in with their ids (SQLite: nothing)."""

    def count_rows(self, table: str) -> int:
        return self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
