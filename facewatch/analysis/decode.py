"""Image bytes -> RGB pixels at the scale the detector needs, EXIF-oriented, or a clear error."""
from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import pillow_heif
from PIL import Image, UnidentifiedImageError

from facewatch.analysis import turbo
from facewatch.analysis.raw import NotRaw, RawError, looks_raw, read_raw
from facewatch.metadata.jpeg import frame

Image.MAX_IMAGE_PIXELS = None  # the pixel limit is ours (processing.max_pixels), checked below
# HEIC/HEIF (phones) through pillow-heif (libheif: its transformations applied, the EXIF orientation
# then reset to 1); AVIF through Pillow's own plugin, turned by its EXIF orientation as other formats
pillow_heif.register_heif_opener()

# The full-range detector sees its input at 192x192. Decoding a JPEG at 1/2, 1/4 or 1/8 scale
# (libjpeg's DCT scaling) is far cheaper than a full decode; keep at least this many pixels on
# the long side (processing.min_decode_side). bench/throughput.py prints what it costs in fidelity.
MIN_LONG_SIDE = 480
_REDUCED = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4,
            2: cv2.IMREAD_REDUCED_COLOR_2, 1: cv2.IMREAD_COLOR}
_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_TIFF = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF
# without TurboJPEG, decode_rows decodes a JPEG's top rows alone when they end this far down or
# sooner: through Pillow (which copies its pixels out), a 12 MP photo's rows cost about as much as
# OpenCV's whole decode from 75% of them down at 1/2, from 65% at full size (bench/people.py)
ROWS_WORTH = 0.7
_SEQUENTIAL = (0xC0, 0xC1)  # baseline and extended sequential frames: one scan, top to bottom


class DecodeError(Exception):
    """The file's content cannot be analysed; the message is for users."""


@dataclass
class Decoded:
    rgb: np.ndarray  # what the detector sees
    width: int  # of the full-resolution image as a viewer shows it
    height: int
    scale: int = 1  # full-resolution pixels per decoded pixel, on each axis
    rows: Optional[int] = None  # full-resolution rows decoded, from the top (decode_rows); None: all
    left: int = 0  # the full-resolution column rgb's first one shows (decode_rows of some columns)
    right: Optional[int] = None  # the full-resolution column its last one ends at; None: the right edge


def reduction(width: int, height: int, min_side: int = MIN_LONG_SIDE, most: int = 8) -> int:
    """The largest JPEG scale-down (1, 2, 4 or 8), `most` at the most, that keeps `min_side`
    pixels on the long side."""
    return max(f for f in _REDUCED if f == 1 or (f <= most and max(width, height) / f >= min_side))


def decode(data: bytes, max_pixels: int, min_side: int = MIN_LONG_SIDE, most: int = 8) -> Decoded:
    """Decode `data`; a JPEG (or a RAW file's JPEG preview) at the largest reduction, `most` at
    the most, that keeps `min_side` pixels on its long side."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    size = jpeg_size(data) if data[:2] == b"\xff\xd8" else None
    if size is None:
        if not looks_raw(data):
            return _decode_other(data, max_pixels)
        try:
            return _decode_raw(data, max_pixels, min_side, most)
        except NotRaw:  # a TIFF, not a camera's RAW file, or so damaged LibRaw cannot tell
            try:
                return _decode_other(data, max_pixels)
            except DecodeError as exc:
                detail = "" if str(exc).startswith("not an image") else f" ({exc})"
                raise DecodeError(f"damaged RAW or TIFF file: neither LibRaw nor Pillow can read it{detail}") from None
    width, height = size
    _check_pixels(width, height, max_pixels)
    _check_jpeg_complete(data)
    factor = reduction(width, height, min_side, most)
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[factor] | cv2.IMREAD_COLOR_RGB)
    if rgb is None:
        return _decode_other(data, max_pixels)
    if (rgb.shape[1] > rgb.shape[0]) != (width > height) and width != height:
        width, height = height, width  # OpenCV applied an EXIF rotation
    return Decoded(rgb, width, height, factor)


def decode_reduced(data: bytes, max_pixels: int, factor: int) -> Decoded:
    """`data` decoded with at least the detail of a 1/`factor` decode (1, 2, 4 or 8): a JPEG, or a
    RAW file's JPEG preview, reduced by `factor` (libjpeg's DCT scaling); other formats whole."""
    return decode(data, max_pixels, min_side=0, most=factor)


class Decodes:
    """One photo's decodes while it is analysed: the detector's, then finer ones as its closer
    looks ask for them (`exactly`: tiles and the full-size pass see a scale of their own, so a
    photo's faces never depend on which decodes happened to be made before), each made once, and
    the embeddings' (`top`: any decode made so far with the detail they need, else one of the
    photo's top rows)."""

    def __init__(self, data: bytes, max_pixels: int, *made: Decoded):
        self.data, self.max_pixels = data, max_pixels
        self._made = sorted(made, key=lambda d: -d.scale)  # coarsest first
        self._finest = 1  # the finest scale this photo can be decoded at (a RAW without preview: 2)

    def kept(self) -> list[Decoded]:
        """The decodes made so far, coarsest first."""
        return list(self._made)

    def exactly(self, factor: int) -> Decoded:
        """The 1/`factor` decode, or the finest the photo has. Raises DecodeError, MemoryError."""
        factor = max(factor, self._finest)
        made = next((d for d in self._made if d.scale == factor), None)
        return made if made is not None else self._decode(factor)

    def top(self, factor: int, bottom: int, columns: Optional[tuple[int, int]] = None) -> Decoded:
        """A decode with at least the detail of a 1/`factor` one down to row `bottom` (across
        `columns`): the coarsest made so far that has it, else `decode_rows` (not kept: closer
        looks need every row and column). Raises DecodeError, MemoryError."""
        made = next((d for d in self._made if d.scale <= max(factor, self._finest)), None)
        return made if made is not None else decode_rows(self.data, self.max_pixels, factor, bottom, columns)

    def _decode(self, factor: int) -> Decoded:
        made = decode_reduced(self.data, self.max_pixels, factor)
        if made.scale > factor:  # as fine as it gets (a RAW file's sensor data, at half size)
            self._finest = made.scale
        same = next((d for d in self._made if d.scale == made.scale), None)
        if same is not None:
            return same
        self._made = sorted(self._made + [made], key=lambda d: -d.scale)
        return made


def decode_rows(data: bytes, max_pixels: int, factor: int, bottom: int,
                columns: Optional[tuple[int, int]] = None) -> Decoded:
    """`decode_reduced(data, max_pixels, factor)`, but of a sequential JPEG shown as stored (no EXIF
    turn), only the rows above `bottom` (full-size pixels) and, where libjpeg-turbo's TurboJPEG 3
    is at hand (turbo.py), only the `columns` (from, to) around the faces: the pixels of the whole
    decode, in a fraction of its time. The result's `rows`, `left` and `right` say what it shows."""
    found = frame(data) if data[:2] == b"\xff\xd8" else None
    if found is None or found[1] not in _SEQUENTIAL:
        return decode_reduced(data, max_pixels, factor)
    _check_pixels(found[2], found[3], max_pixels)
    picture = _region(data, found, factor, bottom, columns) if turbo.available() else None
    return picture if picture is not None else _top_rows(data, max_pixels, found, factor, bottom)


def _region(data: bytes, found: tuple, factor: int, bottom: int, columns: Optional[tuple[int, int]]):
    """decode_rows through TurboJPEG: None where it cannot help (not three components, an EXIF
    turn, anything libjpeg-turbo would warn about)."""
    at, _, width, height = found
    if at + 19 > len(data) or data[at + 9] != 3 or exif_orientation(data) != 1:
        return None
    # a region starts at a whole iMCU, 8 pixels times the largest horizontal sampling, decoded
    step = max(8 * max(data[at + 11 + 3 * i] >> 4 for i in range(3)) // factor, 1)
    shown_width, shown_height = -(-width // factor), -(-height // factor)
    x0, x1 = columns if columns is not None else (0, width)
    left = min(max(int(x0), 0) // factor // step * step, shown_width - 1)
    right = max(min(shown_width, -(-int(x1) // factor)), left + 1)
    rows = min(shown_height, max(-(-int(bottom) // factor), 1))
    # and an iMCU more on each side: a region's edge columns are upsampled as at the picture's edge
    # (4:2:2 below 1/8, 4:2:0 at full size), so they are decoded and left out
    wider_left, wider_right = max(left - step, 0), min(right + step, shown_width)
    rgb = turbo.decode_region(data, factor, wider_left, wider_right - wider_left, rows)
    if rgb is None:
        return None
    if (wider_left, wider_right) != (left, right):
        rgb = np.ascontiguousarray(rgb[:, left - wider_left:right - wider_left])
    return Decoded(rgb, width, height, factor, rows=None if rows == shown_height else rows * factor,
                   left=left * factor, right=None if right == shown_width else right * factor)


def _top_rows(data: bytes, max_pixels: int, found: tuple, factor: int, bottom: int) -> Decoded:
    """decode_rows through Pillow, every column: its frame header is told the picture ends below
    `bottom`, and libjpeg passes over the rest of the scan as data before the end marker (Pillow
    keeps libjpeg's warning about those bytes to itself)."""
    at, _, width, height = found
    if bottom > ROWS_WORTH * height:
        return decode_reduced(data, max_pixels, factor)
    # whole MCU rows past `bottom`, and one more: the last one's colours are upsampled as at an edge
    told = min(height, (max(int(bottom), 0) // 16 + 2) * 16)
    rows = height if told == height else told - 16
    told_data = data[:at + 5] + struct.pack(">H", told) + data[at + 7:]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(told_data)) as im:
                if int(im.getexif().get(0x0112, 1)) != 1:
                    return decode_reduced(data, max_pixels, factor)
                im.draft("RGB", (max(1, width // factor), max(1, told // factor)))
                if im.mode != "RGB" or im.size != (-(-width // factor), -(-told // factor)):
                    return decode_reduced(data, max_pixels, factor)  # grey, CMYK: as a whole
                rgb = np.asarray(im)
    except Exception:  # whatever Pillow makes of it, the whole decode says what is wrong, if anything
        return decode_reduced(data, max_pixels, factor)
    return Decoded(rgb, width, height, factor, rows=None if rows == height else rows)


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation a file says it is shown in (1 when none, or a HEIF whose own
    transformations were applied: pillow-heif resets it)."""
    try:
        return _header(data)[2]
    except DecodeError:
        return 1


def _decode_raw(data: bytes, max_pixels: int, min_side: int, most: int = 8) -> Decoded:
    """A camera's RAW file (raw.py): its full-size JPEG preview decoded as any JPEG and turned as
    the file says, else its sensor data demosaiced at half size."""
    try:
        raw = read_raw(data, lambda w, h: _check_pixels(w, h, max_pixels), jpeg_size)
    except RawError as exc:
        raise DecodeError(str(exc)) from None
    if raw.preview is None:
        return Decoded(raw.rgb, raw.width, raw.height, 2)
    picture = decode(raw.preview, max_pixels, min_side, most)  # turned by its own EXIF orientation, if any
    if raw.turns and _header(raw.preview)[2] == 1:  # LibRaw usually writes the RAW's into the preview
        picture.rgb = np.ascontiguousarray(np.rot90(picture.rgb, raw.turns))
        if raw.turns in (1, -1):
            picture.width, picture.height = picture.height, picture.width
    return picture


def jpeg_size(data: bytes) -> Optional[tuple[int, int]]:
    """(width, height) from a JPEG's frame header, or None when there is none to find."""
    found = frame(data)
    return (found[2], found[3]) if found else None


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise DecodeError(
            f"image is {width}x{height} pixels ({width * height / 1e6:.0f} MP), above the limit of "
            f"{max_pixels / 1e6:.0f} MP (processing.max_pixels)")


def _check_jpeg_complete(data: bytes) -> None:
    """A JPEG without its end marker is usually cut short: let Pillow confirm and say so."""
    if data[-64:].rstrip(b"\0\r\n ")[-2:] == b"\xff\xd9":
        return
    _decode_with_pillow(data, draft=True)


def _decode_other(data: bytes, max_pixels: int) -> Decoded:
    """PNG, WebP, BMP, TIFF, and JPEGs OpenCV will not read: full size, first frame."""
    width, height, orientation = _header(data)
    _check_pixels(width, height, max_pixels)
    if orientation in _ROTATED:
        width, height = height, width
    # OpenCV orients PNGs unless told not to, and WebPs never: have it leave the pixels as
    # stored, and turn them here.
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if rgb is None:
        rgb = _decode_with_pillow(data)
    rgb = _orient(rgb, orientation)
    return Decoded(np.ascontiguousarray(rgb), width, height)


def _header(data: bytes) -> tuple[int, int, int]:
    """Stored width and height, and EXIF orientation, from the header alone."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                try:
                    orientation = int(im.getexif().get(0x0112, 1))
                except Exception:  # a broken EXIF block is not a broken picture
                    orientation = 1
                if data[:4] in _TIFF:  # libtiff turns TIFFs itself, under OpenCV and Pillow alike
                    orientation = 1
                return im.width, im.height, orientation
    except UnidentifiedImageError:
        raise DecodeError(f"not an image: {_sniff(data)}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(_reason(exc, "unreadable image header")) from None


def _sniff(data: bytes) -> str:
    if data[4:8] == b"ftyp":  # ISO media: HEIF, AVIF (Pillow could not open it): what libheif says
        try:
            pillow_heif.open_heif(io.BytesIO(data))
        except Exception as exc:  # libheif's own words on what is wrong
            return f"damaged HEIF/AVIF file: {str(exc).strip() or type(exc).__name__}"
        return f"a HEIF/AVIF file of a kind facewatch cannot read (brand {data[8:12].decode('latin-1')!r})"
    head = data[:512]
    if not head.strip():
        return "the file holds only blank bytes"
    try:
        head.decode("utf-8")
        return "the file holds text"
    except UnicodeDecodeError:
        return "unrecognised format (not JPEG, HEIC, AVIF, PNG, WebP, BMP, TIFF, GIF or a camera's RAW)"


def _decode_with_pillow(data: bytes, draft: bool = False) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                if draft:
                    im.draft("RGB", (im.width // 8, im.height // 8))
                im.load()
                return np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        raise DecodeError(f"not an image: {_sniff(data)}") from None
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
