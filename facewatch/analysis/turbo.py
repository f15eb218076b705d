"""A region of a JPEG, decoded at 1/1, 1/2, 1/4 or 1/8 by libjpeg-turbo's TurboJPEG 3 API (ctypes):
the rows below the region are never read, the columns beside it only entropy-decoded, and the pixels
are the whole decode's, pixel for pixel (tested). A face's rows and columns of a 12 MP photo at 1/2
take 10-12 ms where Pillow's decode of the same rows takes 16-21 (bench/people.py).

The library is the one inside the `turbojpeg` wheel (libjpeg-turbo 3.0, x86_64 Linux); a system
libturbojpeg of version 3 does as well. Without either, `available()` is False and decode.py
decodes the rows through Pillow instead: the same pixels, more slowly.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.metadata
from typing import Iterator, Optional

import numpy as np

_INIT_DECOMPRESS = 1  # TJINIT_DECOMPRESS
_PIXELS_RGB = 0  # TJPF_RGB


class _Factor(ctypes.Structure):
    _fields_ = [("num", ctypes.c_int), ("denom", ctypes.c_int)]


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


def _candidates() -> Iterator[str]:
    """The wheel's library, then the system's (ctypes asks ldconfig: 45 ms, only when needed)."""
    try:
        wheel = importlib.metadata.distribution("turbojpeg")
        yield from (str(wheel.locate_file(f)) for f in wheel.files or () if f.name.startswith("libturbojpeg"))
    except importlib.metadata.PackageNotFoundError:
        pass
    system = ctypes.util.find_library("turbojpeg")
    if system:
        yield system


@functools.lru_cache(maxsize=None)
def _library():
    """The library, looked for at its first use (not at import: the analyser server imports this
    module before it forks, and every scan waits for that server), or None."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if not hasattr(lib, "tj3Init") or not hasattr(lib, "tj3SetCroppingRegion"):
            continue  # TurboJPEG 2 (Debian's 2.1): no regions
        lib.tj3Init.restype = ctypes.c_void_p
        lib.tj3Init.argtypes = [ctypes.c_int]
        lib.tj3Destroy.argtypes = [ctypes.c_void_p]
        lib.tj3DecompressHeader.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.tj3SetScalingFactor.argtypes = [ctypes.c_void_p, _Factor]
        lib.tj3SetCroppingRegion.argtypes = [ctypes.c_void_p, _Region]
        lib.tj3Decompress8.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p,
                                       ctypes.c_int, ctypes.c_int]
        return lib
    return None


def available() -> bool:
    return _library() is not None


def decode_region(data: bytes, factor: int, left: int, width: int, rows: int) -> Optional[np.ndarray]:
    """Rows 0..`rows` and columns `left`..`left + width` of `data` decoded at 1/`factor`, in decoded
    pixels; `left` a multiple of the decoded iMCU width (16 / factor for 4:2:0). None when the
    library is missing, refuses the region, or reports anything at all (a warning included):
    the caller decodes another way, which says what is wrong, if anything."""
    lib = _library()
    if lib is None:
        return None
    handle = lib.tj3Init(_INIT_DECOMPRESS)
    if not handle:
        return None
    try:
        out = np.empty((rows, width, 3), np.uint8)
        if (lib.tj3DecompressHeader(handle, data, len(data))
                or lib.tj3SetScalingFactor(handle, _Factor(1, factor))
                or lib.tj3SetCroppingRegion(handle, _Region(left, 0, width, rows))
                or lib.tj3Decompress8(handle, data, len(data), out.ctypes.data, width * 3, _PIXELS_RGB)):
            return None
        return out
    finally:
        lib.tj3Destroy(handle)
