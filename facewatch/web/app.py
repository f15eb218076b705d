"""The web interface's pages and actions (Flask): overview, people, a person, a photo, search by
name and `find --like` by upload; name, rename, merge, hide a person, take a face out of one. Each
action is the store call the command line makes, so the CLI, the gallery and the XMP sidecars see
it at once. Templates escape everything they show (Jinja2's autoescape)."""
from __future__ import annotations

import os
import tempfile
import time
from typing import Optional
from urllib.parse import urlsplit

import structlog
from flask import Flask, abort, jsonify, redirect, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from facewatch import cache_folder
from facewatch.config import Config
from facewatch.results.status import collect_status
from facewatch.store import ExportFilter, PeopleError, Store, StoreError, StoreUnusable
from facewatch.web.pictures import Pictures
from facewatch.web.security import COOKIE, csrf_value, same

log = structlog.get_logger("facewatch.web.app")
PEOPLE_PAGE = 60  # people on a page of the grid
FACES_PAGE = 120  # faces on a page of a person
OPEN = ("/healthz", "/metrics", "/static/")  # served without the token


def create_app(config: Config, store: Store, token: str, pictures: Optional[Pictures] = None) -> Flask:
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=64 << 20)  # an upload for find --like: a photo, not a film
    csrf = csrf_value(token)
    pictures = pictures or Pictures(cache_folder() / "web", config.processing.max_pixels)
    started = time.time()

    @app.before_request
    def authorise():
        if request.path.startswith(OPEN):
            return None
        given = request.args.get("token")
        if given is not None and same(given, token):  # the URL `facewatch serve` printed: once
            response = redirect(request.path)
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", max_age=365 * 86400)
            return response
        if not same(request.cookies.get(COOKIE, ""), token):
            return render_template("refused.html"), 401
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if not same(request.form.get("csrf", ""), csrf) or (origin and urlsplit(origin).netloc != request.host):
                return render_template("error.html", message="This form did not come from this page: reload "
                                       "it and try again."), 403
        return None

    @app.context_processor
    def common():
        return {"csrf": csrf, "version": _version()}

    # pages ------------------------------------------------------------------------------------
    @app.get("/")
    def overview():
        state = collect_status(config, time.time())
        failed = [r for _, r in zip(range(200), store.iter_files(ExportFilter(statuses=("failed",))))]
        return render_template("overview.html", s=state, failed=failed)

    @app.get("/api/status")
    def api_status():
        return jsonify(collect_status(config, time.time()))

    @app.get("/people")
    def people():
        query = request.args.get("q", "").strip()
        show_hidden = request.args.get("hidden") == "1"
        everyone = store.persons()
        shown = [p for p in everyone if (show_hidden or not p.hidden)
                 and (not query or (p.name and query.casefold() in p.name.casefold()))]
        shown.sort(key=lambda p: (p.name is not None, -p.faces, p.person_id))  # unnamed first, largest first
        page, pages, shown = _page(shown, PEOPLE_PAGE)
        return render_template("people.html", people=shown, page=page, pages=pages, query=query,
                               show_hidden=show_hidden, total=len(everyone), all_people=everyone)

    @app.get("/person/<int:person_id>")
    def person(person_id: int):
        everyone = store.persons()
        found = next((p for p in everyone if p.person_id == person_id), None)
        if found is None:
            abort(404)
        faces = store.person_faces(person_id)
        page, pages, faces = _page(faces, FACES_PAGE)
        photos = store.person_photos(person_id)
        return render_template("person.html", p=found, faces=faces, page=page, pages=pages,
                               photos=photos[:500], more_photos=max(0, len(photos) - 500),
                               others=[o for o in everyone if o.person_id != person_id])

    @app.get("/photo/<int:file_id>")
    def photo(file_id: int):
        record = store.file_by_id(file_id)
        if record is None:
            abort(404)
        return render_template("photo.html", r=record)

    @app.route("/like", methods=["GET", "POST"])
    def like_page():
        if request.method == "GET":
            return render_template("like.html", matches=None)
        upload = request.files.get("photo")
        if upload is None or not upload.filename:
            return render_template("like.html", matches=None, message="Choose a photo first."), 400
        from facewatch.people.like import faces_in, like
        with tempfile.NamedTemporaryFile(suffix=os.path.splitext(upload.filename)[1][:10]) as tmp:
            upload.save(tmp.name)
            try:
                matches = like(store, faces_in(config, tmp.name), 60)
            except PeopleError as exc:
                message = str(exc).replace(tmp.name, upload.filename)
                return render_template("like.html", matches=None, message=message), 400
        rows = [(m, store.file_record(m.path)) for m in matches]
        return render_template("like.html", matches=[(m, r) for m, r in rows if r is not None])

    # pictures: only files and faces of the index, by id -----------------------------------------
    @app.get("/picture/<int:file_id>/<kind>")
    def picture(file_id: int, kind: str):
        record = store.file_by_id(file_id)
        if kind not in ("thumbs", "large") or record is None or record.status != "done":
            abort(404)
        path = pictures.photo(record, kind)
        return send_file(path, mimetype="image/jpeg", max_age=86400) if path else abort(404)

    @app.get("/crop/<int:face_id>")
    def crop(face_id: int):
        face = store.face(face_id)
        record = store.file_by_id(face.file_id) if face else None
        if record is None:
            abort(404)
        path = pictures.crop(face, record.content_hash)
        return send_file(path, mimetype="image/jpeg", max_age=86400) if path else abort(404)

    # actions: the command line's store calls ----------------------------------------------------
    @app.post("/person/<int:person_id>/name")
    def name(person_id: int):
        store.name_person(person_id, request.form.get("name", "").strip() or None)
        return _back("/people")

    @app.post("/people/merge")
    def merge():
        into = int(request.form["into"])
        merged = [int(p) for p in request.form.getlist("person") if int(p) != into]
        if not merged:
            raise PeopleError("choose the people to merge, and the person they are")
        for person_id in merged:
            store.merge_persons(person_id, into)
        return redirect(f"/person/{into}", code=303)

    @app.post("/person/<int:person_id>/hide")
    def hide(person_id: int):
        store.hide_person(person_id, request.form.get("hidden", "1") == "1")
        return _back("/people")

    @app.post("/face/<int:face_id>/unassign")
    def unassign(face_id: int):
        face = store.face(face_id)
        if face is None:
            abort(404)
        store.unassign_face(face.path, face.index)
        return _back("/people")

    # open to all --------------------------------------------------------------------------------
    @app.get("/healthz")
    def healthz():
        return "ok\n", 200, {"Content-Type": "text/plain"}

    @app.get("/metrics")
    def metrics():
        from prometheus_client import generate_latest

        from facewatch.results.metrics import Metrics
        collected = Metrics(None, started)
        collected.refresh(store.stats())
        return generate_latest(collected.registry), 200, {"Content-Type": "text/plain; version=0.0.4"}

    # errors: a line a user can act on, never a traceback ------------------------------------------
    @app.errorhandler(PeopleError)
    def people_error(exc):
        return render_template("error.html", message=str(exc)), 400

    @app.errorhandler(StoreUnusable)
    def unusable(exc):
        return render_template("error.html", message=str(exc)), 500

    @app.errorhandler(StoreError)
    def busy(exc):  # locked by another process, the disk full, the server away: waiting heals it
        return render_template("error.html", message=f"The index cannot be read or written just now ({exc}). "
                               "Try again in a moment.", retry=True), 503

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return render_template("error.html", message=f"{exc.code}: {exc.description}"), exc.code

    @app.errorhandler(Exception)
    def internal(exc):
        log.error("web_request_failed", path=request.path, error=repr(exc), exc_info=True)
        return render_template("error.html", message="Something went wrong on facewatch's side (logged)."), 500

    return app


def _page(items: list, size: int) -> tuple[int, int, list]:
    pages = max(1, -(-len(items) // size))
    try:
        page = min(max(int(request.args.get("page", 1)), 1), pages)
    except ValueError:
        page = 1
    return page, pages, items[(page - 1) * size:page * size]


def _back(default: str):
    """Back to the page the form was on (this site's only)."""
    target = request.referrer or default
    parts = urlsplit(target)
    if parts.netloc and parts.netloc != request.host:
        target = default
    return redirect(parts.path + (f"?{parts.query}" if parts.query else "") if parts.netloc else target, code=303)


def _version() -> str:
    from facewatch import __version__
    return __version__
