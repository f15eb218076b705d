"""decode -> detect on real photos with the real MediaPipe model, and clear errors for bad bytes."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import NO_DAC, iou, reference_faces, save_jpeg
from facewatch.analyse import analyse_file
from facewatch.decode import DecodeError, decode
from facewatch.store import Claim

MAX_PIXELS = 200_000_000


def analyse(path, detector, content_hash=None, find=lambda h, i: None):
    return analyse_file(Claim(1, str(path), content_hash, 1), detector, find, MAX_PIXELS)


@pytest.mark.parametrize("name", ["astronaut.jpg", "cameraman.jpg", "two_astronauts.jpg", "upright.jpg",
                                  "astronaut_9mp.jpg", "messi5.jpg", "coffee.png"])
def test_faces_match_a_full_resolution_reference(photo_dir, reference_detector, name):
    path = photo_dir / name
    if not path.exists():
        pytest.skip(f"{name} comes from Debian's opencv-doc package, which is not installed")
    expected, width, height = reference_faces(reference_detector, path)
    result = analyse(path, reference_detector)
    assert result.kind == "done"
    assert (result.width, result.height) == (width, height)
    assert len(result.faces) == len(expected)
    for face in result.faces:
        assert max(iou(face.bbox, e.bbox) for e in expected) >= 0.8
        assert len(face.keypoints) == 6


def test_the_astronauts_face_is_where_it_is(photo_dir, reference_detector):
    result = analyse(photo_dir / "astronaut.jpg", reference_detector)
    (face,) = result.faces
    x, y, w, h = face.bbox
    assert x < 226 < x + w and y < 120 < y + h  # her face, between the eyes and the mouth
    assert 80 < w < 140 and face.score > 0.8
    assert all(isinstance(v, int) for v in (x, y, w, h))


def test_two_faces_and_no_faces(photo_dir, reference_detector):
    assert len(analyse(photo_dir / "two_astronauts.jpg", reference_detector).faces) == 2
    assert analyse(photo_dir / "coffee.png", reference_detector).faces == ()


def test_exif_orientation_gives_upright_coordinates(photo_dir, reference_detector):
    upright = analyse(photo_dir / "upright.jpg", reference_detector)
    sideways = analyse(photo_dir / "sideways.jpg", reference_detector)
    assert (sideways.width, sideways.height) == (512, 768) == (upright.width, upright.height)
    assert len(sideways.faces) == 1
    assert iou(sideways.faces[0].bbox, upright.faces[0].bbox) >= 0.8


def test_large_jpegs_are_decoded_at_reduced_scale(photo_dir):
    data = (photo_dir / "astronaut_9mp.jpg").read_bytes()
    picture = decode(data, MAX_PIXELS)
    assert (picture.width, picture.height) == (3000, 3000)
    assert picture.rgb.shape[:2] == (750, 750)  # 1/4: still at least 480 px on the long side
    full = decode(data, MAX_PIXELS, min_side=10_000)  # processing.min_decode_side: full resolution
    assert full.rgb.shape[:2] == (3000, 3000)


def test_unchanged_bytes_are_not_detected_again(photo_dir, reference_detector):
    first = analyse(photo_dir / "astronaut.jpg", reference_detector)
    again = analyse(photo_dir / "astronaut.jpg", reference_detector, content_hash=first.content_hash)
    assert again.kind == "unchanged" and again.faces == ()
    copy = analyse(photo_dir / "astronaut.jpg", reference_detector, find=lambda h, i: (42, str(photo_dir / "coffee.png")))
    assert copy.kind == "reused" and copy.source_id == 42
    moved = analyse(photo_dir / "astronaut.jpg", reference_detector, find=lambda h, i: (42, "/gone/a.jpg"))
    assert moved.kind == "moved" and moved.source_id == 42


def png_bytes(array, **kw):
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG", **kw)
    return out.getvalue()


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file (0 bytes)"),
    (b"hello, I am a text file\n", "not an image: the file holds text"),
    (os.urandom(5000), "not an image"),
])
def test_bad_bytes_fail_with_a_reason(tmp_path, reference_detector, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    result = analyse(path, reference_detector)
    assert result.kind == "failed" and reason in result.error


def test_truncated_jpeg_and_png_fail_as_truncated(photo_dir, tmp_path, reference_detector):
    data = (photo_dir / "astronaut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    png = (photo_dir / "coffee.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    for name in ("cut.jpg", "cut.png"):
        result = analyse(tmp_path / name, reference_detector)
        assert result.kind == "failed", name
        assert "truncated" in result.error or "corrupt" in result.error, result.error


def test_a_decompression_bomb_fails_without_decoding(tmp_path):
    # a tiny PNG header declaring 50,000 x 50,000 pixels
    bomb = png_bytes(np.zeros((1, 1, 3), np.uint8))
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    bomb = bomb[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + bomb[33:]
    with pytest.raises(DecodeError, match=r"50000x50000 pixels \(2500 MP\), above the limit of 200 MP"):
        decode(bomb, MAX_PIXELS)


def test_a_png_named_jpg_is_processed(tmp_path, reference_detector, photo_dir):
    path = tmp_path / "really_a_png.jpg"
    path.write_bytes(png_bytes(np.asarray(Image.open(photo_dir / "astronaut.jpg"))))
    result = analyse(path, reference_detector)
    assert result.kind == "done" and len(result.faces) == 1


def test_a_vanished_file_is_missing_not_failed(tmp_path, reference_detector):
    assert analyse(tmp_path / "gone.jpg", reference_detector).kind == "missing"


def test_an_unreadable_file_fails_with_permission_denied(tmp_path, photo_dir):
    path = tmp_path / "locked.jpg"
    path.write_bytes((photo_dir / "astronaut.jpg").read_bytes())
    path.chmod(0)
    code = ("import sys; from facewatch.analyse import analyse_file; from facewatch.store import Claim; "
            "r = analyse_file(Claim(1, sys.argv[1], None, 1), None, lambda h, i: None, 10**8); "
            "print(r.kind, r.error, sep='|')")
    out = subprocess.run([*NO_DAC, sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert out.stdout.strip() == "failed|permission denied: the daemon's user cannot read this file", out.stderr


def test_grayscale_and_alpha_and_16_bit(tmp_path, reference_detector, photo_dir):
    rgb = np.asarray(Image.open(photo_dir / "astronaut.jpg"))
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.jpg")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).save(tmp_path / "progressive.jpg", progressive=True, quality=90)
    Image.fromarray(rgb).save(tmp_path / "photo.webp")
    Image.fromarray(rgb).save(tmp_path / "photo.bmp")
    Image.fromarray(rgb).save(tmp_path / "photo.tiff")
    save_jpeg(tmp_path / "UPPER.JPG", rgb)
    for name in ("gray.jpg", "alpha.png", "cmyk.jpg", "progressive.jpg", "photo.webp", "photo.bmp",
                 "photo.tiff", "UPPER.JPG"):
        result = analyse(tmp_path / name, reference_detector)
        assert result.kind == "done", (name, result.error)
        assert len(result.faces) == 1, name
