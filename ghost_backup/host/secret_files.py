"""Secret files: systemd credentials in ``$CREDENTIALS_DIRECTORY`` and other private files.

systemd's ``LoadCredential=`` / ``SetCredentialEncrypted=`` hand a service read-only files in
an in-memory directory readable by the unit only (systemd.exec(5), "Credentials"). For a
service user other than root (our unit has ``DynamicUser=yes``) systemd writes the file 0400,
owned by root, and grants the user read access with a POSIX ACL entry, falling back to
chown where the filesystem has no ACLs (``write_credential`` in systemd's
``src/core/exec-credential.c``). ``stat`` then shows the ACL *mask* in the group bits
(mode 0440) although no group can read the file, so the group bits are judged from the ACL
entries when there is an ACL. Anything readable by another user, group or everyone is
refused. Files are opened with ``O_NOFOLLOW`` and checked on the open descriptor (no race
between check and read). Nothing here ever quotes a file's content.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from ghost_backup.errors import CredentialsInvalid, CredentialsUnavailable

_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
# Tags of a POSIX ACL xattr entry (linux/posix_acl_xattr.h).
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20)
_ACL_ENTRY = struct.Struct("<HHI")


@dataclass(frozen=True)
class AclEntry:
    """One POSIX ACL entry: tag, permission bits (r=4, w=2, x=1), uid/gid qualifier."""

    tag: int
    perm: int
    qualifier: int


def parse_posix_acl(data: bytes) -> tuple[AclEntry, ...]:
    """Given a ``system.posix_acl_access`` xattr value, return its entries.

    Raise ValueError if it is not a version-2 ACL.
    """
    if len(data) < 4 or (len(data) - 4) % _ACL_ENTRY.size:
        raise ValueError("malformed POSIX ACL")
    (version,) = struct.unpack_from("<I", data)
    if version != _ACL_VERSION:
        raise ValueError("unknown POSIX ACL version")
    return tuple(AclEntry(*entry) for entry in _ACL_ENTRY.iter_unpack(data[4:]))


def classify_file_access(
    *, mode: int, owner: int, euid: int, acl: tuple[AclEntry, ...] | None
) -> str | None:
    """Return why a secret file is not private to us (root or ``euid``), or None if it is."""
    if owner not in (0, euid):
        return f"owned by uid {owner}"
    if mode & 0o007:
        return "accessible by others"
    if acl is None:
        return "accessible by its group" if mode & 0o070 else None
    mask = next((e.perm for e in acl if e.tag == ACL_MASK), 0o7)
    for entry in acl:
        perm = entry.perm & mask
        if entry.tag == ACL_OTHER and entry.perm:
            return "accessible by others (ACL)"
        if entry.tag == ACL_GROUP_OBJ and perm:
            return "accessible by its group (ACL)"
        if entry.tag == ACL_GROUP and perm:
            return f"accessible by group {entry.qualifier} (ACL)"
        if entry.tag == ACL_USER and entry.qualifier not in (0, euid) and perm:
            return f"accessible by uid {entry.qualifier} (ACL)"
    return None


def _read_acl(fd: int) -> tuple[AclEntry, ...] | None:
    try:
        return parse_posix_acl(os.getxattr(fd, _ACL_XATTR))
    except OSError:
        return None  # no ACL (ENODATA) or none possible (ENOTSUP): the mode bits say it all
    except ValueError:
        return (AclEntry(ACL_OTHER, 0o7, 0),)  # unreadable ACL: treat as open to all


def credential_path(env: Mapping[str, str], name: str) -> Path:
    """Return ``$CREDENTIALS_DIRECTORY/<name>``; raise CredentialsUnavailable if it is not set."""
    directory = env.get("CREDENTIALS_DIRECTORY", "")
    if not directory:
        raise CredentialsUnavailable(
            f"$CREDENTIALS_DIRECTORY is not set: the unit needs LoadCredential={name}:<source> "
            "(systemd.exec(5))"
        )
    if not directory.startswith("/"):
        raise CredentialsUnavailable("$CREDENTIALS_DIRECTORY is not an absolute path")
    return Path(directory) / name


def read_private_file(path: Path, *, max_bytes: int, what: str) -> bytes:
    """Return the bytes of ``path``, a regular file private to this service, 1..max_bytes long.

    Raise CredentialsUnavailable if it is missing or unreadable, CredentialsInvalid if it is a
    symlink, not a regular file, accessible by another user, a group or everyone (see
    :func:`classify_file_access`), empty or too large.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise CredentialsUnavailable(f"{what} {path} is missing") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise CredentialsInvalid(f"{what} {path} is a symlink; refusing") from None
        raise CredentialsUnavailable(f"cannot open {what} {path}: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CredentialsInvalid(f"{what} {path} is not a regular file; refusing")
        problem = classify_file_access(mode=st.st_mode, owner=st.st_uid, euid=os.geteuid(),
                                       acl=_read_acl(fd))
        if problem is not None:
            raise CredentialsInvalid(
                f"{what} {path} has mode {stat.S_IMODE(st.st_mode):04o} and is {problem}; "
                "refusing (it must be private to this service: 0400/0600, or systemd's "
                "0400 plus an ACL for the service user)"
            )
        data = os.read(fd, max_bytes + 1)
    except OSError as err:
        raise CredentialsUnavailable(f"cannot read {what} {path}: {err.strerror}") from None
    finally:
        os.close(fd)
    if not data.strip():
        raise CredentialsInvalid(f"{what} {path} is empty")
    if len(data) > max_bytes:
        raise CredentialsInvalid(f"{what} {path} is larger than {max_bytes} bytes; refusing")
    return data


def parse_secret_text(data: bytes, *, what: str) -> SecretStr:
    """Given a token file's bytes, return the token (one line; trailing newline allowed).

    Raise CredentialsInvalid if it is not UTF-8, empty, or holds whitespace inside.
    """
    try:
        text = data.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        raise CredentialsInvalid(f"{what} is not UTF-8 text") from None
    if not text or any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise CredentialsInvalid(f"{what} must be one token on one line")
    return SecretStr(text)


def read_secret_token(path: Path, *, what: str) -> SecretStr:
    """Return the token held in the private file ``path`` (see :func:`read_private_file`)."""
    return parse_secret_text(read_private_file(path, max_bytes=65536, what=what), what=what)
