"""The store's own exceptions: what callers catch instead of any backend's errors; and the class
decorator each backend uses to raise only these (procrastinate's wrap_exceptions)."""
from __future__ import annotations

import functools
import inspect
from typing import Callable, Optional


class StoreError(Exception):
    """A database problem, already worded for users: what happened to which database."""


def said(message: str, longest: int = 200) -> str:
    """A backend's own words for a message of ours: one line of printable characters, however
    damaged the text it quotes (a broken page's bytes, a server's multi-line detail)."""
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in " ".join(str(message).split()))
    return text if len(text) <= longest else text[:longest - 3] + "..."


class StoreBusy(StoreError):
    """Locked, busy, full or an I/O error: waiting can heal it."""


class StoreUnavailable(StoreError):
    """The database server cannot be reached now: waiting can heal it."""


class StoreUnusable(StoreError):
    """No wait heals it: not a database, another program's, a newer schema, damaged, read-only,
    wrong credentials. The message says what to do."""


class DatabaseInUse(StoreError):
    """Another facewatch process holds the database (a daemon, a scan)."""


TRANSIENT = (StoreBusy, StoreUnavailable)


def refuse_newer(database: str, applied: set, migrations: list) -> None:
    """StoreUnusable when `database` records schema changes (names in `applied`) that this
    version's `migrations` do not have: a newer facewatch made it."""
    newer = sorted(applied - {name for name, _ in migrations})
    if newer:
        raise StoreUnusable(f"the database {database} was made by a newer facewatch (schema changes this "
                            f"version does not know: {', '.join(newer)}): upgrade facewatch; the database was "
                            "left as it is")


Mapper = Callable[[object, Exception], Optional[StoreError]]  # (store, error) -> ours, or None: not mapped


def _translated(func, mapped: Mapper):
    """`func`, raising `mapped(self, exc)` in place of the errors `mapped` knows; the rest pass."""
    if inspect.isgeneratorfunction(func):
        @functools.wraps(func)
        def generator(self, *args, **kwargs):
            try:
                yield from func(self, *args, **kwargs)
            except Exception as exc:
                ours = mapped(self, exc)
                if ours is None:
                    raise
                raise ours from exc
        return generator

    @functools.wraps(func)
    def method(self, *args, **kwargs):
        try:
            return func(self, *args, **kwargs)
        except Exception as exc:
            ours = mapped(self, exc)
            if ours is None:
                raise
            raise ours from exc
    return method


def translating(mapped: Mapper):
    """Class decorator: every public method (and __init__), its own or inherited, raises the store's
    errors for those `mapped` knows, never the backend's."""
    def decorate(cls):
        names = {name for klass in cls.__mro__[:-1] for name, member in vars(klass).items()
                 if callable(member) and not isinstance(member, (staticmethod, classmethod, type, property))
                 and (not name.startswith("_") or name == "__init__")}
        for name in names:
            setattr(cls, name, _translated(getattr(cls, name), mapped))
        return cls
    return decorate
