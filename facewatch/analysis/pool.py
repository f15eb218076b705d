"""Where analyser processes come from: a server process forks them, ready in milliseconds.

The server imports numpy, OpenCV and MediaPipe once (facewatch/preload.py) and inherits none of
the daemon's threads, locks or database connections, so forking from it is safe at any time.
This module stays light: the `facewatch` command starts the server before anything else
(facewatch/launch.py), so its imports overlap with ours, and the calls below name
facewatch.analysis.analyse without the daemon or the scan importing it (numpy, OpenCV and Pillow are a
tenth of a second the main process never needs).
"""
from multiprocessing import forkserver, get_context


def analyser_context():
    context = get_context("forkserver")
    context.set_forkserver_preload(["facewatch.analysis.preload"])
    return context


def start_analyser_server() -> None:
    analyser_context()
    forkserver.ensure_running()


# What the pool runs in an analyser process, where the server has imported facewatch.analysis.analyse already.
def init_process(*args) -> None:
    from facewatch.analysis import analyse
    analyse.init_process(*args)


def ready() -> int:
    from facewatch.analysis import analyse
    return analyse.ready()


def analyse(claim):
    from facewatch.analysis import analyse
    return analyse.analyse(claim)


def embed(job):
    from facewatch.analysis import analyse
    return analyse.embed_job(job)
