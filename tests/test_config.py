"""Configuration: the lookup order, the defaults, and one clear line with exit 2 for each mistake."""
import os

import pytest
import yaml
from click.testing import CliRunner

from facewatch.cli.main import main
from facewatch.config import Config, ConfigError, load_config


def write(path, raw):
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return path


def test_every_key_has_the_interface_default(tmp_path):
    cfg = load_config(str(write(tmp_path / "c.yaml", {"watch": {"paths": ["/srv/photos"]}})))
    assert cfg.watch.paths == ("/srv/photos",)
    assert cfg.watch.recursive is True and cfg.watch.polling is False
    assert cfg.watch.extensions[:7] == (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
    assert {".heic", ".heif", ".avif", ".dng", ".cr2", ".nef", ".arw"} <= set(cfg.watch.extensions)  # INTERFACE.md, 2026-12
    assert cfg.database == "/var/lib/facewatch/facewatch.db"
    p = cfg.processing
    assert (p.batch_size, p.max_batch_wait_s, p.workers, p.settle_s) == (32, 0.05, "auto", 1.0)
    assert p.worker_count == os.cpu_count()
    assert (cfg.detector.model, cfg.detector.min_confidence, cfg.detector.small_faces) == ("full_range", 0.5, "auto")
    assert (cfg.schedule.checkpoint_interval_s, cfg.schedule.reconcile_interval_s) == (60, 3600)
    assert (cfg.logging.format, cfg.logging.level) == ("auto", "info")


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    cfg = load_config(str(write(tmp_path / "c.yaml", {"watch": {"paths": ["./photos"]}, "database": "x.db"})))
    assert cfg.watch.paths == (str(tmp_path / "photos"),)
    assert cfg.database == str(tmp_path / "x.db")


def test_extensions_are_case_insensitive(tmp_path):
    cfg = load_config(str(write(tmp_path / "c.yaml", {"watch": {"paths": ["/p"], "extensions": ["JPG", ".Png"]}})))
    assert cfg.watch.extensions == (".jpg", ".png")


def test_lookup_order(tmp_path, monkeypatch):
    a = write(tmp_path / "a.yaml", {"watch": {"paths": ["/from-env"]}})
    local = tmp_path / "cwd"
    local.mkdir()
    write(local / "config.yaml", {"watch": {"paths": ["/from-cwd"]}})
    monkeypatch.chdir(local)
    monkeypatch.delenv("FACEWATCH_CONFIG", raising=False)
    assert load_config().watch.paths == ("/from-cwd",)
    monkeypatch.setenv("FACEWATCH_CONFIG", str(a))
    assert load_config().watch.paths == ("/from-env",)
    explicit = write(tmp_path / "b.yaml", {"watch": {"paths": ["/explicit"]}})
    assert load_config(str(explicit)).watch.paths == ("/explicit",)


@pytest.mark.parametrize("raw, expected", [
    ("watch: {paths: [/p]\n", "invalid YAML"),
    ({"watch": {"paths": ["/p"]}, "colour": 1}, "colour: unknown key"),
    ({"watch": {"paths": ["/p"], "recursiv": True}}, "watch.recursiv: unknown key"),
    ({"watch": {}}, "watch.paths: required"),
    ({"watch": {"paths": ["/p"]}, "processing": {"batch_size": 0}}, "processing.batch_size: expected a whole number >= 1, got 0"),
    ({"watch": {"paths": ["/p"]}, "processing": {"workers": "many"}}, "processing.workers: expected auto or a whole number"),
    ({"watch": {"paths": ["/p"]}, "processing": {"settle_s": -1}}, "processing.settle_s: expected a number >= 0"),
    ({"watch": {"paths": ["/p"]}, "detector": {"model": "huge"}}, "detector.model: expected one of full_range | short_range"),
    ({"watch": {"paths": ["/p"]}, "detector": {"min_confidence": 1.5}}, "detector.min_confidence: expected a number from 0 to 1"),
    ({"watch": {"paths": ["/p"], "polling": "yes"}}, "watch.polling: expected true or false"),
    ({"watch": {"paths": ["/p"]}, "logging": {"format": "xml"}}, "logging.format: expected one of"),
    ({"watch": {"paths": ["/p"]}, "schedule": {"reconcile_interval_s": 0}}, "schedule.reconcile_interval_s: expected a number > 0"),
])
def test_a_bad_config_exits_2_with_one_line_naming_file_and_key(tmp_path, raw, expected):
    path = write(tmp_path / "config.yaml", raw)
    result = CliRunner().invoke(main, ["--config", str(path), "status"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert str(path) in lines[0] and expected in lines[0]


def test_a_missing_config_file_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "nope.yaml"), "status"])
    assert result.exit_code == 2
    assert "nope.yaml: file not found" in result.output


def test_config_is_frozen(tmp_path):
    cfg = load_config(str(write(tmp_path / "c.yaml", {"watch": {"paths": ["/p"]}})))
    with pytest.raises(Exception):
        cfg.database = "x"
    assert isinstance(cfg, Config)


def test_config_error_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        load_config(str(write(tmp_path / "c.yaml", "- a list\n")))


def test_small_faces_off_may_be_written_unquoted(tmp_path):
    (tmp_path / "c.yaml").write_text("watch:\n  paths: [/srv/photos]\ndetector:\n  small_faces: off\n")
    assert load_config(str(tmp_path / "c.yaml")).detector.small_faces == "off"
    (tmp_path / "c.yaml").write_text("watch:\n  paths: [/srv/photos]\ndetector:\n  small_faces: sometimes\n")
    with pytest.raises(ConfigError, match="detector.small_faces: expected one of auto | always | off"):
        load_config(str(tmp_path / "c.yaml"))
