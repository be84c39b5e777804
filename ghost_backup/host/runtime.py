"""The ephemeral runtime directory: a private tmpfs directory, the lock, per-run directories.

Nothing here is ever on persistent disk: the runtime directory must be a tmpfs or ramfs
(proved with statfs(2), not assumed from the path), owned by us and mode 0700. Per-run files
are created exclusively (``O_CREAT|O_EXCL|O_NOFOLLOW``) with mode 0600, and removed by
overwriting and unlinking. Overwriting is defence in depth only (shred(1) itself says it
cannot promise more on modern filesystems); tmpfs plus a short life is the real guarantee.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

from ghost_backup.errors import RuntimeUnsafe, TemporaryFailure
from ghost_backup.host.files import shred_file
from ghost_backup.host.libc import RAMFS_MAGIC, TMPFS_MAGIC, read_fs_magic_fd
from ghost_backup.host.paths import find_unsafe_ancestor

log = logging.getLogger(__name__)

RUN_DIR_PREFIX = "run-"
LOCK_NAME = "lock"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_runtime_dir(path: Path) -> int:
    """Make sure ``path`` is a private directory on tmpfs/ramfs (create it, 0700, if missing)
    and return a file descriptor of it: everything after the checks works from that fd.

    Checked: every directory above it belongs to root or to us and no one else can write to
    it (else its owner could swap ours for a link to persistent disk after the check), it is
    not a symlink, it is ours, mode 0700, on tmpfs/ramfs. Raise RuntimeUnsafe otherwise.
    Nothing secret exists yet when this runs.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise RuntimeUnsafe(f"cannot create runtime dir {path}: {err.strerror}") from None
    try:
        problem = find_unsafe_ancestor(path.parent.resolve(strict=True) / path.name)
    except OSError as err:
        raise RuntimeUnsafe(f"cannot inspect the parents of runtime dir {path}: "
                            f"{err.strerror}") from None
    if problem is not None:
        raise RuntimeUnsafe(f"runtime dir {path} is not safe: {problem}, so another user "
                            "could swap it for a link to persistent disk")
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as err:  # ELOOP: a symlink; ENOTDIR: a file
        raise RuntimeUnsafe(f"runtime dir {path} is not a plain directory "
                            f"({err.strerror})") from None
    try:
        _check_runtime_fd(path, fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_runtime_dir(path: Path) -> None:
    """Make sure ``path`` is a safe runtime directory (see :func:`open_runtime_dir`)."""
    os.close(open_runtime_dir(path))


def same_directory(path: Path, fd: int) -> bool:
    """Return True if ``path`` still names the directory open as ``fd`` (not swapped)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _check_runtime_fd(path: Path, fd: int) -> None:
    try:
        st = os.fstat(fd)
        magic = read_fs_magic_fd(fd)
    except OSError as err:
        raise RuntimeUnsafe(f"cannot inspect runtime dir {path}: {err.strerror}") from None
    if st.st_uid != os.geteuid():
        raise RuntimeUnsafe(f"runtime dir {path} is owned by uid {st.st_uid}, not us")
    if st.st_mode & 0o077:
        raise RuntimeUnsafe(
            f"runtime dir {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0700"
        )
    if magic not in (TMPFS_MAGIC, RAMFS_MAGIC):
        raise RuntimeUnsafe(
            f"runtime dir {path} is not on tmpfs (filesystem magic {magic:#x}); "
            "refusing to put credentials material on persistent disk"
        )


def acquire_lock(runtime_dir: Path, dir_fd: int | None = None) -> int:
    """Take the single-run lock in ``runtime_dir`` (opened as ``dir_fd`` when given); return
    its fd (held until closed).

    Raise TemporaryFailure naming the holder's pid if another run holds it, RuntimeUnsafe if
    the lock path is not a plain file of ours (a FIFO, a directory, a symlink, a device).
    """
    path = runtime_dir / LOCK_NAME
    # O_NONBLOCK: opening a FIFO must not hang; a directory fails with EISDIR.
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = (os.open(path, flags, 0o600) if dir_fd is None
              else os.open(LOCK_NAME, flags, 0o600, dir_fd=dir_fd))
    except OSError as err:
        raise RuntimeUnsafe(f"cannot open the lock {path}: {err.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise RuntimeUnsafe(f"lock {path} is not a plain file of ours; remove it")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise TemporaryFailure(
                f"another ghost-backup run (pid {holder}) holds {path}; not starting a second"
            ) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release_lock(fd: int) -> None:
    """Release the lock taken by :func:`acquire_lock`."""
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def remove_stale_run_dirs(runtime_dir: Path) -> list[Path]:
    """Wipe per-run directories left by a run that died (SIGKILL); return what was removed.

    Only call this while holding the lock: then no live run owns any of them.
    """
    removed = []
    for entry in sorted(runtime_dir.glob(RUN_DIR_PREFIX + "*")):
        if entry.is_dir() and not entry.is_symlink():
            remove_run_dir(entry)
            removed.append(entry)
    return removed


def create_run_dir(runtime_dir: Path, run_id: str, dir_fd: int | None = None) -> Path:
    """Create and return the per-run directory ``<runtime_dir>/run-<run_id>`` (mode 0700),
    relative to ``dir_fd`` (the runtime dir, opened and checked) when given."""
    name = f"{RUN_DIR_PREFIX}{run_id}"
    os.mkdir(name if dir_fd is not None else runtime_dir / name, 0o700, dir_fd=dir_fd)
    fd = os.open(name if dir_fd is not None else runtime_dir / name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        os.fchmod(fd, 0o700)  # mkdir's mode is filtered by the umask; make it exact
    finally:
        os.close(fd)
    return runtime_dir / name


def open_run_dir(run_dir: Path, dir_fd: int) -> int:
    """Return an fd of ``run_dir``, opened relative to the runtime dir's ``dir_fd``."""
    return os.open(run_dir.name, _DIR_FLAGS, dir_fd=dir_fd)


def remove_run_dir_at(run_dir: Path, dir_fd: int) -> None:
    """Like :func:`remove_run_dir`, relative to the runtime dir's ``dir_fd``: even if the
    runtime path was swapped since, the files shredded are the ones written."""
    name = run_dir.name
    for _top, dirs, names, fd in os.fwalk(name, topdown=False, follow_symlinks=False,
                                          dir_fd=dir_fd):
        for entry in names:
            shred_file(entry, dir_fd=fd)
        for entry in dirs:
            if stat.S_ISLNK(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                os.unlink(entry, dir_fd=fd)
            else:
                os.rmdir(entry, dir_fd=fd)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=dir_fd)


def remove_run_dir(path: Path) -> None:
    """Overwrite and unlink every file under ``path``, then remove the directories.

    Safe to call twice and on a half-created directory. Symlinks are unlinked, never followed.
    """
    if not path.exists() and not path.is_symlink():
        return
    for root, dirs, files in os.walk(path, topdown=False):
        base = Path(root)
        for name in files:
            entry = base / name
            if entry.is_symlink():
                entry.unlink(missing_ok=True)
            else:
                shred_file(entry)
        for name in dirs:
            entry = base / name
            if entry.is_symlink():
                entry.unlink(missing_ok=True)
            else:
                entry.rmdir()
    path.rmdir()
