"""`facewatch gallery OUT_DIR`: a static site of the index that opens from disk in any browser.

No server, no network, no script: HTML and CSS written here, JPEG thumbnails made with the
reduced decode the analysers use. Face boxes are drawn by CSS over each thumbnail, at the
percentages of the picture the index gives, so a thumbnail is made once per content (its name is
the content hash) and a second run only makes those of files that changed. Pages hold PAGE_SIZE
photos each, so 100,000 photos are 500 light pages.
"""
from __future__ import annotations

import html
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote

from facewatch.config import Config
from facewatch.intake.files import write_atomically
from facewatch.store import ExportFilter, FileRecord, Store

PAGE_SIZE = 200
THUMB = 320  # long side of a thumbnail, pixels
LARGE = 1280  # of the picture on a photo's own page
CROP = 128  # side of a face crop on a person's page
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
a{color:#0645ad}nav a{margin-right:1em}table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:8px}.ph{position:relative;display:inline-block;line-height:0}
.ph img{max-width:320px;max-height:320px}.large img{max-width:1280px;max-height:1280px}
.box{position:absolute;border:2px solid #0f0;box-sizing:border-box}.crop{width:128px;height:128px}
.cap{font-size:12px;max-width:320px;overflow-wrap:anywhere;line-height:1.3}
"""


@dataclass
class GalleryReport:
    photos: int = 0
    pages: int = 0
    thumbnails_made: int = 0
    thumbnails_kept: int = 0
    unreadable: int = 0
    seconds: float = 0.0


def text(value) -> str:
    """`value` as HTML text: escaped, a name that is not UTF-8 shown with replacement marks."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return html.escape(str(value), quote=True)


def file_url(path: str) -> str:
    """A file:// link to an original, every byte of its name percent-encoded as needed."""
    return "file://" + quote(os.fsencode(path))


def thumb_name(record: FileRecord) -> Optional[str]:
    return None if not record.content_hash else record.content_hash.replace(":", "-") + ".jpg"


def build_gallery(store: Store, config: Config, out: str, stats: dict, page_size: int = PAGE_SIZE,
                  workers: int = 2) -> GalleryReport:
    started = time.monotonic()
    report = GalleryReport()
    for folder in ("thumbs", "large", "crops", "photos", "photo", "people"):
        os.makedirs(os.path.join(out, folder), exist_ok=True)
    done = [r for r in store.iter_files(ExportFilter(statuses=("done",)))]
    failed = [r for r in store.iter_files(ExportFilter(statuses=("failed",)))]
    report.photos = len(done)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # OpenCV decodes without the GIL
        made = list(pool.map(lambda r: make_pictures(r, out, config.processing.max_pixels), done))
    report.thumbnails_made = sum(m for m in made if m is not None)
    report.thumbnails_kept = sum(1 for m in made if m == 0)
    report.unreadable = sum(1 for m in made if m is None)
    people = {p.person_id: p for p in store.persons()}
    pages = [done[i:i + page_size] for i in range(0, len(done), page_size)] or [[]]
    for n, page in enumerate(pages, 1):
        _write(out, f"photos/page-{n}.html", _photos_page(page, n, len(pages)))
    for record in done:
        _write(out, f"photo/{record.file_id}.html", _photo_page(record, people))
    _people_pages(store, config, out, people)
    _write(out, "index.html", _overview(stats, failed, len(pages), len(people)))
    report.pages = len(pages)
    report.seconds = time.monotonic() - started
    return report


def make_pictures(record: FileRecord, out: str, max_pixels: int) -> Optional[int]:
    """Make the record's thumbnail and large picture unless they exist; how many were made
    (None: the file cannot be read now, and its page shows no picture)."""
    import cv2
    from facewatch.analysis.decode import DecodeError, decode
    name = thumb_name(record)
    if name is None:
        return None
    targets = [(os.path.join(out, "thumbs", name), THUMB), (os.path.join(out, "large", name), LARGE)]
    missing = [(path, side) for path, side in targets if not os.path.exists(path)]
    if not missing:
        return 0
    try:
        with open(record.path, "rb") as f:
            data = f.read()
        picture = decode(data, max_pixels, min_side=LARGE)
    except (OSError, DecodeError, MemoryError):
        return None
    for path, side in missing:
        height, width = picture.rgb.shape[:2]
        scale = side / max(width, height)
        small = cv2.resize(picture.rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA) if scale < 1 else picture.rgb
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
        if ok:
            _write_bytes(path, encoded.tobytes())
    return len(missing)


def _picture(record: FileRecord, folder: str, prefix: str, css: str = "ph") -> str:
    """The picture with a CSS box over each face, where the index puts it."""
    name = thumb_name(record)
    boxes = "".join(
        f'<span class="box" title="face {i}: {face.score:.2f}" style="left:{100 * face.bbox[0] / record.width:.2f}%;'
        f'top:{100 * face.bbox[1] / record.height:.2f}%;width:{100 * face.bbox[2] / record.width:.2f}%;'
        f'height:{100 * face.bbox[3] / record.height:.2f}%"></span>'
        for i, face in enumerate(record.faces)) if record.width and record.height else ""
    return f'<span class="{css}"><img src="{prefix}{folder}/{text(name)}" alt="{text(record.path)}">{boxes}</span>'


def _page(title: str, body: str, depth: int = 1) -> str:
    up = "../" * depth
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{text(title)}</title>'
            f'<style>{CSS}</style></head><body><nav><a href="{up}index.html">Overview</a>'
            f'<a href="{up}photos/page-1.html">Photos</a><a href="{up}people/index.html">People</a></nav>'
            f'<h1>{text(title)}</h1>{body}</body></html>')


def _photos_page(page: list, n: int, pages: int) -> str:
    cells = "".join(f'<div><a href="../photo/{r.file_id}.html">{_picture(r, "thumbs", "../")}</a>'
                    f'<div class="cap">{text(os.path.basename(r.path))} · {len(r.faces)} faces</div></div>'
                    for r in page)
    links = " ".join(f'<a href="page-{i}.html">{i}</a>' if i != n else f"<b>{i}</b>" for i in range(1, pages + 1)
                     if abs(i - n) <= 5 or i in (1, pages))
    return _page(f"Photos, page {n} of {pages}", f"<p>{links}</p><div class=grid>{cells}</div><p>{links}</p>")


def _photo_page(record: FileRecord, people: dict) -> str:
    rows = "".join(
        f"<tr><td>{i}</td><td>{face.score:.3f}</td><td>{' '.join(map(str, face.bbox))}</td><td>"
        + (f'<a href="../people/{face.person[0]}.html">{text(face.person[1] or "person " + str(face.person[0]))}</a>'
           if face.person and face.person[0] in people else "") + "</td></tr>"
        for i, face in enumerate(record.faces))
    body = (f'<p>{text(record.path)} · {record.width}x{record.height} · analysed {text(record.processed_at)} · '
            f'<a href="{text(file_url(record.path))}">original</a></p>'
            f'<div>{_picture(record, "large", "../", "ph large")}</div>'
            f"<table><tr><th>face</th><th>score</th><th>x y w h</th><th>person</th></tr>{rows}</table>")
    return _page(os.path.basename(record.path), body)


def _people_pages(store: Store, config: Config, out: str, people: dict) -> None:
    from facewatch.people.crops import face_crops, jpeg
    cards = []
    for person in people.values():
        every = store.person_faces(person.person_id, 2000)  # best first: the page shows the first 60
        faces = every[:60]
        missing = [f for f in faces if not os.path.exists(os.path.join(out, "crops", f"{f.face_id}.jpg"))]
        for face, crop in face_crops(missing, config.processing.max_pixels, CROP):  # made once per face
            _write_bytes(os.path.join(out, "crops", f"{face.face_id}.jpg"), jpeg(crop))
        crops = [(f, None) for f in faces if os.path.exists(os.path.join(out, "crops", f"{f.face_id}.jpg"))]
        title = person.name or f"Person {person.person_id}"
        imgs = "".join(f'<a href="../photo/{f.file_id}.html"><img class="crop" '
                       f'src="../crops/{f.face_id}.jpg" alt="face {f.index} of {text(f.path)}"></a>'
                       for f, _ in crops)
        seen = {}
        for f in every:
            seen.setdefault(f.file_id, f.path)
        photos = "".join(f'<li><a href="../photo/{file_id}.html">{text(path)}</a></li>'
                         for file_id, path in sorted(seen.items(), key=lambda item: item[1]))
        _write(out, f"people/{person.person_id}.html",
               _page(title, f"<p>{person.faces} faces in {person.photos} photos</p><div class=grid>{imgs}</div>"
                            f"<h2>Photos</h2><ul>{photos}</ul>"))
        cover = f'<img class="crop" src="../crops/{crops[0][0].face_id}.jpg" alt="">' if crops else ""
        cards.append(f'<div><a href="{person.person_id}.html">{cover}<div class="cap">{text(title)} · '
                     f'{person.faces} faces</div></a></div>')
    body = f"<div class=grid>{''.join(cards)}</div>" if cards else "<p>No people yet.</p>"
    _write(out, "people/index.html", _page("People", body))


def _overview(stats: dict, failed: list, pages: int, persons: int) -> str:
    f, q, p = stats["files"], stats["queue"], stats["people"]
    checkpoint = stats.get("checkpoint") or {}
    rows = "".join(f"<tr><td>{text(r.path)}</td><td>{text(r.error)}</td></tr>" for r in failed[:1000])
    body = (f"<table><tr><th>files</th><td>{f['total']} known: {f['done']} done, {f['failed']} failed, "
            f"{f['missing']} missing</td></tr><tr><th>faces</th><td>{stats['faces']} in {f['with_faces']} files"
            f"</td></tr><tr><th>people</th><td>{p['persons']} ({p['named']} named), {p['faces_waiting']} faces "
            f"waiting</td></tr><tr><th>queue</th><td>{q['pending']} pending, {q['processing']} processing</td></tr>"
            f"<tr><th>last checkpoint</th><td>{text(checkpoint.get('status'))} at "
            f"{text(checkpoint.get('created_at'))}</td></tr></table>"
            f'<p><a href="photos/page-1.html">{f["done"]} photos on {pages} pages</a> · '
            f'<a href="people/index.html">{persons} people</a></p>'
            f"<h2>Failed files</h2><table><tr><th>path</th><th>why</th></tr>{rows}</table>")
    return _page("facewatch", body, depth=0)


def _write(out: str, relative: str, content: str) -> None:
    _write_bytes(os.path.join(out, relative), content.encode("utf-8"))


def _write_bytes(path: str, data: bytes) -> None:
    write_atomically(path, data)
