"""A progress bar on a terminal, with log lines printed above it rather than through it."""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Optional


class Terminal:
    """A text stream for logs that keeps one bar line at the bottom of the terminal."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar: Optional[str] = None
        self._partial = ""  # print() writes a line and its newline apart: keep lines whole
        self._lock = threading.Lock()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def write(self, text: str) -> int:
        with self._lock:
            lines, _, self._partial = (self._partial + text).rpartition("\n")
            if lines or _:
                if self.bar is not None:
                    self.stream.write("\r\033[K")  # take the bar away, print the lines, put the bar back
                self.stream.write(lines + "\n")
                if self.bar is not None:
                    self.stream.write(self.bar)
                self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def show(self, bar: str) -> None:
        with self._lock:
            self.bar = bar
            self.stream.write("\r\033[K" + bar)
            self.stream.flush()

    def close_bar(self) -> None:
        with self._lock:
            if self.bar is not None:
                self.stream.write("\n")
                self.stream.flush()
            self.bar = None


class ProgressBar:
    """A one-line bar with rate and ETA."""

    def __init__(self, total: int, done: int = 0, terminal: Optional[Terminal] = None,
                 clock: Callable[[], float] = time.time, unit: str = "files"):
        self.total, self.start_done, self.unit = total, done, unit
        self.terminal = terminal or Terminal()
        self.clock = clock
        self.started = clock()

    def show(self, done: int) -> None:
        elapsed = max(self.clock() - self.started, 1e-6)
        rate = (done - self.start_done) / elapsed
        left = max(self.total - done, 0)
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        width = 30
        filled = min(width, int(width * done / self.total)) if self.total else width
        self.terminal.show(f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                           f"{rate:.1f} {self.unit}/s ETA {eta}")

    def close(self) -> None:
        self.terminal.close_bar()
