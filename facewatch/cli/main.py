"""The command line: parse, call, print. Heavy modules are imported by the commands that need them."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

import click

from facewatch.cli.common import EXIT_CONFIG, config_of, database_errors, existing_store, setup_logs
from facewatch.cli.people import find, people
from facewatch.config import Config, ConfigError, load_config

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH", help="config.yaml to use "
              "(default: $FACEWATCH_CONFIG, ./config.yaml, /etc/facewatch/config.yaml)")
@click.version_option(package_name="facewatch")
@click.pass_context
def main(ctx: click.Context, config_path: Optional[str]) -> None:
    """Keep a face index of photo folders up to date."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


@main.command()
@click.option("--worker-only", is_flag=True,
              help="Only analyse from the shared queue: no watching, no reconciling (a host lending its cores).")
@click.pass_context
def run(ctx: click.Context, worker_only: bool) -> None:
    """Run the daemon in the foreground (what systemd starts)."""
    config = config_of(ctx)
    from facewatch.analysis.pool import start_analyser_server
    start_analyser_server()
    setup_logs(config)
    from facewatch.service.daemon import Daemon
    with database_errors(ctx, "; is the daemon already running?"):
        code = Daemon(config, worker_only=worker_only).run()
    ctx.exit(code)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the daemon, the queue and the index, whether or not the daemon runs."""
    from facewatch.results.status import collect_status, format_status
    config = config_of(ctx)
    with database_errors(ctx):
        state = collect_status(config, time.time())
    click.echo(json.dumps(state, indent=2) if as_json else format_status(state))


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(file_okay=False))
@click.option("--checkpoint-every", default=100, show_default=True, metavar="N",
              help="Save a checkpoint every N files.")
@click.pass_context
def scan(ctx: click.Context, paths: tuple, checkpoint_every: int) -> None:
    """Queue PATHS (default: watch.paths) and process until the queue is empty."""
    config = config_of(ctx)
    roots = [os.path.abspath(p) for p in paths] or None
    for root in roots or []:
        if not os.path.isdir(root):
            click.echo(f"facewatch: {root}: not a folder", err=True)
            ctx.exit(EXIT_CONFIG)
    _one_shot(ctx, config, lambda s, terminal: s.scan(config, roots, checkpoint_every, terminal))


@main.command()
@click.option("--checkpoint-every", default=100, show_default=True, metavar="N",
              help="Save a checkpoint every N files.")
@click.pass_context
def resume(ctx: click.Context, checkpoint_every: int) -> None:
    """Continue an interrupted scan from its checkpoint."""
    config = config_of(ctx)
    _one_shot(ctx, config, lambda s, terminal: s.resume(config, checkpoint_every, terminal))


def _one_shot(ctx: click.Context, config: Config, call) -> None:
    from facewatch.analysis.pool import start_analyser_server
    start_analyser_server()  # loads the models while we walk the folders (launch.py may have already)
    from facewatch.service import scan as scan_module
    from facewatch.service.logs import setup_logging
    from facewatch.service.progress import Terminal
    terminal = Terminal(sys.stderr) if sys.stderr.isatty() else None
    # on a terminal: the checkpoint lines above a progress bar; elsewhere the configured logs
    setup_logging(config.logging.format, config.logging.level, stream=terminal, one_shot=terminal is not None)
    try:
        with database_errors(ctx, "; stop the daemon first (systemctl stop facewatch)"):
            stats = call(scan_module, terminal).as_dict()
    except scan_module.NothingToResume as exc:
        click.echo(str(exc), err=True)
        ctx.exit(1)
    except scan_module.Interrupted as exc:
        click.echo(f"facewatch: {exc}", err=True)
        ctx.exit(130)
    f = stats["files"]
    click.echo(f"{f['done']} done, {f['failed']} failed, {f['missing']} missing, "
               f"{stats['faces']} faces in {f['with_faces']} files")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--output", "-o", metavar="FILE", help="Write here (atomically) instead of stdout.")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(["pending", "processing", "done", "failed", "missing"]),
              help="Only files with this status (repeatable).")
@click.option("--min-faces", default=0, metavar="N", help="Only files with at least N faces.")
@click.option("--since", metavar="TIME", help="Only files processed at or after TIME (ISO 8601).")
@click.pass_context
def export(ctx: click.Context, fmt: str, output: Optional[str], statuses: tuple, min_faces: int,
           since: Optional[str]) -> None:
    """Write the results: one JSON object per file, or one CSV row per face."""
    from facewatch.results.export import export_results, parse_since
    from facewatch.store import ExportFilter
    config = config_of(ctx)
    try:
        flt = ExportFilter(tuple(statuses), min_faces, parse_since(since) if since else None)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since")
    with database_errors(ctx):
        count = export_results(config.database, fmt, output, flt)
    if output:
        click.echo(f"{count} {'files' if fmt == 'jsonl' else 'faces'} written to {output}", err=True)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def failed(ctx: click.Context, as_json: bool) -> None:
    """List failed files and why they failed."""
    from facewatch.store import ExportFilter, open_reader
    config = config_of(ctx)
    with database_errors(ctx):
        store = open_reader(config.database)
        rows = [] if store is None else [
            {"path": r.path, "error": r.error, "processed_at": r.processed_at}
            for r in store.iter_files(ExportFilter(statuses=("failed",)))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['path']}: {row['error']}")
    click.echo(f"{len(rows)} failed file{'s' if len(rows) != 1 else ''}", err=True)


@main.command()
@click.argument("paths", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed file.")
@click.pass_context
def retry(ctx: click.Context, paths: tuple, retry_all: bool) -> None:
    """Put failed files back in the queue."""
    from facewatch.store import open_store
    if not paths and not retry_all:
        raise click.UsageError("name the files to retry, or pass --all")
    config = config_of(ctx)
    with database_errors(ctx):
        store = open_store(config.database)
        queued = store.retry_failed(None if retry_all else [os.path.abspath(p) for p in paths], time.time())
        store.close()
    click.echo(f"{queued} file{'s' if queued != 1 else ''} queued again")


@main.command()
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True)
@click.option("--draw", metavar="OUT.jpg", help="Write the picture with its faces drawn on.")
@click.pass_context
def show(ctx: click.Context, path: str, as_json: bool, draw: Optional[str]) -> None:
    """One file: its status, size, faces and error."""
    from facewatch.store import open_reader
    config = config_of(ctx)
    with database_errors(ctx):
        store = open_reader(config.database)
        record = store.file_record(os.path.abspath(path)) if store else None
    if record is None:
        click.echo(f"facewatch: {os.path.abspath(path)}: not in the index", err=True)
        ctx.exit(1)
    if as_json:
        click.echo(json.dumps({**record.as_dict(), "size": record.size, "content_hash": record.content_hash}))
    else:
        click.echo(f"{record.path}\n  status     {record.status}" + (f" ({record.error})" if record.error else ""))
        click.echo(f"  size       {record.size} bytes, {record.width}x{record.height} pixels")
        click.echo(f"  analysed   {record.processed_at or 'not yet'}")
        click.echo(f"  faces      {len(record.faces)}")
        for i, face in enumerate(record.faces):
            x, y, w, h = face.bbox
            click.echo(f"    #{i}  score {face.score:.2f}  box x={x} y={y} w={w} h={h}")
    if draw:
        from facewatch.results.draw import draw_faces
        try:
            width, height = draw_faces(record, draw, config.processing.max_pixels)
        except ValueError as exc:
            click.echo(f"facewatch: {exc}", err=True)
            ctx.exit(1)
        click.echo(f"drew {len(record.faces)} faces on {draw} ({width}x{height})", err=True)


@main.command()
@click.option("--full", is_flag=True, help="Check every page (slower) instead of SQLite's quick check.")
@click.pass_context
def check(ctx: click.Context, full: bool) -> None:
    """Check the database, its schema and the index; safe while the daemon runs."""
    config = config_of(ctx)
    with database_errors(ctx):
        store = existing_store(ctx, config)
        try:
            problems = store.check(full=full)
            stats = store.stats().as_dict()
        finally:
            store.close()
    for problem in problems:
        click.echo(f"problem: {problem}")
    if problems:
        click.echo(f"{store.display}: {len(problems)} problem{'s' if len(problems) != 1 else ''} found", err=True)
        ctx.exit(1)
    f = stats["files"]
    click.echo(f"ok: {store.display} ({'full' if full else 'quick'} check): {f['total']} files, "
               f"{stats['faces']} faces, {stats['queue']['pending'] + stats['queue']['processing']} queued")


@main.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.pass_context
def backup(ctx: click.Context, out: str) -> None:
    """Write a consistent copy of the live index to OUT (atomically), while the daemon runs."""
    from facewatch.store import is_url
    config = config_of(ctx)
    if is_url(config.database):
        click.echo("facewatch: back up a PostgreSQL index with pg_dump (see the README)", err=True)
        ctx.exit(1)
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        click.echo(f"facewatch: {os.path.dirname(os.path.abspath(out))}: no such folder", err=True)
        ctx.exit(1)
    with database_errors(ctx):
        store = existing_store(ctx, config)
        try:
            started = time.monotonic()
            stats = store.backup(out).as_dict()
        finally:
            store.close()
    click.echo(f"backed up {stats['files']['total']} files and {stats['faces']} faces to {out} "
               f"({os.path.getsize(out) / 1e6:.1f} MB, {time.monotonic() - started:.1f} s)")


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.pass_context
def gallery(ctx: click.Context, out_dir: str) -> None:
    """Write a static site of the index to OUT_DIR (open OUT_DIR/index.html in a browser); a second
    run only makes the thumbnails of files that changed."""
    from facewatch.results.gallery import build_gallery
    from facewatch.results.status import collect_status
    config = config_of(ctx)
    with database_errors(ctx):
        store = existing_store(ctx, config)
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            click.echo(f"facewatch: {out_dir}: cannot be made: {exc.strerror or exc}", err=True)
            ctx.exit(1)
        stats = collect_status(config, time.time())
        try:
            report = build_gallery(store, config, out_dir, stats)
        except OSError as exc:  # a full disk, a folder we may not write
            click.echo(f"facewatch: {exc.filename or out_dir}: cannot be written: {exc.strerror or exc}", err=True)
            ctx.exit(1)
    note = f", {report.unreadable} photos not readable now (shown without a picture)" if report.unreadable else ""
    click.echo(f"wrote {os.path.join(out_dir, 'index.html')}: {report.photos} photos on {report.pages} pages, "
               f"{report.thumbnails_made} pictures made, {report.thumbnails_kept} photos had theirs already{note} "
               f"({report.seconds:.1f} s)")


@main.group()
def db() -> None:
    """The database itself: copy it elsewhere."""


@db.command("copy")
@click.option("--to", "target", required=True, metavar="DATABASE",
              help="An SQLite file's path or a postgresql:// URL, new or empty.")
@click.pass_context
def db_copy(ctx: click.Context, target: str) -> None:
    """Copy the whole index (files, faces, people, checkpoints) into another database, SQLite or
    PostgreSQL either way; refused while a daemon or a scan holds either."""
    from facewatch.store.copy import copy_index
    from facewatch.store import StoreError, is_url, masked, open_store
    config = config_of(ctx)
    if not is_url(target):
        target = os.path.abspath(target)
    with database_errors(ctx, "; stop the daemon first (systemctl stop facewatch)"):
        source = existing_store(ctx, config)
        source.close()
        source = open_store(config.database)
        started = time.monotonic()
        try:
            written = copy_index(source, target)
        except StoreError as exc:
            if "is not empty" in str(exc):
                click.echo(f"facewatch: {exc}", err=True)
                ctx.exit(1)
            raise
        finally:
            source.close()
    click.echo(f"copied {written['files']} files, {written['faces']} faces, {written['persons']} people, "
               f"{written['checkpoints']} checkpoints and {written['processed_files']} processed_files rows "
               f"to {masked(target)} in {time.monotonic() - started:.1f} s (counts verified)")


@main.command()
@click.option("--listen", metavar="HOST:PORT", default=None,
              help="Where to serve (default 127.0.0.1:8750; another address must be asked for here).")
@click.pass_context
def serve(ctx: click.Context, listen: Optional[str]) -> None:
    """Serve the web interface over the live index; prints the address to open, with its token."""
    import signal
    import threading

    from facewatch.web.server import DEFAULT_LISTEN, WebServer
    config = config_of(ctx)
    setup_logs(config)
    listen = listen or DEFAULT_LISTEN
    if ":" not in listen or not listen.rpartition(":")[2].isdigit():
        raise click.BadParameter("expected HOST:PORT, such as 127.0.0.1:8750", param_hint="--listen")
    with database_errors(ctx):
        existing_store(ctx, config).close()
        from facewatch.store import open_store
        store = open_store(config.database)
        try:
            server = WebServer(config, store, listen)
        except OSError as exc:
            click.echo(f"facewatch: {listen}: cannot serve there: {exc.strerror or exc}", err=True)
            ctx.exit(1)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())  # handlers only set a flag
        signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
        server.start()
        click.echo(f"facewatch: serving the index at {server.url}", err=True)
        try:
            while not stop.wait(3600):
                pass
        finally:
            server.close()
            store.close()


@main.group()
def xmp() -> None:
    """XMP sidecars: the faces and names of the index, for digiKam, Lightroom, darktable, Immich."""


@xmp.command("write")
@click.argument("paths", nargs=-1, type=click.Path())
@click.pass_context
def xmp_write(ctx: click.Context, paths: tuple) -> None:
    """Write or merge the XMP sidecars of PATHS (photos or folders; default: the whole index)."""
    from facewatch.intake.files import inside
    from facewatch.results.sidecars import write_sidecars
    from facewatch.store import ExportFilter
    config = config_of(ctx)
    wanted = [os.path.abspath(p) for p in paths]
    with database_errors(ctx):
        store = existing_store(ctx, config)
        records = [r for r in store.iter_files(ExportFilter(statuses=("done",)))
                   if not wanted or any(inside(r.path, w) for w in wanted)]
        unknown = [w for w in wanted if not any(inside(r.path, w) for r in records)]
        report = write_sidecars(records, config.metadata.sidecar_name)
    for path, why in report.problems:
        click.echo(f"facewatch: {path}: {why}", err=True)
    for path in unknown:
        click.echo(f"facewatch: {path}: no analysed photo there in the index", err=True)
    click.echo(f"{report.written} sidecars written, {report.unchanged} already up to date "
               f"({config.metadata.sidecar_name} names: {'photo.jpg.xmp' if config.metadata.sidecar_name == 'darktable' else 'photo.xmp'})")
    if report.problems or unknown:
        ctx.exit(1)


@main.command("install-unit")
@click.option("--output", default="/etc/systemd/system/facewatch.service", show_default=True,
              help="Where to write the unit; - for stdout.")
@click.option("--config-file", default="/etc/facewatch/config.yaml", show_default=True,
              help="The config the service reads.")
def install_unit(output: str, config_file: str) -> None:
    """Write the systemd unit, with ExecStart pointing at this installation of facewatch."""
    from facewatch.service.unit import render_unit, unit_warnings
    executable = os.path.join(sys.prefix, "bin", "facewatch")
    database, listen, writable = "", "", []
    if os.path.exists(config_file):
        try:
            read = load_config(config_file)
            database = read.database
            writable = list(read.watch.paths) if read.metadata.write_xmp == "sidecar" else []
            listen = ",".join(a for a in (read.metrics.listen, read.web.listen) if a)
        except ConfigError as exc:
            click.echo(f"facewatch: warning: {exc}", err=True)
    text = render_unit(executable, config_file, database, listen, sidecar_folders=writable)
    for warning in unit_warnings(executable, config_file):
        click.echo(f"facewatch: warning: {warning}", err=True)
    if output == "-":
        click.echo(text, nl=False)
        return
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
    click.echo(f"wrote {output}; now: systemctl daemon-reload && systemctl enable --now facewatch", err=True)


main.add_command(people)
main.add_command(find)

if __name__ == "__main__":  # pragma: no cover
    main()
