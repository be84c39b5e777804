"""The ephemeral runtime directory: a private tmpfs directory, a lock, and per-run files.

Nothing here is ever on persistent disk: the runtime directory must be a tmpfs or ramfs
(proved with statfs(2), not assumed from the path), owned by us and mode 0700. Per-run files
are created exclusively (``O_CREAT|O_EXCL|O_NOFOLLOW``) with mode 0600, and removed by
overwriting and unlinking. Overwriting is defence in depth only (shred(1) itself says it
cannot promise more on modern filesystems); tmpfs plus a short life is the real guarantee.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

from ghost_backup.errors import RuntimeUnsafe, TemporaryFailure

log = logging.getLogger(__name__)

TMPFS_MAGIC = 0x01021994
RAMFS_MAGIC = 0x858458F6
RUN_DIR_PREFIX = "run-"
LOCK_NAME = "lock"

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class _StatFs(ctypes.Structure):
    # Only f_type matters; it is the first member (__fsword_t) on every Linux ABI.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 256)]


def read_fs_magic(path: Path) -> int:
    """Return the filesystem magic number (statfs f_type) of ``path``."""
    buf = _StatFs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return int(buf.f_type) & 0xFFFFFFFF


def ensure_runtime_dir(path: Path) -> None:
    """Make sure ``path`` is a private directory on tmpfs/ramfs; create it (0700) if missing.

    Raise RuntimeUnsafe if it is a symlink, not a directory, not ours, readable by others,
    or on a persistent filesystem. Nothing secret exists yet when this runs.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise RuntimeUnsafe(f"cannot create runtime dir {path}: {err.strerror}") from None
    try:
        st = os.lstat(path)
        magic = read_fs_magic(path)
    except OSError as err:
        raise RuntimeUnsafe(f"cannot inspect runtime dir {path}: {err.strerror}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise RuntimeUnsafe(f"runtime dir {path} is not a plain directory")
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


def acquire_lock(runtime_dir: Path) -> int:
    """Take the single-run lock in ``runtime_dir``; return its fd (held until closed).

    Raise TemporaryFailure naming the holder's pid if another run holds it.
    """
    path = runtime_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
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


def create_run_dir(runtime_dir: Path, run_id: str) -> Path:
    """Create and return the per-run directory ``<runtime_dir>/run-<run_id>`` (mode 0700)."""
    path = runtime_dir / f"{RUN_DIR_PREFIX}{run_id}"
    os.mkdir(path, 0o700)
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; make it exact
    return path


def write_private_file(directory: Path, name: str, content: str) -> Path:
    """Create ``directory/name`` exclusively with mode 0600 and write ``content``."""
    path = directory / name
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, content.encode())
    finally:
        os.close(fd)
    return path


def _overwrite_and_unlink(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        path.unlink(missing_ok=True)
        return
    try:
        size = os.fstat(fd).st_size
        if size:
            os.pwrite(fd, b"\0" * size, 0)
            os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)


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
                _overwrite_and_unlink(entry)
        for name in dirs:
            entry = base / name
            if entry.is_symlink():
                entry.unlink(missing_ok=True)
            else:
                entry.rmdir()
    path.rmdir()
