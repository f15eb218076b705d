"""The thin CLI: status stays light and honest before anything exists; helpers say what they did."""
import json
import subprocess
import sys

from conftest import facewatch, write_config


def test_status_before_anything_exists(tmp_path):
    config = write_config(tmp_path)
    s = json.loads(facewatch(config, "status", "--json").stdout)
    assert s["daemon"]["running"] is False and s["checkpoint"] is None
    assert s["files"] == {"total": 0, "done": 0, "failed": 0, "missing": 0, "with_faces": 0}
    assert s["queue"] == {"pending": 0, "processing": 0} and s["faces"] == 0
    assert s["watch"] == [str(tmp_path / "photos")]
    assert not (tmp_path / "state").exists(), "status must not create the database"
    assert "not running" in facewatch(config, "status").stdout


def test_status_imports_nothing_heavy(tmp_path):
    """`status` answers in a tenth of a second because it imports no image stack, no numpy, no
    database driver it does not need and no daemon machinery (bench/scale.py times it)."""
    config = write_config(tmp_path)
    heavy = ("numpy", "cv2", "mediapipe", "PIL", "dlib", "onnxruntime", "psycopg", "psycopg_pool", "watchdog",
             "apscheduler", "prometheus_client", "structlog", "xxhash")
    code = ("import sys\nfrom facewatch.cli.main import main\n"
            "try:\n    main(['--config', sys.argv[1], 'status', '--json'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["daemon"]["running"] is False
    assert out.stderr.strip() == "[]", out.stderr


def test_the_command_starts_the_analyser_server_only_for_commands_that_analyse():
    from facewatch.__main__ import ANALYSING, command
    assert command(["scan"]) == "scan" and command(["--config", "run", "status"]) == "status"
    assert command(["--config", "/etc/x.yaml", "resume", "--checkpoint-every", "5"]) == "resume"
    assert command(["--version"]) == "" and command([]) == ""
    assert {command([c]) for c in ("run", "scan", "resume")} == ANALYSING
    assert command(["export", "scan"]) not in ANALYSING


def test_the_daemon_and_scan_processes_leave_the_image_stack_to_the_analysers():
    # numpy, OpenCV, Pillow and MediaPipe load in the analyser server, once; the main process
    # would pay a tenth of a second for them at every start, on the path to the first photo
    code = ("import sys, facewatch.__main__, facewatch.cli.main, facewatch.service.scan, facewatch.service.daemon\n"
            "print(sorted(m for m in ('numpy', 'cv2', 'PIL', 'mediapipe', 'xxhash') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_install_unit_points_at_this_installation(tmp_path):
    out = facewatch(write_config(tmp_path), "install-unit", "--output", "-").stdout
    exec_start = [line for line in out.splitlines() if line.startswith("ExecStart=")]
    assert exec_start == [f"ExecStart={sys.prefix}/bin/facewatch --config /etc/facewatch/config.yaml run"]
    assert "Type=notify" in out and "WatchdogSec=" in out


def test_retry_needs_paths_or_all(tmp_path):
    result = facewatch(write_config(tmp_path), "retry", check=False)
    assert result.returncode == 2 and "--all" in result.stderr


def test_scan_of_a_path_that_is_not_a_folder(tmp_path):
    result = facewatch(write_config(tmp_path), "scan", str(tmp_path / "nope"), check=False)
    assert result.returncode == 2 and "not a folder" in result.stderr


def test_install_unit_for_a_postgresql_index_reaches_that_server_only(tmp_path):
    config = write_config(tmp_path, database="postgresql://fw:secret@10.1.2.3:5432/facewatch")
    unit = facewatch(config, "install-unit", "--config-file", str(config), "--output", "-").stdout
    assert "PrivateNetwork=yes" not in unit and "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in unit
    assert "IPAddressDeny=any\nIPAddressAllow=10.1.2.3" in unit and "Wants=network-online.target" in unit
    assert "secret" not in unit
    local = facewatch(config, "install-unit", "--config-file", str(tmp_path / "none.yaml"), "--output", "-").stdout
    assert "PrivateNetwork=yes" in local and "RestrictAddressFamilies=AF_UNIX\n" in local


def test_a_database_url_of_another_kind_is_refused(tmp_path):
    config = write_config(tmp_path, database="mysql://fw@db/facewatch")
    out = facewatch(config, "status", check=False)
    assert out.returncode == 2 and "only PostgreSQL servers are supported" in out.stderr


def test_install_unit_for_metrics_over_http(tmp_path):
    config = write_config(tmp_path, metrics={"listen": "127.0.0.1:9109"})
    unit = facewatch(config, "install-unit", "--config-file", str(config), "--output", "-").stdout
    assert "PrivateNetwork=yes" not in unit and "AF_INET" in unit and "IPAddressAllow=localhost" in unit
    (tmp_path / "bad").mkdir()
    bad = write_config(tmp_path / "bad", metrics={"listen": "nowhere"})
    out = facewatch(bad, "status", check=False)
    assert out.returncode == 2 and "metrics.listen: expected host:port" in out.stderr
