"""`facewatch status`: read-only, fast, and honest about a daemon that died or froze."""
from __future__ import annotations

from typing import Optional

from facewatch.config import Config
from facewatch.store import CheckpointRecord, DaemonInfo, Stats, iso, open_reader


def collect_status(config: Config, now: float) -> dict:
    store = open_reader(config.database)
    stats, daemons, held, checkpoint = Stats(), [], False, None
    display = config.database
    if store is not None:
        try:
            stats, daemons, checkpoint = store.stats(), store.daemons(), store.latest_checkpoint()
            held, display = store.lock_held(), store.display
        finally:
            store.close()
    rows = [_daemon(d, now, held) for d in daemons]
    return {"daemon": _main_daemon(rows), **stats.as_dict(), "checkpoint": _checkpoint(checkpoint),
            "people_enabled": config.people.enabled, "watch": list(config.watch.paths), "database": display, "database_exists": store is not None,
            "daemons": [{k: r[k] for k in ("host", "pid", "running", "started_at", "heartbeat_at", "worker_only")}
                        for r in rows if r["running"] or not r["stopped_at"]]}


def _daemon(d: DaemonInfo, now: float, lock_held: Optional[bool]) -> dict:
    # a frozen daemon keeps its lock but stops heartbeating; a killed one loses its lock at once
    running = d.fresh(now) and lock_held is not False
    return {"host": d.host, "pid": d.pid, "running": running, "started_at": d.started_at,
            "heartbeat_at": iso(d.heartbeat_at) if d.heartbeat_at else None, "stopped_at": d.stopped_at,
            "worker_only": d.worker_only}


def _main_daemon(rows: list[dict]) -> dict:
    """The daemon `status` speaks of: a running one, else the one started last."""
    row = next((r for r in rows if r["running"]), rows[0] if rows else None)
    if row is None:
        return {"running": False, "pid": None, "started_at": None, "heartbeat_at": None,
                "last_pid": None, "stopped_at": None}
    running = row["running"]
    return {"running": running, "pid": row["pid"] if running else None,
            "started_at": row["started_at"] if running else None, "heartbeat_at": row["heartbeat_at"],
            "last_pid": row["pid"], "stopped_at": row["stopped_at"], "host": row["host"]}


def _checkpoint(row: Optional[CheckpointRecord]) -> Optional[dict]:
    if row is None:
        return None
    return {"id": row.id, "batch_number": row.batch_number, "processed_files_count": row.processed_files_count,
            "status": row.status, "created_at": row.created_at, "kind": row.kind}


def _people(p: dict, config_enabled: bool) -> str:
    text = f"{p['persons']} {'person' if p['persons'] == 1 else 'people'} ({p['named']} named)"
    if p["faces_waiting"]:
        text += f", {p['faces_waiting']} faces waiting for recognition"
        if not config_enabled:
            text += " (people.enabled is false)"
    if p["faces_failed"]:
        text += f", {p['faces_failed']} faces that cannot be recognised"
    return text


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
        f"database    {s['database']}" + ("" if s["database_exists"] else " (not created yet)"),
        f"queue       {q['pending']} pending, {q['processing']} processing",
        f"files       {f['total']} known: {f['done']} done, {f['failed']} failed, {f['missing']} missing",
        f"faces       {s['faces']} in {f['with_faces']} files",
        f"people      {_people(s['people'], config_enabled=s.get('people_enabled', True))}",
        "checkpoint  " + ("none yet" if c is None else
                          f"#{c['id']} ({c['kind']}) batch {c['batch_number']}, "
                          f"{c['processed_files_count']} processed, {c['status']}, at {c['created_at']}"),
    ]
    if len(s["daemons"]) > 1:
        lines.insert(1, "hosts       " + ", ".join(
            f"{x['host']} (pid {x['pid']}{', worker only' if x['worker_only'] else ''}: "
            f"{'running' if x['running'] else 'not running'})" for x in s["daemons"]))
    if f["failed"]:
        lines.append("            `facewatch failed` lists the failed files and why")
    return "\n".join(lines)
