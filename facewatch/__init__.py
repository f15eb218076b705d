"""facewatch: a daemon that keeps a face index of photo folders up to date.

The path of one photo, stage by stage, one subpackage each:

- `intake/`   a folder event or a walk -> a complete image file, queued in the store
- `store/`    the durable queue and the index (SQLite or PostgreSQL), behind one contract
- `analysis/` a claimed file -> pixels -> faces (MediaPipe) and their embeddings, in analyser processes
- `metadata/` XMP face regions and names, read from photos and written to sidecars
- `people/`   embeddings -> people: placing each face, crops, `find --like`
- `results/`  reading the index back: status, export, the gallery, drawn pictures, metrics, sidecars
- `web/`      the web interface: the live index in a browser, to name people where their faces are
- `service/`  the daemon and one-shot runs: the worker loop, jobs, signals, systemd, logs
- `cli/`      the `facewatch` command: parse, call, print

`config.py` (the settings) and `checkpoint.py` (the checkpoint API its first users specified)
sit beside them. Imports point one way: cli -> service -> web -> results -> people -> analysis,
intake -> metadata, checkpoint -> store -> config (tests/test_architecture.py reads the import graph). Only `store/`
imports a database driver or sees its errors.
"""

import os
from pathlib import Path

__version__ = "0.1.0"


def cache_folder() -> Path:
    """Where facewatch keeps what it can make again (the network converted for onnxruntime, the web
    interface's pictures): systemd's CacheDirectory= for the service, else the user's cache. Here,
    not in config.py: analysers ask for it, and need none of the settings' code (nor YAML)."""
    folder = (os.environ.get("CACHE_DIRECTORY") or "").split(":")[0]
    if folder:
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facewatch"
