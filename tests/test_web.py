"""The web interface in a real browser (Debian's chromium, driven by chromedriver through Selenium):
the token, the people grid, naming by typing, merging, taking a face out; then the command line
agrees. Bad input: HTML in a name stays text, no token is refused, paths outside the index are not
found, a database held by another process is waited for."""
import json
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FACEWATCH, _free_port, export, facewatch, save_jpeg, wait_until, write_config

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def variants(rgb: np.ndarray, folder: Path, prefix: str, n: int = 3) -> None:
    """`n` different photos of one real face (crops, a mirror image, noise)."""
    rng = np.random.default_rng(len(prefix))
    h, w = rgb.shape[:2]
    for i in range(n):
        dx, dy = rng.integers(0, w // 10, 2)
        img = rgb[dy:h - w // 10 + dy, dx:w - w // 10 + dx]
        img = img[:, ::-1] if i % 2 else img
        img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
        save_jpeg(folder / f"{prefix}{i}.jpg", np.ascontiguousarray(img), quality=88)


@pytest.fixture(scope="module")
def index(tmp_path_factory, photo_dir):
    """An index of two people (the astronaut's photos and the cameraman's), analysed with people on."""
    folder = tmp_path_factory.mktemp("web")
    config = write_config(folder, people={"enabled": True})
    photos = folder / "photos"
    variants(np.asarray(Image.open(photo_dir / "astronaut.jpg")), photos, "astronaut")
    variants(np.asarray(Image.open(photo_dir / "cameraman.jpg").convert("RGB")), photos, "cameraman")
    facewatch(config, "scan")
    people = json.loads(facewatch(config, "people", "--json").stdout)
    assert len(people) == 2 and all(p["faces"] == 3 for p in people), people
    return config


class Served:
    """`facewatch serve` in a subprocess, and the address it printed."""

    def __init__(self, config: Path):
        self.port = _free_port()
        self.proc = subprocess.Popen([*FACEWATCH, "--config", str(config), "serve", "--listen", f"127.0.0.1:{self.port}"],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stderr.readline()
        match = re.search(r"(http://\S+\?token=\S+)", line)
        assert match, f"no address printed: {line}{self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        self.url = match.group(1)
        self.base = self.url.split("?")[0].rstrip("/")
        self.token = self.url.split("token=")[1]

    def get(self, path: str, token: bool = True):
        """(status, body) of a GET, with the cookie the browser would hold."""
        request = urllib.request.Request(self.base + path)
        if token:
            request.add_header("Cookie", f"facewatch_token={self.token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.proc.stderr.close()


@pytest.fixture
def served(index):
    s = Served(index)
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no browser: install Debian's chromium and chromium-driver (apt install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def people(config) -> list:
    return json.loads(facewatch(config, "people", "--json").stdout)


def test_name_merge_and_unassign_in_a_real_browser(index, served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    browser.get(served.base + "/people")
    assert "Not allowed" in browser.page_source, "a page without the token"
    browser.get(served.url)  # the printed address: the token, once; then a cookie
    assert browser.current_url.rstrip("/") == served.base, "the token stays in the address bar"
    cookie = browser.get_cookie("facewatch_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    browser.get(served.base + "/people")
    cards = browser.find_elements(By.CSS_SELECTOR, ".card[data-person]")
    assert len(cards) == 2
    crops = browser.find_elements(By.CSS_SELECTOR, ".card img.crop")
    wait_until(lambda: all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
                           for img in crops), timeout=30, message="the face crops")
    first, second = (int(c.get_attribute("data-person")) for c in cards)
    # name the first by typing into its name box, with HTML in the name
    box = browser.find_element(By.CSS_SELECTOR, f"#name-{first} input[name=name]")
    box.send_keys("Eileen <b>Collins</b> & co", Keys.ENTER)
    wait_until(lambda: "Eileen" in browser.find_element(By.CSS_SELECTOR, f"#person-{first} .name").text, timeout=30,
               message="the name on the page")
    name = browser.find_element(By.CSS_SELECTOR, f"#person-{first} .name")
    assert name.text == "Eileen <b>Collins</b> & co" and not name.find_elements(By.TAG_NAME, "b"), "HTML came in"
    assert {p["id"]: p["name"] for p in people(index)}[first] == "Eileen <b>Collins</b> & co"
    # merge: tick the second, merge it into the first
    browser.find_element(By.CSS_SELECTOR, f"#person-{second} input[type=checkbox]").click()
    browser.find_element(By.CSS_SELECTOR, f"select[name=into] option[value='{first}']").click()
    browser.find_element(By.ID, "merge-button").click()
    wait_until(lambda: browser.current_url.endswith(f"/person/{first}"), timeout=30, message="the merged person")
    (merged,) = people(index)
    assert merged["id"] == first and merged["faces"] == 6
    # not this person: the first face on the person's page leaves it
    buttons = browser.find_elements(By.CSS_SELECTOR, ".faces .card button")
    assert len(buttons) == 6
    buttons[0].click()
    wait_until(lambda: people(index)[0]["faces"] == 5, timeout=30, message="the face taken out")
    records = export(index)
    persons = [f["person"] for r in records.values() for f in r["faces"]]
    assert persons.count(None) == 1 and all(p == {"id": first, "name": "Eileen <b>Collins</b> & co"}
                                            for p in persons if p is not None)
    # the photo page: the picture with its boxes, the person of each face
    browser.get(served.base + f"/person/{first}")
    browser.find_element(By.CSS_SELECTOR, ".faces .card a").click()
    assert browser.find_elements(By.CSS_SELECTOR, ".ph .box") and "Eileen <b>Collins</b>" in browser.page_source.replace(
        "&lt;", "<").replace("&gt;", ">")
    assert served.stop() == 0


def test_requests_outside_the_index_and_without_the_token(index, served):
    assert served.get("/people", token=False)[0] == 401
    assert served.get("/picture/1/large", token=False)[0] == 401
    assert served.get("/healthz", token=False) == (200, "ok\n")
    status, metrics = served.get("/metrics", token=False)
    assert status == 200 and "facewatch_faces " in metrics
    for path in ("/picture/../../etc/passwd", "/picture/%2e%2e%2f%2e%2e%2fetc%2fpasswd/large", "/photo/999999",
                 "/picture/999999/large", "/crop/999999", "/person/999999", "/static/../../../etc/passwd"):
        status, body = served.get(path)
        assert status == 404 and "root:" not in body, path
    # a change without the form's CSRF value is refused, and so is a GET that would change anything
    request = urllib.request.Request(served.base + "/person/1/name", data=b"name=x", method="POST",
                                     headers={"Cookie": f"facewatch_token={served.token}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403
    assert served.get("/person/1/name")[0] == 405
    assert served.stop() == 0


def test_a_database_held_by_another_process_is_waited_for(index, served):
    """Another process holds the database's write lock for 3 s: a change made meanwhile waits and
    then goes through; pages read meanwhile (write-ahead log) answer. No 500, no traceback."""
    from conftest import peek
    database = Path(index).parent / "state" / "facewatch.db"
    person = people(index)[0]["id"]
    status, page = served.get("/people")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    other = sqlite3.connect(str(database), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    released = threading.Timer(3.0, lambda: other.execute("COMMIT"))
    released.start()
    try:
        assert served.get("/people")[0] == 200
        request = urllib.request.Request(served.base + f"/person/{person}/name", data=f"name=Held&csrf={csrf}".encode(),
                                         method="POST", headers={"Cookie": f"facewatch_token={served.token}",
                                                                 "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.status == 200 and "Traceback" not in answer.read().decode()
    finally:
        released.join()
        other.close()
    assert peek(index, f"SELECT name FROM persons WHERE person_id = {person}") == "Held"
    assert served.stop() == 0


def test_the_daemon_serves_the_web_interface_with_web_listen(tmp_path, daemon, photo_dir):
    port = _free_port()
    config = write_config(tmp_path, web={"listen": f"127.0.0.1:{port}"})
    d = daemon(config)
    token = (tmp_path / "state" / "facewatch.db.web-token")
    wait_until(token.exists, timeout=30, message="the token")
    assert oct(token.stat().st_mode & 0o777) == "0o600"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as r:
        assert r.read() == b"ok\n"
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Cookie": f"facewatch_token={token.read_text().strip()}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert "Overview" in r.read().decode()
    assert d.stop() == 0


def test_the_unit_opens_the_network_only_for_web_listen():
    from facewatch.service.unit import render_unit
    closed = render_unit("/opt/facewatch/bin/facewatch", "/etc/facewatch/config.yaml")
    assert "PrivateNetwork=yes" in closed and "RestrictAddressFamilies=AF_UNIX\n" in closed
    opened = render_unit("/opt/facewatch/bin/facewatch", "/etc/facewatch/config.yaml", metrics_listen="127.0.0.1:8750")
    assert "PrivateNetwork=yes" not in opened and "AF_INET" in opened and "IPAddressAllow=localhost" in opened


def test_a_database_that_stays_busy_is_said_so_not_a_traceback(index, monkeypatch):
    """Past the store's own wait (StoreBusy), the page says the index is busy: 503, no traceback."""
    from facewatch.config import load_config
    from facewatch.store import StoreBusy, open_store
    from facewatch.web.app import create_app
    from facewatch.web.security import csrf_value
    store = open_store(yaml_database(index))

    def busy(*args, **kwargs):
        raise StoreBusy("the database is locked by another process")
    monkeypatch.setattr(store, "name_person", busy)
    client = create_app(load_config(str(index)), store, "t0ken").test_client()
    client.set_cookie("facewatch_token", "t0ken")
    answer = client.post("/person/1/name", data={"name": "x", "csrf": csrf_value("t0ken")})
    assert answer.status_code == 503
    page = answer.get_data(as_text=True)
    assert "cannot be read or written just now" in page and "Traceback" not in page
    store.close()


def yaml_database(config: Path) -> str:
    import yaml
    return yaml.safe_load(config.read_text())["database"]
