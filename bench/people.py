"""People: clustering quality on real labelled faces, embedding speed, and the cost at scale.

    python bench/people.py quality [--distances 0.4,0.45,0.5,0.55,0.6]
    python bench/people.py speed                 # embeddings per second on all cores
    python bench/people.py scale [--faces 100000,1000000]

quality: real identities (face_recognition 1.3.0's labelled photos: five of one man, one of
another; scikit-image's astronaut; opencv-doc's messi5; every face of at least 40 px in the real
group photos of bench/sources.py, each its own person), each photo under several crops, sizes,
flips, lighting, JPEG qualities and a slight rotation. `facewatch scan` with the people stage
on, at each match distance; prints pairwise precision and recall: same-person pairs placed
together, different-person pairs merged (goal: >= 0.9 and <= 0.01), and faces left alone.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")


def identities() -> list[tuple[str, np.ndarray]]:
    """(person label, RGB photo of that person) of every real labelled face at hand."""
    from skimage import data
    from sources import labelled_photos, real_group_photos
    from facewatch.analysis.detect import MediaPipeDetector
    people = []
    for name, rgb in labelled_photos():
        people.append(("obama" if name.startswith("obama") else name.split(".")[0], rgb))
    people.append(("astronaut", data.astronaut()))
    if (OPENCV_DOC / "messi5.jpg").exists():
        people.append(("messi", cv2.cvtColor(cv2.imread(str(OPENCV_DOC / "messi5.jpg")), cv2.COLOR_BGR2RGB)))
    detector = MediaPipeDetector("full_range", 0.5, "auto")
    for name, rgb in real_group_photos():
        if name == "gender_detection_input.jpg":
            continue  # the same people as face_detection_input.jpg, perhaps: labels would be guesses
        h, w = rgb.shape[:2]
        for i, face in enumerate(detector.whole(rgb, w, h, 1)[0] + detector.tiles(rgb, w, h, 1, [448])):
            x, y, bw, bh = face.bbox
            if bw < 40 or face.score < 0.5:
                continue
            x0, y0 = int(max(0, x - bw * 0.8)), int(max(0, y - bh * 0.8))
            x1, y1 = int(min(w, x + bw * 1.8)), int(min(h, y + bh * 1.8))
            crop = rgb[y0:y1, x0:x1]
            if any(np.array_equal(crop.shape, c.shape) and np.array_equal(crop, c) for _, c in people):
                continue
            people.append((f"{name}#{x // 20}-{y // 20}", np.ascontiguousarray(crop)))
    return _dedupe(people)


def _dedupe(people):
    """A face found by both the whole pass and the tiles is one identity."""
    kept = []
    for label, rgb in people:
        if "#" in label:
            base, pos = label.split("#")
            x, y = map(int, pos.split("-"))
            if any(k.startswith(base + "#") and abs(int(k.split("#")[1].split("-")[0]) - x) <= 2 and
                   abs(int(k.split("#")[1].split("-")[1]) - y) <= 2 for k, _ in kept):
                continue
        kept.append((label, rgb))
    return kept


def variants(rgb: np.ndarray):
    h, w = rgb.shape[:2]
    yield "orig", rgb, 92
    yield "flip", rgb[:, ::-1], 92
    yield "dark", np.clip(rgb * 0.55, 0, 255).astype(np.uint8), 92
    yield "bright", np.clip(255 * (rgb / 255.0) ** 0.6, 0, 255).astype(np.uint8), 92
    yield "half", cv2.resize(rgb, (max(w // 2, 1), max(h // 2, 1)), interpolation=cv2.INTER_AREA), 92
    yield "double", cv2.resize(rgb, (w * 2, h * 2), interpolation=cv2.INTER_CUBIC), 92
    yield "crop", rgb[h // 10: h - h // 14, w // 14: w - w // 10], 92
    yield "jpeg40", rgb, 40
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), 6, 1.0)
    yield "rotated", cv2.warpAffine(rgb, rotation, (w, h), borderMode=cv2.BORDER_REFLECT), 92


def build_album(folder: Path) -> dict:
    """Write every identity under every variant; {file name: label} (each photo holds one face)."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for n, (label, rgb) in enumerate(identities()):
        for vname, v, quality in variants(rgb):
            name = f"{n:03d}_{vname}.jpg"
            cv2.imwrite(str(folder / name), cv2.cvtColor(np.ascontiguousarray(v), cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, quality])
            truth[name] = label
    return truth


def timed_scan(config: Path) -> float:
    """Seconds `facewatch scan` takes with this config, the whole command."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "facewatch", "--config", str(config), "scan"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_scan(folder: Path, work: Path, distance: float, min_faces: int = 2) -> tuple[dict, float]:
    config = work / f"config-{distance}.yaml"
    db = work / f"fw-{distance}.db"
    config.write_text(f"watch:\n  paths: [{folder}]\ndatabase: {db}\nlogging: {{level: warning, format: json}}\n"
                      f"people: {{match_distance: {distance}, min_faces: {min_faces}}}\n")
    elapsed = timed_scan(config)
    out = subprocess.run([sys.executable, "-m", "facewatch", "--config", str(config), "export"],
                         check=True, capture_output=True, text=True).stdout
    found = {}
    for record in map(json.loads, out.splitlines()):
        faces = sorted(record["faces"], key=lambda f: -f["bbox"][2] * f["bbox"][3])
        found[os.path.basename(record["path"])] = [(f["person"] or {}).get("id") for f in faces]
    return found, elapsed


def pairwise(truth: dict, found: dict) -> dict:
    """Each photo's largest face is its labelled one (a crop of a group photo may show a neighbour's edge)."""
    faces = [(label, (found.get(name) or [None])[0]) for name, label in truth.items()]
    detected = [(label, person) for label, person in faces]
    same = [(a, b) for a, b in combinations(detected, 2) if a[0] == b[0]]
    diff = [(a, b) for a, b in combinations(detected, 2) if a[0] != b[0]]
    together = sum(a[1] is not None and a[1] == b[1] for a, b in same)
    merged = sum(a[1] is not None and a[1] == b[1] for a, b in diff)
    return {"faces": len(faces), "identities": len(set(truth.values())), "same_pairs": len(same),
            "recall": together / len(same) if same else 0.0, "diff_pairs": len(diff),
            "merged": merged / len(diff) if diff else 0.0, "merged_pairs": merged,
            "alone": sum(p is None for _, p in faces), "not_found": sum(name not in found or not found[name]
                                                                          for name in truth)}


def quality(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        truth = build_album(work / "album")
        labels = set(truth.values())
        print(f"album: {len(truth)} photos of {len(labels)} real people "
              f"({sum(l == 'obama' for l in truth.values())} of the one with five photos), one face each")
        for distance in (float(d) for d in args.distances.split(",")):
            found, elapsed = run_scan(work / "album", work, distance)
            q = pairwise(truth, found)
            print(f"match_distance {distance:.2f}: same-person pairs together {q['recall']:.3f} "
                  f"({q['same_pairs']} pairs), different-person pairs merged {q['merged']:.4f} "
                  f"({q['merged_pairs']} of {q['diff_pairs']}); faces alone {q['alone']}, photos without a "
                  f"face found {q['not_found']}; scan {elapsed:.1f} s", flush=True)


def speed(args) -> None:
    """Embeddings per second: a scan with people off (detection), then the same index with people
    on (only the embeddings), on the album."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_album(work / "album")
        db = work / "fw.db"
        for enabled in ("false", "true"):
            config = work / f"config-{enabled}.yaml"
            config.write_text(f"watch:\n  paths: [{work / 'album'}]\ndatabase: {db}\n"
                              f"logging: {{level: warning}}\npeople: {{enabled: {enabled}}}\n")
            elapsed = timed_scan(config)
            faces = sqlite3.connect(db).execute("SELECT count(*) FROM faces").fetchone()[0]
            if enabled == "false":
                print(f"detection of {faces} faces: {elapsed:.1f} s")
            else:
                print(f"embedding {faces} faces on {os.cpu_count()} cores: {elapsed:.1f} s, "
                      f"{faces / elapsed:.1f} faces/s (the command's start and the models' load included)")


def synthetic(n: int, people: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n embeddings of `people` people, spread as dlib's are (people ~1.4 apart, faces ~0.35 from
    their person's centre); and which person each is."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 128)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    who = rng.integers(0, people, n)
    noise = rng.normal(size=(n, 128)).astype(np.float32)
    noise *= (0.25 / np.linalg.norm(noise, axis=1, keepdims=True))
    return (centres[who] + noise).astype("<f4"), who


def scale(args) -> None:
    from facewatch.people.stage import PeopleIndex
    from facewatch.store.sqlite import SQLiteStore
    for n in (int(x) for x in args.faces.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            vectors, who = synthetic(n + 200, max(n // 20, 10))
            store = SQLiteStore(os.path.join(tmp, "fw.db"))
            started = time.perf_counter()
            _fill(store, vectors[:n], who[:n])
            fill_s = time.perf_counter() - started
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            index = PeopleIndex(store)
            started = time.perf_counter()
            index.reload()
            load_s = time.perf_counter() - started
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            # place 200 new faces, one at a time, as the stage does (each looks at every face)
            timings = []
            for i in range(200):
                v = vectors[n + i]
                started = time.perf_counter()
                index.neighbours(v, index.match_distance)
                timings.append(time.perf_counter() - started)
            timings.sort()
            held = index.vectors.nbytes + index.ids.nbytes + index.files.nbytes + index.persons.nbytes \
                + index.norms.nbytes + index.alive.nbytes
            print(f"{n:>9,} faces: placing one new face {1000 * timings[100]:.1f} ms (median; p99 "
                  f"{1000 * timings[197]:.1f} ms); index in memory {held / 2**20:.0f} MiB (arrays), "
                  f"process peak grew {(rss_after - rss_before) / 1024:.0f} MiB while loading; loading it "
                  f"{load_s:.1f} s; making the database {fill_s:.0f} s", flush=True)
            store.close()
            config = Path(tmp) / "config.yaml"
            config.write_text(f"watch:\n  paths: [{tmp}]\ndatabase: {os.path.join(tmp, 'fw.db')}\n")
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "facewatch", "--config", str(config), "people",
                                  "--json"], check=True, capture_output=True, text=True).stdout
            people_s = time.perf_counter() - started
            print(f"{'':>9}  `facewatch people` over {len(json.loads(out)):,} people: {people_s:.2f} s "
                  f"(the whole command; target <= 0.5 s at 100,000 faces)", flush=True)


def _fill(store, vectors: np.ndarray, who: np.ndarray) -> None:
    """Files, faces with embeddings and people, written straight into the database (as years of
    the daemon's work would leave them)."""
    c = sqlite3.connect(store.database)
    c.execute("BEGIN")
    people = int(who.max()) + 1
    c.executemany("INSERT INTO persons (person_id, created_at) VALUES (?, '2026-01-01')",
                  [(p + 1,) for p in range(people)])
    c.executemany("INSERT INTO files (file_id, path, dir, status, width, height, face_count) "
                  "VALUES (?, ?, '/p', 'done', 4000, 3000, 1)",
                  ((i + 1, f"/p/{i:08d}.jpg".encode()) for i in range(len(vectors))))
    c.executemany("INSERT INTO faces (file_id, idx, score, x, y, w, h, keypoints, embedding, embed_state, person_id) "
                  "VALUES (?, 0, 0.9, 10, 10, 100, 100, '[]', ?, 'done', ?)",
                  ((i + 1, vectors[i].tobytes(), int(who[i]) + 1) for i in range(len(vectors))))
    c.execute("COMMIT")
    c.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--distances", default="0.4,0.45,0.5,0.55,0.6")
    sub.add_parser("speed")
    s = sub.add_parser("scale")
    s.add_argument("--faces", default="100000,1000000")
    args = parser.parse_args()
    {"quality": quality, "speed": speed, "scale": scale}[args.what](args)


if __name__ == "__main__":
    main()
