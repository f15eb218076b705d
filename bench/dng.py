"""DNG files made from real photos, for tests and benchmarks: no package in the registries ships a
camera's RAW file, and Adobe's DNG is a TIFF anyone may write. make_dng writes the photo as a
camera's sensor would hold it (a Bayer RGGB mosaic of 16-bit linear values, with the tags LibRaw
needs: DNGVersion, CFA pattern, colour matrix, white level), optionally with a full-size JPEG
preview in a SubIFD, as cameras write one, and an EXIF orientation."""
import struct

import cv2
import numpy as np

TYPES = {"BYTE": 1, "ASCII": 2, "SHORT": 3, "LONG": 4, "RATIONAL": 5, "SRATIONAL": 10}

def _pack(kind, values):
    t = TYPES[kind]
    if kind == "ASCII":
        raw = values.encode() + b"\0"
        return t, len(raw), raw
    if kind in ("RATIONAL", "SRATIONAL"):
        raw = b"".join(struct.pack("<ii" if kind == "SRATIONAL" else "<II", n, d) for n, d in values)
        return t, len(values), raw
    fmt = {"BYTE": "B", "SHORT": "H", "LONG": "I"}[kind]
    return t, len(values), struct.pack("<" + fmt * len(values), *values)

def _ifd(entries, offset, next_ifd=0):
    """entries: {tag: (kind, values)} -> (bytes of the IFD and its out-of-line data), placed at offset."""
    tags = sorted(entries)
    head = 2 + 12 * len(tags) + 4
    extra = b""
    body = struct.pack("<H", len(tags))
    for tag in tags:
        t, count, raw = _pack(*entries[tag])
        if len(raw) <= 4:
            body += struct.pack("<HHI", tag, t, count) + raw.ljust(4, b"\0")
        else:
            body += struct.pack("<HHII", tag, t, count, offset + head + len(extra))
            extra += raw + (b"\0" if len(raw) % 2 else b"")
    body += struct.pack("<I", next_ifd)
    return body + extra

def make_dng(rgb: np.ndarray, preview: bool = True, orientation: int = 1, quality: int = 92) -> bytes:
    """The DNG of an RGB picture (even dimensions kept), as stored: `orientation` says how to show it."""
    h, w = rgb.shape[:2]
    h, w = h - h % 2, w - w % 2
    rgb = rgb[:h, :w]
    lin = (rgb.astype(np.float32) / 255.0) ** 2.2  # roughly linear light
    mosaic = np.zeros((h, w), np.uint16)
    mosaic[0::2, 0::2] = lin[0::2, 0::2, 0] * 60000
    mosaic[0::2, 1::2] = lin[0::2, 1::2, 1] * 60000
    mosaic[1::2, 0::2] = lin[1::2, 0::2, 1] * 60000
    mosaic[1::2, 1::2] = lin[1::2, 1::2, 2] * 60000
    raw = mosaic.astype("<u2").tobytes()
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes() if preview else b""
    # layout: header(8) | raw data | jpeg | IFD0 | IFD1
    raw_at = 8
    jpeg_at = raw_at + len(raw)
    ifd0_at = jpeg_at + len(jpeg) + (len(jpeg) % 2)
    ifd0 = {254: ("LONG", [0]), 256: ("LONG", [w]), 257: ("LONG", [h]), 258: ("SHORT", [16]), 259: ("SHORT", [1]),
            262: ("SHORT", [32803]), 271: ("ASCII", "facewatch"), 272: ("ASCII", "test DNG"), 273: ("LONG", [raw_at]),
            274: ("SHORT", [orientation]), 277: ("SHORT", [1]), 278: ("LONG", [h]), 279: ("LONG", [len(raw)]),
            284: ("SHORT", [1]), 33421: ("SHORT", [2, 2]), 33422: ("BYTE", [0, 1, 1, 2]),
            50706: ("BYTE", [1, 4, 0, 0]), 50707: ("BYTE", [1, 1, 0, 0]), 50708: ("ASCII", "facewatch test DNG"),
            50714: ("LONG", [0]), 50717: ("LONG", [60000]),
            50721: ("SRATIONAL", [(10000, 10000), (0, 10000), (0, 10000), (0, 10000), (10000, 10000), (0, 10000),
                                  (0, 10000), (0, 10000), (10000, 10000)]),
            50728: ("RATIONAL", [(1, 1), (1, 1), (1, 1)]), 50778: ("SHORT", [21])}
    if preview:
        ifd0[330] = ("LONG", [0])  # patched below
        first = _ifd(ifd0, ifd0_at)
        ifd1_at = ifd0_at + len(first)
        ifd0[330] = ("LONG", [ifd1_at])
        first = _ifd(ifd0, ifd0_at)
        ifd1 = {254: ("LONG", [1]), 256: ("LONG", [w]), 257: ("LONG", [h]), 258: ("SHORT", [8, 8, 8]), 259: ("SHORT", [7]),
                262: ("SHORT", [6]), 273: ("LONG", [jpeg_at]), 277: ("SHORT", [3]), 278: ("LONG", [h]), 279: ("LONG", [len(jpeg)])}
        second = _ifd(ifd1, ifd1_at)
    else:
        first, second = _ifd(ifd0, ifd0_at), b""
    return b"II*\0" + struct.pack("<I", ifd0_at) + raw + jpeg + (b"\0" if len(jpeg) % 2 else b"") + first + second
