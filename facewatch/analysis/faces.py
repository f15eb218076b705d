"""A decoded picture -> its faces: the whole-picture pass, then, with `small_faces`, closer looks at
what it was unsure of and overlapping tiles where faces too small for it may be (tiles.py decides
where; detect.py runs the model)."""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from facewatch.analysis.decode import Decoded, Decodes
from facewatch.analysis.detect import Detector
from facewatch.analysis.tiles import (FACE_IN_TILE, LOOP_MAY_SEE, MIN_DETAIL, NO_FACE_TILES, WHOLE_SEES, across,
                                      closer_look, hint_of, levels, merge, same_face)
from facewatch.store import Face


def find_faces(detector: Detector, data: bytes, picture: Decoded, max_pixels: int,
               decodes: Optional[Decodes] = None) -> list:
    """The whole-picture pass on the reduced decode; then (detector.small_faces) a closer look at
    each face it was unsure of, and where it shows signs of faces too small for it, overlapping
    tiles of a decode with enough detail for them. Finer decodes are made in `decodes` (and kept
    there for the faces' embeddings)."""
    width, height, rgb, scale = picture.width, picture.height, picture.rgb, picture.scale
    decodes = decodes or Decodes(data, max_pixels, picture)
    long_side = max(width, height)
    sure, hints = detector.whole(rgb, width, height, scale)
    if detector.small_faces == "off":
        return sure
    full_size = FullSizePass(detector, decodes, picture)
    faces = merge(sure, confirmed_hints(detector, picture, hints, full_size))
    seen_from = WHOLE_SEES * long_side  # faces from this wide are seen already
    if detector.small_faces == "auto":
        if not sure and not any(f.bbox[2] >= WHOLE_SEES * long_side for f in faces):
            # no face the whole pass was sure of, nor one its hints showed that is plain to it:
            # a crowd's faces (3-7% of the long side: a conference photo) and faces near the
            # pass's limit hidden by a reduced decode are plain in a ninth of the picture (nine
            # overlapping tiles of the same decode, each seen at the model's size)
            side = across(width, height, NO_FACE_TILES)
            found = detector.tiles(rgb, width, height, scale, [side], known=faces)
            faces = merge(faces, [drawn_as(hints, f, picture) for f in found])
            seen_from = side / FACE_IN_TILE
    smallest = closer_look(faces, width, height, detector.small_faces)
    if smallest is not None:
        finest = max(k for k in (1, 2, 4, 8) if k == 1 or smallest / k >= MIN_DETAIL)
        detail = picture if scale <= finest else decodes.exactly(finest)  # the first, unless too coarse
        found = detector.tiles(detail.rgb, width, height, detail.scale, levels(width, height, smallest, seen_from),
                               known=faces)
        faces = merge(faces, [drawn_as(hints, f, picture) for f in found])
    if not sure and scale > 1:
        # what closer looks found in a picture whose reduced decode showed no face, from the size one
        # full-size pass may see, and not drawn from a hint: boxed as that pass boxes them (it draws
        # a face near its limit larger and lower than a closer look does), where it finds them at all
        drawn = {h.bbox for h in hints}
        unboxed = [f for f in faces if f.bbox[2] >= LOOP_MAY_SEE * long_side and f.bbox not in drawn]
        if unboxed:
            faces = [next((s for s in full_size.faces() if same_face(s.bbox, f.bbox)), f) if f in unboxed else f
                     for f in faces]
    return faces


def confirmed_hints(detector: Detector, picture: Decoded, hints: list, full_size: "FullSizePass") -> list:
    """The faces among the whole-picture pass's hints (what the reduced decode showed below the
    model's floor: the full-size pass finds most of them), each seen again in a square of four face
    widths around it. Seen there at the hint's size, it is a face, drawn as the hint is; seen much
    smaller, it may be a blur the upscaling made a face of (a galaxy, measured) or a face near the
    full-size pass's limit, which that pass draws 1.6 times wider than a closer look: that pass,
    on a full-size decode, decides. Hints with fewer than MIN_DETAIL decoded pixels across are not
    looked at: smaller than any face the full-size pass finds."""
    width, height, scale = picture.width, picture.height, picture.scale
    faces, doubtful = [], []
    for hint in hints:
        if hint.bbox[2] / scale < MIN_DETAIL:
            continue
        look = detector.confirmed(picture.rgb, width, height, scale, hint)
        if look is None:
            continue
        if hint_of([hint], look, max(width, height)):
            faces.append(drawn_as([hint], look, picture))
        else:
            doubtful.append(hint)
    if doubtful and scale > 1:  # at full size, the whole pass was the full-size pass: they are not its
        faces += [s for s in full_size.faces() if any(same_face(s.bbox, h.bbox) for h in doubtful)]
    return faces


def drawn_as(hints: list, face: Face, picture: Decoded) -> Face:
    """A face found by a closer look, drawn with the box and landmarks of its hint where it has one
    and the picture was decoded reduced: as one pass over the full-size picture draws them (a
    closer look draws a face near that pass's limit up to 1.5 times narrower), with the closer
    look's score. (At full size the hint is that pass's own, below its floor: nothing to match.)"""
    hint = hint_of(hints, face, max(picture.width, picture.height)) if picture.scale > 1 else None
    return face if hint is None else replace(face, bbox=hint.bbox, keypoints=hint.keypoints)


class FullSizePass:
    """The faces of one pass over the full-size picture of a photo decoded reduced, as the
    hand-written loop finds them: decoded at full size only when asked for (a few photos in a
    hundred), and once."""

    def __init__(self, detector: Detector, decodes: Decodes, picture: Decoded):
        self._detector, self._decodes = detector, decodes
        self._width, self._height = picture.width, picture.height
        self._faces: Optional[list] = None

    def faces(self) -> list:
        if self._faces is None:
            full = self._decodes.exactly(1)
            self._faces = self._detector.detect(full.rgb, self._width, self._height, full.scale)
        return self._faces
