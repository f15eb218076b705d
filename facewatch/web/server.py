"""Serving the web interface with waitress: from `facewatch serve`, or in a thread of the daemon
(web.listen). waitress is pure Python, synchronous like the store's calls (each request on one of
its threads, each thread with its own database connection), and stops when told (close())."""
from __future__ import annotations

import ipaddress
import socket
import threading

import structlog
import waitress

from facewatch.config import Config
from facewatch.store import Store
from facewatch.web.app import create_app
from facewatch.web.security import load_or_make_token

log = structlog.get_logger("facewatch.web.server")
DEFAULT_LISTEN = "127.0.0.1:8750"
THREADS = 4


def loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class WebServer:
    """The web interface on `listen` (host:port), over `store`."""

    def __init__(self, config: Config, store: Store, listen: str):
        self.host, _, port = listen.rpartition(":")
        self.token = load_or_make_token(config.database)
        app = create_app(config, store, self.token)
        self.server = waitress.create_server(app, host=self.host.strip("[]"), port=int(port), threads=THREADS,
                                             ident="facewatch", clear_untrusted_proxy_headers=True)
        self.port = self.server.effective_port
        self._thread = None
        if not loopback(self.host):
            log.warning("web_listening_beyond_this_machine", listen=listen,
                        reason="anyone who can reach this address and has the token can name and merge people")

    @property
    def url(self) -> str:
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "[::]") else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def run(self) -> None:
        """Serve until close() (in this thread)."""
        self.server.run()

    def start(self) -> None:
        """Serve on a thread of its own."""
        self._thread = threading.Thread(target=self.run, name="facewatch-web", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving: closed by waitress's own loop (from another thread, its select() would
        meet closed sockets), then the thread joined."""
        if self._thread is None or not self._thread.is_alive():
            self.server.close()
            return
        self.server.trigger.pull_trigger(self.server.close)
        self._thread.join(timeout=10)
