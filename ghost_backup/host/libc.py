"""The one handle on the C library, for the two calls Python's stdlib lacks:
statfs(2) (is this directory really tmpfs?) and prctl(2) (SIGKILL the child when we die)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

TMPFS_MAGIC = 0x01021994
RAMFS_MAGIC = 0x858458F6
PR_SET_PDEATHSIG = 1  # prctl(2)

# glibc's soname, as on every host we run on (Flatcar and Debian; the sysext's PyInstaller
# bundle ships no libc and loads the host's). ctypes.util.find_library("c") would fork
# `ldconfig -p` and parse its output on every start: about 15 ms of each run (docs/performance.md).
libc = ctypes.CDLL("libc.so.6", use_errno=True)


class _StatFs(ctypes.Structure):
    # Only f_type matters; it is the first member (__fsword_t) on every Linux ABI.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 256)]


def read_fs_magic_fd(fd: int) -> int:
    """Return the filesystem magic number (fstatfs f_type) of the open file ``fd``."""
    buf = _StatFs()
    if libc.fstatfs(fd, ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(buf.f_type) & 0xFFFFFFFF


def read_fs_magic(path: Path) -> int:
    """Return the filesystem magic number (statfs f_type) of ``path``."""
    buf = _StatFs()
    if libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return int(buf.f_type) & 0xFFFFFFFF
