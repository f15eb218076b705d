"""The store contract, through the Store protocol only: every backend runs this whole suite
(huey's StorageTests). What only one backend has (its PRAGMAs, its migrations) is tested in that
backend's own file."""
import pytest

from facewatch.store import DaemonInfo, ExportFilter, Face, FileStat, Known, Result, Source, open_store

FACE = Face(score=0.9, bbox=(10, 20, 30, 40), keypoints=((1, 2), (3, 4)))
OTHER_FACE = Face(score=0.7, bbox=(200, 100, 50, 60), keypoints=((210, 120), (230, 121)))


@pytest.fixture
def store(any_store):
    return any_store


def st(path, size=100, mtime=1, ctime=1):
    return FileStat(path, size, mtime, ctime)


def statuses(store):
    return {r.path: r.status for r in store.iter_files()}


def counts(store):
    return store.stats().as_dict()


def test_enqueue_is_idempotent_and_requeues_only_changes(store):
    assert store.enqueue([st("/p/a.jpg"), st("/p/b.jpg")], now=1) == 2
    assert store.enqueue([st("/p/a.jpg")], now=2) == 0  # already queued
    claims = store.claim("w", 10, now=3, lease_s=60)
    store.save("w", [Result(c.file_id, "done", size=100, mtime_ns=1, ctime_ns=1, width=5, height=5,
                            content_hash="h" + c.path) for c in claims], now=4)
    assert store.enqueue([st("/p/a.jpg")], now=5) == 0  # unchanged
    assert store.enqueue([st("/p/a.jpg", ctime=9)], now=5) == 0  # chmod of a done file: nothing
    assert store.enqueue([st("/p/a.jpg", mtime=2)], now=6) == 1  # edited
    assert statuses(store) == {"/p/a.jpg": "pending", "/p/b.jpg": "done"}


def test_claims_are_leases_in_queue_order(store):
    store.enqueue([st(f"/p/{i}.jpg") for i in range(5)], now=1)
    first = store.claim("w1", 3, now=2, lease_s=10)
    assert [c.path for c in first] == ["/p/0.jpg", "/p/1.jpg", "/p/2.jpg"]
    assert all(c.attempts == 0 for c in first)
    second = store.claim("w2", 10, now=2, lease_s=10)
    assert [c.path for c in second] == ["/p/3.jpg", "/p/4.jpg"]
    assert store.claim("w3", 10, now=3, lease_s=10) == []
    assert counts(store)["queue"] == {"pending": 0, "processing": 5}
    assert store.release_stale(now=5) == 0  # leases still valid
    assert store.release_stale(now=13) == 5  # expired: back to the queue
    again = store.claim("w3", 10, now=14, lease_s=10)
    assert len(again) == 5 and all(c.attempts == 0 for c in again)  # a lost lease is not the file's fault


def test_release_gives_claims_back_and_only_failed_tries_count(store):
    store.enqueue([st("/p/a.jpg")], now=1)
    (c,) = store.claim("w", 1, now=1, lease_s=60)
    assert store.release("w") == 1
    (c,) = store.claim("w", 1, now=2, lease_s=60)
    assert c.attempts == 0
    store.save("w", [Result(c.file_id, "retry", error="I/O error", retry_after_s=0)], now=3)
    (c,) = store.claim("w", 1, now=4, lease_s=60)
    assert c.attempts == 1
    store.save("w", [Result(c.file_id, "deferred", error="its watched folder is unavailable")], now=5)
    assert store.claim("w", 1, now=6, lease_s=60)[0].attempts == 1


def test_save_writes_faces_and_replaces_old_ones_in_one_go(store):
    store.enqueue([st("/p/a.jpg")], now=1)
    (c,) = store.claim("w", 1, now=1, lease_s=60)
    store.save("w", [Result(c.file_id, "done", size=100, mtime_ns=1, ctime_ns=1, width=640, height=480,
                            faces=(FACE, FACE), content_hash="x", worker_id=77)], now=2)
    store.enqueue([st("/p/a.jpg", mtime=2)], now=3)
    (c,) = store.claim("w", 1, now=3, lease_s=60)
    store.save("w", [Result(c.file_id, "done", size=100, mtime_ns=2, ctime_ns=1, width=640, height=480,
                            faces=(OTHER_FACE, FACE), content_hash="y", worker_id=78)], now=4)
    (record,) = list(store.iter_files())
    assert record.status == "done" and record.faces == [OTHER_FACE, FACE]  # the new faces, in their order
    assert store.file_record("/p/a.jpg").faces == [OTHER_FACE, FACE]
    s = counts(store)
    assert s["faces"] == 2 and s["files"]["with_faces"] == 1 and s["analyses"] == 2


def test_a_result_whose_claim_was_lost_is_dropped(store):
    store.enqueue([st("/p/a.jpg")], now=1)
    (c,) = store.claim("w1", 1, now=1, lease_s=1)
    store.release_stale(now=5)
    store.claim("w2", 1, now=5, lease_s=60)
    assert store.save("w1", [Result(c.file_id, "done", width=1, height=1, faces=(FACE,))], now=6) == 0
    assert counts(store)["faces"] == 0


def test_a_change_during_processing_discards_the_stale_result(store):
    store.enqueue([st("/p/a.jpg")], now=1)
    (c,) = store.claim("w", 1, now=1, lease_s=60)
    store.enqueue([st("/p/a.jpg", size=200, mtime=2)], now=2)  # rewritten while being read
    assert store.save("w", [Result(c.file_id, "done", width=1, height=1, faces=(FACE,))], now=3) == 0
    (again,) = store.claim("w", 1, now=4, lease_s=60)
    assert again.file_id == c.file_id


def test_failed_missing_and_retry_results(store):
    store.enqueue([st("/p/bad.jpg"), st("/p/gone.jpg"), st("/p/busy.jpg")], now=1)
    claims = {c.path: c for c in store.claim("w", 3, now=1, lease_s=60)}
    bad, gone, busy = claims["/p/bad.jpg"], claims["/p/gone.jpg"], claims["/p/busy.jpg"]
    store.save("w", [Result(bad.file_id, "failed", error="not an image: the file holds text"),
                     Result(gone.file_id, "missing"),
                     Result(busy.file_id, "retry", error="I/O error", retry_after_s=30)], now=2)
    records = {r.path: r for r in store.iter_files()}
    assert records["/p/bad.jpg"].status == "failed"
    assert records["/p/bad.jpg"].error == "not an image: the file holds text"
    assert records["/p/gone.jpg"].status == "missing"
    assert records["/p/busy.jpg"].status == "pending"
    assert store.claim("w", 3, now=10, lease_s=60) == []  # backing off
    assert [c.path for c in store.claim("w", 3, now=33, lease_s=60)] == ["/p/busy.jpg"]
    assert store.retry_failed(None, now=40) == 1
    assert statuses(store)["/p/bad.jpg"] == "pending"


def test_failed_file_is_requeued_when_its_permissions_change(store):
    store.enqueue([st("/p/locked.jpg", ctime=1)], now=1)
    (c,) = store.claim("w", 1, now=1, lease_s=60)
    store.save("w", [Result(c.file_id, "failed", error="permission denied", size=100, mtime_ns=1, ctime_ns=1)], now=2)
    assert store.enqueue([st("/p/locked.jpg", ctime=1)], now=3) == 0
    assert store.enqueue([st("/p/locked.jpg", ctime=2)], now=4) == 1  # chmod changes ctime


def test_rename_keeps_results_and_missing_keeps_them_too(store):
    store.enqueue([st("/p/a.jpg")], now=1)
    (c,) = store.claim("w", 1, now=1, lease_s=60)
    store.save("w", [Result(c.file_id, "done", size=100, mtime_ns=1, ctime_ns=1, width=9, height=9,
                            faces=(FACE,), content_hash="h")], now=2)
    assert store.rename("/p/a.jpg", "/p/sub/b.jpg", now=3)
    assert store.rename("/p/nope.jpg", "/p/x.jpg", now=3) is False
    assert store.known_in_dir("/p/sub") == {"/p/sub/b.jpg": Known(100, 1, 1, "done")}
    assert store.rename_dir("/p/sub", "/q/moved", now=4) == 1
    record = store.file_record("/q/moved/b.jpg")
    assert record.status == "done" and record.faces == [FACE]
    assert store.mark_missing(["/q/moved/b.jpg"], now=5) == 1
    record = store.file_record("/q/moved/b.jpg")
    assert record.status == "missing" and record.faces == [FACE]
    assert store.enqueue([st("/q/moved/b.jpg")], now=6) == 1  # it came back


def test_mark_missing_under_a_folder_only_touches_that_folder(store):
    store.enqueue([st("/p/a/1.jpg"), st("/p/a/b/2.jpg"), st("/p/ab/3.jpg")], now=1)
    assert store.mark_missing_under("/p/a", now=2) == 2
    assert statuses(store) == {"/p/a/1.jpg": "missing", "/p/a/b/2.jpg": "missing", "/p/ab/3.jpg": "pending"}
    assert store.queue_size() == 1
    assert sorted(store.known_dirs_under("/p")) == ["/p/ab"]


def test_paths_that_are_not_utf8_round_trip(store):
    odd = b"/p/caf\xe9 \xff.jpg".decode("utf-8", "surrogateescape")
    store.enqueue([st(odd), st("/p/日本 photo.jpg")], now=1)
    assert set(statuses(store)) == {odd, "/p/日本 photo.jpg"}


def test_reused_result_copies_faces_of_the_same_bytes(store):
    store.enqueue([st("/p/a.jpg"), st("/p/copy.jpg")], now=1)
    a, copy = store.claim("w", 2, now=1, lease_s=60)
    store.save("w", [Result(a.file_id, "done", size=1, mtime_ns=1, ctime_ns=1, width=3, height=4,
                            faces=(FACE,), content_hash="same")], now=2)
    assert store.find_by_hash("same", exclude_id=copy.file_id) == Source(a.file_id, "/p/a.jpg")
    store.save("w", [Result(copy.file_id, "reused", size=1, mtime_ns=1, ctime_ns=1, content_hash="same",
                            source_id=a.file_id)], now=3)
    record = store.file_record("/p/copy.jpg")
    assert (record.width, record.height, record.faces) == (3, 4, [FACE])
    assert counts(store)["analyses"] == 1  # no second detection


def test_processed_at_is_when_the_faces_were_computed(store):
    store.enqueue([st("/p/a.jpg")], now=1)
    (a,) = store.claim("w", 1, now=1, lease_s=60)
    store.save("w", [Result(a.file_id, "done", size=1, mtime_ns=1, ctime_ns=1, width=3, height=4,
                            faces=(FACE,), content_hash="same")], now=1_800_000_000)
    computed = store.file_record("/p/a.jpg").processed_at
    assert computed == "2027-01-15T08:00:00+00:00"
    store.enqueue([st("/p/a.jpg", mtime=2), st("/p/copy.jpg")], now=1_800_000_100)  # a touch, and a copy
    a, copy = store.claim("w", 2, now=1_800_000_100, lease_s=60)
    store.save("w", [Result(a.file_id, "unchanged", size=1, mtime_ns=2, ctime_ns=1, content_hash="same"),
                     Result(copy.file_id, "reused", size=1, mtime_ns=1, ctime_ns=1, content_hash="same",
                            source_id=a.file_id)], now=1_800_000_200)
    assert store.file_record("/p/a.jpg").processed_at == computed
    assert store.file_record("/p/copy.jpg").processed_at == computed
    store.rename("/p/a.jpg", "/p/b.jpg", now=1_800_000_300)
    assert store.file_record("/p/b.jpg").processed_at == computed
    assert list(store.iter_files(ExportFilter(since="2027-01-15T08:00:01+00:00"))) == []


def test_moved_result_hands_the_old_row_its_new_path(store):
    store.enqueue([st("/p/old.jpg"), st("/p/new.jpg")], now=1)
    claims = {c.path: c for c in store.claim("w", 2, now=1, lease_s=60)}
    old, new = claims["/p/old.jpg"], claims["/p/new.jpg"]
    store.save("w", [Result(old.file_id, "done", size=1, mtime_ns=1, ctime_ns=1, width=3, height=4,
                            faces=(FACE,), content_hash="same", worker_id=5)], now=2)
    store.save("w", [Result(new.file_id, "moved", size=1, mtime_ns=2, ctime_ns=2, content_hash="same",
                            source_id=old.file_id)], now=3)
    assert store.file_record("/p/old.jpg") is None
    record = store.file_record("/p/new.jpg")
    assert record.file_id == old.file_id and record.status == "done" and record.faces == [FACE]
    assert counts(store)["files"]["total"] == 1 and counts(store)["analyses"] == 1


def test_export_filters(store):
    store.enqueue([st("/p/a.jpg"), st("/p/b.jpg")], now=1)
    a, b = store.claim("w", 2, now=1, lease_s=60)
    store.save("w", [Result(a.file_id, "done", width=1, height=1, faces=(FACE, FACE)),
                     Result(b.file_id, "failed", error="bad")], now=1_800_000_000)
    assert [r.path for r in store.iter_files(ExportFilter(min_faces=2))] == ["/p/a.jpg"]
    assert [r.path for r in store.iter_files(ExportFilter(statuses=("failed",)))] == ["/p/b.jpg"]
    assert list(store.iter_files(ExportFilter(since="2030-01-01T00:00:00+00:00"))) == []


def test_a_reader_sees_a_snapshot_while_the_writer_writes(store, tmp_path):
    store.enqueue([st(f"/p/{i}.jpg") for i in range(50)], now=1)
    reader = open_store(store.database, readonly=True)
    rows = reader.iter_files()
    first = next(rows)
    store.enqueue([st(f"/p/new{i}.jpg") for i in range(50)], now=2)  # the writer is not blocked
    assert first.path == "/p/0.jpg" and len([first, *rows]) == 50
    assert counts(reader)["files"]["total"] == 100
    reader.close()


def test_daemons_register_heartbeat_and_stop(store):
    store.daemon_started(DaemonInfo("h1:1234:100", "h1", 1234, "2026-01-01T00:00:00+00:00", 100, None))
    store.daemon_started(DaemonInfo("h2:99:101", "h2", 99, "2026-01-01T00:00:01+00:00", 101, None, worker_only=True))
    store.heartbeat("h1:1234:100", now=105)
    rows = {d.name: d for d in store.daemons()}
    assert rows["h1:1234:100"].heartbeat_at == 105 and rows["h1:1234:100"].fresh(now=110)
    assert not rows["h1:1234:100"].fresh(now=125)  # older than HEARTBEAT_STALE_S
    assert rows["h2:99:101"].worker_only and rows["h2:99:101"].host == "h2"
    store.daemon_stopped("h1:1234:100", now=110)
    stopped = {d.name: d for d in store.daemons()}["h1:1234:100"]
    assert stopped.heartbeat_at is None and stopped.stopped_at is not None and not stopped.fresh(110)


def test_checkpoints_save_load_complete_and_prune(store):
    cid = store.save_checkpoint(1, 100, "in_progress", {"total_files": 17000})
    latest = store.latest_checkpoint("scan")
    assert latest.id == cid and latest["metadata"] == {"total_files": 17000} and latest["batch_number"] == 1
    assert store.set_checkpoint_status(cid, "completed") is True
    assert store.set_checkpoint_status(cid + 1000, "completed") is False  # no such checkpoint
    assert store.latest_checkpoint().status == "completed"
    assert store.latest_checkpoint("daemon") is None
    with pytest.raises(ValueError):
        store.save_checkpoint(2, 0, "finished")
    for batch in range(2, 12):
        store.save_checkpoint(batch, batch * 10, "in_progress", kind="daemon")
    assert store.prune_checkpoints("daemon", keep=3) == 7
    assert store.latest_checkpoint("daemon").batch_number == 11
    assert store.latest_checkpoint("daemon", batch_number=8) is None  # pruned
    assert store.latest_checkpoint("daemon", batch_number=9).batch_number == 9
    assert store.latest_checkpoint("scan").id == cid  # another kind's are left alone
    assert store.prune_checkpoints("daemon", keep=0) == 2  # the newest one is always kept


def test_remaining_files_of_a_checkpoint(store):
    store.enqueue([st(f"/p/{i}.jpg") for i in range(4)], now=1)
    ids = {r.path: r.file_id for r in store.iter_files()}
    first = store.save_checkpoint(1, 0, "in_progress")
    store.update_processed_file(ids["/p/0.jpg"], 7, "processed")
    store.claim("w", 4, now=2, lease_s=60)  # /p/1.jpg is analysed: the save records it
    store.save("w", [Result(ids["/p/1.jpg"], "done", size=100, mtime_ns=1, ctime_ns=1, width=1, height=1,
                            content_hash="h1")], now=3)
    store.release("w")
    store.update_processed_file(ids["/p/2.jpg"], 7, "error")  # not processed: it failed to be
    store.enqueue([st("/p/4.jpg")], now=4)  # found after the first checkpoint
    second = store.save_checkpoint(2, 2, "in_progress")
    assert store.remaining_files(first) == ["/p/2.jpg", "/p/3.jpg"]
    assert store.remaining_files(second) == ["/p/2.jpg", "/p/3.jpg", "/p/4.jpg"]
    assert store.count_remaining(second) == 3
    store.update_processed_file(ids["/p/3.jpg"], 8, "processed")
    assert store.remaining_files(first) == ["/p/2.jpg"]
    store.enqueue([st("/p/1.jpg", mtime=5)], now=5)  # edited: to be processed again
    assert store.remaining_files(first) == ["/p/1.jpg", "/p/2.jpg"]
    store.mark_missing(["/p/2.jpg"], now=6)
    assert store.remaining_files(first) == ["/p/1.jpg"]
    assert store.remaining_files() == ["/p/1.jpg", "/p/4.jpg"]  # every file of the index
    stats = store.checkpoint_statistics()
    assert stats["checkpoints"] == 2 and stats["processed_files"] == 4
    assert stats["processed_by_status"] == {"processed": 2, "queued": 1, "error": 1}


# the people stage -------------------------------------------------------------------------------
def vec(*head):
    """A 128-D embedding as the store keeps it: `head` then zeros."""
    import numpy as np
    v = np.zeros(128, "<f4")
    v[:len(head)] = head
    return v.tobytes()


def detected(store, paths, faces=(FACE,), now=2):
    """Queue, claim and save `paths` as detected with `faces` each; {path: file id}."""
    from facewatch.store import Result
    store.enqueue([st(p) for p in paths], now=1)
    claims = store.claim("w", len(paths), now=now, lease_s=60)
    store.save("w", [Result(c.file_id, "done", size=100, mtime_ns=1, ctime_ns=1, width=500, height=500,
                            content_hash="h" + c.path, faces=tuple(faces)) for c in claims], now=now)
    return {c.path: c.file_id for c in claims}


def test_faces_wait_for_embeddings_in_a_leased_queue(store):
    from facewatch.store import FACES_PER_JOB, Embedded
    ids = detected(store, ["/p/a.jpg", "/p/b.jpg"], faces=[FACE] * (FACES_PER_JOB + 1))
    assert counts(store)["people"]["faces_waiting"] == 2 * (FACES_PER_JOB + 1)
    assert store.faces_ready(now=3) == (2 * (FACES_PER_JOB + 1), None)
    jobs = store.claim_faces("w1", 2, now=3, lease_s=10)
    # a group photo is several jobs of at most FACES_PER_JOB faces; oldest faces first
    assert [(j.path, len(j.faces)) for j in jobs] == [("/p/a.jpg", FACES_PER_JOB), ("/p/a.jpg", 1)]
    assert jobs[0].content_hash == "h/p/a.jpg" and jobs[0].file_id == ids["/p/a.jpg"]
    others = store.claim_faces("w2", 5, now=3, lease_s=10)
    assert [j.path for j in others] == ["/p/b.jpg", "/p/b.jpg"]
    assert store.claim_faces("w3", 5, now=3, lease_s=10) == []
    assert store.release_stale(now=20) == 0  # no file claims; the face leases expired and are back
    again = store.claim_faces("w3", 5, now=21, lease_s=10)
    assert sum(len(j.faces) for j in again) == 2 * (FACES_PER_JOB + 1)
    # a result whose lease was lost (w1's) is dropped; the holder's is kept
    face = jobs[0].faces[0][0]
    store.save_embeddings("w1", [Embedded(face, "done", embedding=vec(1))], {face: -1}, now=22,
                          version=store.people_version())
    assert counts(store)["people"]["faces_waiting"] == 2 * (FACES_PER_JOB + 1)
    created = store.save_embeddings("w3", [Embedded(face, "done", embedding=vec(1))], {face: -1}, now=22,
                                    version=store.people_version())
    assert list(created) == [-1]
    assert [(f.face_id, f.person_id) for f in store.indexed_faces()] == [(face, created[-1])]
    assert store.release_faces("w3") == 2 * (FACES_PER_JOB + 1) - 1


def test_failed_and_retried_embeddings(store):
    from facewatch.store import Embedded
    detected(store, ["/p/a.jpg"], faces=[FACE, OTHER_FACE])
    f1, f2 = [f for job in store.claim_faces("w", 5, now=3, lease_s=10) for f, _ in job.faces]
    store.save_embeddings("w", [Embedded(f1, "failed", error="too small"),
                                Embedded(f2, "retry", error="I/O error", retry_after_s=5)], {}, now=4,
                          version=store.people_version())
    p = counts(store)["people"]
    assert p["faces_failed"] == 1 and p["faces_waiting"] == 1
    assert store.faces_ready(now=5) == (0, 9)
    (job,) = store.claim_faces("w", 5, now=9, lease_s=10)
    assert job.attempts == 1 and [f for f, _ in job.faces] == [f2]


def test_people_edits_bump_the_version_and_a_stale_placement_is_refused(store):
    from facewatch.store import Embedded, PeopleChanged, PeopleError
    ids = detected(store, ["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"], faces=[FACE, OTHER_FACE])
    jobs = store.claim_faces("w", 5, now=3, lease_s=60)
    faces = [f for j in jobs for f, _ in j.faces]  # a0 a1 b0 b1 c0 c1
    version = store.people_version()
    outcomes = [Embedded(f, "done", embedding=vec(i)) for i, f in enumerate(faces)]
    created = store.save_embeddings("w", outcomes, {faces[0]: -1, faces[2]: -1, faces[1]: -2, faces[4]: -2},
                                    now=4, version=version)
    anna, ben = created[-1], created[-2]
    store.name_person(anna, "Anna")
    assert store.people_version() == version + 1
    with pytest.raises(PeopleChanged):
        store.save_embeddings("w", [], {faces[3]: ben}, now=5, version=version)
    people = {p.person_id: p for p in store.persons()}
    assert (people[anna].name, people[anna].faces, people[anna].photos) == ("Anna", 2, 2)
    assert people[anna].cover in ("/p/a.jpg", "/p/b.jpg")
    assert store.person("anna").person_id == anna and store.person(str(ben)).person_id == ben
    with pytest.raises(PeopleError):
        store.person("nobody")
    assert store.persons_in_file(ids["/p/a.jpg"]) == {anna, ben}
    assert store.person_photos(anna) == ["/p/a.jpg", "/p/b.jpg"]
    # merging two people of one photo is refused, naming it; after an unassign it is not
    with pytest.raises(PeopleError, match="/p/a.jpg"):
        store.merge_persons(ben, anna)
    assert store.unassign_face("/p/a.jpg", 1) == ben
    assert store.merge_persons(ben, anna) == 1  # c's face
    assert [r[:2] for r in store.rejections()] == [(anna, faces[1])]  # the rejection followed the merge
    assert {p.person_id: p.faces for p in store.persons()} == {anna: 3}
    assert len(store.person_faces(anna)) == 3 and store.person_faces(anna, limit=1)[0].path in ("/p/a.jpg", "/p/b.jpg")
    with pytest.raises(PeopleError):
        store.unassign_face("/p/a.jpg", 1)  # in no person now
    with pytest.raises(PeopleError):
        store.unassign_face("/p/nope.jpg", 0)


def test_copies_renames_and_edits_keep_people(store):
    from facewatch.store import Embedded, Result
    ids = detected(store, ["/p/a.jpg"], faces=[FACE, OTHER_FACE])
    f1, f2 = [f for job in store.claim_faces("w", 5, now=3, lease_s=60) for f, _ in job.faces]
    created = store.save_embeddings("w", [Embedded(f1, "done", embedding=vec(1)), Embedded(f2, "done", embedding=vec(2))],
                                    {f1: -1}, now=4, version=store.people_version())
    anna = created[-1]
    # a copy: its faces arrive embedded and in their people
    store.enqueue([st("/p/copy.jpg")], now=5)
    (c,) = store.claim("w", 1, now=5, lease_s=60)
    store.save("w", [Result(c.file_id, "reused", size=100, mtime_ns=1, ctime_ns=1, content_hash="h/p/a.jpg",
                            source_id=ids["/p/a.jpg"])], now=6)
    assert [f.person for f in store.file_record("/p/copy.jpg").faces] == [(anna, None), None]
    assert counts(store)["people"]["faces_waiting"] == 0
    store.rename("/p/a.jpg", "/p/renamed.jpg", now=7)
    assert store.file_record("/p/renamed.jpg").faces[0].person == (anna, None)
    # an edit: new faces; the one found where anna's was keeps her, the other is matched again
    store.enqueue([st("/p/renamed.jpg", mtime=9)], now=8)
    (c,) = store.claim("w", 1, now=8, lease_s=60)
    moved = Face(0.8, (12, 22, 30, 40), FACE.keypoints)
    store.save("w", [Result(c.file_id, "done", size=100, mtime_ns=9, ctime_ns=1, width=500, height=500,
                            content_hash="new", faces=(moved, OTHER_FACE))], now=9)
    assert [f.person for f in store.file_record("/p/renamed.jpg").faces] == [(anna, None), None]
    assert counts(store)["people"]["faces_waiting"] == 2
