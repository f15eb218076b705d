"""Throughput and fidelity, in one run on one corpus:

  (a) the loop a user would write: cv2.imread at full size, MediaPipe full range, one SQLite
      insert and commit per file, in one process;
  (b) `facewatch scan` on a fresh database (wall time of the whole command, start-up included);
  (c) the decode floor: only reading and decoding every file at the scale facewatch uses, on all cores.

    python bench/throughput.py                      # makes bench-corpus/12mp (400 photos) if needed
    python bench/throughput.py --corpus DIR

It prints images/s for each, the ratios (b)/(a) and (b)/(c), and how the faces facewatch stores
compare with the full-resolution loop's: total count, and the overlap (IoU) of faces found by both.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

HAND_LOOP = r'''
import json, sqlite3, sys, time
import cv2, mediapipe as mp
files, db_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
db = sqlite3.connect(db_path)
db.execute("CREATE TABLE faces (path TEXT, score REAL, x INT, y INT, w INT, h INT)")
detector = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
found = {}
for path in open(files).read().splitlines():
    bgr = cv2.imread(path)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    boxes = []
    for d in detector.process(rgb).detections or []:
        b = d.location_data.relative_bounding_box
        box = [round(b.xmin * w), round(b.ymin * h), round(b.width * w), round(b.height * h)]
        boxes.append(box)
        db.execute("INSERT INTO faces VALUES (?, ?, ?, ?, ?, ?)", (path, d.score[0], *box))
    db.commit()
    found[path] = boxes
json.dump(found, open(out, "w"))
'''


def iou(a, b) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def _decode_one(path: str) -> int:
    import cv2
    import numpy as np

    from facewatch.analysis.decode import _REDUCED, jpeg_size, reduction
    with open(path, "rb") as f:
        data = f.read()
    factor = reduction(*jpeg_size(data))  # facewatch's default processing.min_decode_side
    return cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[factor] | cv2.IMREAD_COLOR_RGB).shape[0]


def decode_floor(files: list[str]) -> float:
    """Seconds to read and decode every file at facewatch's scale, on all cores (pool already up)."""
    with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as pool:
        pool.map(_decode_one, files[:4])  # start-up and imports are not part of the floor
        started = time.perf_counter()
        pool.map(_decode_one, files, chunksize=4)
        return time.perf_counter() - started


def hand_loop(files: list[str], work: Path) -> tuple[float, dict]:
    listing = work / "files.txt"
    listing.write_text("\n".join(files))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", HAND_LOOP, str(listing), str(work / "loop.db"), str(work / "loop.json")],
                   check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, json.loads((work / "loop.json").read_text())


def facewatch_scan(corpus: Path, work: Path, small_faces: str = "auto", people: str = "on",
                   postgres: str = "") -> tuple[float, float, dict, float]:
    """Time until `facewatch scan` had detected every file, its rate once started (from its
    batch_saved log), its faces, and the whole command's time (the people stage's embeddings,
    which follow detection, included)."""
    name = f"{small_faces}-{people}-{'pg' if postgres else 'sqlite'}"
    config = work / f"config-{name}.yaml"
    if postgres:  # a throwaway database: emptied first
        import psycopg
        with psycopg.connect(postgres, autocommit=True) as c:
            c.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    config.write_text(f"watch:\n  paths: [{corpus}]\ndatabase: {postgres or work / f'fw-{name}.db'}\n"
                      f"detector: {{small_faces: {small_faces}}}\nlogging: {{level: info, format: json}}\n"
                      f"people: {{enabled: {'true' if people == 'on' else 'false'}}}\n")
    facewatch = [sys.executable, "-m", "facewatch", "--config", str(config)]
    started, wall = time.perf_counter(), time.time()
    log = subprocess.run([*facewatch, "scan"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True).stderr
    elapsed = time.perf_counter() - started
    saved = [json.loads(line) for line in log.splitlines() if '"batch_saved"' in line]
    times = [datetime.fromisoformat(e["timestamp"].rstrip("Z")).replace(tzinfo=timezone.utc).timestamp()
             for e in saved]
    steady = sum(e["files"] for e in saved[1:]) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    detected = times[-1] - wall if times else elapsed
    out = subprocess.run([*facewatch, "export"], check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    return detected, steady, {r["path"]: [f["bbox"] for f in r["faces"]] for r in rows if r["status"] == "done"}, \
        elapsed


def fidelity(reference: dict, ours: dict) -> dict:
    ref_total = sum(len(v) for v in reference.values())
    our_total = sum(len(ours.get(p, [])) for p in reference)
    ious = []
    for path, ref_boxes in reference.items():
        left = list(ours.get(path, []))
        for box in ref_boxes:
            if not left:
                break
            best = max(left, key=lambda b: iou(box, b))
            if iou(box, best) > 0.3:  # the same face
                ious.append(iou(box, best))
                left.remove(best)
    return {"reference_faces": ref_total, "facewatch_faces": our_total,
            "count_difference_pct": 100.0 * (our_total - ref_total) / ref_total if ref_total else 0.0,
            "matched": len(ious), "min_iou": min(ious) if ious else None,
            "mean_iou": sum(ious) / len(ious) if ious else None,
            "share_iou_ge_0_8": sum(i >= 0.8 for i in ious) / len(ious) if ious else None}


def lost(reference: dict, ours: dict) -> int:
    """Faces the full-size loop found that facewatch did not (no box at IoU >= 0.5)."""
    return sum(1 for path, boxes in reference.items() for box in boxes
               if not any(iou(box, b) >= 0.5 for b in ours.get(path, [])))


def main() -> None:
    parser = argparse.ArgumentParser(description="facewatch throughput against a hand-written loop and the decode floor")
    parser.add_argument("--corpus", type=Path, default=HERE.parent / "bench-corpus" / "12mp")
    parser.add_argument("--count", type=int, default=400, help="photos to make when the corpus is empty")
    parser.add_argument("--size", default="12mp", help="their size: 12mp or 1080p")
    parser.add_argument("--groups", type=int, default=0, metavar="N",
                        help="when making the corpus: every Nth photo a real group photo")
    parser.add_argument("--groups-from", choices=["pypi", "tuning", "held-out"], default="pypi",
                        help="when making the corpus: which group photos (make_corpus.group_photos)")
    parser.add_argument("--small-faces", default="auto",
                        help="detector.small_faces settings to run, comma-separated (off,auto,always)")
    parser.add_argument("--people", default="on", help="people.enabled settings to run, comma-separated (on,off)")
    parser.add_argument("--postgres", default="", metavar="URL",
                        help="also run each setting on this throwaway PostgreSQL database (emptied first)")
    args = parser.parse_args()
    args.corpus = args.corpus.resolve()  # the config written for each scan lives elsewhere
    files = sorted(str(p) for p in args.corpus.glob("[!.]*.jpg")) if args.corpus.is_dir() else []
    if not files:
        from make_corpus import make_corpus
        print(f"making {args.count} photos of {args.size} in {args.corpus} ...", flush=True)
        files = sorted(str(p) for p in make_corpus(args.corpus, args.count, args.size, group_every=args.groups,
                                                           groups_from=args.groups_from))
    n = len(files)
    print(f"corpus: {n} JPEGs in {args.corpus}; machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        floor_s = decode_floor(files)  # also warms the page cache for all three
        print(f"(c) decode floor        {n / floor_s:7.1f} images/s  ({floor_s:.1f} s)", flush=True)
        loop_s, reference = hand_loop(files, work)
        print(f"(a) hand-written loop   {n / loop_s:7.1f} images/s  ({loop_s:.1f} s)", flush=True)
        groups = {p for p in reference if os.path.basename(p).startswith("group_")}
        print(f"    its faces: {sum(len(v) for v in reference.values())}, "
              f"{sum(len(reference[p]) for p in groups)} of them in {len(groups)} group photos", flush=True)
        backends = [""] + ([args.postgres] if args.postgres else [])
        for mode, people, pg in ((m, p, b) for m in args.small_faces.split(",") for p in args.people.split(",")
                                 for b in backends):
            scan_s, steady, ours, whole_s = facewatch_scan(args.corpus, work, mode, people, pg)
            print(f"\n(b) facewatch scan, small_faces: {mode}, people: {people}, "
                  f"database: {'PostgreSQL' if pg else 'SQLite'}")
            print(f"    {n / scan_s:7.1f} images/s until every file was detected ({scan_s:.1f} s); "
                  f"{steady:.1f} once started; the whole command {whole_s:.1f} s"
                  + (" (the people stage's embeddings, after detection, included)" if people == "on" else ""))
            print(f"    (b)/(a) = {loop_s / scan_s:.2f}x until detected, {steady * loop_s / n:.2f}x once started; "
                  f"(b)/(c) = {floor_s / scan_s:.2f}")
            f = fidelity(reference, ours)
            in_groups = sum(len(ours.get(p, [])) for p in groups)
            print(f"    faces: {f['facewatch_faces']} vs the loop's {f['reference_faces']} "
                  f"({f['count_difference_pct']:+.1f}%), in group photos {in_groups} vs "
                  f"{sum(len(reference[p]) for p in groups)}; loop faces lost (no box at IoU >= 0.5): "
                  f"{lost(reference, ours)}")
            print(f"    {f['matched']} found by both, IoU >= 0.8 for {100 * (f['share_iou_ge_0_8'] or 0):.1f}% "
                  f"(mean {f['mean_iou'] or 0:.3f}, min {f['min_iou'] or 0:.2f})", flush=True)


if __name__ == "__main__":
    main()
