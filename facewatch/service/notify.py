"""sd_notify: tell systemd we are ready, alive, reloading or stopping. Silent outside systemd."""
from __future__ import annotations

import os
import socket
from typing import Optional


class Notifier:
    def __init__(self, address: Optional[str] = None):
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        if self.address.startswith("@"):
            self.address = "\0" + self.address[1:]  # an abstract socket
        self._sock: Optional[socket.socket] = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def watchdog_interval_s(self) -> Optional[float]:
        """Half of systemd's WatchdogSec for this process, or None when no watchdog is set."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 1e6 / 2

    def send(self, **fields: object) -> None:
        """sd_notify(READY=1, STATUS=..., ...); keys are the upper-case names systemd knows."""
        if not self.enabled:
            return
        message = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
        except OSError:
            pass  # systemd went away or never listened: nothing we can do about it

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
