"""Files written for security reasons: exclusive 0600 secret files, shredding, atomic replace.

Secret files (the per-run rclone config, a sample list) are created with
``O_CREAT|O_EXCL|O_NOFOLLOW`` and mode 0600 inside a 0700 tmpfs directory
(:mod:`ghost_backup.host.runtime`) and shredded when the run ends. Public records (the state
file, the metrics textfile) are replaced atomically so a reader never sees half of one.
Reading secret files (systemd credentials, token files) is :mod:`ghost_backup.host.secret_files`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_private_file(directory: Path, name: str, content: str,
                       dir_fd: int | None = None) -> Path:
    """Create ``directory/name`` exclusively with mode 0600 and write ``content``; relative to
    ``dir_fd`` (``directory``, opened and checked) when given."""
    path = directory / name
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path if dir_fd is None else name, flags, 0o600, dir_fd=dir_fd)
    try:
        os.fchmod(fd, 0o600)
        data = memoryview(content.encode())
        while data:  # os.write may write less than asked (a filling tmpfs)
            data = data[os.write(fd, data):]
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path if dir_fd is None else name, dir_fd=dir_fd)
        raise
    os.close(fd)
    return path


def shred_file(path: Path | str, dir_fd: int | None = None) -> None:
    """Overwrite ``path`` with zeros, fsync, unlink (a symlink is unlinked, never followed);
    ``path`` is a name relative to ``dir_fd`` when that is given.

    Defence in depth only: on tmpfs with a short life the real guarantee is that the bytes
    never reached a disk (shred(1) itself cannot promise more on modern filesystems).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dir_fd)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path, dir_fd=dir_fd)
        return
    try:
        size = os.fstat(fd).st_size
        if size:
            os.pwrite(fd, b"\0" * size, 0)
            os.fsync(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path, dir_fd=dir_fd)


def write_file_atomically(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` with ``text`` atomically: temp file, fsync, rename, fsync directory.

    The temporary name starts with a dot and ends in ``.tmp``, so node_exporter's textfile
    collector (which reads ``*.prom`` only) never sees it. Raise OSError on failure, leaving
    the previous file untouched.
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a process with our pid that died mid-write
    fd = os.open(tmp, flags, mode)
    try:
        os.fchmod(fd, mode)  # the umask filters os.open's mode; make it exact
        os.write(fd, text.encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing and make it mode 0700; return it.

    For persistent caches that hold no secret but describe the source tree (paths, sizes,
    hashes): readable by the service user only. Raise OSError if it cannot be made so.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise NotADirectoryError(20, "not a directory", str(path))
    if path.stat().st_mode & 0o777 != 0o700:
        path.chmod(0o700)
    return path
