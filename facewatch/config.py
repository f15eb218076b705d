"""config.yaml -> frozen dataclasses; every mistake is reported with the file and the key."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Optional, Union

import yaml

SEARCH_PATHS = ("./config.yaml", "/etc/facewatch/config.yaml")
# phones' HEIC/HEIF/AVIF and cameras' RAW files too (any RAW LibRaw reads may be added)
DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".hif", ".avif",
                      ".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".orf", ".rw2", ".raf", ".pef")


class ConfigError(Exception):
    """A configuration problem, already worded as the one line a user should read."""


@dataclass(frozen=True)
class WatchConfig:
    paths: tuple = ()
    recursive: bool = True
    extensions: tuple = DEFAULT_EXTENSIONS
    polling: bool = False
    follow_symlinks: bool = False


@dataclass(frozen=True)
class ProcessingConfig:
    batch_size: int = 32
    max_batch_wait_s: float = 0.05
    workers: Union[int, str] = "auto"
    settle_s: float = 1.0
    max_pixels: int = 200_000_000
    max_attempts: int = 5
    min_decode_side: int = 480

    @property
    def worker_count(self) -> int:
        return (os.cpu_count() or 1) if self.workers == "auto" else int(self.workers)


@dataclass(frozen=True)
class DetectorConfig:
    model: str = "full_range"
    min_confidence: float = 0.5
    small_faces: str = "auto"  # auto | always | off: look again, in tiles, for faces too small for one pass


@dataclass(frozen=True)
class PeopleConfig:
    enabled: bool = True  # embed every face and group faces into people (facewatch/people.py)
    match_distance: float = 0.5  # how alike two faces must be to be one person's (dlib's 128-D space)
    min_faces: int = 2  # faces of as many photos that start a new person


@dataclass(frozen=True)
class ScheduleConfig:
    checkpoint_interval_s: float = 60
    reconcile_interval_s: float = 3600
    full_reconcile_interval_s: float = 86400
    keep_checkpoints: int = 1440  # of each kind (daemon, scan): a day of the daemon's, at one a minute


@dataclass(frozen=True)
class MetricsConfig:
    textfile: Optional[str] = None  # write Prometheus metrics here (node_exporter's textfile collector)
    listen: Optional[str] = None  # host:port (or a port: loopback) to serve /metrics over HTTP


@dataclass(frozen=True)
class WebConfig:
    listen: Optional[str] = None  # host:port: the daemon also serves the web interface (facewatch/web)


@dataclass(frozen=True)
class MetadataConfig:
    write_xmp: str = "off"  # off | sidecar: MWG face regions and names in XMP sidecars (facewatch/metadata/xmp.py)
    sidecar_name: str = "darktable"  # darktable (photo.jpg.xmp, digiKam too) | lightroom (photo.xmp)
    read_xmp: bool = True  # names already in a photo's XMP (embedded or sidecar) name its faces


@dataclass(frozen=True)
class LoggingConfig:
    format: str = "auto"
    level: str = "info"


@dataclass(frozen=True)
class Config:
    watch: WatchConfig = field(default_factory=WatchConfig)
    database: str = "/var/lib/facewatch/facewatch.db"
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    people: PeopleConfig = field(default_factory=PeopleConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    web: WebConfig = field(default_factory=WebConfig)
    source: Optional[str] = None  # the file it was read from

    def with_paths(self, paths) -> "Config":
        return replace(self, watch=replace(self.watch, paths=tuple(paths)))


def find_config(explicit: Optional[str]) -> Path:
    """The config file to read: --config, then $FACEWATCH_CONFIG, then the search paths."""
    if explicit:
        return Path(explicit)
    if os.environ.get("FACEWATCH_CONFIG"):
        return Path(os.environ["FACEWATCH_CONFIG"])
    for candidate in SEARCH_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise ConfigError(
        "no config file: pass --config PATH, set FACEWATCH_CONFIG, or create "
        + " or ".join(SEARCH_PATHS))


def load_config(explicit: Optional[str] = None) -> Config:
    path = find_config(explicit)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    return parse_config(raw if raw is not None else {}, path)


def parse_config(raw: Any, path: Path) -> Config:
    base = path.resolve().parent

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {problem}")

    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    values = _section(Config, raw, "", fail)
    watch = values["watch"]
    if not watch.paths:
        raise fail("watch.paths", "required: list one or more folders to watch")
    watch_paths = tuple(str((base / p).resolve()) if not os.path.isabs(p) else os.path.normpath(p)
                        for p in watch.paths)
    values["watch"] = replace(watch, paths=watch_paths)
    database = values["database"]
    if not database.startswith(("postgresql://", "postgres://")):
        values["database"] = database if os.path.isabs(database) else str(base / database)
    metrics = values["metrics"]
    if metrics.textfile and not os.path.isabs(metrics.textfile):
        values["metrics"] = replace(metrics, textfile=str(base / metrics.textfile))
    values["source"] = str(path)
    return Config(**values)


def _section(cls, raw: Any, prefix: str, fail) -> dict:
    if not isinstance(raw, dict):
        raise fail(prefix.rstrip(".") or "config", "expected a mapping of settings")
    known = {f.name: f for f in fields(cls) if f.name != "source"}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise fail(f"{prefix}{key}", "unknown key (known: " + ", ".join(sorted(known)) + ")")
        default = known[key].default_factory() if callable(known[key].default_factory) else known[key].default
        name = f"{prefix}{key}"
        if is_dataclass(default):
            values[key] = type(default)(**_section(type(default), value if value is not None else {},
                                                   name + ".", fail))
        else:
            values[key] = _check(name, value, fail)
    for name, f in known.items():
        if name not in values:
            values[name] = f.default_factory() if callable(f.default_factory) else f.default
    return values


def _positive_int(name, value, fail, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise fail(name, f"expected a whole number >= {minimum}, got {value!r}")
    return value


def _non_negative_float(name, value, fail, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and value == 0):
        kind = "a number > 0" if positive else "a number >= 0"
        raise fail(name, f"expected {kind}, got {value!r}")
    return float(value)


def _bool(name, value, fail):
    if not isinstance(value, bool):
        raise fail(name, f"expected true or false, got {value!r}")
    return value


def _choice(name, value, fail, choices):
    if value not in choices:
        raise fail(name, f"expected one of {' | '.join(choices)}, got {value!r}")
    return value


def _check(name: str, value: Any, fail) -> Any:
    """Validate one leaf value; returns it normalised."""
    if name == "watch.paths":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise fail(name, f"expected a list of folder paths, got {value!r}")
        return tuple(os.path.expanduser(p) for p in value)
    if name == "watch.extensions":
        if not isinstance(value, list) or not value or not all(isinstance(e, str) and e for e in value):
            raise fail(name, f"expected a list of file extensions such as [.jpg, .png], got {value!r}")
        return tuple(dict.fromkeys(e.lower() if e.startswith(".") else "." + e.lower() for e in value))
    if name in ("watch.recursive", "watch.polling", "watch.follow_symlinks", "people.enabled", "metadata.read_xmp"):
        return _bool(name, value, fail)
    if name == "database":
        if not isinstance(value, str) or not value:
            raise fail(name, f"expected the path of an SQLite file or a postgresql:// URL, got {value!r}")
        if value.startswith(("postgresql://", "postgres://")):
            return value
        if "://" in value:
            raise fail(name, f"expected the path of an SQLite file or a postgresql:// URL, got "
                             f"{value.split('://')[0]}:// (only PostgreSQL servers are supported)")
        return os.path.expanduser(value)
    if name == "processing.workers":
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail(name, f"expected auto or a whole number >= 1, got {value!r}")
        return value
    if name in ("processing.batch_size", "processing.max_attempts", "schedule.keep_checkpoints", "people.min_faces"):
        return _positive_int(name, value, fail)
    if name == "processing.max_pixels":
        return _positive_int(name, value, fail, minimum=1000)
    if name == "processing.min_decode_side":
        return _positive_int(name, value, fail, minimum=0)
    if name in ("processing.max_batch_wait_s", "processing.settle_s"):
        return _non_negative_float(name, value, fail)
    if name in ("schedule.checkpoint_interval_s", "schedule.reconcile_interval_s",
                "schedule.full_reconcile_interval_s"):
        return _non_negative_float(name, value, fail, positive=True)
    if name == "detector.small_faces":
        if value is False:  # YAML reads an unquoted `off` as false
            return "off"
        return _choice(name, value, fail, ("auto", "always", "off"))
    if name == "detector.model":
        return _choice(name, value, fail, ("full_range", "short_range"))
    if name == "detector.min_confidence":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise fail(name, f"expected a number from 0 to 1, got {value!r}")
        return float(value)
    if name == "people.match_distance":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1.2:
            raise fail(name, f"expected a number above 0 and at most 1.2 (dlib's same-person distance is 0.6), "
                             f"got {value!r}")
        return float(value)
    if name == "metrics.textfile":
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise fail(name, f"expected a file's path (node_exporter reads *.prom files), got {value!r}")
        return os.path.expanduser(value)
    if name in ("metrics.listen", "web.listen"):
        if value is None:
            return None
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        host, _, port = text.rpartition(":") if isinstance(text, str) else ("", "", "")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise fail(name, f"expected host:port or a port (such as 127.0.0.1:{'9109' if name == 'metrics.listen' else '8750'}), got {value!r}")
        return f"{host.strip('[]') or '127.0.0.1'}:{port}"
    if name == "metadata.write_xmp":
        if value is False:  # YAML reads an unquoted `off` as false
            return "off"
        return _choice(name, value, fail, ("off", "sidecar"))
    if name == "metadata.sidecar_name":
        return _choice(name, value, fail, ("darktable", "lightroom"))
    if name == "logging.format":
        return _choice(name, value, fail, ("auto", "json", "console"))
    if name == "logging.level":
        level = value.lower() if isinstance(value, str) else value
        return _choice(name, level, fail, ("debug", "info", "warning", "error"))
    raise fail(name, "unknown key")
