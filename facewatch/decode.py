"""Image bytes -> RGB pixels at the scale the detector needs, EXIF-oriented, or a clear error."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = None  # the pixel limit is ours (processing.max_pixels), checked below

# The detector resizes its input to 192x192 (full range) or 128x128 (short range). Decoding a
# JPEG at 1/2, 1/4 or 1/8 scale is far cheaper than a full decode; keep at least this many pixels
# on the long side so small faces in the frame survive the reduction (see bench/fidelity.py).
MIN_LONG_SIDE = 480
_REDUCED = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4,
            2: cv2.IMREAD_REDUCED_COLOR_2, 1: cv2.IMREAD_COLOR}
_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


class DecodeError(Exception):
    """The file's content cannot be analysed; the message is for users."""


@dataclass
class Decoded:
    rgb: np.ndarray  # what the detector sees
    width: int  # of the full-resolution image as a viewer shows it
    height: int
    format: str


def decode(data: bytes, max_pixels: int, full_resolution: bool = False) -> Decoded:
    """Decode `data`; JPEGs are decoded at a reduced scale unless `full_resolution`."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    fmt, width, height, orientation = _header(data)
    if width * height > max_pixels:
        raise DecodeError(
            f"image is {width}x{height} pixels ({width * height / 1e6:.0f} MP), above the limit of "
            f"{max_pixels / 1e6:.0f} MP (processing.max_pixels)")
    if orientation in _ROTATED:
        width, height = height, width
    factor = 1
    if fmt == "JPEG" and not full_resolution:
        _check_jpeg_complete(data)
        factor = max([f for f in _REDUCED if max(width, height) / f >= MIN_LONG_SIDE] or [1])
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[factor])
    if bgr is not None:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # OpenCV applies EXIF orientation itself
        if (rgb.shape[1] > rgb.shape[0]) != (width > height) and rgb.shape[0] != rgb.shape[1]:
            rgb = _orient(rgb, orientation)  # a format whose orientation OpenCV does not read
    else:
        rgb = _orient(_decode_with_pillow(data), orientation)
    return Decoded(rgb=np.ascontiguousarray(rgb), width=width, height=height, format=fmt)


def _header(data: bytes) -> tuple[str, int, int, int]:
    """Format, stored width and height, and EXIF orientation, from the header alone."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                try:
                    orientation = int(im.getexif().get(0x0112, 1))
                except Exception:  # a broken EXIF block is not a broken picture
                    orientation = 1
                return im.format or "unknown", im.width, im.height, orientation
    except UnidentifiedImageError:
        raise DecodeError(f"not an image: {_sniff(data)}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(_reason(exc, "unreadable image header")) from None


def _sniff(data: bytes) -> str:
    head = data[:512]
    if not head.strip():
        return "the file holds only blank bytes"
    try:
        head.decode("utf-8")
        return "the file holds text"
    except UnicodeDecodeError:
        return "unrecognised format (not JPEG, PNG, WebP, BMP, TIFF or GIF)"


def _check_jpeg_complete(data: bytes) -> None:
    """A JPEG without its end marker is usually cut short: let Pillow confirm and say so."""
    if data.rstrip(b"\0\r\n ")[-2:] == b"\xff\xd9":
        return
    _decode_with_pillow(data, draft=True)


def _decode_with_pillow(data: bytes, draft: bool = False) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                if draft:
                    im.draft("RGB", (im.width // 8, im.height // 8))
                im.load()
                return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(_reason(exc, "corrupt image data")) from None


def _reason(exc: Exception, what: str) -> str:
    if "truncated" in str(exc).lower():
        return "truncated image: the file ends before the picture does"
    return f"{what}: {exc}"


def _orient(rgb: np.ndarray, orientation: int) -> np.ndarray:
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.rot90(a[:, ::-1], 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: np.rot90(a[:, ::-1], -1), 8: lambda a: np.rot90(a, 1)}
    return ops[orientation](rgb) if orientation in ops else rgb
