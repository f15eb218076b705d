"""XMP sidecars from the index: each photo's faces and their people's names, merged into the sidecar
beside it (facewatch/metadata/xmp.py says how), for digiKam, Lightroom, darktable and the rest.

Originals are never written. A sidecar is written only when what it would say changed, atomically
(written beside it, then renamed over it, its mode kept); a photo without faces gets none, and
one that lost its faces has facewatch's regions taken out of its sidecar. A sidecar facewatch
cannot parse is left as it is, and said so.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Optional

import structlog

from facewatch.intake.files import write_atomically
from facewatch.metadata.xmp import XmpError, merged_sidecar, sidecar_path
from facewatch.store import FileRecord

log = structlog.get_logger("facewatch.results.sidecars")


@dataclass
class SidecarReport:
    written: int = 0
    unchanged: int = 0
    problems: list = field(default_factory=list)  # (path, why)


def write_sidecar(record: FileRecord, convention: str, report: SidecarReport) -> None:
    """The sidecar of one indexed photo, brought in line with its faces."""
    path = sidecar_path(record.path, convention)
    try:
        with open(path, "rb") as f:
            existing: Optional[bytes] = f.read()
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        report.problems.append((path, f"cannot be read: {exc.strerror or exc}"))
        return
    done = record.status == "done" and record.width and record.height
    faces = [(i, f.bbox, f.person[1] if f.person else None) for i, f in enumerate(record.faces)] if done else []
    if existing is None and not faces:
        return  # nothing to say, and no sidecar to take facewatch's regions out of
    try:
        content = merged_sidecar(existing, faces, record.width or 1, record.height or 1)
    except XmpError as exc:
        report.problems.append((path, str(exc)))
        return
    if content == existing:
        report.unchanged += 1
        return
    try:
        mode = os.stat(path).st_mode & 0o777 if existing is not None else 0o644
        write_atomically(path, content, mode)
    except OSError as exc:
        report.problems.append((path, f"cannot be written: {exc.strerror or exc}"))
        return
    report.written += 1


def write_sidecars(records: Iterable[FileRecord], convention: str) -> SidecarReport:
    report = SidecarReport()
    for record in records:
        write_sidecar(record, convention, report)
    for path, why in report.problems:
        log.warning("sidecar_not_written", path=path, reason=why)
    return report
