"""People on real labelled photos: embeddings, people, corrections, commands, crashes.

The album: face_recognition 1.3.0's test photos (five of one man, among them two partial faces;
one of another; US-government photos, fetched from PyPI with pip), scikit-image's astronaut and
opencv-doc's messi5, some again under other crops, sizes, flips and lighting; a group photo
made of three of them side by side; photos with no face.
"""
import json
import os
import shutil
import sys
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import export, facewatch, peek, save_jpeg, status, wait_until, write_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

pytestmark = pytest.mark.slow
OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")
PEOPLE_ON = {"enabled": True}


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def album(tmp_path_factory) -> tuple[Path, dict]:
    """(a folder of photos, {file name: [person label of each face, left to right]})."""
    from sources import labelled_dir
    from skimage import data
    labelled = labelled_dir()
    if labelled is None:
        pytest.skip("face_recognition's labelled photos are fetched from PyPI with pip download, which failed (offline?)")
    if not (OPENCV_DOC / "messi5.jpg").exists():
        pytest.skip("needs Debian's opencv-doc (apt install opencv-doc) for messi5.jpg and face-free photos")
    folder = tmp_path_factory.mktemp("album")
    truth = {}
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"):
        shutil.copy(labelled / name, folder / name)
        truth[name] = ["obama"]
    faces = {"biden": _rgb(labelled / "biden.jpg"), "astronaut": data.astronaut(),
             "messi": _rgb(OPENCV_DOC / "messi5.jpg")}
    for person, rgb in faces.items():
        h, w = rgb.shape[:2]
        save_jpeg(folder / f"{person}.jpg", rgb)
        # the same person again: cropped and at another size (messi5's faces are 30 px: twice as
        # large; the others half as large); flipped and darker
        crop = rgb[h // 12: h - h // 10, w // 10: w - w // 12]
        scale = 2.0 if person == "messi" else 0.5
        save_jpeg(folder / f"{person}_small.jpg", cv2.resize(crop, (int(crop.shape[1] * scale),
                                                                    int(crop.shape[0] * scale)),
                                                             interpolation=cv2.INTER_CUBIC))
        save_jpeg(folder / f"{person}_dark.jpg", np.ascontiguousarray(np.clip(rgb[:, ::-1] * 0.6, 0, 255)
                                                                      .astype(np.uint8)))
        for suffix in ("", "_small", "_dark"):
            truth[f"{person}{suffix}.jpg"] = [person]
    # a group photo: three of them side by side, each at 300 px high
    strips = []
    for person in ("biden", "astronaut", "obama"):
        rgb = faces.get(person, _rgb(labelled / "obama2.jpg"))
        face = _face_crop(rgb)
        strips.append(cv2.resize(face, (int(face.shape[1] * 300 / face.shape[0]), 300)))
    save_jpeg(folder / "three.jpg", np.hstack(strips))
    truth["three.jpg"] = ["biden", "astronaut", "obama"]
    for name in ("fruits.jpg", "building.jpg"):
        shutil.copy(OPENCV_DOC / name, folder / name)
        truth[name] = []
    return folder, truth


def _face_crop(rgb: np.ndarray) -> np.ndarray:
    """The head and shoulders around the one face MediaPipe finds in `rgb`."""
    import mediapipe as mp
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as fd:
        box = fd.process(rgb).detections[0].location_data.relative_bounding_box
    h, w = rgb.shape[:2]
    x, y, bw, bh = box.xmin * w, box.ymin * h, box.width * w, box.height * h
    x0, y0 = int(max(0, x - bw * 0.6)), int(max(0, y - bh * 0.6))
    x1, y1 = int(min(w, x + bw * 1.6)), int(min(h, y + bh * 1.8))
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


def people_of(config) -> dict:
    """{file name: [(face bbox x, person id or None), ...] left to right}."""
    found = {}
    for path, record in export(config).items():
        found[os.path.basename(path)] = sorted((f["bbox"][0], (f["person"] or {}).get("id")) for f in record["faces"])
    return found


def check_people(found: dict, truth: dict) -> dict:
    """Assert the album's people are right; returns {label: person id}."""
    label_of_face = []
    for name, labels in truth.items():
        faces = found[name]
        assert len(faces) == len(labels), f"{name}: {len(faces)} faces found, {len(labels)} expected"
        persons = [p for _, p in faces if p is not None]
        assert len(persons) == len(set(persons)), f"{name}: one person holds two of its faces: {faces}"
        label_of_face += [(label, person) for label, (_, person) in zip(labels, faces)]
    ids = {}
    for label, person in label_of_face:
        assert person is not None, f"a face of {label} is in no person"
        ids.setdefault(label, set()).add(person)
    for label, persons in ids.items():
        assert len(persons) == 1, f"{label}'s faces are in several people: {persons}"
    assert len({next(iter(p)) for p in ids.values()}) == len(ids), f"two people share a person: {ids}"
    return {label: next(iter(p)) for label, p in ids.items()}


def settled(config) -> bool:
    s = status(config)
    return (s["queue"] == {"pending": 0, "processing": 0} and s["people"]["faces_waiting"] == 0
            and s["files"]["total"] > 0)


def test_an_album_dropped_into_a_running_daemon_gets_its_people_and_corrections_survive_a_restart(
        tmp_path, daemon, album):
    folder, truth = album
    config = write_config(tmp_path, people=PEOPLE_ON)
    d = daemon(config)
    shutil.copytree(folder, tmp_path / "photos", dirs_exist_ok=True)
    wait_until(lambda: settled(config), timeout=180, interval=0.5, message="the album analysed and embedded")
    ids = check_people(people_of(config), truth)
    s = status(config)
    assert s["people"] == {"persons": 4, "named": 0, "faces_waiting": 0, "faces_failed": 0}
    assert "people      4 people (0 named)" in facewatch(config, "status").stdout

    listed = json.loads(facewatch(config, "people", "--json").stdout)
    assert {p["id"]: p["faces"] for p in listed} == {ids["obama"]: 6, ids["biden"]: 4, ids["astronaut"]: 4,
                                                      ids["messi"]: 3}
    assert all(p["photos"] == p["faces"] and p["name"] is None and os.path.exists(p["cover"]) for p in listed)

    facewatch(config, "people", "name", str(ids["obama"]), "Barack Obama")
    facewatch(config, "people", "name", str(ids["messi"]), "Lionel")
    out = facewatch(config, "people", "unassign", str(tmp_path / "photos" / "biden_dark.jpg"), "0").stdout
    assert f"left person {ids['biden']}" in out
    # the same bytes at a new path (a copy) and a renamed file keep their people
    os.rename(tmp_path / "photos" / "messi_small.jpg", tmp_path / "photos" / "messi_renamed.jpg")
    shutil.copy(tmp_path / "photos" / "obama3.jpg", tmp_path / "photos" / "obama3_copy.jpg")
    wait_until(lambda: "obama3_copy.jpg" in people_of(config) and "messi_renamed.jpg" in people_of(config),
               timeout=30, message="the copy and the rename")
    assert d.stop() == 0

    d = daemon(config)
    # the face taken out is found again after an edit of its file (new bytes, new face id): it stays out
    dark = tmp_path / "photos" / "biden_dark.jpg"
    save_jpeg(dark, _rgb(dark), quality=80)
    wait_until(lambda: settled(config) and peek(config, "SELECT count(*) FROM faces WHERE embed_state='done'") == 18,
               timeout=60, interval=0.5, message="the edited photo embedded again")
    found = people_of(config)
    assert found["biden_dark.jpg"][0][1] != ids["biden"]
    assert found["messi_renamed.jpg"][0][1] == ids["messi"] and found["obama3_copy.jpg"][0][1] == ids["obama"]
    named = {p["id"]: p["name"] for p in json.loads(facewatch(config, "people", "--json").stdout)}
    assert named[ids["obama"]] == "Barack Obama" and named[ids["messi"]] == "Lionel"
    assert facewatch(config, "find", "--person", "barack obama").stdout.count("\n") == 7
    assert d.stop() == 0


def test_commands_merge_find_like_sheet_and_export(tmp_path, album):
    folder, truth = album
    config = write_config(tmp_path, people=PEOPLE_ON)
    shutil.copytree(folder, tmp_path / "photos", dirs_exist_ok=True)
    facewatch(config, "scan", timeout=300)
    ids = check_people(people_of(config), truth)

    # a merge that would put two faces of one photo in one person is refused, saying which photo
    refused = facewatch(config, "people", "merge", str(ids["biden"]), str(ids["astronaut"]), check=False)
    assert refused.returncode == 1 and "three.jpg" in refused.stderr and "Traceback" not in refused.stderr
    facewatch(config, "people", "unassign", str(tmp_path / "photos" / "three.jpg"), "1")  # the astronaut
    merged = facewatch(config, "people", "merge", str(ids["astronaut"]), str(ids["biden"]))
    assert "3 faces of person" in merged.stdout
    persons = {p["id"]: p for p in json.loads(facewatch(config, "people", "--json").stdout)}
    assert ids["astronaut"] not in persons and persons[ids["biden"]]["faces"] == 7

    # find --like: a photo not in the index; its person's photos first
    probe = tmp_path / "probe.jpg"
    rgb = _rgb(folder / "messi.jpg")
    save_jpeg(probe, np.ascontiguousarray(rgb[:, ::-1]), quality=70)
    like = json.loads(facewatch(config, "find", "--like", str(probe), "--json").stdout)
    assert [os.path.basename(m["path"]) for m in like[:3]] == ["messi.jpg", "messi_dark.jpg", "messi_small.jpg"] \
        or {os.path.basename(m["path"]) for m in like[:3]} == {"messi.jpg", "messi_dark.jpg", "messi_small.jpg"}
    assert all(m["person"] == ids["messi"] for m in like[:3])
    assert [m["distance"] for m in like] == sorted(m["distance"] for m in like)
    no_face = facewatch(config, "find", "--like", str(folder / "fruits.jpg"), check=False)
    assert no_face.returncode == 1 and "no face found" in no_face.stderr and "fruits.jpg" in no_face.stderr
    missing = facewatch(config, "find", "--like", str(tmp_path / "nope.jpg"), check=False)
    assert missing.returncode == 1 and "nope.jpg" in missing.stderr and "Traceback" not in missing.stderr

    sheet = tmp_path / "sheet.jpg"
    facewatch(config, "people", "name", str(ids["obama"]), "Barack Obama")
    facewatch(config, "people", "sheet", "Barack Obama", str(sheet))
    picture = cv2.imread(str(sheet))
    assert picture.shape == (160, 6 * 160, 3)  # six faces, one row
    unknown = facewatch(config, "people", "sheet", "Nobody", str(sheet), check=False)
    assert unknown.returncode == 1 and "no person named 'Nobody'" in unknown.stderr

    rows = facewatch(config, "export", "--format", "csv").stdout.splitlines()
    header = rows[0].split(",")
    assert header[-2:] == ["person_id", "person_name"]
    obama = [r.split(",") for r in rows[1:] if "/obama.jpg," in r]
    assert obama[0][-2:] == [str(ids["obama"]), "Barack Obama"]
    faces = export(config)[str(tmp_path / "photos" / "fruits.jpg")]["faces"]
    assert faces == []
    record = export(config)[str(tmp_path / "photos" / "obama.jpg")]
    assert record["faces"][0]["person"] == {"id": ids["obama"], "name": "Barack Obama"}


def test_kill_9_while_embedding_loses_nothing_and_embeds_nothing_twice(tmp_path, daemon, album):
    folder, truth = album
    config = write_config(tmp_path, people=PEOPLE_ON)
    photos = tmp_path / "photos"
    for i in range(4):  # 4 x the album's 17 faces: long enough to be killed in the middle
        shutil.copytree(folder, photos / f"copy{i}", dirs_exist_ok=True)
        for p in (photos / f"copy{i}").iterdir():  # other bytes, so no copy reuses another's faces
            if p.suffix == ".jpg" and truth.get(p.name):
                save_jpeg(p, _rgb(p), quality=90 - i)
    d = daemon(config)
    wait_until(lambda: peek(config, "SELECT count(*) FROM faces WHERE embed_state='done'") >= 10,
               timeout=120, interval=0.01, message="some faces embedded")
    d.kill()
    embedded_before = peek(config, "SELECT count(*) FROM faces WHERE embed_state='done'")
    assert 10 <= embedded_before < 68, "killed after the work was done: use more photos"
    d = daemon(config)
    wait_until(lambda: settled(config), timeout=240, interval=0.5, message="everything embedded after the kill")
    assert d.stop() == 0
    s = status(config)
    assert s["people"]["faces_waiting"] == 0 and s["people"]["faces_failed"] == 0 and s["faces"] == 68
    saved_again = sum(e.get("faces", 0) for e in d.events() if e.get("event") == "faces_embedded")
    assert saved_again == 68 - embedded_before  # what was saved before the kill was not embedded again
    assert peek(config, "SELECT count(*) FROM faces WHERE embed_claimed_by IS NOT NULL") == 0
    # every photo's faces are distinct people, and each label is one person across the four copies
    label_person = {}
    for path, record in export(config).items():
        labels = truth[os.path.basename(path)]
        persons = [(f["person"] or {}).get("id") for f in sorted(record["faces"], key=lambda f: f["bbox"][0])]
        assert None not in persons and len(set(persons)) == len(persons), (path, persons)
        for label, person in zip(labels, persons):
            label_person.setdefault(label, set()).add(person)
    assert all(len(v) == 1 for v in label_person.values()), label_person


def test_people_off_leaves_faces_waiting_and_says_so(tmp_path, album):
    folder, truth = album
    config = write_config(tmp_path)  # people.enabled: false
    shutil.copy(folder / "obama.jpg", tmp_path / "photos" / "obama.jpg")
    facewatch(config, "scan")
    s = status(config)
    assert s["people"] == {"persons": 0, "named": 0, "faces_waiting": 1, "faces_failed": 0}
    assert "1 faces waiting for recognition (people.enabled is false)" in facewatch(config, "status").stdout
    assert export(config)[str(tmp_path / "photos" / "obama.jpg")]["faces"][0]["person"] is None


def test_pairwise_quality_on_the_album(tmp_path, album):
    """Same-person pairs together >= 0.9, different-person pairs merged <= 0.01 (the issue's goal)."""
    folder, truth = album
    config = write_config(tmp_path, people=PEOPLE_ON)
    shutil.copytree(folder, tmp_path / "photos", dirs_exist_ok=True)
    facewatch(config, "scan", timeout=300)
    found = people_of(config)
    faces = [(label, person) for name, labels in truth.items()
             for label, (_, person) in zip(labels, found[name])]
    same = [(a, b) for a, b in combinations(faces, 2) if a[0] == b[0]]
    diff = [(a, b) for a, b in combinations(faces, 2) if a[0] != b[0]]
    together = sum(a[1] is not None and a[1] == b[1] for a, b in same) / len(same)
    merged = sum(a[1] is not None and a[1] == b[1] for a, b in diff) / len(diff)
    assert together >= 0.9 and merged <= 0.01, (together, merged)
