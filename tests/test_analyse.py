"""decode -> detect on real photos with the real MediaPipe model, and clear errors for bad bytes."""
import io
import random
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import NO_DAC, iou, reference_faces, save_jpeg
from facewatch.analysis.analyse import analyse_file
from facewatch.analysis.decode import DecodeError, decode
from facewatch.store import Claim

MAX_PIXELS = 200_000_000


def analyse(path, detector, content_hash=None, find=lambda h, i: None):
    return analyse_file(Claim(1, str(path), content_hash, 1), detector, find, MAX_PIXELS)


@pytest.mark.parametrize("name", ["astronaut.jpg", "cameraman.jpg", "two_astronauts.jpg", "upright.jpg",
                                  "astronaut_9mp.jpg", "messi5.jpg", "coffee.png"])
def test_faces_match_a_full_resolution_reference(photo_dir, reference_detector, hand_loop, name):
    path = photo_dir / name
    if not path.exists():
        pytest.skip(f"{name} comes from Debian's opencv-doc package, which is not installed")
    expected, width, height = reference_faces(hand_loop, path)
    result = analyse(path, reference_detector)
    assert result.kind == "done"
    assert (result.width, result.height) == (width, height)
    assert len(result.faces) == len(expected)
    for face in result.faces:
        assert max(iou(face.bbox, box) for box, _ in expected) >= 0.8
        assert len(face.keypoints) == 6


@pytest.mark.parametrize("name", ["astronaut_9mp.jpg", "two_astronauts.jpg", "messi5.jpg", "sideways.jpg"])
def test_decoded_at_full_size_the_faces_are_the_hand_loops_to_the_pixel(photo_dir, reference_detector,
                                                                         hand_loop, name):
    # facewatch builds the model's input square itself (detect.model_input); at full size it must
    # sample exactly where MediaPipe does, or every reduced decode would be off by as much
    path = photo_dir / name
    if not path.exists():
        pytest.skip(f"{name} comes from Debian's opencv-doc package, which is not installed")
    expected, _, _ = reference_faces(hand_loop, path)
    picture = decode(path.read_bytes(), MAX_PIXELS, min_side=100_000)
    assert picture.scale == 1
    faces = reference_detector.detect(picture.rgb, picture.width, picture.height, picture.scale)
    assert len(faces) == len(expected) > 0
    for face, (box, keypoints) in zip(sorted(faces, key=lambda f: f.bbox), sorted(expected)):
        assert all(abs(a - b) <= 1 for a, b in zip(face.bbox, box)), (face.bbox, box)  # rounding apart
        assert all(abs(a - b) <= 1 for k, e in zip(face.keypoints, keypoints) for a, b in zip(k, e))


def test_small_faces_in_12mp_photos_decoded_at_one_eighth_match_the_full_size_loop(tmp_path, photo_dir,
                                                                                  reference_detector, hand_loop):
    # the hard case of issue 6's fidelity target: Messi's face is 6% of a 12 MP frame, 12 of the
    # model's 192 pixels, where a pixel's misplacement moves the box by a tenth of its width
    if not (photo_dir / "messi5.jpg").exists():
        pytest.skip("messi5.jpg comes from Debian's opencv-doc package, which is not installed")
    source = np.asarray(Image.open(photo_dir / "messi5.jpg").convert("RGB"))
    rng = np.random.default_rng(0)
    ious, expected_total, found_total = [], 0, 0
    for i in range(8):
        # reframed to 4:3 with the edges' own colours (no new faces), at 4000x3000, sensor noise
        pad = round(source.shape[0] * 4 / 3) - source.shape[1]
        left = int(rng.integers(0, pad + 1)) if pad > 0 else 0
        framed = cv2.copyMakeBorder(source, 0, 0, left, max(pad, 0) - left, cv2.BORDER_REPLICATE)
        big = cv2.resize(framed[:, ::-1] if i % 2 else framed, (4000, 3000), interpolation=cv2.INTER_CUBIC)
        big = np.clip(big + rng.normal(0, 4, big.shape), 0, 255).astype(np.uint8)
        path = save_jpeg(tmp_path / f"messi_12mp_{i}.jpg", big, quality=90)
        expected, _, _ = reference_faces(hand_loop, path)
        result = analyse(path, reference_detector)
        assert decode(path.read_bytes(), MAX_PIXELS).scale == 8
        expected_total, found_total = expected_total + len(expected), found_total + len(result.faces)
        ious += [max((iou(face.bbox, box) for box, _ in expected), default=0.0) for face in result.faces]
    assert expected_total >= 8 and abs(found_total - expected_total) <= 0.03 * expected_total
    assert sum(i >= 0.8 for i in ious) >= 0.85 * len(ious), sorted(ious)
    assert sum(ious) / len(ious) >= 0.85, sorted(ious)


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


# How to store a picture so that a viewer applying EXIF orientation N shows it upright.
_STORED_AS = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("square", [True, False], ids=["square", "portrait"])
def test_exif_orientation_of_png_webp_and_tiff(tmp_path, photo_dir, reference_detector, fmt, orientation, square):
    upright = np.asarray(Image.open(photo_dir / "upright.jpg"))  # 512 x 768, one face in the top half
    if square:
        upright = np.ascontiguousarray(upright[:512])
    stored = Image.fromarray(upright).transpose(_STORED_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"turned.{fmt.lower()}"
    stored.save(path, fmt, exif=exif.tobytes(), **({"lossless": True} if fmt == "WEBP" else {}))
    picture = decode(path.read_bytes(), MAX_PIXELS)
    assert (picture.width, picture.height) == (upright.shape[1], upright.shape[0])
    assert picture.rgb.shape == upright.shape
    assert np.abs(picture.rgb.astype(int) - upright).mean() < 1, "not turned upright"
    expected = analyse(photo_dir / "upright.jpg", reference_detector).faces
    faces = analyse(path, reference_detector).faces
    assert len(faces) == 1 and iou(faces[0].bbox, expected[0].bbox) >= 0.8


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
    (random.Random(4).randbytes(5000), "not an image"),
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
    code = ("import sys; from facewatch.analysis.analyse import analyse_file; from facewatch.store import Claim; "
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
