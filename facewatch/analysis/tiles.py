"""Small faces: where to look again, in overlapping tiles, and how to merge what the tiles find.

The full-range model sees the whole picture at 192x192, so a face narrower than about 7% of the
picture's long side is a few model pixels wide and invisible to it. Cut the picture into tiles and
each is seen at 192x192 instead: a face of 1/12 of a tile's side is 16 model pixels, which the
model finds. Tiles come in levels whose sides double, so that every face size from the smallest
looked for up to what the whole-picture pass sees lies wholly inside some tile of some level.
Pure geometry here; detect.py runs the model.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Optional

from facewatch.store import Face

FACE_IN_TILE = 12  # a tile's side in face widths: such a face is 16 of the model's 192 pixels
OVERLAP = 0.25  # of a tile's side: a face up to a quarter of a tile lies wholly inside some tile
WHOLE_SEES = 0.07  # the whole-picture pass finds faces from about this fraction of the long side
# a face found in tiles that the full-size whole pass may find too: that pass finds faces from
# about 4.5% of the long side, and draws one near its limit up to 1.5 times wider than tiles do
LOOP_MAY_SEE = 0.03
SMALL = 0.10  # of the long side: a face this small may stand beside smaller ones
CROWD = 0.035  # of the long side: a face this small is one of a crowd's, alone or not
SMALL_PICTURE = 1024  # long side: so few tiles that any hint of a face pays for a closer look
MIN_DETAIL = 16  # decoded pixels across the smallest face looked for
HINT_SIZES = 1.6  # a face of a hint's width within this factor is the face it hints at
# `auto` looks for faces down to this share of the smallest it saw: the next row back of a group,
# farther from the camera. Measured on the tuning half's 12 MP group photos: 0.5 found 163 faces
# with 25 tile looks a photo, 0.6 found 162 with 19, 0.7 161 with 16.
BEHIND = 0.6
# tiles across the long side where the whole-picture pass saw no face: each sees faces from about
# 3.3% of the long side (16 of the model's pixels), a crowd's, where quarters (two across) saw
# them from 5% and found none of a 29-person conference photo's (bench/small_faces.py)
NO_FACE_TILES = 3


def min_face(width: int, height: int) -> int:
    """The smallest face (full-size pixels) worth looking for: 32 px in a 12 MP photo, 16 in small ones."""
    return max(16, round(max(width, height) / 125))


def closer_look(faces: Iterable[Face], width: int, height: int, mode: str) -> Optional[int]:
    """The smallest face width to look for in tiles, or None: no closer look.

    `faces` are those found so far. `always` looks everywhere for the smallest faces worth it.
    `auto` looks when they show signs of faces too small for the whole-picture pass: two or more
    faces of which one is small (a group: its farther faces are smaller still), one face as small
    as a crowd's (a distant person: others stand near), or any face at all in a small picture
    (cheap to tile). It then looks for faces down to BEHIND the smallest it saw."""
    floor = min_face(width, height)
    if mode == "always":
        return floor
    if mode != "auto":
        return None
    faces = list(faces)
    if not faces:
        return None
    long_side = max(width, height)
    sizes = [f.bbox[2] for f in faces]
    group = len(faces) >= 2 and min(sizes) < SMALL * long_side
    if not (group or min(sizes) < CROWD * long_side or long_side <= SMALL_PICTURE):
        return None
    smallest = max(round(BEHIND * min(sizes)), floor)
    return smallest if smallest < WHOLE_SEES * long_side else None


def across(width: int, height: int, count: int) -> int:
    """The side of tiles `count` to the long side, overlapping by OVERLAP, that cover the picture."""
    return round(max(width, height) / (count - (count - 1) * OVERLAP))


def levels(width: int, height: int, smallest: int, seen_from: Optional[float] = None) -> list[int]:
    """Tile sides (full-size pixels), smallest first, from faces of `smallest` up to those seen
    already: from `seen_from` pixels wide (by default, those the whole-picture pass sees)."""
    long_side = max(width, height)
    seen_from = WHOLE_SEES * long_side if seen_from is None else seen_from
    side, sides = smallest * FACE_IN_TILE, []
    while True:
        sides.append(side)
        if side * OVERLAP >= seen_from or side >= long_side:
            return sides
        side *= 2


def grid(width: int, height: int, side: int) -> Iterator[tuple[int, int, int, int]]:
    """Tiles (x, y, w, h) of `side` covering the picture, overlapping by OVERLAP, the last of each
    row and column flush with the edge."""
    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        step = max(1, int(side * (1 - OVERLAP)))
        count = -(-(length - side) // step) + 1
        return [round(i * (length - side) / (count - 1)) for i in range(count)]
    for y in starts(height):
        for x in starts(width):
            yield x, y, min(side, width - x), min(side, height - y)


def cut_by_edge(box: tuple, tile: tuple, width: int, height: int, margin: float = 2.0) -> bool:
    """Whether a face found in `tile` touches one of its edges inside the picture: a face cut by
    the tile, which another tile (or level) sees whole."""
    x, y, w, h = box
    tx, ty, tw, th = tile
    return ((tx > 0 and x <= tx + margin) or (ty > 0 and y <= ty + margin)
            or (tx + tw < width and x + w >= tx + tw - margin) or (ty + th < height and y + h >= ty + th - margin))


def overlap(a: tuple, b: tuple) -> tuple[float, float]:
    """(intersection over union, intersection over the smaller box) of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    if not inter:
        return 0.0, 0.0
    small = min(a[2] * a[3], b[2] * b[3])
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter), inter / float(small)


def merge(first: list[Face], found: list[Face]) -> list[Face]:
    """The whole-picture pass's faces, then each tile face that is not one of them or of another
    tile face already kept (best score first). Boxes that mostly cover each other are one face."""
    kept = list(first)
    for face in sorted(found, key=lambda f: -f.score):
        if not any(same_face(face.bbox, k.bbox) for k in kept):
            kept.append(face)
    return kept


def same_face(a: tuple, b: tuple) -> bool:
    iou, covered = overlap(a, b)
    return iou >= 0.3 or covered >= 0.6


def hint_of(hints: list, face: Face, long_side: int) -> Optional[Face]:
    """The hint of the whole-picture pass that is `face`, found by a closer look, or None. Only
    for a face that pass may see (from LOOP_MAY_SEE of the long side), of about the hint's width:
    the model draws no box narrower than about 4% of the long side, so a smaller face inside a
    hint is not its face."""
    if face.bbox[2] < LOOP_MAY_SEE * long_side:
        return None
    return next((h for h in hints if same_face(h.bbox, face.bbox)
                 and 1 / HINT_SIZES <= h.bbox[2] / face.bbox[2] <= HINT_SIZES), None)
