"""Classification of text: pure functions, no I/O (what looks like a key, where)."""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import re
from dataclasses import dataclass

FINGERPRINT_HEX = 8

KIND_ASSIGNMENT = "assignment"
KIND_KEY_ID = "access-key-id"
KIND_SECRET = "secret"  # noqa: S105 (a label, not a secret)
KIND_ENCRYPTED_RCLONE = "encrypted-rclone-config"

SHAPE_AWS_KEY_ID = "aws-key-id"  # AKIA... (long-lived IAM user key) / ASIA... (STS), 20 chars
SHAPE_R2_KEY_ID = "r2-key-id"  # 32 lower-case hex digits
SHAPE_AWS_SECRET = "aws-secret"  # noqa: S105 (label) 40 characters of base64's alphabet
SHAPE_R2_SECRET = "r2-secret"  # noqa: S105 (label) 64 lower-case hex digits


# A key name that says "this is an S3 credential": secret_access_key, aws_access_key_id,
# RCLONE_CONFIG_R2_SECRET_ACCESS_KEY, secretAccessKey (Ghost's storage adapters, JSON), ...
_KEY_NAME = (
    r"secret[_.-]?access[_.-]?key|access[_.-]?key[_.-]?id|session[_.-]?token"
    r"|security[_.-]?token|(?:aws|s3|r2)[_.-]?(?:secret|access)[_.-]?key"
    r"|(?:aws|s3|r2)[_.-]?(?:secret|key[_.-]?id)"
    r"|rclone[_.-]?config[_.-]?pass"
)
_KEY_NAME_RE = re.compile(_KEY_NAME, re.IGNORECASE)
# A name token followed by '=' or ':'. Possessive and anchored at token starts, so a long line
# is scanned in linear time whatever it holds.
_ASSIGNMENT_RE = re.compile(
    r"(?<![A-Za-z0-9_.-])(?P<name>[A-Za-z0-9_.-]++)[\"']?[ \t]*[=:][ \t]*"
)
# rclone flags given with a space: --s3-secret-access-key VALUE (argv in an ExecStart= line).
_FLAG_RE = re.compile(
    r"--(?P<name>(?:s3-)?(?:secret-access-key|access-key-id|session-token))[ \t]+",
    re.IGNORECASE,
)
# A name token followed by blanks and a value, as `rclone config create r2 s3 access_key_id X`
# or `aws configure set aws_secret_access_key X` take them: reported only when the value has a
# key's shape (prose also puts words after such names).
_SPACED_RE = re.compile(r"(?<![A-Za-z0-9_.-])(?P<name>[A-Za-z0-9_.-]++)[\"']?[ \t]++(?=[^\s=:])")
# Names whose value points at a key rather than being one (secret_access_key_file = /run/...).
_INDIRECT_NAME_RE = re.compile(r"(?:file|path|dir|cmd|command|process)$", re.IGNORECASE)
_BARE_VALUE_RE = re.compile(r"[^\s\"'`;,#)}\]]+")
# An unquoted value that is code, not a literal: creds.secret, get_key(), env["X"].
_CODE_VALUE_RE = re.compile(r"[(\[{]|^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")
_PLACEHOLDER_WORDS = ("changeme", "change_me", "placeholder", "redacted", "example", "your",
                      "replace", "dummy", "fixme", "todo", "insert", "secret_here")
_MIN_VALUE_LENGTH = 8  # the shortest real key id (AWS) has 16 characters

_AWS_KEY_ID_RE = re.compile(r"(?:AKIA|ASIA)[A-Z0-9]{16}")
_HEX_RE = re.compile(r"[0-9a-f]{32,}")
_B64_RE = re.compile(r"[A-Za-z0-9+/]{40,}")
# Words that, right before a hex or base64 token, say it is an identifier, not a key. Only the
# few characters before the token count (`account_id = "<hex>"`, `sha256:<hex>`, `commit <hex>`):
# a word elsewhere on the line (a comment saying "account", an R2 endpoint's
# `cloudflarestorage`) once switched off the search for the whole line.
_ID_CONTEXT_CHARS = 24
_ID_CONTEXT_RE = re.compile(
    r"sha1|sha256|sha512|md5|digest|checksum|hash|integrity|machine[_-]?id|boot[_-]?id|uuid"
    r"|invocation[_-]?id"  # systemd's $INVOCATION_ID (last-run.json records it)
    r"|account|fingerprint|commit|etag|cloudflarestorage",
    re.IGNORECASE,
)
_RCLONE_ENCRYPTED_MARK = "RCLONE_ENCRYPT_V0:"
# ``*.manifest``: ghost-backup's own manifests (path, size, MD5 per object), such as the
# mirror record in the state dir.
_IDENTIFIER_FILES = ("machine-id", "*SUMS", "*.sha1", "*.sha256", "*.sha512", "*.md5",
                     "*.sum", "*.lock", "*-lock.json", "*.manifest")
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_MIN_CLASS_SWITCHES = 18  # see _looks_random; random base64 of 40 chars averages 25


def fingerprint(value: str) -> str:
    """Return the first 8 hex digits of ``value``'s SHA-256: enough to tell keys apart."""
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:FINGERPRINT_HEX]


@dataclass(frozen=True)
class Hit:
    """One suspicious value on one line: what it is, never what it says."""

    kind: str
    name: str
    shape: str
    fingerprint: str


def classify_shape(value: str) -> str:
    """Return the key shape ``value`` has as a whole (``SHAPE_*``), or "" if none."""
    if _AWS_KEY_ID_RE.fullmatch(value):
        return SHAPE_AWS_KEY_ID
    if re.fullmatch(r"[0-9a-f]{32}", value) and _has_digit_and_letter(value):
        return SHAPE_R2_KEY_ID
    if re.fullmatch(r"[0-9a-f]{64}", value) and _has_digit_and_letter(value):
        return SHAPE_R2_SECRET
    if re.fullmatch(r"[A-Za-z0-9+/]{40}", value) and _looks_random(value):
        return SHAPE_AWS_SECRET
    return ""


def is_placeholder(value: str) -> bool:
    """Return True if an assigned ``value`` is obviously not a key.

    Empty or short values, references resolved elsewhere at run time (``$VAR``, ``${VAR}``,
    ``$(cmd)``, systemd ``%`` specifiers, ``{{ template }}``), ``<your-key>`` placeholders,
    masks (``****``, ``xxxxxxxx``) and the words in ``_PLACEHOLDER_WORDS`` (which include the
    ``EXAMPLE`` of AWS's documented sample keys).
    """
    if len(value) < _MIN_VALUE_LENGTH:
        return True
    if value[0] in "$`%<" or value.startswith("{{"):
        return True
    if len(set(value)) <= 2 or not value.strip("*xX.-_ "):
        return True
    lowered = value.lower()
    return any(word in lowered for word in _PLACEHOLDER_WORDS)


def _has_digit_and_letter(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _char_class(char: str) -> int:
    if char.isupper():
        return 0
    if char.islower():
        return 1
    return 2 if char.isdigit() else 3


def _looks_random(token: str) -> bool:
    """Return True if a base64-alphabet token reads like random bytes, not like a name.

    Random base64 switches between upper case, lower case, digits and symbols at about two
    adjacent pairs in three (25 of 39 on average for 40 characters); CamelCase identifiers and
    paths switch only at word boundaries (about 16 for ``ThisIsAVeryLongCamelCaseIdentifier12``).
    """
    if not (any(c.isupper() for c in token) and any(c.islower() for c in token)
            and any(c.isdigit() for c in token)):
        return False
    switches = sum(_char_class(a) != _char_class(b) for a, b in itertools.pairwise(token))
    return switches >= _MIN_CLASS_SWITCHES


def _is_whole_token(line: str, start: int, end: int) -> bool:
    """Return True if ``line[start:end]`` stands alone: not part of a name, path or hostname."""
    before = line[start - 1] if start > 0 else " "
    after = line[end] if end < len(line) else " "
    if before in _TOKEN_CHARS or after in _TOKEN_CHARS or after == "/":
        return False
    # A single '/' before it makes it a path segment; '//' (a URL's user part) does not.
    return not (before == "/" and (start < 2 or line[start - 2] != "/"))


def _value_at(line: str, pos: int) -> tuple[str, int, int]:
    """Return the value starting at ``pos`` (quoted or bare) and its span in ``line``."""
    if pos < len(line) and line[pos] in "\"'":
        quote = line[pos]
        end = line.find(quote, pos + 1)
        end = len(line) if end < 0 else end
        return line[pos + 1:end], pos + 1, end
    match = _BARE_VALUE_RE.match(line, pos)
    if match is None:
        return "", pos, pos
    return match.group(), match.start(), match.end()


def _shape_candidates(line: str) -> list[tuple[str, int, int]]:
    """Return ``(shape, start, end)`` of every standalone key-shaped token on ``line``."""
    found = [(SHAPE_AWS_KEY_ID, *m.span()) for m in _AWS_KEY_ID_RE.finditer(line)
             if "EXAMPLE" not in m.group()]  # AWS's documented sample key AKIA...EXAMPLE
    for match in _HEX_RE.finditer(line):
        shape = classify_shape(match.group())
        # "<hex>  file" or "<hex> *file" is a sha256sum/md5sum listing.
        listing = line[match.end():match.end() + 2] in ("  ", " *")
        if shape and not listing:
            found.append((shape, *match.span()))
    for match in _B64_RE.finditer(line):
        token = match.group()
        if (len(token) == 40 and line[match.end():match.end() + 1] != "="  # padded: longer
                and "EXAMPLE" not in token and classify_shape(token) == SHAPE_AWS_SECRET):
            found.append((SHAPE_AWS_SECRET, *match.span()))
    return [(shape, start, end) for shape, start, end in found
            if _is_whole_token(line, start, end)]


def _shape_hits(line: str, taken: list[tuple[int, int]]) -> list[Hit]:
    """Return bare key shapes on ``line`` outside the ``taken`` spans (assignment values).

    An AKIA/ASIA key id is distinctive enough to report anywhere; hex and base64 shapes are
    left out when a word on the line marks them as an identifier (``_ID_CONTEXT_RE``).
    """
    candidates = [(shape, start, end) for shape, start, end in _shape_candidates(line)
                  if all(end <= a or start >= b for a, b in taken)]
    hits = []
    for shape, start, end in candidates:
        before = line[max(0, start - _ID_CONTEXT_CHARS):start]
        if shape != SHAPE_AWS_KEY_ID and _ID_CONTEXT_RE.search(before):
            continue
        kind = KIND_KEY_ID if shape in (SHAPE_AWS_KEY_ID, SHAPE_R2_KEY_ID) else KIND_SECRET
        hits.append(Hit(kind, shape, shape, fingerprint(line[start:end])))
    return hits


def classify_line(line: str, *, shapes: bool = True) -> tuple[Hit, ...]:
    """Given one line of text, return every suspicious value on it.

    Assignments to a credential-like name (``secret_access_key = ...``,
    ``RCLONE_CONFIG_R2_SECRET_ACCESS_KEY=...``, ``"secretAccessKey": "..."``,
    ``--s3-secret-access-key ...``) are reported whatever the value looks like, unless it is a
    placeholder or a reference (:func:`is_placeholder`); such a name followed by blanks and a
    key-shaped value (``access_key_id X`` in an ``rclone config create`` line) too. Bare values
    are reported when they have a key's shape (:func:`classify_shape`), stand alone (not part
    of a path, hostname or longer token) and no word just before them marks them as an
    identifier (``sha256:``, ``commit``, ``account_id =``, ...); ``shapes=False`` turns the
    bare-shape search off (inside PEM blocks).
    """
    hits: list[Hit] = []
    taken: list[tuple[int, int]] = []
    for regex in (_ASSIGNMENT_RE, _FLAG_RE, _SPACED_RE):
        for match in regex.finditer(line):
            name = match.group("name")
            if not _KEY_NAME_RE.search(name) or _INDIRECT_NAME_RE.search(name):
                continue
            quoted = line[match.end():match.end() + 1] in ("'", '"')
            value, start, end = _value_at(line, match.end())
            if is_placeholder(value) or (not quoted and _CODE_VALUE_RE.search(value)):
                continue
            if regex is _SPACED_RE and not classify_shape(value):
                continue
            if any(start < b and end > a for a, b in taken):
                continue
            taken.append((start, end))
            hits.append(Hit(KIND_ASSIGNMENT, name.lstrip("-")[:64], classify_shape(value),
                            fingerprint(value)))
    if shapes:
        hits += _shape_hits(line, taken)
    return tuple(hits)


def classify_text(text: str, *, shapes: bool = True) -> tuple[tuple[int, Hit], ...]:
    """Given a file's text, return ``(line number, hit)`` for every suspicious value.

    An encrypted rclone config (``RCLONE_ENCRYPT_V0:``) is reported as such: the keys in it
    are one ``RCLONE_CONFIG_PASS`` away. Bare shapes are not searched inside PEM blocks
    (``-----BEGIN ...`` to ``-----END ...``), whose base64 lines would otherwise now and then
    have a key's length, nor anywhere when ``shapes`` is False (files that hold identifiers by
    nature, see :func:`holds_identifiers`).
    """
    found: list[tuple[int, Hit]] = []
    in_pem = False
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if line.startswith(_RCLONE_ENCRYPTED_MARK):
            # rclone writes the mark, then the encrypted config as base64 on the next line.
            payload = line.removeprefix(_RCLONE_ENCRYPTED_MARK).strip() or "".join(
                lines[number:number + 1]).strip()
            found.append((number, Hit(KIND_ENCRYPTED_RCLONE, "RCLONE_ENCRYPT_V0", "",
                                      fingerprint(payload))))
            continue
        if line.startswith("-----BEGIN "):
            in_pem = True
        found += [(number, hit) for hit in classify_line(line, shapes=shapes and not in_pem)]
        if line.startswith("-----END "):
            in_pem = False
    return tuple(found)


def decode_text(data: bytes) -> tuple[str, bool]:
    """Given a file's bytes, return its text and whether it is binary.

    UTF-16 (with a byte-order mark, or ASCII text with every other byte NUL, as Windows tools
    write ``credentials`` files) is decoded as such. Other bytes are read as UTF-8 with NULs
    turned into blanks (line numbers stay right), so a key in a file that also holds a NUL is
    still seen; such a
    file counts as binary (only assignments are searched in it: random bytes sometimes have a
    key's shape).
    """
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", "replace"), False
    if b"\0" not in data:
        return data.decode("utf-8", "replace"), False
    sample = data[:4096]
    for codec, zeros in (("utf-16-le", sample[1::2]), ("utf-16-be", sample[0::2])):
        if len(zeros) >= 2 and zeros.count(0) >= 0.9 * len(zeros):
            return data.decode(codec, "replace"), False
    return data.replace(b"\0", b" ").decode("utf-8", "replace"), True


def holds_identifiers(name: str) -> bool:
    """Return True for file names whose hex content is an identifier by nature.

    ``machine-id`` is 32 hex digits, checksum lists and manifests are lines of digests: only
    assignments are looked for in them, not bare shapes.
    """
    return any(fnmatch.fnmatch(name, pattern) for pattern in _IDENTIFIER_FILES)


@dataclass(frozen=True)
class UnitReference:
    """A file a systemd unit loads at start: ``EnvironmentFile=`` or ``LoadCredential=``."""

    directive: str
    pattern: str


def parse_unit_references(text: str) -> tuple[UnitReference, ...]:
    """Given a unit file or drop-in, return the host files it loads into the service.

    ``EnvironmentFile=`` takes an absolute path or glob, ``-`` in front meaning "may be
    missing" (systemd.exec(5)); ``LoadCredential=ID:PATH`` takes a file or directory (a bare
    ID is looked up in the credstore directories, which are scanned anyway). Values with
    ``%`` specifiers cannot be resolved offline and are left out.
    """
    refs: list[UnitReference] = []
    for raw in text.splitlines():
        line = raw.strip()
        directive, sep, value = line.partition("=")
        if not sep:
            continue
        directive = directive.strip()
        value = value.strip().strip('"')
        if directive == "EnvironmentFile":
            path = value.removeprefix("-")
        elif directive == "LoadCredential":
            path = value.partition(":")[2]
        else:
            continue
        if path.startswith("/") and "%" not in path:
            refs.append(UnitReference(directive, path))
    return tuple(refs)


