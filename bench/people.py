"""People: clustering quality on real labelled faces, embedding speed, and the cost at scale.

    python bench/people.py quality [--distances 0.4,0.45,0.5,0.55,0.6]
    python bench/people.py speed [--old REV] [--runs N]  # per-face steps, old and new; scans with people on/off
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
from typing import Optional

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


def timed_scan(config: Path, code: Optional[Path] = None) -> float:
    """Seconds `facewatch scan` takes with this config, the whole command; `code`: the folder of
    another facewatch package to run instead of this one."""
    env = dict(os.environ, PYTHONPATH=str(code)) if code else None
    module = "facewatch" if code is None or (code / "facewatch" / "__main__.py").exists() else "facewatch.launch"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", module, "--config", str(config), "scan"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=str(code or HERE.parent))
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
    """The people stage, old and new side by side in one run, on a 12 MP corpus where one photo in
    eight is a real group photo (make_corpus.py --groups 8; or --corpus DIR):
    1. per face, on one core, in this process: each step of embedding, dlib's way (a second
       decode of the photo at the detail the face needs, dlib's ResNet on its chip) and facewatch's
       (the detector's decode when it shows the face 64 px wide, else one finer decode per photo of
       its rows down to its lowest such face; the ResNet in onnxruntime, a photo's faces in one
       batch), and the largest difference between the two descriptors of each face's chip;
    2. `facewatch scan` end to end with people off and on, for this code and, with --old REV, the
       code of that commit (people on: the whole time to a complete index)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = Path(args.corpus).resolve() if args.corpus else work / "corpus"  # the scans run elsewhere
        if not args.corpus:
            from make_corpus import make_corpus
            make_corpus(corpus, args.count, "12mp", group_every=8)
        photos = sorted(p for p in corpus.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        _per_face_steps(photos)
        codes = [("this code", None)] + ([(f"old code ({args.old})", _checkout(args.old, work))] if args.old else [])
        for _, code in codes:  # as installed: compiled once (PYTHONDONTWRITEBYTECODE would make every run compile)
            subprocess.run([sys.executable, "-m", "compileall", "-q", str((code or HERE.parent) / "facewatch")],
                           check=True)
        ratios: dict = {label: [] for label, _ in codes}
        for run in range(1, args.runs + 1):
            rows = []
            for label, code in codes:
                for enabled in ("false", "true"):
                    config = work / f"config-{run}-{len(rows)}.yaml"
                    db = work / f"fw-{run}-{len(rows)}.db"
                    config.write_text(f"watch:\n  paths: [{corpus}]\ndatabase: {db}\nlogging: {{level: warning}}\n"
                                      f"people: {{enabled: {enabled}}}\n")
                    elapsed = timed_scan(config, code)
                    c = sqlite3.connect(db)
                    faces, embedded = c.execute("SELECT count(*), count(*) FILTER (WHERE embed_state = 'done') "
                                                "FROM faces").fetchone()
                    rows.append((label, enabled, elapsed, faces, embedded))
            print(f"\nend to end, `facewatch scan` of {len(photos)} photos on {os.cpu_count()} cores (the whole "
                  f"command){f', run {run} of {args.runs}' if args.runs > 1 else ''}:")
            for label, enabled, elapsed, faces, embedded in rows:
                line = f"  {label}, people {'on ' if enabled == 'true' else 'off'}: {elapsed:6.1f} s, {faces} faces"
                if enabled == "true":
                    off = next(r[2] for r in rows if r[0] == label and r[1] == "false")
                    ratios[label].append(elapsed / off)
                    line += (f", {embedded} embedded; {elapsed / off:.2f}x the scan without people; the people stage "
                             f"{100 * (elapsed - off) / elapsed:.0f}% of the time to a complete index, "
                             f"{embedded / max(elapsed - off, 1e-9):.1f} faces/s on {os.cpu_count()} cores")
                print(line, flush=True)
        if args.runs > 1:  # one run's ratio moves by a few hundredths: say how much
            for label, found in ratios.items():
                print(f"{label}: people on / off over {len(found)} runs: {', '.join(f'{r:.2f}x' for r in found)}; "
                      f"median {float(np.median(found)):.2f}x")


def _per_face_steps(photos: list) -> None:
    import dlib
    import face_recognition_models as weights

    from facewatch.analysis import embed
    from facewatch.analysis.decode import decode, decode_reduced
    from facewatch.analysis.detect import MediaPipeDetector
    from facewatch.analysis.faces import find_faces
    detector = MediaPipeDetector("full_range", 0.5, "auto")
    encoder = dlib.face_recognition_model_v1(weights.face_recognition_model_location())
    new = embed.embedder()
    clock = time.process_time  # one core's work, whatever else the machine does

    def old_reduction(box) -> int:  # the people stage before: faces decoded 100 px wide
        return max(k for k in (1, 2, 4, 8) if k == 1 or min(box[2], box[3]) / k >= 100)
    old = {"decode": 0.0, "align": 0.0, "network": 0.0}
    now = {"decode": 0.0, "align": 0.0, "network": 0.0}
    faces_total, embedded, worst, reused = 0, 0, 0.0, 0
    for path in photos:
        data = path.read_bytes()
        picture = decode(data, 10**9)
        faces = [f for f in find_faces(detector, data, picture, 10**9) if min(f.bbox[2:]) >= embed.MIN_FACE]
        faces_total += len(faces)
        if not faces:
            continue
        # dlib's way, as the people stage did: a job per face, a decode at the detail that face needs
        # (kept for the next face of the same photo when detailed enough)
        kept = None
        for f in faces:
            started = clock()
            if kept is None or kept.scale > old_reduction(f.bbox):
                kept = decode(data, 10**9, min_side=-(-max(picture.width, picture.height) // old_reduction(f.bbox)))
            old["decode"] += clock() - started
            x, y, w, h = (v / kept.scale for v in f.bbox)
            started = clock()
            shape = new.predictor(kept.rgb, dlib.rectangle(int(round(x)), int(round(y)), int(round(x + w)),
                                                           int(round(y + h))))
            old["align"] += clock() - started
            started = clock()
            encoder.compute_face_descriptor(kept.rgb, shape)
            old["network"] += clock() - started
        # facewatch's way: the detector's decode where it shows the face, else one decode of the
        # photo's top rows, down to its lowest such face, at the detail the smallest needs
        source = picture
        started = clock()
        finer = embed.unshown(source, [f.bbox for f in faces])
        finer_picture = embed.decode_for(data, 10**9, finer) if finer else None
        now["decode"] += clock() - started
        reused += len(faces) - len(finer)
        chips = []
        for f in faces:
            source_of_face = source if embed.shows(source, f.bbox) else finer_picture
            started = clock()
            chip, error = new.chip(source_of_face, f.bbox)
            if error == embed.CUT_SHORT:  # as embed_faces does: from the whole decode
                chip, _ = new.chip(decode_reduced(data, 10**9, source_of_face.scale), f.bbox)
            now["align"] += clock() - started
            chips.append(chip)
        started = clock()
        ours = new.network.descriptors(np.stack(chips))
        now["network"] += clock() - started
        for chip, vector in zip(chips, ours):
            worst = max(worst, float(np.abs(np.asarray(encoder.compute_face_descriptor(chip)) - vector).max()))
        embedded += len(chips)
    print(f"per face, one core ({embedded} faces of {len(photos)} photos; {reused} embedded from the detector's own "
          f"decode, {embedded - reused} from one finer decode of their photo):")
    for name, (before, after) in {k: (old[k], now[k]) for k in old}.items():
        print(f"  {name:8} dlib's way {1000 * before / embedded:7.1f} ms   facewatch {1000 * after / embedded:6.1f} ms")
    total_old, total_new = sum(old.values()), sum(now.values())
    print(f"  {'all':8} dlib's way {1000 * total_old / embedded:7.1f} ms   facewatch {1000 * total_new / embedded:6.1f} ms"
          f"   -> {embedded / total_old:.1f} and {embedded / total_new:.1f} faces/s per core ({total_old / total_new:.1f}x)")
    print(f"  descriptors: largest difference from dlib's for the same chip {worst:.2e} (max abs, over {embedded} faces)",
          flush=True)


def _checkout(rev: str, work: Path) -> Path:
    """The facewatch package of commit `rev`, unpacked (git archive) for a side-by-side run."""
    folder = work / f"old-{rev}"
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", rev, "facewatch"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


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
            # placing new faces: one at a time (each compared with every face), and as the stage
            # places a batch (one matrix product per block of the index for the whole batch)
            timings = []
            for i in range(200):
                v = vectors[n + i]
                started = time.perf_counter()
                index.neighbours(v, index.match_distance)
                timings.append(time.perf_counter() - started)
            timings.sort()
            batched = {}
            for size in (16, 64, 256):
                started = time.perf_counter()
                measured = index.close_rows(vectors[n:n + size], index.match_distance, index.count)
                for i, seen in enumerate(measured):
                    index.neighbours(vectors[n + i], index.match_distance, measured=seen, start=index.count)
                batched[size] = (time.perf_counter() - started) / size
            held = index.vectors.nbytes + index.ids.nbytes + index.files.nbytes + index.persons.nbytes \
                + index.norms.nbytes + index.alive.nbytes
            print(f"{n:>9,} faces: placing one new face {1000 * timings[100]:.1f} ms (median; p99 "
                  f"{1000 * timings[197]:.1f} ms) alone; in the stage's batches "
                  + ", ".join(f"{1000 * s:.2f} ms a face ({k} a batch)" for k, s in batched.items())
                  + f"; index in memory {held / 2**20:.0f} MiB (arrays), process peak grew "
                  f"{(rss_after - rss_before) / 1024:.0f} MiB while loading; loading it {load_s:.1f} s; making "
                  f"the database {fill_s:.0f} s", flush=True)
            del index
            _find_like(store, vectors[n + 198:n + 200], n)
            store.close()
            config = Path(tmp) / "config.yaml"
            config.write_text(f"watch:\n  paths: [{tmp}]\ndatabase: {os.path.join(tmp, 'fw.db')}\n")
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "facewatch", "--config", str(config), "people",
                                  "--json"], check=True, capture_output=True, text=True).stdout
            people_s = time.perf_counter() - started
            print(f"{'':>9}  `facewatch people` over {len(json.loads(out)):,} people: {people_s:.2f} s "
                  f"(the whole command; target <= 0.5 s at 100,000 faces)", flush=True)


def _find_like(store, queries: np.ndarray, n: int) -> None:
    """`find --like`'s search among n faces, for a photo of two faces: reading every embedding from
    the database (the code before the vector file) against the vector file, first built, then
    brought up to date when nothing changed."""
    from facewatch.people.like import LIKE_DISTANCE, like
    from facewatch.people.vectors import VectorFile, vector, vector_file_path
    started = time.perf_counter()
    ids, chunk = [], []
    for face in store.indexed_faces(0):  # what like() did before
        ids.append(face.face_id)
        chunk.append(vector(face.embedding))
    matrix = np.stack(chunk)
    d = np.min(np.linalg.norm(matrix[:, None, :] - queries[None], axis=2), axis=1)
    close_before = int((d < LIKE_DISTANCE).sum())
    from_database = time.perf_counter() - started
    del matrix, chunk
    path = vector_file_path(store.database)
    started = time.perf_counter()
    VectorFile(path).update(store)
    built = time.perf_counter() - started
    started = time.perf_counter()
    found = like(store, list(queries), 100)
    searched = time.perf_counter() - started
    started = time.perf_counter()
    vf = VectorFile(path).update(store)
    close_now = len(vf.nearest(queries, LIKE_DISTANCE)[0])
    nearest_s = time.perf_counter() - started
    print(f"{'':>9}  find --like's search (two faces): reading the embeddings from the database {from_database:.2f} s; "
          f"the vector file ({path.stat().st_size / 2**20:.0f} MiB) built {built:.2f} s once, then the whole search "
          f"{searched:.2f} s ({len(found)} photos), of which reading the file and comparing {nearest_s:.2f} s; "
          f"the same faces found ({close_now} and {close_before})", flush=True)


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
    sp = sub.add_parser("speed")
    sp.add_argument("--corpus", help="a folder of photos (default: make_corpus.py's 12 MP, one in eight a group)")
    sp.add_argument("--count", type=int, default=80, help="photos to make when no --corpus")
    sp.add_argument("--old", metavar="REV", help="also scan with the code of this commit, side by side")
    sp.add_argument("--runs", type=int, default=1, help="scan people on and off this many times (the ratio's spread)")
    s = sub.add_parser("scale")
    s.add_argument("--faces", default="100000,1000000")
    args = parser.parse_args()
    {"quality": quality, "speed": speed, "scale": scale}[args.what](args)


if __name__ == "__main__":
    main()
