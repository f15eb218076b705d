"""What every command shares: reading the config, and the store's errors as one line and an exit status."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import click

from facewatch.config import Config, ConfigError, load_config

EXIT_CONFIG = 2
EXIT_BUSY = 3  # another facewatch process holds the database
EXIT_DATABASE = 4  # the database cannot be used (the line says why and what to do)


@contextmanager
def database_errors(ctx: click.Context, busy_hint: str = ""):
    """The store's errors as one line and an exit status, never a traceback."""
    from facewatch.store import DatabaseInUse, StoreError
    try:
        yield
    except DatabaseInUse as exc:
        click.echo(f"facewatch: {exc}{busy_hint}", err=True)
        ctx.exit(EXIT_BUSY)
    except StoreError as exc:
        click.echo(f"facewatch: {exc}", err=True)
        ctx.exit(EXIT_DATABASE)


def config_of(ctx: click.Context) -> Config:
    try:
        return load_config(ctx.obj["config_path"])
    except ConfigError as exc:
        click.echo(f"facewatch: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)


def setup_logs(config: Config, level: Optional[str] = None) -> None:
    from facewatch.service.logs import setup_logging
    setup_logging(config.logging.format, level or config.logging.level)


def existing_store(ctx: click.Context, config: Config):
    """A read-only store of the configured database; exit 1 when there is none yet."""
    from facewatch.store import open_reader
    store = open_reader(config.database)
    if store is None:
        click.echo(f"facewatch: there is no database at {config.database} yet", err=True)
        ctx.exit(1)
    return store
