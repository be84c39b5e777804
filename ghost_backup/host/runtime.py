"""The ephemeral runtime directory: a private tmpfs directory, the lock, per-run directories.

Nothing here is ever on persistent disk: the runtime directory must be a tmpfs or ramfs
(proved with statfs(2), not assumed from the path), owned by us and mode 0700. Per-run files
are created exclusively (``O_CREAT|O_EXCL|O_NOFOLLOW``) with mode 0600, and removed by
overwriting and unlinking. Overwriting is defence in depth only (shred(1) itself says it
cannot promise more on modern filesystems); tmpfs plus a short life is the real guarantee.

Two runtime directories, never shared: the unit's (``RuntimeDirectory=ghost``, which systemd
creates for the transient user and deletes when the unit stops) and, for commands run by hand
(root, no ``$RUNTIME_DIRECTORY``), ``runtime.manual_dir``. A hand-run ``restore`` therefore
never loses its config when the unit stops, and never trips over a directory the unit's
transient user owns. The one lock both take lives outside both: ``/run/ghost-backup.lock``
(``runtime.lock_path``), a root-owned 0644 file from the shipped tmpfiles.d line. ``flock(2)``
needs no write access, so the sandboxed service (read-only ``/run``) can take it too.

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
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from ghost_backup.errors import RuntimeUnsafe, TemporaryFailure
from ghost_backup.host.files import shred_file
from ghost_backup.host.libc import RAMFS_MAGIC, TMPFS_MAGIC, read_fs_magic_fd
from ghost_backup.host.paths import find_unsafe_ancestor

log = logging.getLogger(__name__)

RUN_DIR_PREFIX = "run-"
LOCK_MODE = 0o644
TMPFILES_HINT = "systemd-tmpfiles --create ghost-backup.conf"


def select_runtime_dir(unit_dir: Path, manual_dir: Path, env: Mapping[str, str]) -> Path:
    """Return the unit's runtime dir under systemd (``$RUNTIME_DIRECTORY`` is set for
    ``RuntimeDirectory=``, systemd.exec(5)), else the hand-run one."""
    return unit_dir if env.get("RUNTIME_DIRECTORY") else manual_dir

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


def acquire_lock(path: Path) -> int:
    """Take the single-run lock at ``path``; return its fd (held until closed).

    The file is opened read-only without following a symlink and created (0644) only by
    root: the unit cannot write ``/run``. Raise TemporaryFailure naming the holder (its
    systemd unit and pid, read from /proc/locks) if another process holds it, RuntimeUnsafe
    if the file is missing and cannot be created.
    """
    # O_NONBLOCK: opening a FIFO must not hang; a directory is refused below.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        try:
            fd = os.open(path, flags | os.O_CREAT, LOCK_MODE)
        except OSError as err:
            raise RuntimeUnsafe(
                f"lock file {path} is missing and cannot be created ({err.strerror}); "
                f"run `{TMPFILES_HINT}` as root") from None
    except OSError as err:
        raise RuntimeUnsafe(f"cannot open lock file {path}: {err.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()):
        os.close(fd)
        raise RuntimeUnsafe(f"lock file {path} is not a plain file of root's or ours; "
                            "remove it")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise TemporaryFailure(format_lock_holder(path, find_lock_holder(path))) from None
        raise
    return fd


def release_lock(fd: int) -> None:
    """Release the lock taken by :func:`acquire_lock`."""
    os.close(fd)


def parse_lock_holder(proc_locks: str, device: int, inode: int) -> int | None:
    """Given /proc/locks, return the pid holding a FLOCK on ``device``/``inode``, if any."""
    key = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
    for line in proc_locks.splitlines():
        parts = line.split()  # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == key and parts[4].isdigit():
            return int(parts[4])
    return None


def parse_unit_from_cgroup(text: str) -> str | None:
    """Given /proc/PID/cgroup, return the systemd unit the process runs in (None: a session
    scope or no systemd)."""
    path = text.strip().rsplit(":", 1)[-1]
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name if re.fullmatch(r"[\w@.:\\-]+\.service", name) else None


def find_lock_holder(path: Path) -> tuple[int, str | None] | None:
    """Return (pid, unit) of the process holding the lock at ``path``, as far as we can see
    (``ProtectProc=invisible`` hides root's processes from the service)."""
    try:
        st = path.stat()
        pid = parse_lock_holder(Path("/proc/locks").read_text(encoding="ascii", errors="replace"),
                                st.st_dev, st.st_ino)
    except OSError:
        return None
    if pid is None:
        return None
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8", errors="replace")
        return pid, parse_unit_from_cgroup(text)
    except OSError:
        return pid, None


def format_lock_holder(path: Path, holder: tuple[int, str | None] | None) -> str:
    """Return the one-line refusal for a held lock: which unit or process holds it."""
    if holder is None:
        return (f"another ghost-backup process holds {path}; not starting a second "
                "(try again when it has finished)")
    pid, unit = holder
    if unit is not None and unit.startswith("ghost-backup"):
        return (f"{unit} (pid {pid}) is running a backup; try again after it finishes "
                f"(`systemctl status {unit}`)")
    return (f"another ghost-backup run (pid {pid}, a hand-run command?) holds {path}; "
            "not starting a second")


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
