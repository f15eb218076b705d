"""Where analyser processes come from: a server process forks them, ready in milliseconds.

The server imports numpy, OpenCV and MediaPipe once (facewatch/preload.py) and inherits none of
the daemon's threads, locks or database connections, so forking from it is safe at any time.
This module stays light: the CLI starts the server first, so its imports overlap with ours.
"""
from multiprocessing import forkserver, get_context


def analyser_context():
    context = get_context("forkserver")
    context.set_forkserver_preload(["facewatch.preload"])
    return context


def start_analyser_server() -> None:
    analyser_context()
    forkserver.ensure_running()
