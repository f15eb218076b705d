"""Service: the daemon (`facewatch run`) and the one-shot runs (`scan`, `resume`).

Owns the worker loop (`worker`: claim -> analyse -> save), the daemon's wiring and shutdown
(`daemon`), its periodic chores and pulse (`jobs`), signals, systemd's notify socket and unit
(`signals`, `notify`, `unit`), metrics, logs, the scan and its progress bar. May import every
stage below it (`intake`, `analysis`, `people`, `checkpoint`, `store`, `config`); the command
line imports it, never the other way round.
"""
