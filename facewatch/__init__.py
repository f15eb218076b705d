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

__version__ = "0.1.0"
