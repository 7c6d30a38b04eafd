"""Reading an admin's files safely: regular files only, opened without blocking, never outside the project.

A FIFO, a device or a socket would block the reader for ever or feed it without end; a symlink out of the
project folder would show another file's content in the errors. Such files are refused with a reason that names
their kind, never their content. Symlinks are followed only where they lead inside the project, and symlinked
folders are not walked at all (no loops, no trees from elsewhere).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from automator.config.problems import Problem

# O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
_SYMLINK_OUT = "a symlink leading outside the project folder; it is not read"
_SYMLINK_OUT_HINT = "keep the file itself inside the project folder"


def kind_of(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    for test, word in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISLNK, "a symlink that leads nowhere (a loop)")):
        if test(mode):
            return word
    return "a special file"


def is_inside(real: str, folder: str) -> bool:
    """Whether the real path `real` is `folder` or lies under it (both already resolved)."""
    return real == folder or real.startswith(folder.rstrip(os.sep) + os.sep)


def _not_regular(display_path: str, mode: int) -> Problem:
    return Problem(display_path, 1, 1, f"not a regular file ({kind_of(mode)}); it is not read",
                   "only regular files are read: remove it or put a regular file in its place")


def read_file(path: str | Path, display_path: str, max_bytes: int, *,
              within: str | Path | None = None) -> tuple[bytes | None, Problem | None]:
    """At most `max_bytes + 1` bytes of a regular file, or a Problem saying why it was not read.

    Never blocks on a FIFO or a device: only a regular file is read, checked before opening (lstat of the
    real path) and again on the opened descriptor (fstat), so a file swapped in between is caught too. With
    `within` (a folder), a file whose real path lies outside it (through a symlink) is refused unread.
    """
    try:
        real = os.path.realpath(path)
        if within is not None:
            folder = os.path.realpath(within)
            if not is_inside(real, folder):
                return None, Problem(display_path, 1, 1, _SYMLINK_OUT, _SYMLINK_OUT_HINT)
        mode = os.lstat(real).st_mode
        if stat.S_ISDIR(mode) and os.path.islink(path):
            return None, Problem(display_path, 1, 1, "a symlink to a folder; folders behind symlinks are not read",
                                 "move or copy the folder itself into the project")
        if not stat.S_ISREG(mode):
            return None, _not_regular(display_path, mode)
        # O_NOFOLLOW: the real path's last part turned into a symlink since realpath() is refused by the kernel.
        fd = os.open(real, _OPEN_FLAGS | getattr(os, "O_NOFOLLOW", 0))
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return None, _not_regular(display_path, info.st_mode)
            if within is not None and not _opened_inside(fd, folder):
                return None, Problem(display_path, 1, 1, _SYMLINK_OUT, _SYMLINK_OUT_HINT)
            chunks: list[bytes] = []
            size = 0
            while size <= max_bytes:
                chunk = os.read(fd, max_bytes + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            raw = b"".join(chunks)
            if len(raw) > max_bytes:
                return None, too_large(display_path, max(info.st_size, len(raw)), max_bytes)
            return raw, None
        finally:
            os.close(fd)
    except OSError as err:
        return None, Problem(display_path, 1, 1, f"cannot read the file: {err.strerror or err}")


def _opened_inside(fd: int, folder: str) -> bool:
    """Whether the kernel's own name for what `fd` opened lies in `folder` (a folder swapped for a symlink
    between realpath() and open() is caught here); True where /proc does not say."""
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return True
    return is_inside(opened, folder)


def too_large(display_path: str, size: int, max_bytes: int) -> Problem:
    """The Problem of a file over the size limit."""
    return Problem(display_path, 1, 1, f"file is too large ({size:,} bytes; the limit is {max_bytes:,})",
                   "split it into several files")


def walk_yaml(base: Path, suffix: str = ".yaml") -> list[Path]:
    """Files named `*<suffix>` at any depth under `base`, sorted, plus every symlinked folder met on the way.

    Symlinked folders are not walked (a loop, or a tree from outside the project, could be behind them); they
    are returned as they are, so that reading them reports them (see `read_file`) instead of their rules being
    silently left out.
    """
    found: list[Path] = []
    for folder, dirs, files in os.walk(base, followlinks=False):
        here = Path(folder)
        found.extend(here / name for name in dirs if os.path.islink(here / name))
        found.extend(here / name for name in files if name.endswith(suffix))
    return sorted(found)
