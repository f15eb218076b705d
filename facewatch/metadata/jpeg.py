"""How a JPEG file is laid out before its image data: its segments (markers, with their lengths)
and its frame header. decode.py reads the picture's size and frame from here, xmp.py where the
segments that may hold XMP end."""
from __future__ import annotations

import struct
from typing import Iterator, Optional

SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # frame headers
SOS, EOI = 0xDA, 0xD9  # the first scan header (the image data follows), the end of the image
_STANDALONE = {0x01, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7}  # markers without a length


def segments(data: bytes) -> Iterator[tuple[int, int]]:
    """(offset, marker) of each of a JPEG's segments after its start marker, up to and including
    the first scan header or the end marker; stops early where the bytes are not a segment."""
    i, end = 2, len(data)
    while i + 4 <= end and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte
            i += 1
            continue
        yield i, marker
        if marker in (SOS, EOI):
            return
        i += 2 if marker in _STANDALONE else 2 + struct.unpack(">H", data[i + 2:i + 4])[0]


def frame(data: bytes) -> Optional[tuple[int, int, int, int]]:
    """(offset, marker, width, height) of a JPEG's frame header, or None: none before its image
    data, or a width or height of 0."""
    for at, marker in segments(data):
        if marker in SOF and at + 9 <= len(data):
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return (at, marker, width, height) if width and height else None
    return None


def header_end(data: bytes) -> int:
    """Where a JPEG's image data starts (its first scan header), or the end of `data` when its
    segments cannot be walked there."""
    return next((at for at, marker in segments(data) if marker == SOS), len(data))
