"""The systemd unit, filled in for this installation."""
from __future__ import annotations

import os
from importlib import resources

from facewatch.store import is_url

TEMPLATE_EXEC = "ExecStart=/opt/facewatch/bin/facewatch --config /etc/facewatch/config.yaml run"


def render_unit(executable: str, config_file: str, database: str = "", metrics_listen: str = "",
                sidecar_folders: tuple = ()) -> str:
    """The unit for this installation; a PostgreSQL `database` (a URL) opens TCP to its server only,
    `metrics_listen` (host:port) lets scrapers reach that address, `sidecar_folders` (the watched
    folders, with metadata.write_xmp: sidecar) may be written: nothing else of the photos."""
    template = resources.files("facewatch.service").joinpath("facewatch.service").read_text(encoding="utf-8")
    assert TEMPLATE_EXEC in template, "the unit template lost its ExecStart line"
    text = template.replace(TEMPLATE_EXEC, f"ExecStart={executable} --config {config_file} run")
    if is_url(database):
        text = with_network(text, database)
    if metrics_listen:
        text = with_metrics(text, metrics_listen)
    if sidecar_folders:
        text = with_sidecars(text, sidecar_folders)
    return text


def with_sidecars(text: str, folders) -> str:
    """The unit, allowed to write in the watched folders (XMP sidecars beside the photos; the
    photos themselves are never written): ReadWritePaths= overrides ProtectSystem= and
    ProtectHome=read-only there and only there."""
    anchor = "ProtectHome=read-only\n"
    assert anchor in text, "the unit template lost ProtectHome=read-only"
    lines = "".join(f"ReadWritePaths={folder}\n" for folder in folders)
    return text.replace(anchor, anchor + "# metadata.write_xmp: sidecar: XMP sidecars are written beside the photos\n" + lines)


def with_metrics(text: str, listen: str) -> str:
    """The unit with the host's network (a private one is unreachable) and TCP, for /metrics and the
    web interface (`listen`: their host:port, comma-separated)."""
    text = text.replace("PrivateNetwork=yes\n", "")
    if "AF_INET" not in text:
        text = text.replace("RestrictAddressFamilies=AF_UNIX", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6")
    hosts = [address.rpartition(":")[0].strip("[]") for address in listen.split(",") if address]
    if all(host in ("127.0.0.1", "::1", "localhost") for host in hosts):
        text = text.replace("IPAddressDeny=any", "IPAddressDeny=any\nIPAddressAllow=localhost")
    else:  # scrapers from elsewhere: any address may connect
        text = text.replace("IPAddressDeny=any\n", "").replace("IPAddressAllow=", "# IPAddressAllow=")
    return text


def with_network(text: str, url: str) -> str:
    """The hardened unit, allowed to reach the PostgreSQL server of `url` and nothing else (when
    the server is named by address; a host name cannot be, so any address is allowed then)."""
    import ipaddress
    from urllib.parse import urlsplit
    host = urlsplit(url).hostname or ""
    for old, new in (
            ("After=local-fs.target remote-fs.target",
             "After=local-fs.target remote-fs.target network-online.target\nWants=network-online.target"),
            ("PrivateNetwork=yes\n", ""),
            ("RestrictAddressFamilies=AF_UNIX", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"),
            ("# hardening: facewatch reads photos, writes /var/lib/facewatch and talks to nobody",
             f"# hardening: facewatch reads photos and talks to its PostgreSQL server ({host}) only")):
        assert old in text, f"the unit template lost {old!r}"
        text = text.replace(old, new)
    try:
        address = ipaddress.ip_address(host)
        text = text.replace("IPAddressDeny=any", f"IPAddressDeny=any\nIPAddressAllow={address}")
    except ValueError:  # a name (or a socket folder): the addresses it resolves to may change
        text = text.replace("IPAddressDeny=any\n", "")
    return text


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
