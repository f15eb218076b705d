"""Phones' HEIC/HEIF and AVIF, cameras' RAW files: the same faces as the same photo saved as JPEG,
the picture as shown (orientation applied), damaged files failed with a reason; end to end in a
daemon, with show --draw and the gallery."""
import io
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import export, facewatch, iou, status, wait_until, write_config
from facewatch.analysis.decode import DecodeError, decode
from facewatch.analysis.faces import find_faces

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from dng import make_dng  # noqa: E402

MAX_PIXELS = 10**9


@pytest.fixture(scope="module")
def portrait():
    """A real photo (the astronaut, NASA), 1536 wide and 2304 high, and its JPEG."""
    from skimage import data
    rgb = cv2.resize(np.vstack([data.astronaut(), np.full((256, 512, 3), 90, np.uint8)]), (1536, 2304),
                     interpolation=cv2.INTER_CUBIC)
    return rgb, cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


@pytest.fixture(scope="module")
def detector():
    from facewatch.analysis.detect import MediaPipeDetector
    d = MediaPipeDetector("full_range", 0.5, "auto")
    yield d
    d.close()


def faces_of(detector, data: bytes):
    picture = decode(data, MAX_PIXELS)
    return picture, find_faces(detector, data, picture, MAX_PIXELS)


def encoded(rgb: np.ndarray, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_a_heic_or_avif_photo_has_the_faces_of_the_same_photo_as_jpeg(portrait, detector, fmt):
    rgb, jpeg = portrait
    _, expected = faces_of(detector, jpeg)
    picture, found = faces_of(detector, encoded(rgb, fmt, quality=85))
    assert (picture.width, picture.height) == (1536, 2304)
    assert len(found) == len(expected) == 1
    assert iou(found[0].bbox, expected[0].bbox) >= 0.9


def test_orientation_of_heif_and_avif_is_the_picture_as_shown(portrait, detector):
    """Stored lying on its side, with orientation 6: HEIF keeps it as a transformation (irot),
    which libheif applies; AVIF as EXIF, which facewatch applies."""
    rgb, jpeg = portrait
    _, expected = faces_of(detector, jpeg)
    side = np.ascontiguousarray(np.rot90(rgb, 1))
    exif = Image.Exif()
    exif[0x0112] = 6
    for fmt in ("HEIF", "AVIF"):
        picture, found = faces_of(detector, encoded(side, fmt, quality=85, exif=exif.tobytes()))
        assert (picture.width, picture.height) == (1536, 2304), fmt
        assert len(found) == 1 and iou(found[0].bbox, expected[0].bbox) >= 0.9, fmt


def test_real_heif_files_from_phones_and_cameras():
    """pillow-heif's own samples: a Xiaomi phone's photo; a Canon camera's HEIF stored turned a
    quarter (shown upright); a damaged file and an empty one, each failed with a reason."""
    from sources import heif_samples
    samples = heif_samples()
    if not samples:
        pytest.skip("pillow-heif's source package (real HEIF samples) could not be fetched from PyPI (offline?)")
    picture = decode(samples["xiaomi.heic"], MAX_PIXELS)
    assert (picture.width, picture.height) == (2592, 1944) and picture.rgb.shape == (1944, 2592, 3)
    turned = decode(samples["guitar_cw90.hif"], MAX_PIXELS)
    assert (turned.width, turned.height) == (4672, 7008)  # stored 7008 wide, shown upright
    with pytest.raises(DecodeError, match="(?i)insufficient|damaged|corrupt|truncated"):
        decode(samples["corrupted.heic"], MAX_PIXELS)
    with pytest.raises(DecodeError, match="empty"):
        decode(samples["empty.heic"], MAX_PIXELS)
    with pytest.raises(DecodeError, match="above the limit"):
        decode(samples["guitar_cw90.hif"], 20_000_000)  # 33 MP: refused from the header


def test_a_raw_file_is_analysed_from_its_full_size_preview_turned_as_the_camera_says(portrait, detector):
    rgb, jpeg = portrait
    _, expected = faces_of(detector, jpeg)
    side = np.ascontiguousarray(np.rot90(rgb, 1))  # as the camera's sensor held it, with orientation 6
    picture, found = faces_of(detector, make_dng(side, preview=True, orientation=6))
    assert (picture.width, picture.height) == (1536, 2304)
    assert picture.scale == 4, "the preview is a JPEG: decoded reduced"
    assert len(found) == 1 and iou(found[0].bbox, expected[0].bbox) >= 0.9


def test_a_raw_files_faces_get_the_same_finer_decode_as_the_jpegs(portrait):
    """Embeddings and crops ask for a finer decode of small faces: a RAW file's preview gives it,
    as the JPEG does (once it got the coarsest, 1/8, whatever the face)."""
    from facewatch.analysis.embed import decode_for, shows
    rgb, jpeg = portrait
    dng = make_dng(np.ascontiguousarray(np.rot90(rgb, 1)), preview=True, orientation=6)
    for boxes, scale in (([(500, 300, 200, 200)], 2), ([(500, 300, 90, 90)], 1), ([(500, 300, 900, 900)], 8)):
        from_jpeg, from_raw = decode_for(jpeg, MAX_PIXELS, boxes), decode_for(dng, MAX_PIXELS, boxes)
        assert from_jpeg.scale == from_raw.scale == scale
        assert all(shows(from_jpeg, box) and shows(from_raw, box) for box in boxes)


def test_a_raw_file_without_a_preview_is_demosaiced_at_half_size(portrait, detector):
    rgb, jpeg = portrait
    _, expected = faces_of(detector, jpeg)
    side = np.ascontiguousarray(np.rot90(rgb, 1))
    picture, found = faces_of(detector, make_dng(side, preview=False, orientation=6))
    assert (picture.width, picture.height) == (1536, 2304) and picture.scale == 2
    assert picture.rgb.shape == (1152, 768, 3)
    # developed from the sensor data, not a copy of the JPEG: the same face, drawn a little differently
    assert len(found) == 1 and iou(found[0].bbox, expected[0].bbox) >= 0.7


def test_damaged_raw_files_fail_with_a_reason_and_tiffs_are_still_tiffs(portrait):
    rgb, _ = portrait
    dng = make_dng(rgb[:512, :512], preview=False)
    for damaged in (dng[:5000], dng[:8] + bytes(len(dng) - 8), dng[:len(dng) // 2]):
        with pytest.raises(DecodeError, match="damaged RAW"):
            decode(damaged, MAX_PIXELS)
    tiff = encoded(rgb[:300, :400], "TIFF")  # an ordinary TIFF: LibRaw does not know it, Pillow does
    picture = decode(tiff, MAX_PIXELS)
    assert (picture.width, picture.height) == (400, 300) and np.abs(picture.rgb.astype(int) - rgb[:300, :400]).mean() < 1


@pytest.mark.slow
def test_heic_avif_and_raw_dropped_into_a_running_daemon(tmp_path, daemon, portrait):
    """Every format the defaults watch, end to end: analysed, exported with the size shown,
    drawn by show --draw and pictured in the gallery."""
    rgb, jpeg = portrait
    config = write_config(tmp_path)
    photos = tmp_path / "photos"
    d = daemon(config)
    side = np.ascontiguousarray(np.rot90(rgb, 1))
    files = {"a.jpg": jpeg, "b.heic": encoded(rgb, "HEIF", quality=85), "c.avif": encoded(rgb, "AVIF", quality=85),
             "d.dng": make_dng(side, preview=True, orientation=6), "e.DNG": make_dng(side, preview=False, orientation=6),
             "f.nef": make_dng(rgb[:512, :512], preview=False)[:4000]}  # a damaged RAW file
    for name, data in files.items():
        tmp = tmp_path / f".{name}"
        tmp.write_bytes(data)
        tmp.rename(photos / name)
    wait_until(lambda: status(config)["files"]["done"] + status(config)["files"]["failed"] == len(files), timeout=90,
               message="every format analysed")
    records = {Path(p).name: r for p, r in export(config).items()}
    reference = records["a.jpg"]["faces"][0]["bbox"]
    for name in ("b.heic", "c.avif", "d.dng", "e.DNG"):
        r = records[name]
        assert r["status"] == "done" and (r["width"], r["height"]) == (1536, 2304), (name, r)
        assert len(r["faces"]) == 1 and iou(r["faces"][0]["bbox"], reference) >= 0.7, (name, r["faces"])
    assert records["f.nef"]["status"] == "failed" and "damaged RAW" in records["f.nef"]["error"]
    assert d.proc.poll() is None
    drawn = tmp_path / "drawn.jpg"
    facewatch(config, "show", str(photos / "b.heic"), "--draw", str(drawn))
    assert Image.open(drawn).size == (1536, 2304)
    facewatch(config, "gallery", str(tmp_path / "gallery"))
    assert len(list((tmp_path / "gallery" / "thumbs").glob("*.jpg"))) == 5
    assert d.stop() == 0
