"""structlog set-up: JSON lines under systemd or in a pipe, a console renderer on a TTY."""
from __future__ import annotations

import json
import logging
import os
import sys
import time

import structlog

REPEAT_WINDOW_S = 60.0


class RateLimiter:
    """Drops an identical warning or error repeated within a window; the next one says how many."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S, clock=time.monotonic):
        self.window_s = window_s
        self.clock = clock
        self.seen: dict = {}  # key -> (first time in window, suppressed count)

    def __call__(self, logger, method_name, event_dict):
        if method_name not in ("warning", "error"):
            return event_dict
        key = tuple(str(event_dict.get(k)) for k in ("event", "error", "reason", "path", "job"))
        now = self.clock()
        first, suppressed = self.seen.get(key, (None, 0))
        if first is not None and now - first < self.window_s:
            self.seen[key] = (first, suppressed + 1)
            raise structlog.DropEvent
        if suppressed:
            event_dict["repeats_suppressed"] = suppressed
        self.seen[key] = (now, 0)
        if len(self.seen) > 10_000:
            self.seen.clear()
        return event_dict


def render_console(logger, method_name, event_dict) -> str:
    """`INFO - Checkpoint saved: ...` for events that carry the specified message; otherwise the
    event's name and its fields: `WARNING - file_failed path=/p/a.jpg error=...`."""
    stamp = event_dict.pop("timestamp", None)
    level = str(event_dict.pop("level", method_name)).upper()
    message = event_dict.pop("message", None)
    event = event_dict.pop("event", "")
    trace = event_dict.pop("exception", None)
    text = f"{level} - {message}" if message else f"{level} - {event}" + "".join(
        f" {key}={_value(value)}" for key, value in event_dict.items())
    if stamp:
        text = f"{stamp} {text}"
    return f"{text}\n{trace}" if trace else text


def _value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if isinstance(value, str) and (not text or " " in text or '"' in text) else text


def _messages_only(logger, method_name, event_dict):
    """One-shot runs on a terminal: below warning, only the lines the specification words."""
    if method_name in ("debug", "info") and "message" not in event_dict:
        raise structlog.DropEvent
    return event_dict


def setup_logging(fmt: str = "auto", level: str = "info", stream=None, one_shot: bool = False) -> None:
    """Logs to `stream` (stderr): JSON lines under systemd or in a pipe, plain lines on a terminal.

    `one_shot` (scan, resume on a terminal): only messages worded for users below warning, no
    timestamps, so they read as the specification writes them above the progress bar."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() and not os.environ.get("JOURNAL_STREAM") else "json"
    renderer = render_console if fmt == "console" else structlog.processors.JSONRenderer(ensure_ascii=False)
    numeric = getattr(logging, level.upper(), logging.INFO)
    stamp = []
    if fmt == "json" and not os.environ.get("JOURNAL_STREAM"):
        stamp = [structlog.processors.TimeStamper(fmt="iso", utc=True)]  # the journal stamps its own
    elif fmt == "console" and not one_shot:
        stamp = [structlog.processors.TimeStamper(fmt="%H:%M:%S")]
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        RateLimiter(),
        *([_messages_only] if fmt == "console" and one_shot else []),
        *stamp,
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # libraries that log through the standard library (watchdog, APScheduler): warnings and worse,
    # to the same stream in the same format (a JSON line, with the library's logger name)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level, *stamp],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer]))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
