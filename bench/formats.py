"""What each format costs to decode for detection, per 12 MP photo, on one core.

    python bench/formats.py [--count 8]

The same real photos (make_corpus.py's 12 MP portraits) as JPEG, HEIC and AVIF (Pillow and
pillow-heif's encoders) and as DNG with a full-size JPEG preview and without one (dng.py, as a
camera's sensor would hold them): milliseconds per photo of facewatch's decode (what the
detector gets: a JPEG or a RAW preview at 1/8 by libjpeg's DCT scaling; HEIC and AVIF at full
size, which libheif and libavif cannot reduce; a RAW without a preview demosaiced at half size),
and of a full-size decode for comparison, with the faces found in each.
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8)
    args = parser.parse_args()
    from dng import make_dng
    from make_corpus import make_corpus

    from facewatch.analysis.decode import decode
    from facewatch.analysis.detect import MediaPipeDetector
    from facewatch.analysis.faces import find_faces
    detector = MediaPipeDetector("full_range", 0.5, "auto")
    with tempfile.TemporaryDirectory() as tmp:
        photos = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in make_corpus(Path(tmp), args.count, "12mp")]

    def encoded(rgb, fmt):
        if fmt == "JPEG":
            return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        if fmt == "DNG, full-size preview":
            return make_dng(rgb, preview=True)
        if fmt == "DNG, no preview":
            return make_dng(rgb, preview=False)
        out = io.BytesIO()
        Image.fromarray(rgb).save(out, fmt, quality=85)
        return out.getvalue()

    print(f"{len(photos)} photos of 12 MP (4000x3000), one core, ms per photo:")
    for fmt in ("JPEG", "HEIF", "AVIF", "DNG, full-size preview", "DNG, no preview"):
        files = [encoded(rgb, fmt) for rgb in photos]
        timings = {"for detection": 0.0, "full size": 0.0}
        faces = 0
        for data in files:
            started = time.process_time()
            picture = decode(data, 10**9)
            timings["for detection"] += time.process_time() - started
            faces += len(find_faces(detector, data, picture, 10**9))
            started = time.process_time()
            decode(data, 10**9, min_side=10**6)
            timings["full size"] += time.process_time() - started
        size = np.mean([len(d) for d in files]) / 2**20
        print(f"  {fmt:24} {1000 * timings['for detection'] / len(files):7.1f} for detection (scale {picture.scale}), "
              f"{1000 * timings['full size'] / len(files):7.1f} full size; {size:5.1f} MiB a file; {faces} faces",
              flush=True)
    from sources import heif_samples
    for name, data in heif_samples().items():
        if name in ("pug.heic", "xiaomi.heic"):
            started, wall = time.process_time(), time.perf_counter()
            picture = decode(data, 10**9)
            print(f"  a real HEIC, {name} ({picture.width}x{picture.height}): {1000 * (time.process_time() - started):.0f} ms "
                  f"of CPU, {1000 * (time.perf_counter() - wall):.0f} ms of wall time (libheif decodes tiles on "
                  "several threads)")


if __name__ == "__main__":
    main()
