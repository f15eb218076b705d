"""Every face, measured: recall by face size, false positives and time, for small_faces off, auto
and always, and the hand-written loop (MediaPipe on the full-size picture), in one run.

    python bench/small_faces.py                       # makes bench-corpus/groups-* if needed
    python bench/small_faces.py --plot recall.png     # and draws recall against face size

Ground truth: bench/groups.py's group photos (real faces pasted at known boxes, 16-300 px wide,
in 12 MP, 1080p and small pictures) and its face-free photos. A face counts as found when a box
overlaps it at IoU >= 0.5; anything else found is a false positive. Runs in one process, one
core: the figures are per photo, so they compare the settings, not facewatch's throughput (see
throughput.py for that).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

BUCKETS = [(16, 24), (24, 32), (32, 48), (48, 64), (64, 96), (96, 150), (150, 300)]
MODES = ["loop", "off", "auto", "always"]


def iou(a, b) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def detectors():
    import cv2
    import mediapipe as mp
    from facewatch.analysis.faces import find_faces
    from facewatch.analysis.decode import decode
    from facewatch.analysis.detect import MediaPipeDetector
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


def evaluate(truth: dict, free: list, runs: dict) -> dict:
    report = {}
    for mode, run in runs.items():
        hits = {b: [0, 0] for b in BUCKETS}
        fp = found = 0
        seconds = 0.0
        for path, boxes in truth.items():
            started = time.perf_counter()
            got = run(Path(path))
            seconds += time.perf_counter() - started
            found += len(got)
            matched = set()
            for box in boxes:
                best = max(range(len(got)), key=lambda i: iou(box, got[i]), default=None)
                bucket = next((b for b in BUCKETS if b[0] <= box[2] < b[1]), BUCKETS[-1])
                hits[bucket][1] += 1
                if best is not None and iou(box, got[best]) >= 0.5 and best not in matched:
                    matched.add(best)
                    hits[bucket][0] += 1
            fp += len(got) - len(matched)
        free_fp, free_seconds = 0, 0.0
        for path in free:
            started = time.perf_counter()
            free_fp += len(run(path))
            free_seconds += time.perf_counter() - started
        report[mode] = {"hits": hits, "fp_groups": fp, "found": found, "fp_free": free_fp,
                        "ms_group": 1000 * seconds / max(len(truth), 1),
                        "ms_free": 1000 * free_seconds / max(len(free), 1)}
    return report


def print_report(name: str, truth: dict, free: list, report: dict) -> None:
    faces = sum(map(len, truth.values()))
    print(f"\n{name}: {len(truth)} group photos, {faces} faces; {len(free)} face-free photos")
    print("  face width   " + "".join(f"{m:>9}" for m in report))
    for bucket in BUCKETS:
        total = report["loop"]["hits"][bucket][1]
        if total:
            print(f"  {bucket[0]:>3}-{bucket[1]:<3} ({total:>3}) " +
                  "".join(f"{100 * r['hits'][bucket][0] / total:>8.0f}%" for r in report.values()))
    for label, key, fmt in [("recall", None, "{:>8.1f}%"), ("false pos.", "fp_groups", "{:>9}"),
                            ("FP/100 free", "fp_free", "{:>9.1f}"), ("ms/group", "ms_group", "{:>9.0f}"),
                            ("ms/free", "ms_free", "{:>9.0f}")]:
        cells = []
        for r in report.values():
            if key is None:
                value = 100 * sum(h[0] for h in r["hits"].values()) / max(faces, 1)
            elif key == "fp_free":
                value = 100 * r[key] / max(len(free), 1)
            else:
                value = r[key]
            cells.append(fmt.format(value))
        print(f"  {label:<13}" + "".join(cells))


def plot(reports: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    centres = [(a * b) ** 0.5 for a, b in BUCKETS]
    for mode in MODES:
        hits = [sum(r[mode]["hits"][b][0] for r in reports.values()) for b in BUCKETS]
        totals = [sum(r[mode]["hits"][b][1] for r in reports.values()) for b in BUCKETS]
        ax.plot(centres, [100 * h / t if t else None for h, t in zip(hits, totals)], marker="o", label=mode)
    ax.set_xscale("log")
    ax.set_xlabel("face width in the full-size picture (pixels)")
    ax.set_ylabel("faces found (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(title="small_faces")
    ax.set_title("Recall against face size, all group corpora")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=HERE.parent / "bench-corpus")
    parser.add_argument("--count", type=int, default=16, help="group photos per size")
    parser.add_argument("--sizes", default="12mp,1080p,small")
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    from groups import make_face_free, make_groups
    free_dir = args.corpus / "face-free"
    free = sorted(free_dir.glob("*.jpg")) if free_dir.exists() else make_face_free(free_dir)
    runs = detectors()
    reports = {}
    for size in args.sizes.split(","):
        folder = args.corpus / f"groups-{size}"
        truth_file = folder / "truth.json"
        truth = json.loads(truth_file.read_text()) if truth_file.exists() else make_groups(folder, args.count, size)
        free_here = [p for p in free if p.stem.endswith(size)]
        reports[size] = evaluate(truth, free_here, runs)
        print_report(size, truth, free_here, reports[size])
    if args.plot:
        plot(reports, args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
