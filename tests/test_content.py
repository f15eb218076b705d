"""Files known by their content: renames, moves, touch and chmod run no detection; edits run one."""
import csv
import io
import json
import os
import shutil
import time
from datetime import datetime, timezone

import cv2
import pytest

from conftest import export, facewatch, make_variants, status, wait_until, write_config

pytestmark = pytest.mark.slow


def idle(config, analyses=None):
    """The queue is empty (after giving the watcher time to notice what just happened)."""
    time.sleep(1.0)
    wait_until(lambda: status(config)["queue"] == {"pending": 0, "processing": 0}, timeout=30, message="idle")
    return status(config)


def faces_by_name(config):
    return {os.path.basename(p): r["faces"] for p, r in export(config).items() if r["status"] == "done"}


def test_renames_moves_touch_and_chmod_run_no_detection(tmp_path, daemon, photo_dir):
    config = write_config(tmp_path, processing={"settle_s": 0.3})
    photos = tmp_path / "photos"
    make_variants(photo_dir, photos / "loose", 150, seed=1, prefix="a")
    make_variants(photo_dir, photos / "album", 150, seed=2, prefix="b")
    daemon(config)
    wait_until(lambda: status(config)["files"]["done"] == 300, timeout=60, message="300 analysed")
    before = idle(config)
    assert before["analyses"] == 300
    faces = faces_by_name(config)
    analysed_at = {os.path.basename(p): r["processed_at"] for p, r in export(config).items()}
    time.sleep(1.1)  # processed_at has whole seconds: anything computed from here on is later
    mark = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def since_mark():
        out = facewatch(config, "export", "--since", mark).stdout
        return [json.loads(line)["path"] for line in out.splitlines()]

    for i, path in enumerate(sorted((photos / "loose").iterdir())):  # one by one
        os.rename(path, path.with_name(f"renamed-{i:04d}.jpg"))
    os.rename(photos / "album", photos / "moved-album")  # a whole folder
    (photos / "nested").mkdir()
    os.rename(photos / "moved-album", photos / "nested" / "album")  # and again, deeper
    s = idle(config)
    assert s["analyses"] == 300, "a rename or a move ran a detection"
    records = export(config)
    done = {p: r for p, r in records.items() if r["status"] == "done"}
    assert len(done) == 300
    assert s["files"]["missing"] == 0, sorted(p for p, r in records.items() if r["status"] == "missing")[:5]
    for i in range(150):
        assert records[str(photos / "loose" / f"renamed-{i:04d}.jpg")]["faces"] == faces[f"a{i:04d}.jpg"]
        assert records[str(photos / "nested" / "album" / f"b{i:04d}.jpg")]["faces"] == faces[f"b{i:04d}.jpg"]

    for path in (photos / "nested" / "album").iterdir():
        os.utime(path)  # touch
    for path in list((photos / "loose").iterdir())[:50]:
        path.chmod(0o600)
    shutil.copy(photos / "loose" / "renamed-0007.jpg", photos / "copy-of-7.jpg")
    s = idle(config)
    assert s["analyses"] == 300, "touch, chmod or a copy ran a detection"
    records = export(config)
    assert records[str(photos / "copy-of-7.jpg")]["faces"] == faces["a0007.jpg"]
    # processed_at is when the faces were computed: none of the above computed any
    assert records[str(photos / "copy-of-7.jpg")]["processed_at"] == analysed_at["a0007.jpg"]
    for i in range(150):
        assert records[str(photos / "loose" / f"renamed-{i:04d}.jpg")]["processed_at"] == analysed_at[f"a{i:04d}.jpg"]
        assert records[str(photos / "nested" / "album" / f"b{i:04d}.jpg")]["processed_at"] == \
            analysed_at[f"b{i:04d}.jpg"]
    assert since_mark() == [], "export --since handed out old results as new"

    edited = photos / "loose" / "renamed-0003.jpg"
    shutil.copy(photo_dir / "two_astronauts.jpg", edited)  # new bytes: two faces now
    s = idle(config)
    assert s["analyses"] == 301, "an edit must run exactly one detection"
    assert len(export(config)[str(edited)]["faces"]) == 2
    assert since_mark() == [str(edited)]


def test_moves_while_stopped_are_matched_by_content(tmp_path, photo_dir):
    config = write_config(tmp_path)
    photos = tmp_path / "photos"
    make_variants(photo_dir, photos / "old", 40, seed=4)
    facewatch(config, "scan")
    faces = faces_by_name(config)
    os.rename(photos / "old", photos / "new")
    facewatch(config, "scan")
    s = status(config)
    assert s["analyses"] == 40, "a folder moved while stopped was analysed again"
    records = export(config)
    assert all(records[str(photos / "new" / n)]["faces"] == f for n, f in faces.items())
    assert not any(p.startswith(str(photos / "old")) for p in records), "a move is not a deletion and a copy"
    assert s["files"] == {"total": 40, "done": 40, "failed": 0, "missing": 0, "with_faces": 40}


def test_csv_and_jsonl_parse_back_to_the_same_faces(tmp_path, photo_dir):
    config = write_config(tmp_path)
    photos = tmp_path / "photos"
    for name in ("astronaut.jpg", "two_astronauts.jpg", "coffee.png", "sideways.jpg"):
        shutil.copy(photo_dir / name, photos / name)
    (photos / "broken.jpg").write_bytes(b"nope")
    facewatch(config, "scan")
    out_jsonl, out_csv = tmp_path / "out.jsonl", tmp_path / "out.csv"
    facewatch(config, "export", "--format", "jsonl", "--output", str(out_jsonl))
    facewatch(config, "export", "--format", "csv", "--output", str(out_csv))
    rows = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert len(rows) == 5 and {r["status"] for r in rows} == {"done", "failed"}
    from_jsonl = {(r["path"], i): (f["score"], f["bbox"], f["keypoints"]) for r in rows
                  for i, f in enumerate(r["faces"])}
    from_csv = {}
    for row in csv.DictReader(io.StringIO(out_csv.read_text())):
        keypoints = [[int(row[f"{k}_x"]), int(row[f"{k}_y"])] for k in
                     ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")]
        from_csv[(row["path"], int(row["face_index"]))] = (
            float(row["score"]), [int(row[k]) for k in "xywh"], keypoints)
    assert from_csv == from_jsonl and len(from_csv) == 4
    two = facewatch(config, "export", "--min-faces", "2").stdout.splitlines()
    assert [json.loads(x)["path"] for x in two] == [str(photos / "two_astronauts.jpg")]
    failed = facewatch(config, "export", "--status", "failed").stdout.splitlines()
    assert json.loads(failed[0])["error"].startswith("not an image")
    assert facewatch(config, "export", "--since", "2999-01-01").stdout == ""


def test_show_and_draw(tmp_path, photo_dir):
    config = write_config(tmp_path)
    photos = tmp_path / "photos"
    shutil.copy(photo_dir / "sideways.jpg", photos / "sideways.jpg")
    facewatch(config, "scan")
    text = facewatch(config, "show", str(photos / "sideways.jpg")).stdout
    assert "status     done" in text and "512x768 pixels" in text and "faces      1" in text
    shown = json.loads(facewatch(config, "show", "--json", str(photos / "sideways.jpg")).stdout)
    assert shown["status"] == "done" and len(shown["faces"]) == 1 and shown["content_hash"].startswith(f"{shown['size']}:")
    out = tmp_path / "drawn.jpg"
    facewatch(config, "show", str(photos / "sideways.jpg"), "--draw", str(out))
    drawn = cv2.imread(str(out))
    assert drawn.shape[:2] == (768, 512)  # upright, as a viewer shows it
    x, y, w, h = shown["faces"][0]["bbox"]
    assert tuple(drawn[y, x + w // 2]) != tuple(cv2.imread(str(photos / "sideways.jpg"))[y, x + w // 2])
    missing = facewatch(config, "show", str(photos / "nope.jpg"), check=False)
    assert missing.returncode == 1 and "not in the index" in missing.stderr
