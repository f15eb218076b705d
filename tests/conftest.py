"""Shared fixtures: real photos, real configs, a real daemon in a subprocess, bounded waits."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

# MediaPipe's TensorFlow Lite greets stderr from the test processes themselves (the analysers
# silence it): not news in the test report
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FACEWATCH = [sys.executable, "-m", "facewatch"]  # what the `facewatch` script runs
# as root, run a command without the capabilities that let root read any file, so `chmod 000` bites
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def wait_until(condition, timeout=30.0, interval=0.05, message="condition"):
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


# photos ---------------------------------------------------------------------------------------
def _astronaut() -> np.ndarray:
    from skimage import data
    return data.astronaut()  # NASA, public domain: one face


def _cameraman() -> np.ndarray:
    from skimage import data
    return np.dstack([data.camera()] * 3)  # one face, grayscale


def save_jpeg(path: Path, rgb: np.ndarray, quality: int = 92, orientation: int = 1) -> Path:
    image = Image.fromarray(rgb)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(path, "JPEG", quality=quality, exif=exif.tobytes())
    return path


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """Real photos with and without faces, made once per session."""
    folder = tmp_path_factory.mktemp("photos")
    astronaut = _astronaut()
    save_jpeg(folder / "astronaut.jpg", astronaut)
    save_jpeg(folder / "cameraman.jpg", _cameraman())
    save_jpeg(folder / "two_astronauts.jpg", np.hstack([astronaut, astronaut[:, ::-1]]))
    # stored lying on its side, with EXIF orientation 6 ("rotate 90° clockwise to view")
    portrait = np.vstack([astronaut, np.full((256, 512, 3), 90, np.uint8)])  # 512 wide, 768 high
    save_jpeg(folder / "sideways.jpg", np.ascontiguousarray(np.rot90(portrait, 1)), orientation=6)
    save_jpeg(folder / "upright.jpg", portrait)
    from skimage import data
    Image.fromarray(data.coffee()).save(folder / "coffee.png")  # no face
    # a large photo: decoded at reduced scale
    big = cv2.resize(astronaut, (3000, 3000), interpolation=cv2.INTER_CUBIC)
    save_jpeg(folder / "astronaut_9mp.jpg", big, quality=90)
    messi = Path("/usr/share/doc/opencv-doc/examples/data/messi5.jpg")  # Debian's opencv-doc, if present
    if messi.exists():
        shutil.copy(messi, folder / "messi5.jpg")
    return folder


def make_variants(photo_dir: Path, folder: Path, n: int, seed: int = 0, prefix: str = "v",
                  side: int = 448) -> list[Path]:
    """`n` distinct real photos (the astronaut, cropped, flipped and with noise), so each is detected."""
    rng = np.random.default_rng(seed)
    base = np.asarray(Image.open(photo_dir / "astronaut.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        dx, dy = rng.integers(0, 64, 2)
        img = base[dy:dy + 448, dx:dx + 448]
        if i % 2:
            img = img[:, ::-1]
        img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
        if side != 448:
            img = cv2.resize(img, (side, side), interpolation=cv2.INTER_LINEAR)
        paths.append(save_jpeg(folder / f"{prefix}{i:04d}.jpg", img, quality=85))
    return paths


@pytest.fixture(scope="session")
def reference_detector():
    from facewatch.analysis.detect import MediaPipeDetector
    detector = MediaPipeDetector("full_range", 0.5)
    yield detector
    detector.close()


@pytest.fixture(scope="session")
def hand_loop():
    """MediaPipe called the way a hand-written loop calls it: the whole picture, its own resizing."""
    import mediapipe as mp
    solution = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
    yield solution
    solution.close()


def reference_faces(hand_loop, path: Path):
    """What a hand-written loop finds: full-resolution decode (EXIF applied), full-range model.
    Boxes (x, y, w, h) and six keypoints each, in pixels, rounded as such a loop would."""
    rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    faces = []
    for d in hand_loop.process(rgb).detections or ():
        b = d.location_data.relative_bounding_box
        keypoints = [(round(k.x * w), round(k.y * h)) for k in d.location_data.relative_keypoints]
        faces.append(((round(b.xmin * w), round(b.ymin * h), round(b.width * w), round(b.height * h)), keypoints))
    return faces, w, h


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


# stores ---------------------------------------------------------------------------------------
BACKENDS = ["sqlite", "postgres"]
POSTGRES_ENV = "FACEWATCH_TEST_POSTGRES"  # a server's URL (.ci/run exports one); else one is started here


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """The URL of a real PostgreSQL server: $FACEWATCH_TEST_POSTGRES (which must connect), or one
    started here on a throwaway data directory (Debian's postgresql; initdb runs as `postgres`
    when we are root, since it refuses root)."""
    import glob
    import psycopg
    url = os.environ.get(POSTGRES_ENV)
    if url:
        psycopg.connect(url, connect_timeout=10).close()  # set but unusable: an error, not a skip
        yield url
        return
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip(f"no PostgreSQL here: install Debian's postgresql, or set {POSTGRES_ENV} to a server's URL")
    bin_dir = os.path.dirname(found[-1])
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="facewatch-postgres-"))  # pytest's own is root's alone (0700)
    as_user = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chown(folder, *_postgres_ids())
    port = _free_port()
    data = folder / "data"
    subprocess.run([*as_user, f"{bin_dir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                    f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _postgres_ids() -> tuple[int, int]:
    import pwd
    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def postgres_url(postgres_server):
    """A new, empty database on the server, dropped afterwards."""
    import psycopg
    name = f"facewatch_test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = postgres_server.rsplit("/", 1)[0] + "/" + name
    yield url
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=BACKENDS)
def any_store(request, tmp_path):
    """A fresh, empty store of each backend, opened through open_store."""
    from facewatch.store import open_store
    if request.param == "postgres":
        database = request.getfixturevalue("postgres_url")
    else:
        database = str(tmp_path / "db" / "facewatch.db")
    store = open_store(database)
    yield store
    store.close()


# configs and commands -------------------------------------------------------------------------
def write_config(folder: Path, **sections) -> Path:
    """A config.yaml in `folder` watching folder/photos (unless watch.paths says otherwise)."""
    raw = {"watch": {"paths": [str(folder / "photos")]}, "database": str(folder / "state" / "facewatch.db"),
           "processing": {"settle_s": 0.5, "workers": 2},
           # the people stage costs 80 ms a face: on only where a test is about it (tests/test_people.py)
           "people": {"enabled": False},
           "logging": {"format": "json", "level": "info"}}
    for key, value in sections.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    raw["watch"]["paths"] = [str(p) for p in raw["watch"]["paths"]]
    for p in raw["watch"]["paths"]:
        os.makedirs(p, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def peek(config: Path, sql: str, default=0):
    """One value read straight from the config's SQLite database: fast enough to poll a run that
    takes a second on a fast machine (`status` costs a process start); `default` before it exists."""
    database = yaml.safe_load(config.read_text())["database"]
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute(sql).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return default
    return default if row is None or row[0] is None else row[0]


# every command that opens the database: a database that cannot be used gets the same refusal
COMMANDS = [("status",), ("status", "--json"), ("export",), ("show", "x.jpg"), ("failed",), ("check",),
            ("retry", "--all"), ("scan",), ("resume",), ("run",), ("backup", "copy.db")]


def assert_refused(config, database, words, commands=COMMANDS, prefix=()):
    """Each command exits 4 with one line naming `database` and saying `words`, no traceback, and
    no retry: it says it once and stops (the timeout only stops a command that would wait forever)."""
    for args in commands:
        result = subprocess.run([*prefix, *FACEWATCH, "--config", str(config), *args], capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=config.parent)
        code, err = result.returncode, result.stderr
        assert code == 4, f"facewatch {' '.join(args)} exited {code}: {err}"
        assert "Traceback" not in err, err
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("{")]
        assert len(lines) == 1, f"facewatch {' '.join(args)}: {err}"
        assert str(database) in lines[0] and words in lines[0], lines[0]
        retries = [line for line in err.splitlines() if line.startswith("{") and "retry" in line]
        assert not retries, f"facewatch {' '.join(args)} retried a database no wait can heal: {retries}"


def facewatch(config: Path, *args, check=True, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([*FACEWATCH, "--config", str(config), *args], capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"facewatch {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def status(config: Path) -> dict:
    return json.loads(facewatch(config, "status", "--json").stdout)


def export(config: Path) -> dict:
    """path -> exported record."""
    out = facewatch(config, "export", "--format", "jsonl").stdout
    return {r["path"]: r for r in map(json.loads, out.splitlines())}


class DaemonProcess:
    """`facewatch run` in a subprocess, with its log in a file."""

    def __init__(self, config: Path, log_path: Path):
        self.config = config
        self.log_path = log_path
        self.proc = None

    def start(self, wait_ready=True, prefix=()) -> "DaemonProcess":
        """Start it (behind `prefix`, such as setpriv) and wait until it says it is ready."""
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([*prefix, *FACEWATCH, "--config", str(self.config), "run"],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if wait_ready:
            wait_until(lambda: "daemon_ready" in self.log_path.read_text() or self.proc.poll() is not None,
                       timeout=60, message="the daemon to be ready")
            assert self.proc.poll() is None, f"daemon died:\n{self.log_path.read_text()}"
        return self

    def signal(self, signum) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout=30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def events(self) -> list[dict]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
        return lines


KILL_MOMENTS = ("starting", "ready", "claimed", "saved")


def kill_at(d: "DaemonProcess", moment: str, claimed) -> None:
    """Kill -9 a daemon at a moment of its work, told by what it did, not by the clock (so a fast
    machine and a slow one kill it at the same point): while starting, once ready, while it holds a
    claim (`claimed()` says so), or just after it saved a batch."""
    saved = d.log_path.read_text().count("batch_saved")
    if moment == "ready":
        wait_until(lambda: "daemon_ready" in d.log_path.read_text(), timeout=60, message="the daemon ready")
    elif moment == "claimed":
        wait_until(claimed, timeout=60, interval=0.01, message="a claim held")
    elif moment == "saved":
        wait_until(lambda: d.log_path.read_text().count("batch_saved") > saved, timeout=60, interval=0.01,
                   message="a batch saved")
    d.kill()


@pytest.fixture
def daemon(tmp_path):
    started = []

    def start(config: Path, **kwargs) -> DaemonProcess:
        d = DaemonProcess(config, tmp_path / f"daemon-{len(started)}.log").start(**kwargs)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.kill()


def drop(src: Path, folder: Path, name: str = None, how: str = "copy") -> Path:
    """Put a photo into a watched folder the way users do: a copy, or an atomic rename."""
    dest = folder / (name or src.name)
    if how == "copy":
        shutil.copy(src, dest)
    else:
        tmp = folder.parent / f".incoming-{dest.name}"
        shutil.copy(src, tmp)
        os.replace(tmp, dest)
    return dest


# hygiene --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves a thread of ours running."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leaked = [t for t in set(threading.enumerate()) - before
                  if t.is_alive() and t.name.startswith("facewatch")]
        if not leaked:
            return
        time.sleep(0.05)
    pytest.fail(f"threads left running: {[t.name for t in leaked]}")
