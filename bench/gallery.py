"""The gallery's cost: time per 1,000 photos (first run, and a second run with nothing changed) and
its size on disk, on a corpus of real-photo JPEGs; with --screenshot, a PNG of its first photo page
taken by headless Chromium (docs/gallery.png in the README).

    python bench/gallery.py [--corpus bench-corpus/12mp] [--screenshot docs/gallery.png]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=HERE.parent / "bench-corpus" / "12mp")
    parser.add_argument("--screenshot", type=Path, help="write a PNG of the first photo page here")
    args = parser.parse_args()
    args.corpus = args.corpus.resolve()  # the config lives in a temporary folder
    files = sorted(args.corpus.glob("*.jpg"))
    if not files:
        raise SystemExit(f"no JPEGs in {args.corpus}: make some with bench/make_corpus.py")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(f"watch:\n  paths: [{args.corpus}]\ndatabase: {tmp}/fw.db\nlogging: {{level: warning}}\n")
        facewatch = [sys.executable, "-m", "facewatch", "--config", str(config)]
        print(f"indexing {len(files)} photos of {args.corpus} (people included) ...", flush=True)
        subprocess.run([*facewatch, "scan"], check=True, capture_output=True)
        out = Path(tmp) / "site"
        for run in ("first run", "second run, nothing changed"):
            started = time.perf_counter()
            subprocess.run([*facewatch, "gallery", str(out)], check=True, capture_output=True)
            seconds = time.perf_counter() - started
            print(f"{run}: {seconds:.1f} s, {1000 * seconds / len(files):.1f} s per 1,000 photos; "
                  f"{size_of(out) / 2**20:.1f} MiB on disk ({size_of(out) / len(files) / 1024:.0f} KiB a photo)",
                  flush=True)
        if args.screenshot:
            chromium = shutil.which("chromium") or shutil.which("chromium-browser")
            if chromium is None:
                raise SystemExit("no chromium for the screenshot (apt install chromium)")
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--window-size=1280,860", f"--screenshot={args.screenshot.resolve()}",
                            (out / "photos" / "page-1.html").as_uri()], check=True, capture_output=True)
            print(f"wrote {args.screenshot}")


if __name__ == "__main__":
    main()
