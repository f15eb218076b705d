"""The web interface's token: made on first start, kept beside the database (mode 0600), given
once in the URL `facewatch serve` prints, then held by the browser in an HttpOnly, SameSite=Strict
cookie. Every request without it is refused (401), but /healthz and /metrics; every change is a
POST carrying the CSRF value derived from the token."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from facewatch.store import is_url

COOKIE = "facewatch_token"


def token_path(database: str) -> Path:
    """Beside an SQLite index (`facewatch.db.web-token`); for a PostgreSQL one, in this user's
    config folder."""
    if not is_url(database):
        return Path(database + ".web-token")
    folder = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "facewatch"
    return folder / f"web-token-{hashlib.sha256(database.encode()).hexdigest()[:16]}"


def load_or_make_token(database: str) -> str:
    """The install's token, made (mode 0600) the first time."""
    path = token_path(database)
    try:
        token = path.read_text().strip()
        if token:
            os.chmod(path, 0o600)
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def csrf_value(token: str) -> str:
    """What every form carries: derived from the token, so a page of another site cannot know it."""
    return hmac.new(token.encode(), b"facewatch csrf", hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())
