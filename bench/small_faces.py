"""Every face, measured: recall by face size, false faces and time, for small_faces off, auto and
always and the hand-written loop (MediaPipe on the full-size picture), side by side in one run.

    python bench/small_faces.py                      # real photos, tuning and held-out halves
    python bench/small_faces.py --half held-out      # the figures to report
    python bench/small_faces.py --pasted             # also the pasted-face corpora of groups.py
    python bench/small_faces.py --plot recall.png    # and recall against face size, drawn

Real photos: bench/sources.py REAL_PHOTOS (group photos, a 29-person conference photo, a
family's own album; from PyPI, npm and Debian packages), with the hand-checked boxes of
bench/real_faces.json, split once into a tuning half (what `auto` was tuned on) and a held-out
half. Each is run as shipped and framed on a 12 MP canvas as a camera frames a group (60-100%
of the width, upscaled, sensor noise). Face-free photos: Debian opencv-doc's and scikit-image's
(buildings, fruit, textures, a baboon, a cat, the Hubble deep field) at 12 MP, 1080p and 800x600,
and the face-free photos of the album (pets, sea, snow, a sunset).

A face counts as found when a box overlaps it at IoU >= 0.5 (each box finds one face); a box that
covers no face (nor a face in a picture on a wall, which a detector may or may not report) is a
false face. "of always" is the share of the faces `always` finds that a mode finds, among faces of
32 px or more. One process, one core: the figures compare the settings per photo, not
facewatch's throughput (throughput.py measures that, on both cores).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

BUCKETS = [(0, 16), (16, 24), (24, 32), (32, 48), (48, 64), (64, 96), (96, 150), (150, 100000)]
MODES = ["loop", "off", "auto", "always"]
TWELVE_MP = (4000, 3000)


def iou(a, b) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def covers(a, b) -> bool:
    from facewatch.analysis.tiles import same_face
    return same_face(tuple(a), tuple(b))


def detectors():
    import cv2
    import mediapipe as mp
    from facewatch.analysis.decode import decode
    from facewatch.analysis.detect import MediaPipeDetector
    from facewatch.analysis.faces import find_faces
    loop = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)

    def hand_loop(path: Path) -> list:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        found = []
        for d in loop.process(rgb).detections or ():
            b = d.location_data.relative_bounding_box
            found.append((round(b.xmin * w), round(b.ymin * h), round(b.width * w), round(b.height * h)))
        return found

    def facewatch(mode: str):
        detector = MediaPipeDetector("full_range", 0.5, mode)

        def run(path: Path) -> list:
            data = path.read_bytes()
            return [f.bbox for f in find_faces(detector, data, decode(data, 200_000_000), 200_000_000)]
        return run
    return {"loop": hand_loop, **{m: facewatch(m) for m in MODES[1:]}}


# corpora -------------------------------------------------------------------------------------

def real_corpus(folder: Path, half: str, seed: int = 0) -> tuple[dict, list]:
    """({path: (faces, ignore)}, face-free paths) for one half: each real photo as
    shipped and framed on 12 MP; the album's face-free photos, likewise."""
    from annotate_faces import decoded, sha256, truth
    from make_corpus import make_noise
    from sources import real_photo
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    noise = make_noise(TWELVE_MP, rng)
    photos, free = {}, []
    for name, entry in truth().items():
        if entry["half"] != half:
            continue
        if sha256(name) != entry["sha256"]:
            raise SystemExit(f"{name}: not the file whose faces real_faces.json holds")
        shipped = folder / name
        shipped.write_bytes(real_photo(name))
        big = folder / f"{Path(name).stem}-12mp.jpg"
        rgb = decoded(name)
        moved = frame(rgb, rng, noise, big)
        faces, ignore = entry["faces"], entry["ignore"]
        if faces or ignore:
            photos[shipped] = (faces, ignore)
            photos[big] = ([moved(b) for b in faces], [moved(b) for b in ignore])
        else:
            free += [shipped, big]
    return photos, free


def frame(rgb: np.ndarray, rng, noise: np.ndarray, path: Path):
    """Write `rgb` framed on a 12 MP canvas as a camera frames a group (60-100% of the width, the
    rest its edges, sensor noise); the function that moves its boxes there."""
    import cv2
    width, height = TWELVE_MP
    h, w = rgb.shape[:2]
    scale = min(width * rng.uniform(0.6, 1.0) / w, height / h)
    nw, nh = round(w * scale), round(h * scale)
    left, top = int(rng.integers(0, width - nw + 1)), int(rng.integers(0, height - nh + 1))
    img = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_CUBIC)
    img = cv2.copyMakeBorder(img, top, height - nh - top, left, width - nw - left, cv2.BORDER_REPLICATE)
    noisy = img.astype(np.int16) + noise
    cv2.imwrite(str(path), cv2.cvtColor(np.clip(noisy, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 90])
    return lambda b: [round(b[0] * scale + left), round(b[1] * scale + top), round(b[2] * scale), round(b[3] * scale)]


def face_free(folder: Path) -> list:
    from groups import make_face_free
    return sorted(folder.glob("*.jpg")) if folder.exists() else make_face_free(folder)


# measuring -----------------------------------------------------------------------------------

def measure(paths: list, runs: dict) -> dict:
    """{mode: {path: (boxes, seconds)}}"""
    report = {}
    for mode, run in runs.items():
        report[mode] = {}
        for path in paths:
            started = time.perf_counter()
            boxes = run(path)
            report[mode][path] = (boxes, time.perf_counter() - started)
    return report


def matched(faces: list, boxes: list) -> list:
    """For each face, whether a box finds it (IoU >= 0.5, each box one face, best overlaps first)."""
    pairs = sorted(((iou(f, b), i, j) for i, f in enumerate(faces) for j, b in enumerate(boxes)), reverse=True)
    hit, used = [False] * len(faces), set()
    for value, i, j in pairs:
        if value >= 0.5 and not hit[i] and j not in used:
            hit[i] = True
            used.add(j)
    return hit


def false_faces(faces: list, ignore: list, boxes: list) -> list:
    return [b for b in boxes if not any(covers(b, f) for f in list(faces) + list(ignore))]


def figures(photos: dict, free: list, report: dict) -> dict:
    """Per mode: hits by face-size bucket, and the rows of the table."""
    out = {}
    for mode, found in report.items():
        hits = {b: [0, 0] for b in BUCKETS}
        big = [0, 0]
        of_always = [0, 0]
        kept_loop = [0, 0]
        false = 0
        for path, (faces, ignore) in photos.items():
            hit = matched(faces, found[path][0])
            always = matched(faces, report["always"][path][0]) if "always" in report else hit
            loop = matched(faces, report["loop"][path][0]) if "loop" in report else hit
            for face, h, a, lp in zip(faces, hit, always, loop):
                bucket = next(b for b in BUCKETS if b[0] <= face[2] < b[1])
                hits[bucket][0] += h
                hits[bucket][1] += 1
                if face[2] >= 32:
                    big[0] += h
                    big[1] += 1
                    if a:
                        of_always[0] += h
                        of_always[1] += 1
                if lp:
                    kept_loop[0] += h
                    kept_loop[1] += 1
            false += len(false_faces(faces, ignore, found[path][0]))
        total = sum(len(f) for f, _ in photos.values())
        out[mode] = {
            "hits": hits,
            "all faces": 100 * sum(h[0] for h in hits.values()) / max(total, 1),
            ">= 32 px": 100 * big[0] / max(big[1], 1),
            "of always >= 32": 100 * of_always[0] / max(of_always[1], 1),
            "kept of loop": 100 * kept_loop[0] / max(kept_loop[1], 1),
            "false faces": false,
            "ms/photo": 1000 * sum(found[p][1] for p in photos) / max(len(photos), 1),
            "FP/100 free": 100 * sum(len(found[p][0]) for p in free) / max(len(free), 1),
            "ms/free photo": 1000 * sum(found[p][1] for p in free) / max(len(free), 1),
        }
    return out


ROWS = [("all faces", "{:>9.1f}%"), (">= 32 px", "{:>9.1f}%"), ("of always >= 32", "{:>9.1f}%"),
        ("kept of loop", "{:>9.1f}%"), ("false faces", "{:>10}"), ("ms/photo", "{:>10.0f}"),
        ("FP/100 free", "{:>10.1f}"), ("ms/free photo", "{:>10.0f}")]


def print_table(title: str, photos: dict, free: list, report: dict) -> dict:
    f = figures(photos, free, report)
    faces = sum(len(v[0]) for v in photos.values())
    print(f"\n{title}: {len(photos)} photos with people, {faces} faces; {len(free)} face-free photos")
    print("  face width       " + "".join(f"{m:>10}" for m in f))
    first = next(iter(f.values()))
    for bucket in BUCKETS:
        total = first["hits"][bucket][1]
        if total:
            label = f"{bucket[0]}-{bucket[1]}" if bucket[1] < 100000 else f"{bucket[0]}+"
            print(f"  {label:>8} ({total:>3})   " + "".join(
                f"{100 * r['hits'][bucket][0] / total:>9.0f}%" for r in f.values()))
    for label, fmt in ROWS:
        print(f"  {label:<17}" + "".join(fmt.format(r[label]) for r in f.values()))
    return f


def pasted(corpus: Path, sizes: list, count: int, runs: dict) -> dict:
    """The pasted-face corpora of groups.py (real faces pasted at known boxes into real backgrounds)."""
    from groups import make_groups
    free = face_free(corpus / "face-free")
    reports = {}
    for size in sizes:
        folder = corpus / f"groups-{size}"
        truth_file = folder / "truth.json"
        truth = json.loads(truth_file.read_text()) if truth_file.exists() else make_groups(folder, count, size)
        photos = {Path(p): (boxes, []) for p, boxes in truth.items()}
        free_here = [p for p in free if p.stem.endswith(size)]
        report = measure(list(photos) + free_here, runs)
        reports[f"pasted {size}"] = print_table(f"pasted faces, {size}", photos, free_here, report)
    return reports


def plot(reports: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    buckets = BUCKETS[1:]
    centres = [(a * min(b, 300)) ** 0.5 for a, b in buckets]
    for mode in MODES:
        hits = [sum(r[mode]["hits"][b][0] for r in reports.values() if mode in r) for b in buckets]
        totals = [sum(r[mode]["hits"][b][1] for r in reports.values() if mode in r) for b in buckets]
        ax.plot(centres, [100 * h / t if t else None for h, t in zip(hits, totals)], marker="o", label=mode)
    ax.set_xscale("log")
    ax.set_xlabel("face width in the picture (pixels)")
    ax.set_ylabel("faces found (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(title="small_faces")
    ax.set_title("Recall against face size: " + ", ".join(reports))
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=HERE.parent / "bench-corpus")
    parser.add_argument("--half", choices=["tuning", "held-out", "both"], default="both")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--pasted", action="store_true", help="also the pasted-face corpora of groups.py")
    parser.add_argument("--count", type=int, default=16, help="pasted group photos per size")
    parser.add_argument("--sizes", default="12mp,1080p,small", help="sizes of the pasted corpora")
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    all_runs = detectors()
    runs = {m: all_runs[m] for m in args.modes.split(",")}
    free = face_free(args.corpus / "face-free")
    reports = {}
    for half in (["tuning", "held-out"] if args.half == "both" else [args.half]):
        photos, album_free = real_corpus(args.corpus / f"real-{half}", half)
        report = measure(list(photos) + album_free + free, runs)
        for framing, test in (("as shipped", lambda p: not p.name.endswith("-12mp.jpg")),
                              ("12 MP", lambda p: p.name.endswith("-12mp.jpg"))):
            here = {p: v for p, v in photos.items() if test(p)}
            free_here = [p for p in album_free if test(p)] + [
                p for p in free if p.stem.endswith("12mp") == (framing == "12 MP")]
            reports[f"{half}, {framing}"] = print_table(f"{half} half, {framing}", here, free_here, report)
    if args.pasted:
        reports.update(pasted(args.corpus, args.sizes.split(","), args.count, runs))
    if args.plot:
        plot(reports, args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
