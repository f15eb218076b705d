"""Bad input and filesystem faults, made on the fly and fed to a real daemon with good photos.

The daemon must stay up, every good photo must end done with its faces, every bad file failed
with a reason (or missing), and the log must stay short. As root the daemon runs without the
capabilities that let root read any file, so `chmod 000` is a real permission error.
"""
import io
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import NO_DAC, facewatch, reference_faces, save_jpeg, status, wait_until, write_config

pytestmark = pytest.mark.slow
IS_ROOT = os.geteuid() == 0


def bomb_png() -> bytes:
    """A few hundred bytes that declare 50,000 x 50,000 pixels."""
    out = io.BytesIO()
    Image.new("RGB", (1, 1)).save(out, "PNG")
    data = out.getvalue()
    chunk = b"IHDR" + struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    return data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


def good_photos(photo_dir: Path, folder: Path) -> dict:
    """name -> the photo it shows (for the reference), in every format and naming users have."""
    rgb = np.asarray(Image.open(photo_dir / "astronaut.jpg"))
    img = Image.fromarray(rgb)
    made = {}

    def put(name, save, source="astronaut.jpg"):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        save(path)
        made[name] = source

    put("plain.jpg", lambda p: shutil.copy(photo_dir / "astronaut.jpg", p))
    put("two.jpg", lambda p: shutil.copy(photo_dir / "two_astronauts.jpg", p), "two_astronauts.jpg")
    put("sideways.jpg", lambda p: shutil.copy(photo_dir / "sideways.jpg", p), "upright.jpg")
    put("no face.png", lambda p: shutil.copy(photo_dir / "coffee.png", p), "coffee.png")
    put("really a png.jpg", lambda p: img.save(p, "PNG"))
    put("gray.jpg", lambda p: img.convert("L").save(p, "JPEG"))
    put("cmyk.jpg", lambda p: img.convert("CMYK").save(p, "JPEG"))
    put("progressive.jpg", lambda p: img.save(p, "JPEG", progressive=True, quality=88))
    put("alpha.png", lambda p: img.convert("RGBA").save(p))
    put("sixteen-bit.png", lambda p: Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(p))
    put("photo.webp", lambda p: img.save(p, "WEBP"))
    put("photo.bmp", lambda p: img.save(p, "BMP"))
    put("photo.tif", lambda p: img.save(p, "TIFF"))
    put("pages.tiff", lambda p: img.save(p, "TIFF", save_all=True, append_images=[img.convert("L").rotate(90)]))
    put("animated.webp", lambda p: img.save(p, "WEBP", save_all=True, append_images=[img.rotate(180)]))
    put("SHOUTING.JPG", lambda p: img.save(p, "JPEG"))
    put("été/日本語 photo.jpg", lambda p: img.save(p, "JPEG", quality=91))
    put("deep/" + "/".join(["d" * 200] * 6) + "/" + "n" * 240 + ".jpg", lambda p: img.save(p, "JPEG", quality=93))
    raw = os.fsencode(str(folder)) + b"/caf\xe9-\xff.jpg"  # a name that is not UTF-8
    with open(raw, "wb") as f:
        img.save(f, "JPEG", quality=94)
    made[os.fsdecode(raw)[len(str(folder)) + 1:]] = "astronaut.jpg"
    return made


def bad_files(photo_dir: Path, folder: Path, outside: Path) -> dict:
    """name -> words its error must contain."""
    jpeg = (photo_dir / "astronaut.jpg").read_bytes()
    png = (photo_dir / "coffee.png").read_bytes()
    files = {
        "empty.jpg": (b"", "empty file (0 bytes)"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "truncated.png": (png[: len(png) // 3], "truncated"),
        "random.jpg": (np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an image"),
        "text.png": (b"just some notes, not a picture\n" * 10, "not an image: the file holds text"),
        "bomb.png": (bomb_png(), "50000x50000 pixels"),
        "header-only.jpg": (jpeg[:600], "truncated"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    expected = {name: reason for name, (_, reason) in files.items()}
    if IS_ROOT or os.geteuid() != 0:
        locked = folder / "locked.jpg"
        shutil.copy(photo_dir / "astronaut.jpg", locked)
        locked.chmod(0)
        expected["locked.jpg"] = "permission denied"
    (folder / "folder.jpg").mkdir()  # a folder named like an image: not a file to analyse
    (outside / "secret.jpg").write_bytes(jpeg)
    os.symlink(outside / "secret.jpg", folder / "link-out.jpg")  # not followed out of the root
    os.symlink(folder, folder / "loop")  # a symlink loop must not hang the walk
    return expected


def test_bad_input_never_stops_the_daemon(tmp_path, photo_dir, hand_loop, daemon):
    config = write_config(tmp_path, processing={"settle_s": 0.3, "max_attempts": 2},
                          schedule={"reconcile_interval_s": 2})
    photos, outside = tmp_path / "photos", tmp_path / "outside"
    outside.mkdir()
    (photos / "album").mkdir()
    shutil.copy(photo_dir / "cameraman.jpg", photos / "album" / "kept.jpg")
    d = daemon(config, prefix=NO_DAC)
    try:
        good = good_photos(photo_dir, photos)
        bad = bad_files(photo_dir, photos, outside)
        total = len(good) + len(bad) + 1  # + album/kept.jpg

        # a folder taken away and brought back, and the whole root unmounted and remounted
        wait_until(lambda: _done(config).get("album/kept.jpg") == "done", timeout=30, message="album")
        os.rename(photos / "album", outside / "album")
        wait_until(lambda: _done(config).get("album/kept.jpg") == "missing", timeout=10, message="missing")
        os.rename(outside / "album", photos / "album")
        wait_until(lambda: _done(config).get("album/kept.jpg") == "done", timeout=10, message="album back")
        os.rename(photos, tmp_path / "unmounted")
        time.sleep(1.5)
        assert status(config)["files"]["missing"] == 0, "an absent root was read as a mass deletion"
        os.rename(tmp_path / "unmounted", photos)

        wait_until(lambda: _settled(config, total), timeout=90, interval=0.3, message="every file settled")
        assert d.proc.poll() is None, "the daemon died"
        records = {os.path.relpath(r["path"], photos): r for r in _export(config)}
        assert set(records) == set(good) | set(bad) | {"album/kept.jpg"}
        for name, source in good.items():
            r = records[name]
            assert r["status"] == "done", (name, r["error"])
            expected, _, _ = reference_faces(hand_loop, photo_dir / source)
            if source not in ("astronaut.jpg",):
                assert len(r["faces"]) == len(expected), name
            else:
                assert len(r["faces"]) == 1, name
        for name, reason in bad.items():
            r = records[name]
            assert r["status"] == "failed" and reason in r["error"], (name, r["error"])
        assert records["album/kept.jpg"]["status"] == "done"
        assert status(config)["analyses"] <= total + 2, "the album came back but was analysed again"

        failed = json.loads(facewatch(config, "failed", "--json").stdout)
        assert {os.path.relpath(f["path"], photos) for f in failed} == set(bad)
        if "locked.jpg" in bad:  # made readable: retried because it changed
            (photos / "locked.jpg").chmod(0o644)
            wait_until(lambda: _done(config).get("locked.jpg") == "done", timeout=20, message="locked retried")
        assert "1 file" in facewatch(config, "retry", str(photos / "empty.jpg")).stdout
        wait_until(lambda: _done(config).get("empty.jpg") == "failed" and _settled(config, total), timeout=20)

        text = d.log_path.read_text()
        assert "Traceback" not in text
        lines = text.splitlines()
        assert len(lines) < 150, f"{len(lines)} log lines for {total} files"
        failures = [json.loads(x) for x in lines if '"file_failed"' in x]
        assert all(f["path"] and f["error"] for f in failures)
        assert d.proc.poll() is None
    finally:
        d.stop()


def _export(config):
    return [json.loads(line) for line in facewatch(config, "export").stdout.splitlines()]


def _done(config):
    photos = Path(yaml_paths(config)[0])
    return {os.path.relpath(r["path"], photos): r["status"] for r in _export(config)}


def yaml_paths(config):
    import yaml
    return yaml.safe_load(Path(config).read_text())["watch"]["paths"]


def _settled(config, total):
    s = status(config)
    return (s["files"]["done"] + s["files"]["failed"] == total and s["queue"]["pending"] == 0
            and s["queue"]["processing"] == 0)


@pytest.mark.skipif(not IS_ROOT, reason="a small tmpfs for the database needs root to mount")
def test_a_full_disk_pauses_the_daemon_and_it_carries_on_when_space_returns(tmp_path, photo_dir, daemon):
    disk = tmp_path / "small-disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], check=True)
    try:
        config = write_config(tmp_path, database=str(disk / "facewatch.db"))
        photos = tmp_path / "photos"
        d = daemon(config)
        filler = disk / "filler"
        with open(filler, "wb") as f:  # fill the disk to the last byte
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        for i in range(12):
            save_jpeg(photos / f"p{i}.jpg", np.roll(np.asarray(Image.open(photo_dir / "astronaut.jpg")), i, 1))
        time.sleep(4)
        assert d.proc.poll() is None, "the daemon died of a full disk"
        filler.unlink()
        wait_until(lambda: status(config)["files"]["done"] == 12, timeout=60, message="work after space returned")
        assert d.stop() == 0
        assert "Traceback" not in d.log_path.read_text()
        assert sqlite3.connect(str(disk / "facewatch.db")).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _wakeups(pid: int) -> int:
    """How many times the threads of a process have been switched to so far (voluntary and not):
    each wake-up of each thread counts once, however fast or slow the machine."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            lines = Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines()
        except OSError:  # a thread that ended meanwhile
            continue
        total += sum(int(line.split()[1]) for line in lines
                     if line.split(":")[0] in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))
    return total


@pytest.mark.slow
def test_a_database_locked_by_another_process_is_waited_for_asleep(tmp_path, photo_dir, daemon):
    """While another process holds the database, the daemon sleeps on the lock: after SQLite's own
    second of waiting, its threads wake a few times in ten seconds (measured: 1; the pulse beats
    every 15 s meanwhile), not the hundreds of a loop that keeps looking; then the work goes through.
    (What the wait costs in CPU on this machine: bench/idle.py.)"""
    config = write_config(tmp_path)
    d = daemon(config)
    wait_until(lambda: "reconcile_finished" in d.log_path.read_text(), timeout=60, message="the first reconcile")

    def at_rest() -> bool:  # start-up done (the analysers' models, the first jobs): two quiet seconds
        before = _wakeups(d.proc.pid)
        time.sleep(2.0)
        return _wakeups(d.proc.pid) - before <= 10
    wait_until(at_rest, timeout=60, interval=0, message="the daemon at rest after its start")
    other = sqlite3.connect(str(tmp_path / "state" / "facewatch.db"), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    for i in range(5):
        save_jpeg(tmp_path / "photos" / f"p{i}.jpg",
                  np.roll(np.asarray(Image.open(photo_dir / "astronaut.jpg")), i, 1))
    time.sleep(3)  # the photos are noted, and the writer has given up SQLite's own busy wait (1 s)
    before = _wakeups(d.proc.pid)
    time.sleep(10)
    woke = _wakeups(d.proc.pid) - before
    other.execute("COMMIT")
    other.close()
    assert woke <= 20, f"the daemon's threads woke {woke} times in 10 s while another process held the database"
    wait_until(lambda: status(config)["files"]["done"] == 5, timeout=60, message="work after the lock")
    assert d.proc.poll() is None
    assert d.stop() == 0
    lines = d.log_path.read_text().splitlines()
    assert "Traceback" not in "\n".join(lines)
    # every line JSON, libraries' too; no "job skipped: maximum number of running instances" each pulse
    assert all(isinstance(json.loads(line), dict) for line in lines), lines
    assert not [line for line in lines if "running instances" in line]


@pytest.mark.slow
def test_the_watchdog_is_pinged_while_another_process_holds_the_database(tmp_path, photo_dir, daemon, monkeypatch):
    """Under systemd (a notify socket, WatchdogSec=10s: a ping every 5 s), a database held by
    another process for 20 s: the pings go on, and the status line says what the daemon waits for.
    (A pulse that waited for its heartbeat's write would fall silent, and systemd would kill it.)
    The pings are counted, not timed: the pulse sleeps between beats on any machine."""
    import socket
    import threading
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(0.5)
    messages, stop = [], threading.Event()

    def listen():
        while not stop.is_set():
            try:
                messages.append((time.monotonic(), sock.recv(4096).decode()))
            except socket.timeout:
                pass
    listener = threading.Thread(target=listen)
    listener.start()
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    config = write_config(tmp_path)
    try:
        d = daemon(config)
        other = sqlite3.connect(str(tmp_path / "state" / "facewatch.db"), isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        save_jpeg(tmp_path / "photos" / "a.jpg", np.asarray(Image.open(photo_dir / "astronaut.jpg")))
        held_at = time.monotonic()
        time.sleep(20)
        released_at = time.monotonic()
        other.execute("COMMIT")
        other.close()
        wait_until(lambda: status(config)["files"]["done"] == 1, timeout=30, message="the photo after the lock")
        assert d.stop() == 0
    finally:
        stop.set()
        listener.join()
        sock.close()
    pings = [at for at, m in messages if "WATCHDOG=1" in m.split("\n")]
    during = [at for at in pings if held_at < at < released_at]
    # a ping every 5 s is four in the 20 s; a pulse waiting for its heartbeat's write sent one at most
    assert len(during) >= 3, f"{len(during)} watchdog pings in the 20 s the database was held"
    assert any("waiting for the database" in m for at, m in messages if held_at < at < released_at), messages


# A user namespace of its own with an inotify watch limit of its own (the kernel counts watches per
# user namespace, user.max_inotify_watches): the daemon meets the limit, the rest of the machine
# (other tests running beside this one) does not.
LOW_WATCH_LIMIT = ["unshare", "--user", "--map-root-user", "sh", "-c",
                   'echo 5 > /proc/sys/user/max_inotify_watches && exec "$0" "$@"']


def _own_watch_limit_possible() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        [*LOW_WATCH_LIMIT, "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _own_watch_limit_possible(),
                    reason="needs a user namespace (unshare --user) to give the daemon an inotify limit of its own")
def test_the_inotify_watch_limit_falls_back_to_polling(tmp_path, photo_dir, daemon):
    config = write_config(tmp_path, processing={"settle_s": 0.3})
    photos = tmp_path / "photos"
    for i in range(20):
        (photos / f"sub{i}").mkdir()
    d = daemon(config, prefix=LOW_WATCH_LIMIT)  # 5 watches: far fewer than the 21 folders need
    wait_until(lambda: "inotify_limit_reached" in d.log_path.read_text(), timeout=60,
               message="the limit to be noticed")
    shutil.copy(photo_dir / "astronaut.jpg", photos / "sub17" / "deep.jpg")  # in an unwatched folder
    wait_until(lambda: status(config)["files"]["done"] == 1, timeout=60, message="the polled photo")
    text = d.log_path.read_text()
    assert text.count("inotify_limit_reached") == 1
    assert "fs.inotify.max_user_watches" in text
    assert d.stop() == 0
