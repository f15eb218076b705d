"""Cameras' RAW files (DNG, CR2, CR3, NEF, ARW, ORF, RW2, RAF, PEF, ...), read through LibRaw
(rawpy, LibRaw inside the wheel). decode.py turns what this finds into the picture as shown.

A RAW file almost always carries a JPEG preview of the whole picture, which photo tools show
until the file is developed: when that preview is the picture's full size (90% of the sensor's
visible width or more), decode.py decodes it like any JPEG (reduced by libjpeg's DCT scaling, so
a 24 MP NEF costs what a 24 MP JPEG does) and turns it as the RAW file says. Otherwise the sensor
data is demosaiced at half size (LibRaw's half_size: each 2x2 Bayer block one pixel), with the
camera's white balance, turned by LibRaw. bench/formats.py measures both.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

# LibRaw's flip: how the picture must be turned to be shown (0 none, 3 half a turn, 5 a quarter
# turn to the left, 6 a quarter turn to the right), as numpy's rot90 counts turns
TURNS = {3: 2, 5: 1, 6: -1}
FULL_PREVIEW = 0.9  # a preview this wide, against the sensor's visible width, is the whole picture
# how the RAW formats LibRaw reads begin: TIFF (DNG, CR2, NEF, ARW, PEF, ...), Olympus, Panasonic,
# Fujifilm; Canon's CR3 is ISO media of brand "crx "
_MAGIC = (b"II*\0", b"MM\0*", b"IIRO", b"IIRS", b"MMOR", b"IIU\0", b"FUJIFILMCCD-RAW")


class NotRaw(Exception):
    """LibRaw does not know this file (an ordinary TIFF, say)."""


class RawError(Exception):
    """A RAW file LibRaw cannot read; the message is for users."""


@dataclass
class RawPicture:
    width: int  # of the picture as shown
    height: int
    turns: int  # quarter turns (numpy's rot90) that show the preview as the picture is shown
    preview: Optional[bytes] = None  # the full-size JPEG preview, when there is one
    rgb: Optional[np.ndarray] = None  # else the half-size demosaic, already turned


def looks_raw(data: bytes) -> bool:
    """Whether `data` may be a RAW file (a TIFF may be one too: LibRaw decides)."""
    return data.startswith(_MAGIC) or data[4:12] == b"ftypcrx "


def read_raw(data: bytes, check_pixels: Callable[[int, int], None],
             preview_size: Callable[[bytes], Optional[tuple]]) -> RawPicture:
    """The preview or the half-size demosaic of a RAW file. `check_pixels(width, height)` may
    refuse the picture before anything is decoded; `preview_size(jpeg)` tells a preview's size."""
    import rawpy
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            turns = TURNS.get(sizes.flip, 0)
            quarter = turns in (1, -1)
            width, height = (sizes.height, sizes.width) if quarter else (sizes.width, sizes.height)
            check_pixels(width, height)
            preview = _full_preview(raw, max(sizes.width, sizes.height), preview_size)
            if preview is not None:
                return RawPicture(width, height, turns, preview=preview)
            rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    except rawpy.LibRawFileUnsupportedError:
        raise NotRaw() from None
    except (rawpy.LibRawError, ValueError, MemoryError) as exc:
        raise RawError(f"damaged RAW file: {str(exc).strip() or type(exc).__name__}") from None
    return RawPicture(2 * rgb.shape[1], 2 * rgb.shape[0], turns, rgb=np.ascontiguousarray(rgb))


def _full_preview(raw, long_side: int, preview_size) -> Optional[bytes]:
    """The bytes of the embedded JPEG preview when it shows the whole picture, else None."""
    import rawpy
    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawError:
        return None  # none, one LibRaw cannot extract, or a damaged one: the sensor data may be whole
    if thumb.format != rawpy.ThumbFormat.JPEG:
        return None
    size = preview_size(bytes(thumb.data))
    if size is None or max(size) < FULL_PREVIEW * long_side:
        return None
    return bytes(thumb.data)
