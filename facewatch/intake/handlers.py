"""watchdog's event handlers: each event becomes a note for the watcher's flusher; nothing else.

A handler runs on watchdog's observer thread and must never block it (inotify's queue overflows
while it waits): it only puts (kind, path, destination, is_directory, root) on a queue.
"""
from __future__ import annotations

import os
import queue

from watchdog.events import FileSystemEvent, FileSystemEventHandler


class NoteTaker(FileSystemEventHandler):
    """Notes every event under one watched root."""

    def __init__(self, notes: queue.SimpleQueue, root: str):
        self.notes = notes
        self.root = root

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(getattr(event, "dest_path", "") or "")
        self.notes.put((event.event_type, src, dest, event.is_directory, self.root))
