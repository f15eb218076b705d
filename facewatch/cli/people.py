"""The people commands: `people` (list, name, merge, unassign, sheet) and `find`."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import Optional

import click

from facewatch.cli.common import config_of, database_errors, existing_store
from facewatch.config import Config


@contextmanager
def _people_errors(ctx: click.Context):
    """A people command that cannot be done: one line naming why, exit 1."""
    from facewatch.store import PeopleError
    try:
        yield
    except PeopleError as exc:
        click.echo(f"facewatch: {exc}", err=True)
        ctx.exit(1)


def _writable(ctx: click.Context, config: Config):
    """The configured store, for a small change made beside a running daemon."""
    from facewatch.store import open_store
    existing_store(ctx, config).close()
    return open_store(config.database)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@click.pass_context
def people(ctx: click.Context, as_json: bool) -> None:
    """List the people found: id, name, faces, photos, cover photo. Subcommands change them."""
    if ctx.invoked_subcommand is not None:
        return
    config = config_of(ctx)
    with database_errors(ctx):
        store = existing_store(ctx, config)
        rows = [p.as_dict() for p in store.persons()]
        conflicts: dict = {}
        for person_id, name, path, index in store.conflicts():
            conflicts.setdefault(person_id, []).append({"name": name, "path": path, "face": index})
        waiting = 0 if as_json else store.stats().faces_waiting
    for row in rows:
        if row["id"] in conflicts:  # faces named otherwise in their XMP than this person, who looked like them
            row["conflicts"] = conflicts[row["id"]]
    if as_json:
        click.echo(json.dumps(rows))  # compact: Python's encoder is slow with indent, at 100,000 people
        return
    for row in rows:
        click.echo(f"{row['id']:>6}  {row['name'] or '(no name)':<24} {row['faces']:>6} faces "
                   f"{row['photos']:>6} photos  {row['cover'] or ''}")
        for c in row.get("conflicts", []):
            click.echo(f"        conflict: face {c['face']} of {c['path']} is named {c['name']!r} in its XMP and "
                       "looks like this person: kept apart (merge them if they are one)")
    note = f", {waiting} faces not yet embedded" if waiting else ""
    click.echo(f"{len(rows)} {'person' if len(rows) == 1 else 'people'}{note}", err=True)


@people.command("name")
@click.argument("person_id", type=int)
@click.argument("name")
@click.pass_context
def people_name(ctx: click.Context, person_id: int, name: str) -> None:
    """Give person PERSON_ID a NAME (an empty NAME takes the name away)."""
    config = config_of(ctx)
    with database_errors(ctx), _people_errors(ctx):
        store = _writable(ctx, config)
        store.name_person(person_id, name.strip() or None)
    click.echo(f"person {person_id} is now {name.strip()!r}" if name.strip() else f"person {person_id} has no name")


@people.command("merge")
@click.argument("person_id", type=int)
@click.argument("into_id", type=int)
@click.pass_context
def people_merge(ctx: click.Context, person_id: int, into_id: int) -> None:
    """Person PERSON_ID is person INTO_ID: its faces join INTO_ID, for good."""
    config = config_of(ctx)
    with database_errors(ctx), _people_errors(ctx):
        store = _writable(ctx, config)
        moved = store.merge_persons(person_id, into_id)
    click.echo(f"{moved} faces of person {person_id} joined person {into_id}")


@people.command("unassign")
@click.argument("path", type=click.Path())
@click.argument("face_index", type=int)
@click.pass_context
def people_unassign(ctx: click.Context, path: str, face_index: int) -> None:
    """Face FACE_INDEX of PATH (numbered from 0, as export lists them) leaves its person for good."""
    config = config_of(ctx)
    with database_errors(ctx), _people_errors(ctx):
        store = _writable(ctx, config)
        left = store.unassign_face(os.path.abspath(path), face_index)
    click.echo(f"face {face_index} of {os.path.abspath(path)} left person {left}; it will not join it again")


@people.command("hide")
@click.argument("person_id", type=int)
@click.option("--show", is_flag=True, help="Show a hidden person again.")
@click.pass_context
def people_hide(ctx: click.Context, person_id: int, show: bool) -> None:
    """Hide person PERSON_ID from the web interface's people page (a stranger in the background)."""
    config = config_of(ctx)
    with database_errors(ctx), _people_errors(ctx):
        store = _writable(ctx, config)
        store.hide_person(person_id, not show)
    click.echo(f"person {person_id} is {'shown' if show else 'hidden'}")


@people.command("sheet")
@click.argument("person", metavar="ID_OR_NAME")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--limit", default=48, show_default=True, help="At most this many faces, the best first.")
@click.pass_context
def people_sheet(ctx: click.Context, person: str, out: str, limit: int) -> None:
    """Write a contact sheet of a person's faces to OUT (JPEG), to see who it is before naming."""
    from facewatch.people.crops import contact_sheet
    config = config_of(ctx)
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        click.echo(f"facewatch: {os.path.dirname(os.path.abspath(out))}: no such folder", err=True)
        ctx.exit(1)
    with database_errors(ctx), _people_errors(ctx):
        store = existing_store(ctx, config)
        found = store.person(person)
        try:
            shown = contact_sheet(store, config, found.person_id, out, limit)
        except OSError as exc:  # a full disk, a folder we may not write
            click.echo(f"facewatch: {out}: cannot be written: {exc.strerror or exc}", err=True)
            ctx.exit(1)
    click.echo(f"wrote {out}: {shown} faces of person {found.person_id}"
               + (f" ({found.name})" if found.name else ""), err=True)


@click.command()
@click.option("--person", metavar="ID_OR_NAME", help="Photos with this person.")
@click.option("--like", "photo", type=click.Path(dir_okay=False), metavar="PHOTO",
              help="Photos with faces most like the faces in PHOTO (which need not be in the index).")
@click.option("--limit", default=100, show_default=True, help="With --like: at most this many, best first.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def find(ctx: click.Context, person: Optional[str], photo: Optional[str], limit: int, as_json: bool) -> None:
    """Paths of photos with a person, or with faces like the faces in a photo."""
    if bool(person) == bool(photo):
        raise click.UsageError("give one of --person ID_OR_NAME or --like PHOTO")
    config = config_of(ctx)
    with database_errors(ctx), _people_errors(ctx):
        store = existing_store(ctx, config)
        if person:
            found = store.person(person)
            rows = [{"path": path, "person": found.person_id} for path in store.person_photos(found.person_id)]
        else:
            from facewatch.people.like import faces_in, like
            photo = os.path.abspath(photo)
            rows = [m.as_dict() for m in like(store, faces_in(config, photo), limit, exclude=photo)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(row["path"])
    click.echo(f"{len(rows)} photo{'s' if len(rows) != 1 else ''}", err=True)
