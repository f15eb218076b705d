"""How faces are placed in people (facewatch/people.py), on a real store, with embeddings chosen
so the expected people are plain: each 'person' is a point, each face a small step from it."""
import numpy as np

from facewatch.people.stage import PeopleIndex, PeopleStage
from facewatch.store import Embedded, Face, FileStat, Result, open_store

FACE = Face(0.9, (10, 10, 50, 50), ((1, 1),))
SECOND = Face(0.9, (200, 10, 50, 50), ((1, 1),))


def point(seed: int, jitter: float = 0.0, rng=None) -> np.ndarray:
    centre = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    centre *= 1.0 / np.linalg.norm(centre)  # people are about 1.4 apart, as dlib's are
    if jitter:
        step = rng.normal(size=128).astype(np.float32)
        centre = centre + step * (jitter / np.linalg.norm(step))
    return centre.astype("<f4")


def photos(store, faces_per_photo: list[int], now=1.0):
    """Detected photos with that many faces each; their face jobs, claimed."""
    paths = [f"/p/{i:03d}.jpg" for i in range(len(faces_per_photo))]
    store.enqueue([FileStat(p, 1, 1, 1) for p in paths], now)
    claims = store.claim("w", len(paths), now, 60)
    by_path = dict(zip(paths, faces_per_photo))
    store.save("w", [Result(c.file_id, "done", size=1, mtime_ns=1, ctime_ns=1, width=500, height=500,
                            content_hash=c.path, faces=(FACE, SECOND)[:by_path[c.path]]) for c in claims], now)
    return store.claim_faces("w", 1000, now, 60)


def embed_all(store, jobs, embedding_of):
    outcomes = [Embedded(f, "done", embedding=embedding_of(job, i).tobytes())
                for job in jobs for i, (f, _) in enumerate(job.faces)]
    PeopleStage(store).save("w", jobs, outcomes, now=2.0)


def people(store) -> dict:
    return {f.face_id: f.person_id for f in store.indexed_faces()}


def test_faces_of_one_person_join_one_person_and_strangers_stay_apart(tmp_path):
    store = open_store(str(tmp_path / "db"))
    rng = np.random.default_rng(0)
    jobs = photos(store, [1] * 30)
    who = {job.file_id: i % 3 for i, job in enumerate(jobs)}  # three people, ten photos each
    embed_all(store, jobs, lambda job, i: point(who[job.file_id], 0.2, rng))
    placed = people(store)
    groups = {}
    for job in jobs:
        groups.setdefault(who[job.file_id], set()).add(placed[job.faces[0][0]])
    assert all(len(g) == 1 and None not in g for g in groups.values())
    assert len({next(iter(g)) for g in groups.values()}) == 3


def test_two_faces_of_one_photo_are_never_one_person(tmp_path):
    store = open_store(str(tmp_path / "db"))
    rng = np.random.default_rng(1)
    jobs = photos(store, [2, 2, 2])  # twins: both faces of each photo alike
    embed_all(store, jobs, lambda job, i: point(7, 0.1, rng))
    by_file = {}
    for job in jobs:
        by_file.setdefault(job.file_id, []).extend(people(store)[f] for f, _ in job.faces)
    assert len(by_file) == 3
    for persons in by_file.values():
        assert len(persons) == 2 and persons[0] != persons[1]


def test_a_lone_face_waits_and_a_later_neighbour_makes_them_a_person(tmp_path):
    store = open_store(str(tmp_path / "db"))
    rng = np.random.default_rng(2)
    first = photos(store, [1])
    embed_all(store, first, lambda job, i: point(3, 0.2, rng))
    assert list(people(store).values()) == [None]
    store.enqueue([FileStat("/q/x.jpg", 1, 1, 1)], 3)
    (c,) = store.claim("w", 1, 3, 60)
    store.save("w", [Result(c.file_id, "done", size=1, mtime_ns=1, ctime_ns=1, width=9, height=9,
                            content_hash="x", faces=(FACE,))], 3)
    later = store.claim_faces("w", 10, 3, 60)
    embed_all(store, later, lambda job, i: point(3, 0.2, rng))
    persons = set(people(store).values())
    assert len(persons) == 1 and None not in persons


def test_a_face_taken_out_never_goes_back_even_found_again(tmp_path):
    store = open_store(str(tmp_path / "db"))
    rng = np.random.default_rng(3)
    jobs = photos(store, [1] * 4)
    embed_all(store, jobs, lambda job, i: point(5, 0.2, rng))
    (person,) = set(people(store).values())
    left = store.unassign_face("/p/000.jpg", 0)
    assert left == person
    # the same photo edited: new bytes, the face found again; it must not rejoin
    store.enqueue([FileStat("/p/000.jpg", 2, 2, 1)], 5)
    (c,) = store.claim("w", 1, 5, 60)
    store.save("w", [Result(c.file_id, "done", size=2, mtime_ns=2, ctime_ns=1, width=500, height=500,
                            content_hash="edited", faces=(FACE,))], 5)
    (job,) = store.claim_faces("w", 10, 5, 60)
    old = dict((r[1], np.frombuffer(r[2], "<f4")) for r in store.rejections())
    again = next(iter(old.values())) + np.float32(0.01)
    embed_all(store, [job], lambda job, i: again)
    assert people(store)[job.faces[0][0]] != person


def test_the_same_faces_in_the_same_order_give_the_same_people(tmp_path):
    results = []
    for run in range(2):
        store = open_store(str(tmp_path / f"db{run}"))
        rng = np.random.default_rng(4)
        jobs = photos(store, [1] * 24)
        embed_all(store, jobs, lambda job, i: point(job.file_id % 4, 0.25, rng))
        results.append(sorted(people(store).items()))
    assert results[0] == results[1]


def test_the_index_sees_users_changes_and_faces_gone(tmp_path):
    store = open_store(str(tmp_path / "db"))
    rng = np.random.default_rng(5)
    jobs = photos(store, [1] * 6)
    embed_all(store, jobs, lambda job, i: point(job.file_id % 2, 0.2, rng))
    a, b = sorted(set(people(store).values()))
    index = PeopleIndex(store)
    index.reload()
    store.merge_persons(b, a)
    index.refresh()  # the version moved: reloaded
    assert set(index.persons[:index.count].tolist()) == {a}


def test_a_batch_placed_at_once_gives_the_people_of_one_face_at_a_time(tmp_path):
    """The stage measures a batch of new faces against the index in one matrix product per block
    (BLOCK rows); placing them one at a time gives the same people, faces of two-face photos,
    lone faces and strangers included, with an index larger than one block."""
    import facewatch.people.stage as stage
    partitions = []
    for run, how in enumerate(("batch", "one at a time")):
        store = open_store(str(tmp_path / f"db{run}"))
        rng = np.random.default_rng(6)
        jobs = photos(store, [1, 2] * 45)  # 135 faces: 5 people, and a stranger every ninth face
        vectors = {}
        for job in jobs:
            for i, (face_id, _) in enumerate(job.faces):
                who = (job.file_id + 2 * i) % 5 if face_id % 9 else 100 + face_id
                vectors[face_id] = point(who, 0.25, rng)
        first, rest = jobs[:20], jobs[20:]
        embed_all(store, first, lambda job, i: vectors[job.faces[i][0]])
        old_block, old_close_rows = stage.BLOCK, PeopleIndex.close_rows
        stage.BLOCK = 7  # several blocks of the index, even this small
        if how == "one at a time":  # each face measured against the whole index by itself, as before batches
            PeopleIndex.close_rows = lambda self, embeddings, limit, upto: [None] * len(embeddings)
        try:
            for part in ([rest] if how == "batch" else [[job] for job in rest]):
                embed_all(store, part, lambda job, i: vectors[job.faces[i][0]])
        finally:
            stage.BLOCK, PeopleIndex.close_rows = old_block, old_close_rows
        placed = people(store)
        groups = {}
        for face_id, person in placed.items():
            groups.setdefault(person, set()).add(face_id)
        partitions.append(sorted(sorted(g) for p, g in groups.items() if p is not None) +
                          [sorted(g) for p, g in groups.items() if p is None])
    assert partitions[0] == partitions[1]
    assert len(partitions[0]) >= 5


def test_find_like_reads_a_vector_file_kept_up_to_date_and_checked_against_the_store(tmp_path):
    """The file beside the index holds every embedded face's vector: faces embedded since are
    added before a search, faces gone since are not shown, a damaged file is rebuilt."""
    from facewatch.people.like import like
    from facewatch.people.vectors import HEADER, RECORD, VectorFile, vector_file_path
    store = open_store(str(tmp_path / "db"))
    rng = np.random.default_rng(7)
    jobs = photos(store, [1] * 6)
    embed_all(store, jobs, lambda job, i: point(job.file_id % 2, 0.2, rng))  # two people, three photos each
    path = vector_file_path(store.database)
    assert path == tmp_path / "db.vectors"
    query = point(1, 0.1, rng)
    first = like(store, [query], 10)
    assert path.exists() and len(first) == 3
    assert len(VectorFile(path).update(store).ids) == 6
    # three more photos of that person, embedded after the file was written: found too
    store.enqueue([FileStat(f"/q/{i}.jpg", 1, 1, 1) for i in range(3)], 3)
    claims = store.claim("w", 3, 3, 60)
    store.save("w", [Result(c.file_id, "done", size=1, mtime_ns=1, ctime_ns=1, width=9, height=9,
                            content_hash=c.path, faces=(FACE,)) for c in claims], 3)
    embed_all(store, store.claim_faces("w", 10, 3, 60), lambda job, i: point(1, 0.2, rng))
    assert len(like(store, [query], 10)) == 6
    assert len(VectorFile(path).update(store).ids) == 9
    # one of them analysed again, its face now someone else's: no longer like the query
    store.enqueue([FileStat("/q/0.jpg", 2, 2, 1)], 4)
    (c,) = store.claim("w", 1, 4, 60)
    store.save("w", [Result(c.file_id, "done", size=2, mtime_ns=2, ctime_ns=1, width=9, height=9,
                            content_hash="other", faces=(FACE,))], 4)
    embed_all(store, store.claim_faces("w", 10, 4, 60), lambda job, i: point(9, 0.2, rng))
    found = {m.path for m in like(store, [query], 10)}
    assert "/q/0.jpg" not in found and len(found) == 5
    # a damaged file (cut in the middle of a record) is rebuilt from the store
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    rebuilt = VectorFile(path).update(store)
    assert rebuilt.rebuilt and {m.path for m in like(store, [query], 10)} == found
    # the file had the 10 faces ever embedded; rebuilt, the 9 there now
    assert len(data) == HEADER + 10 * RECORD.itemsize
    assert len(rebuilt.ids) == 9 and path.stat().st_size == HEADER + 9 * RECORD.itemsize
