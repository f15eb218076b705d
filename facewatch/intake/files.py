"""Which files are images to analyse, and walking a tree of them without following it out."""
from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import structlog

from facewatch.config import WatchConfig
from facewatch.store import FileStat

log = structlog.get_logger("facewatch.intake.files")


def is_image_name(path: str, extensions: tuple) -> bool:
    """A watched extension, and not hidden: rsync, Syncthing and browsers write partial files as dotfiles."""
    name = os.path.basename(path)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def available(root: str) -> bool:
    """Whether `root` can be listed now (absent or unreadable: an outage, not a deletion)."""
    try:
        with os.scandir(root):
            return True
    except OSError:
        return False


def stat_file(path: str, watch: WatchConfig, root: Optional[str] = None) -> Optional[FileStat]:
    """A FileStat for an image file at `path`, or None (gone, a folder, a link out of the root)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or not is_image_name(path, watch.extensions):
        return None
    if root is not None and not watch.follow_symlinks and os.path.islink(path):
        if not inside(os.path.realpath(path), os.path.realpath(root)):
            return None
    return FileStat(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class Folder:
    """One folder as a walk found it."""
    path: str
    mtime_ns: int
    files: Optional[list]  # its image files; None when `unchanged` said not to look at them
    complete: bool  # read whole (False: unreadable, or gone while we walked)


def walk(root: str, watch: WatchConfig,
         unchanged: Callable[[str, int], bool] = lambda path, mtime_ns: False) -> Iterator[Folder]:
    """`root` and, if recursive, every folder below it, one at a time.

    A million files never sit in memory together. A folder for which `unchanged(path, mtime_ns)`
    is true is only searched for subfolders: its files are neither listed nor stat'ed. Symlinked
    folders are not entered unless `follow_symlinks`; then each real folder is entered once.
    """
    real_root = os.path.realpath(root)
    visited: set = set()
    stack = [root]
    while stack:
        path = stack.pop()
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) in visited:
                continue
            visited.add((st.st_dev, st.st_ino))
            files = None if unchanged(path, st.st_mtime_ns) else []
            with os.scandir(path) as entries:
                for entry in entries:
                    _visit(entry, watch, real_root, files, stack)
        except FileNotFoundError:  # moved or deleted while we walked: the watcher or the next walk sees it
            yield Folder(path, 0, [], False)
            continue
        except OSError as exc:
            log.warning("folder_unreadable", path=path, error=exc.strerror or str(exc))
            yield Folder(path, 0, [], False)
            continue
        yield Folder(path, st.st_mtime_ns, files, True)


def _visit(entry: os.DirEntry, watch: WatchConfig, real_root: str, files: Optional[list], stack: list) -> None:
    try:
        is_link = entry.is_symlink()
        if is_link and not watch.follow_symlinks and not inside(os.path.realpath(entry.path), real_root):
            return
        if entry.is_dir():
            if watch.recursive and (not is_link or watch.follow_symlinks):
                stack.append(entry.path)
            return
        name = entry.name
        if files is None or name[0] == "." or os.path.splitext(name)[1].lower() not in watch.extensions:
            return
        st = entry.stat()
        if stat.S_ISREG(st.st_mode):
            files.append(FileStat(entry.path, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    except OSError:
        pass  # vanished while we looked: the watcher or the next reconcile will say so


def write_atomically(path: str, data: bytes, mode: int = 0o644) -> None:
    """`data` at `path`, whole or not at all: written beside it, then renamed over it."""
    fd, tmp = tempfile.mkstemp(prefix=".facewatch-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
