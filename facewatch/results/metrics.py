"""Prometheus metrics, written atomically to a file for node_exporter's textfile collector
(no socket: the hardened unit stays as it is), or served over HTTP (`metrics.listen`). The daemon refreshes the gauges from the store and
rewrites the file every METRICS_S seconds; counters and the histogram count what this daemon
did since it started (Prometheus's rate() handles the restarts).
"""
from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, write_to_textfile

METRICS_S = 5.0
STATUSES = ("pending", "processing", "done", "failed", "missing")


def reason_of(error: str) -> str:
    """A failure's reason as a label of few values: its words before any detail ("truncated image")."""
    words = re.split(r"[:(\[]", error or "", maxsplit=1)[0].strip().lower()
    return words[:40] or "unknown"


class Metrics:
    def __init__(self, path, started_at: float):
        self.path = path
        r = self.registry = CollectorRegistry()
        self.files = Gauge("facewatch_files", "Files in the index, by status", ["status"], registry=r)
        self.faces = Gauge("facewatch_faces", "Faces in the index", registry=r)
        self.persons = Gauge("facewatch_persons", "People found (with a face or a name)", registry=r)
        self.queue = Gauge("facewatch_queue_files", "Files queued for detection, by state", ["state"], registry=r)
        self.faces_waiting = Gauge("facewatch_faces_waiting", "Faces waiting for the people stage", registry=r)
        self.processed = Counter("facewatch_files_processed", "Files this daemon saved a result for, by outcome",
                                 ["outcome"], registry=r)
        self.failed = Counter("facewatch_files_failed", "Files this daemon failed, by reason", ["reason"], registry=r)
        self.faces_embedded = Counter("facewatch_faces_embedded", "Faces this daemon embedded", registry=r)
        self.analysis = Histogram("facewatch_analysis_seconds", "Time an analyser spent on one file",
                                  buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.reconciled_at = Gauge("facewatch_last_reconcile_timestamp_seconds",
                                   "When the last reconcile finished", registry=r)
        self.reconcile_seconds = Gauge("facewatch_last_reconcile_duration_seconds",
                                       "How long the last reconcile took", registry=r)
        Gauge("facewatch_start_time_seconds", "When this daemon started", registry=r).set(started_at)

    def saved(self, results) -> None:
        for result in results:
            self.processed.labels(outcome=result.kind).inc()
            if result.kind == "failed":
                self.failed.labels(reason=reason_of(result.error)).inc()
            if result.seconds is not None:
                self.analysis.observe(result.seconds)

    def reconciled(self, finished_at: float, seconds: float) -> None:
        self.reconciled_at.set(finished_at)
        self.reconcile_seconds.set(seconds)

    def refresh(self, stats) -> None:
        for status in STATUSES:
            self.files.labels(status=status).set(stats.by_status.get(status, 0))
        self.faces.set(stats.faces)
        self.persons.set(stats.persons)
        self.queue.labels(state="pending").set(stats.pending)
        self.queue.labels(state="processing").set(stats.processing)
        self.faces_waiting.set(stats.faces_waiting)

    def write(self) -> None:
        if self.path:
            write_to_textfile(self.path, self.registry)  # a temporary file renamed over the old one

    def serve(self, listen: str):
        """Serve /metrics over HTTP at host:port (a thread of prometheus_client's); the server."""
        from prometheus_client import start_http_server
        host, _, port = listen.rpartition(":")
        server, _ = start_http_server(int(port), addr=host, registry=self.registry)
        return server
