"""The systemd unit, filled in for this installation."""
from __future__ import annotations

import os
from importlib import resources

TEMPLATE_EXEC = "ExecStart=/opt/facewatch/bin/facewatch --config /etc/facewatch/config.yaml run"


def render_unit(executable: str, config_file: str) -> str:
    template = resources.files("facewatch").joinpath("facewatch.service").read_text(encoding="utf-8")
    assert TEMPLATE_EXEC in template, "the unit template lost its ExecStart line"
    return template.replace(TEMPLATE_EXEC, f"ExecStart={executable} --config {config_file} run")


def unit_warnings(executable: str, config_file: str) -> list[str]:
    """What would keep the service's unprivileged user from starting facewatch."""
    warnings = []
    folder = os.path.dirname(os.path.realpath(executable))
    while folder not in ("/", ""):
        mode = os.stat(folder).st_mode
        if not mode & 0o001:
            warnings.append(f"{folder} cannot be entered by other users, so the service's user cannot run "
                            f"{executable}: install facewatch into a virtualenv such as /opt/facewatch "
                            "made with the system's python3")
            break
        folder = os.path.dirname(folder)
    if not os.path.exists(config_file):
        warnings.append(f"{config_file} does not exist yet: write it (watch.paths at least) before starting")
    return warnings
