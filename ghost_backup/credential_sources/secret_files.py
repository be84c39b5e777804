"""Secret files: systemd credentials in ``$CREDENTIALS_DIRECTORY`` and other private files.

systemd's ``LoadCredential=`` / ``SetCredentialEncrypted=`` hand a service read-only files in
an in-memory directory readable by the unit only (systemd.exec(5), "Credentials"); a file
that is group- or world-accessible did not come from there, or was tampered with, so it is
refused. Files are opened with ``O_NOFOLLOW`` and checked on the open descriptor (no race
between check and read). Nothing here ever quotes a file's content.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from ghost_backup.errors import CredentialsInvalid, ProxyUnavailable


def credential_path(env: Mapping[str, str], name: str) -> Path:
    """Return ``$CREDENTIALS_DIRECTORY/<name>``; raise ProxyUnavailable if it is not set."""
    directory = env.get("CREDENTIALS_DIRECTORY", "")
    if not directory:
        raise ProxyUnavailable(
            f"$CREDENTIALS_DIRECTORY is not set: the unit needs LoadCredential={name}:<source> "
            "(systemd.exec(5))"
        )
    if not directory.startswith("/"):
        raise ProxyUnavailable("$CREDENTIALS_DIRECTORY is not an absolute path")
    return Path(directory) / name


def read_private_file(path: Path, *, max_bytes: int, what: str) -> bytes:
    """Return the bytes of ``path``, a regular file private to its owner, 1..max_bytes long.

    Raise ProxyUnavailable if it is missing or unreadable, CredentialsInvalid if it is a
    symlink, not a regular file, accessible by group or others, empty or too large.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ProxyUnavailable(f"{what} {path} is missing") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise CredentialsInvalid(f"{what} {path} is a symlink; refusing") from None
        raise ProxyUnavailable(f"cannot open {what} {path}: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CredentialsInvalid(f"{what} {path} is not a regular file; refusing")
        if st.st_mode & 0o077:
            raise CredentialsInvalid(
                f"{what} {path} has mode {stat.S_IMODE(st.st_mode):04o}: readable or writable "
                "by others; refusing (it must be 0400 or 0600)"
            )
        data = os.read(fd, max_bytes + 1)
    except OSError as err:
        raise ProxyUnavailable(f"cannot read {what} {path}: {err.strerror}") from None
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
