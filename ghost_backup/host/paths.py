"""Directories someone else could swap or write into, found before we write into them.

A root-owned process that writes below a path follows every symlink on the way: rclone's local
backend creates missing directories and files through symlinked directories without asking
(Go's ``os.MkdirAll``/``os.OpenFile`` follow links). Whoever can replace a component of the
path, or plant a link inside the tree while we write, chooses where our files land. These
checks find such paths beforehand; a directory only we (or root) can write to cannot change
under us afterwards.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path


def _foreign_writer(st: os.stat_result, *, owners: tuple[int, ...]) -> str | None:
    """Given a directory's stat, return who else could rename entries in it (None: nobody)."""
    if st.st_uid not in owners:
        return f"owned by uid {st.st_uid}"
    sticky = bool(st.st_mode & stat.S_ISVTX)  # /tmp: others may add, not rename ours
    if st.st_mode & stat.S_IWOTH and not sticky:
        return "writable by every user"
    if st.st_mode & stat.S_IWGRP and not sticky and st.st_gid not in (0, os.getegid()):
        return f"writable by group {st.st_gid}"
    return None


def find_unsafe_ancestor(path: Path) -> str | None:
    """Given an absolute, resolved path, return why another user could replace it, or None.

    Every ancestor must belong to root or to us, and be writable by no one else (a sticky
    directory such as ``/tmp`` is fine: others may not rename what we create in it).
    Raise OSError if an ancestor cannot be inspected.
    """
    owners = (0, os.geteuid())
    for parent in path.parents:
        problem = _foreign_writer(os.lstat(parent), owners=owners)
        if problem is not None:
            return f"{parent} is {problem}"
    return None


def find_unsafe_entry(root: Path, below: str | None = None) -> str | None:
    """Return the first entry that makes writing to ``root/below`` unsafe, or None.

    Looked at, without following links: every directory on the way from ``root`` to
    ``root/below``, then the whole tree below that (all of ``root`` when ``below`` is None).
    Unsafe: a symlink (a write through it lands wherever it points), and a directory that
    someone other than us could write into (they could plant one while we write).
    Raise OSError if the tree cannot be read.
    """
    owners = (os.geteuid(),)
    node = root
    for part in ("", *Path(below or "").parts):
        node = node / part if part else node
        try:
            st = os.lstat(node)
        except FileNotFoundError:
            return None  # created by the write itself, inside a directory checked above
        if stat.S_ISLNK(st.st_mode):
            return f"{node} is a symlink"
        if not stat.S_ISDIR(st.st_mode):
            return None  # a file is replaced by rename, never written through
        problem = _foreign_writer(st, owners=owners)
        if problem is not None:
            return f"{node} is {problem}"

    def fail(err: OSError) -> None:
        raise err

    for dirpath, dirnames, filenames in os.walk(node, onerror=fail):
        problem = _foreign_writer(os.lstat(dirpath), owners=owners)
        if problem is not None:
            return f"{dirpath} is {problem}"
        for name in (*dirnames, *filenames):
            entry = Path(dirpath) / name
            if entry.is_symlink():
                return f"{entry} is a symlink"
    return None


def create_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700, exactly); raise FileExistsError if anything is there.

    ``mkdir(2)`` never follows a symlink at the last component: a link or directory planted
    at ``path`` makes it fail instead of being used.
    """
    os.mkdir(path, 0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, 0o700)  # mkdir's mode is filtered by the umask; make it exact
    finally:
        os.close(fd)


def remove_dir_if_empty(path: Path) -> None:
    """Remove ``path`` if it is an empty directory (a restore that wrote nothing)."""
    with contextlib.suppress(OSError):
        path.rmdir()
