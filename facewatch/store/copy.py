"""`facewatch db copy --to DATABASE`: the whole index from one database into a new one, SQLite or
PostgreSQL either way, ids and all, while no daemon or scan can write either."""
from __future__ import annotations

from facewatch.store import COPIED, Store, open_store


def copy_index(source: Store, target_setting: str) -> dict[str, int]:
    """Copy every table of COPIED from `source` into the empty database `target_setting`; both are
    held exclusively meanwhile (DatabaseInUse if a daemon or a scan holds either). Returns the rows
    copied per table, verified against the source."""
    target = open_store(target_setting)
    try:
        source.lock(exclusive=True)
        try:
            target.lock(exclusive=True)
            try:
                written = target.load((table, columns, source.dump(table, columns))
                                      for table, columns in COPIED.items())
                for table in COPIED:
                    have, want = target.count_rows(table), source.count_rows(table)
                    if have != want:
                        raise RuntimeError(f"the copy of {table} holds {have} rows, its source {want}")
            finally:
                target.unlock()
        finally:
            source.unlock()
    finally:
        target.close()
    return written
