"""Signal handlers only set flags and wake the loop; the loop acts on them."""
from __future__ import annotations

import signal
import threading


class Signals:
    def __init__(self, wake: threading.Event):
        self.wake = wake
        self.stop = threading.Event()
        self.count = 0
        self.reload = False

    def install(self, reload: bool = True) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        if reload:
            signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum, frame) -> None:
        self.count += 1
        self.stop.set()
        self.wake.set()

    def _on_reload(self, signum, frame) -> None:
        self.reload = True
        self.wake.set()

    @property
    def at_once(self) -> bool:
        """A second stop signal: do not wait for the batch in flight."""
        return self.count >= 2
