"""The gallery in a real browser (headless Chromium), and the metrics file parsed by Prometheus's parser."""
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import facewatch, make_variants, status, wait_until, write_config

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NASTY = ['a "quoted" name.jpg', "<b>bold & co.jpg", "with space.jpg"]
NOT_UTF8 = b"caf\xe9.jpg"

# appended to a copy of a page, in its folder (so its links and images resolve as the page's do):
# once everything loaded, what the browser made of the images and the boxes goes into the DOM
CHECK = """<script>window.addEventListener('load', () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
  const boxes = [...document.querySelectorAll('.box')].map(b => {
    const r = b.getBoundingClientRect(), p = b.parentElement.querySelector('img').getBoundingClientRect();
    return [(r.left - p.left) / p.width, (r.top - p.top) / p.height, r.width / p.width, r.height / p.height];
  });
  const out = document.createElement('pre'); out.id = 'check';
  out.textContent = JSON.stringify({images: images.length, broken, boxes,
                                    bold: document.querySelectorAll('b').length});
  document.body.appendChild(out);
});</script>"""


def in_browser(page: Path) -> dict:
    """Load `page` in headless Chromium; what CHECK found."""
    probe = page.with_name(f"_check_{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK + "</body>"), encoding="utf-8")
    try:
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                              "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                             capture_output=True, text=True, timeout=120).stdout
    finally:
        probe.unlink()
    found = re.search(r'<pre id="check">(.*?)</pre>', dom, re.S)
    assert found, f"the check did not run in {page}:\n{dom[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))


def links_resolve(out: Path) -> None:
    """Every href and src of every page points at a file that exists."""
    for page in out.rglob("*.html"):
        for target in re.findall(r'(?:href|src)="([^"]+)"', page.read_text(encoding="utf-8")):
            if target.startswith("file://"):
                assert os.path.exists(unquote(target[len("file://"):], encoding="latin-1").encode("latin-1")), target
            else:
                assert (page.parent / unquote(target)).exists(), f"{page}: {target}"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """An index of real photos with people, names that need escaping, and a failed file."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from sources import labelled_dir
    labelled = labelled_dir()
    if labelled is None:
        pytest.skip("face_recognition's labelled photos are fetched from PyPI with pip download, which failed (offline?)")
    tmp = tmp_path_factory.mktemp("gallery")
    photos = tmp / "photos"
    photos.mkdir()
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        shutil.copy(labelled / name, photos / name)
    for name, source in zip(NASTY, ("obama_partial_face.jpg", "obama_partial_face2.jpg", "obama.jpg")):
        shutil.copy(labelled / source, photos / name)
    shutil.copy(labelled / "biden.jpg", os.path.join(os.fsencode(str(photos)), NOT_UTF8))
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    config = write_config(tmp, people={"enabled": True})
    facewatch(config, "scan", timeout=300)
    return config, tmp


@pytest.mark.skipif(CHROMIUM is None, reason="no browser: install Debian's chromium (apt install chromium)")
def test_the_gallery_in_a_real_browser(indexed, tmp_path):
    config, _ = indexed
    out = tmp_path / "site"
    first = facewatch(config, "gallery", str(out)).stdout
    # six contents (two photos are byte copies of others, and share their pictures), two pictures each
    assert "8 photos on 1 pages, 12 pictures made" in first
    second = facewatch(config, "gallery", str(out)).stdout
    assert "0 pictures made, 8 photos had theirs already" in second  # incremental
    links_resolve(out)
    overview = in_browser(out / "index.html")
    assert overview["broken"] == [] and "broken.jpg" in (out / "index.html").read_text()
    page = in_browser(out / "photos" / "page-1.html")
    # <b> only for the page number, above and below the photos: no tag came in with a file's name
    assert page["images"] == 8 and page["broken"] == [] and page["bold"] == 2
    assert "&lt;b&gt;bold &amp; co.jpg" in (out / "photos" / "page-1.html").read_text()
    # a photo's page: its boxes where the index says its faces are
    records = {json.loads(line)["path"]: json.loads(line) for line in facewatch(config, "export").stdout.splitlines()}
    record = records[str(indexed[1] / "photos" / "obama.jpg")]
    photo_page = next(p for p in (out / "photo").glob("*.html") if "obama.jpg ·" in p.read_text().replace(
        str(indexed[1] / "photos") + "/", ""))
    seen = in_browser(photo_page)
    assert seen["broken"] == [] and len(seen["boxes"]) == len(record["faces"]) == 1
    x, y, w, h = record["faces"][0]["bbox"]
    expected = [x / record["width"], y / record["height"], w / record["width"], h / record["height"]]
    assert all(abs(a - b) < 0.01 for a, b in zip(seen["boxes"][0], expected)), (seen["boxes"], expected)
    # a person's page shows that person's faces
    people = json.loads(facewatch(config, "people", "--json").stdout)
    obama = max(people, key=lambda p: p["faces"])
    person = in_browser(out / "people" / f"{obama['id']}.html")
    assert person["images"] == obama["faces"] >= 5 and person["broken"] == []
    shot = tmp_path / "gallery.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,900", f"--screenshot={shot}", (out / "photos" / "page-1.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000  # for a human to look at


def test_the_metrics_file_agrees_with_status(tmp_path, daemon, photo_dir):
    from prometheus_client.parser import text_string_to_metric_families
    prom = tmp_path / "metrics" / "facewatch.prom"
    prom.parent.mkdir()
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, metrics={"textfile": str(prom), "listen": f"127.0.0.1:{port}"})
    d = daemon(config)
    make_variants(photo_dir, tmp_path / "photos", 12, seed=3)
    (tmp_path / "photos" / "empty.jpg").write_bytes(b"")
    (tmp_path / "photos" / "text.jpg").write_text("not a picture")
    wait_until(lambda: status(config)["files"]["failed"] == 2 and status(config)["files"]["done"] == 12,
               timeout=60, message="the photos analysed")
    s = status(config)
    before = prom.stat().st_mtime_ns if prom.exists() else 0
    wait_until(lambda: prom.exists() and prom.stat().st_mtime_ns != before, timeout=20, message="a rewrite")
    time.sleep(0.1)
    metrics = {}
    for family in text_string_to_metric_families(prom.read_text()):
        for sample in family.samples:
            metrics[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert metrics[("facewatch_files", (("status", "done"),))] == s["files"]["done"] == 12
    assert metrics[("facewatch_files", (("status", "failed"),))] == 2
    assert metrics[("facewatch_faces", ())] == s["faces"]
    assert metrics[("facewatch_queue_files", (("state", "pending"),))] == 0
    assert metrics[("facewatch_files_processed_total", (("outcome", "done"),))] == 12
    failed = {dict(k[1])["reason"]: v for k, v in metrics.items() if k[0] == "facewatch_files_failed_total"}
    assert sum(failed.values()) == 2 and "empty file" in failed, failed
    assert metrics[("facewatch_analysis_seconds_count", ())] == 14
    assert metrics[("facewatch_last_reconcile_timestamp_seconds", ())] > 0
    assert metrics[("facewatch_start_time_seconds", ())] <= time.time()
    # the same registry over HTTP, for those who scrape directly
    import urllib.request
    served = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(served)}
    done = [x.value for x in families["facewatch_files"].samples if x.labels == {"status": "done"}]
    assert done == [12] and "facewatch_analysis_seconds" in families
    assert d.stop() == 0
