"""Make N photo-like JPEGs from real face photos: random crop, flip, light and noise, at a camera's size.

    python bench/make_corpus.py OUT_DIR --count 200 --size 12mp

Sources: scikit-image's astronaut (NASA, public domain) and cameraman, plus Debian's opencv-doc
photos with faces when that package is installed. Needs scikit-image (the `test` extra).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

SIZES = {"12mp": (4000, 3000), "1080p": (1920, 1080), "small": (800, 600)}
OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")


def sources() -> list[np.ndarray]:
    from skimage import data
    found = [data.astronaut(), np.dstack([data.camera()] * 3)]
    for name in ("messi5.jpg",):
        if (OPENCV_DOC / name).exists():
            found.append(cv2.cvtColor(cv2.imread(str(OPENCV_DOC / name)), cv2.COLOR_BGR2RGB))
    return found


def photo(src: np.ndarray, size: tuple, rng: np.random.Generator) -> np.ndarray:
    """One photo-like picture of `size` (width, height) from `src`."""
    width, height = size
    h, w = src.shape[:2]
    aspect = width / height
    crop_w = int(min(w, h * aspect) * rng.uniform(0.8, 1.0))
    crop_h = int(crop_w / aspect)
    x, y = rng.integers(0, w - crop_w + 1), rng.integers(0, h - crop_h + 1)
    img = src[y:y + crop_h, x:x + crop_w]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = cv2.resize(np.ascontiguousarray(img), size, interpolation=cv2.INTER_CUBIC).astype(np.float32)
    img = img * rng.uniform(0.85, 1.15) + rng.normal(0, 4, img.shape)  # light and sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def make_corpus(out: Path, count: int, size: str, seed: int = 0) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pics = sources()
    paths = []
    for i in range(count):
        rgb = photo(pics[i % len(pics)], SIZES[size], rng)
        path = out / f"photo_{size}_{i:05d}.jpg"
        tmp = path.with_name(f".{path.name}.tmp.jpg")
        cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        os.replace(tmp, path)  # a watching daemon sees only complete photos
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", choices=sorted(SIZES), default="12mp")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = make_corpus(args.out, args.count, args.size, args.seed)
    print(f"{len(paths)} photos of {args.size} in {args.out}")


if __name__ == "__main__":
    main()
