"""`facewatch status`: read-only, fast, and honest about a daemon that died."""
from __future__ import annotations

import os
from typing import Optional

from facewatch.config import Config
from facewatch.lock import is_held
from facewatch.store.sqlite import HEARTBEAT_STALE_S, iso

EMPTY = {"queue": {"pending": 0, "processing": 0},
         "files": {"total": 0, "done": 0, "failed": 0, "missing": 0, "with_faces": 0},
         "faces": 0, "analyses": 0}


def collect_status(config: Config, now: float) -> dict:
    from facewatch.export import open_reader
    store = open_reader(config.database)
    stats, daemon, checkpoint = EMPTY, None, None
    if store is not None:
        stats, daemon, checkpoint = store.stats(), store.daemon_info(), store.latest_checkpoint()
        store.close()
    return {"daemon": _daemon_state(config.database, daemon, now), **stats,
            "checkpoint": _checkpoint(checkpoint), "watch": list(config.watch.paths),
            "database": config.database}


def _daemon_state(database: str, info: Optional[dict], now: float) -> dict:
    heartbeat = (info or {}).get("heartbeat_at")
    fresh = heartbeat is not None and now - heartbeat < HEARTBEAT_STALE_S
    held = is_held(database)
    running = fresh and held is not False
    return {"running": running, "pid": (info or {}).get("pid") if running else None,
            "started_at": (info or {}).get("started_at") if running else None,
            "heartbeat_at": iso(heartbeat) if heartbeat else None,
            "last_pid": (info or {}).get("pid"), "stopped_at": (info or {}).get("stopped_at")}


def _checkpoint(row: Optional[dict]) -> Optional[dict]:
    if row is None:
        return None
    return {"id": row["id"], "batch_number": row["batch_number"],
            "processed_files_count": row["processed_files_count"], "status": row["status"],
            "created_at": row["created_at"], "kind": row["kind"]}


def format_status(s: dict) -> str:
    d, q, f, c = s["daemon"], s["queue"], s["files"], s["checkpoint"]
    if d["running"]:
        daemon = f"running (pid {d['pid']}, since {d['started_at']}, heartbeat {d['heartbeat_at']})"
    elif d["last_pid"] and not d["stopped_at"]:
        daemon = f"not running (pid {d['last_pid']} stopped heartbeating at {d['heartbeat_at']})"
    else:
        daemon = "not running"
    lines = [
        f"daemon      {daemon}",
        f"watching    {', '.join(s['watch'])}",
        f"database    {s['database']}" + ("" if os.path.exists(s["database"]) else " (not created yet)"),
        f"queue       {q['pending']} pending, {q['processing']} processing",
        f"files       {f['total']} known: {f['done']} done, {f['failed']} failed, {f['missing']} missing",
        f"faces       {s['faces']} in {f['with_faces']} files",
        "checkpoint  " + ("none yet" if c is None else
                          f"#{c['id']} ({c['kind']}) batch {c['batch_number']}, "
                          f"{c['processed_files_count']} processed, {c['status']}, at {c['created_at']}"),
    ]
    if f["failed"]:
        lines.append("            `facewatch failed` lists the failed files and why")
    return "\n".join(lines)
