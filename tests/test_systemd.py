"""`systemctl start facewatch` under a real systemd, booted in a container (tests/systemd/container.sh).

Needs root (CI runs as root). The service runs as a DynamicUser, which cannot enter /root where
this machine's own Python lives, so the module installs facewatch into a virtualenv made with the
system's /usr/bin/python3 under /opt, as the README tells administrators to. The tests run in
file order against one container: start, reload, watchdog, stop.
"""
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import save_jpeg, wait_until

pytestmark = [pytest.mark.systemd, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
HARNESS = Path(__file__).resolve().parent / "systemd" / "container.sh"
BASE = Path(f"/opt/facewatch-test-{os.getpid()}")
SYSTEM_PYTHON = "/usr/bin/python3"
ENV = {**os.environ, "W": str(BASE / "container"), "NAME": f"fwtest{os.getpid()}"}
CONFIG = "/etc/facewatch/config.yaml"


def _why_not() -> str:
    if os.geteuid() != 0:
        return "needs root to boot a container with systemd-nspawn (CI runs as root)"
    if not shutil.which("systemd-nspawn"):
        return "systemd-nspawn is not installed (apt install systemd-container)"
    if not os.path.exists(SYSTEM_PYTHON):
        return f"no system Python at {SYSTEM_PYTHON} for the service's virtualenv"
    version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2] < (3, 13))"],
                             capture_output=True, text=True).stdout.strip()
    if version != "True":
        return f"{SYSTEM_PYTHON} is newer than 3.12, which MediaPipe 0.10.21 does not support"
    return ""


if _why_not():
    pytest.skip(_why_not(), allow_module_level=True)


def sh(*args, check=True, timeout=120, **kw):
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=ENV, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def inside(*args, check=True, timeout=60):
    """A command inside the container."""
    return sh(str(HARNESS), "exec", *args, check=check, timeout=timeout)


def show(*props) -> dict:
    out = inside("systemctl", "show", "facewatch", *[f"--property={p}" for p in props]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def status() -> dict:
    return json.loads(inside(str(BASE / "venv" / "bin" / "facewatch"), "--config", CONFIG, "status", "--json").stdout)


def write_config(*folders) -> None:
    text = "watch:\n  paths: [" + ", ".join(str(f) for f in folders) + "]\nschedule:\n  checkpoint_interval_s: 5\n"
    inside("mkdir", "-p", "/etc/facewatch")
    subprocess.run([str(HARNESS), "exec", "tee", CONFIG], input=text, text=True, env=ENV,
                   capture_output=True, check=True)


@pytest.fixture(scope="session")
def container(photo_dir):
    """A venv under /opt, two photo folders bound into a booted container, the unit installed.

    For the whole session, not the module: the tests below are one story told in order (start,
    reload, freeze, stop), and a test process running other modules' tests between them must not
    take the container down and boot a fresh one midway."""
    shutil.rmtree(BASE, ignore_errors=True)
    (BASE / "photos").mkdir(parents=True)
    (BASE / "photos2").mkdir()
    for folder in (BASE, BASE / "photos", BASE / "photos2"):
        folder.chmod(0o755)
    sh(SYSTEM_PYTHON, "-m", "venv", str(BASE / "venv"))
    sh(str(BASE / "venv" / "bin" / "pip"), "install", "--quiet", str(REPO), timeout=900)
    ENV["BINDS"] = f"--bind={BASE / 'photos'} --bind={BASE / 'photos2'}"
    boot = sh(str(HARNESS), "up", check=False, timeout=300)
    if boot.returncode != 0:
        log = Path(ENV["W"], f"{ENV['NAME']}.log")
        message = f"the container did not boot:\n{boot.stderr}\n{log.read_text() if log.exists() else ''}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        write_config(BASE / "photos")
        inside(str(BASE / "venv" / "bin" / "facewatch"), "install-unit")  # as the README says
        inside("systemctl", "daemon-reload")
        yield BASE
    finally:
        journal = inside("journalctl", "-u", "facewatch", "--no-pager", check=False).stdout
        Path(ENV["W"], "journal.txt").write_text(journal)
        sh(str(HARNESS), "down", check=False)
        shutil.rmtree(BASE, ignore_errors=True)


_distinct = itertools.count()  # every photo dropped gets bytes of its own


def drop_photos(photo_dir, folder: Path, count: int, prefix: str) -> list[Path]:
    """Real face photos, each with different bytes, moved into place as an upload would be."""
    import numpy as np
    from PIL import Image
    base = np.asarray(Image.open(photo_dir / "astronaut.jpg"))
    paths = []
    for i in range(count):
        tmp = BASE / f".{prefix}{i}.jpg"
        save_jpeg(tmp, np.roll(base, 3 * next(_distinct), axis=1), quality=90)
        dest = folder / f"{prefix}{i:03d}.jpg"
        os.replace(tmp, dest)
        paths.append(dest)
    return paths


def test_the_unit_verifies_without_a_word(container):
    unit = container / "facewatch.service"
    sh(str(container / "venv" / "bin" / "facewatch"), "install-unit", "--output", str(unit))
    result = sh("systemd-analyze", "verify", str(unit), check=False)
    assert result.stdout + result.stderr == "" and result.returncode == 0, result.stdout + result.stderr


def test_start_index_and_status_line(container, photo_dir):
    inside("systemctl", "start", "facewatch")  # Type=notify: returns once the daemon says it is ready
    assert show("ActiveState")["ActiveState"] == "active"
    assert status()["daemon"]["running"] is True
    drop_photos(photo_dir, container / "photos", 6, "first")
    wait_until(lambda: status()["files"]["done"] == 6, timeout=30, interval=0.3, message="six photos done")
    s = status()
    assert s["faces"] == 6 and s["files"]["with_faces"] == 6
    wait_until(lambda: "6 done" in show("StatusText")["StatusText"], timeout=15, interval=0.5,
               message="the STATUS= line")
    line = show("StatusText")["StatusText"]
    assert re.fullmatch(r"watching 1 folder: 0 pending, 6 done, 0 failed, 6 faces, \d+ files/s", line), line
    assert "6 done" in inside("systemctl", "status", "facewatch", "--no-pager", check=False).stdout
    journal = inside("journalctl", "-u", "facewatch", "--no-pager", "-o", "cat").stdout
    events = [json.loads(line) for line in journal.splitlines() if line.startswith("{")]
    assert {"daemon_ready", "batch_saved"} <= {e["event"] for e in events}


def test_reload_picks_up_a_second_folder(container, photo_dir):
    pid = show("MainPID")["MainPID"]
    write_config(container / "photos", container / "photos2")
    inside("systemctl", "reload", "facewatch")
    drop_photos(photo_dir, container / "photos2", 3, "second")
    wait_until(lambda: status()["files"]["done"] == 9, timeout=30, interval=0.3, message="the second folder")
    assert show("MainPID")["MainPID"] == pid, "a reload must not restart the daemon"
    assert status()["watch"] == [str(container / "photos"), str(container / "photos2")]
    # an invalid config is refused and the old one stays in force
    subprocess.run([str(HARNESS), "exec", "tee", CONFIG], input="watch: {paths: [\n", text=True, env=ENV,
                   capture_output=True, check=True)
    inside("systemctl", "reload", "facewatch")
    time.sleep(1)
    assert show("ActiveState")["ActiveState"] == "active"
    assert "reload_rejected" in inside("journalctl", "-u", "facewatch", "--no-pager", "-o", "cat").stdout
    write_config(container / "photos", container / "photos2")


def test_a_frozen_daemon_is_killed_by_the_watchdog_and_its_successor_finishes(container, photo_dir):
    inside("mkdir", "-p", "/etc/systemd/system/facewatch.service.d")
    subprocess.run([str(HARNESS), "exec", "tee", "/etc/systemd/system/facewatch.service.d/test.conf"],
                   input="[Service]\nWatchdogSec=3s\nTimeoutAbortSec=2s\n", text=True, env=ENV,
                   capture_output=True, check=True)
    inside("systemctl", "daemon-reload")
    inside("systemctl", "restart", "facewatch")
    before = show("MainPID", "NRestarts")
    inside("systemctl", "kill", "--signal=SIGSTOP", "--kill-whom=main", "facewatch")
    photos = drop_photos(photo_dir, container / "photos", 20, "frozen")  # they arrive while it hangs
    wait_until(lambda: show("NRestarts")["NRestarts"] != before["NRestarts"], timeout=30, interval=0.5,
               message="the watchdog to restart the service")
    after = show("MainPID", "ActiveState", "Result")
    assert after["MainPID"] != before["MainPID"]
    wait_until(lambda: status()["files"]["done"] == 9 + len(photos), timeout=60, interval=0.5,
               message="the restarted daemon to finish the work")
    s = status()
    assert s["faces"] == s["files"]["done"], "a file has two sets of faces (or lost one)"
    assert s["analyses"] == s["files"]["done"], "work was repeated after the restart"
    assert "watchdog" in inside("journalctl", "-u", "facewatch", "--no-pager").stdout


def test_stop_is_clean(container):
    inside("systemctl", "stop", "facewatch")
    props = show("ActiveState", "Result")  # "timeout" if it outlived TimeoutStopSec and was killed
    assert props == {"ActiveState": "inactive", "Result": "success"}
    s = status()
    assert s["daemon"]["running"] is False and s["queue"] == {"pending": 0, "processing": 0}
    assert "daemon_stopped" in inside("journalctl", "-u", "facewatch", "--no-pager", "-o", "cat").stdout


def test_security_exposure_is_low(container):
    out = inside("systemd-analyze", "security", "facewatch.service", "--no-pager").stdout
    score = float(re.search(r"Overall exposure level for facewatch.service: ([\d.]+)", out).group(1))
    assert score <= 2.0, out
