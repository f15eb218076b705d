"""`facewatch export`: stream the results as JSON lines (per file) or CSV (per face)."""
from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from typing import Optional

from facewatch.store import ExportFilter, open_reader

KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")
CSV_HEADER = ["path", "width", "height", "face_index", "score", "x", "y", "w", "h"] + \
    [f"{k}_{axis}" for k in KEYPOINTS for axis in ("x", "y")] + ["person_id", "person_name"]


def parse_since(text: str) -> str:
    """An ISO 8601 time -> the UTC form processed_at is stored in."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def export_results(database: str, fmt: str, output: Optional[str], flt: ExportFilter) -> int:
    """Write every matching file (jsonl) or face (csv); returns how many rows were written."""
    store = open_reader(database)
    records = iter(()) if store is None else store.iter_files(flt)
    if output is None:
        sys.stdout.reconfigure(errors="surrogateescape")  # names that are not UTF-8 stay as they are
        return _write(records, fmt, sys.stdout)
    folder = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(prefix=".facewatch-export-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as out:
            count = _write(records, fmt, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return count


def _write(records, fmt: str, out) -> int:
    count = 0
    if fmt == "jsonl":
        for record in records:
            out.write(json.dumps(record.as_dict()) + "\n")  # ASCII: any byte in a name survives
            count += 1
        return count
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for record in records:
        for i, face in enumerate(record.faces):
            writer.writerow([record.path, record.width, record.height, i, round(face.score, 4), *face.bbox,
                             *[v for k in face.keypoints for v in k],
                             *(face.person if face.person is not None else ("", ""))])
            count += 1
    return count
