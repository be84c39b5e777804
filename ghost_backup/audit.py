"""Host audit: look, read-only, for long-lived S3/R2 keys where they end up on a real host.

``ghost-backup audit-host`` turns the promise "no R2 credentials on disk" into a check an
operator or a compliance job can run. It reads rclone configs, systemd units and drop-ins (and
the ``EnvironmentFile=`` / ``LoadCredential=`` files they name), compose ``.env*`` files next to
the source tree, shell profiles and histories, ``/etc/environment``, AWS-style credential files,
ghost-backup's own config, state and runtime directories, and any extra path given.

Classification is pure (:func:`classify_line`, :func:`classify_text`,
:func:`parse_unit_references`); the only effect is reading files (:func:`run_audit`), which
never writes, never follows directory symlinks, opens with ``O_NOATIME`` where allowed and
reads at most :data:`MAX_FILE_BYTES` per file. A finding names the file, the line and the kind
of value, never the value: only :func:`fingerprint` (first 8 hex digits of its SHA-256) is
shown, so an operator can tell which key it is (``printf %s KEY | sha256sum | cut -c1-8``)
without the report becoming a place where the key is written down. The heuristics are listed
in docs/security.md ("Host audit").
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import hashlib
import itertools
import json
import os
import re
import stat
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ghost_backup.errors import ConfigError
from ghost_backup.settings import (
    DEFAULT_CONFIG_PATH,
    RuntimeSettings,
    SourceSettings,
    StateSettings,
    parse_settings,
)

MAX_FILE_BYTES = 1 << 20  # read at most 1 MiB of any file; larger ones are reported truncated
BINARY_SNIFF_BYTES = 8192  # a NUL byte in the first 8 KiB marks a file as binary (skipped)
MAX_FILES = 20_000  # files read in one audit
MAX_ENTRIES = 200_000  # directory entries listed in one audit (the walk budget)
EXTRA_PATH_DEPTH = 8  # how deep an explicit --path directory is walked
NAME_WALK_DEPTH = 5  # how deep /etc, /opt and /var/lib are searched for rclone.conf
FINGERPRINT_HEX = 8

KIND_ASSIGNMENT = "assignment"
KIND_KEY_ID = "access-key-id"
KIND_SECRET = "secret"  # noqa: S105 (a label, not a secret)
KIND_ENCRYPTED_RCLONE = "encrypted-rclone-config"

SHAPE_AWS_KEY_ID = "aws-key-id"  # AKIA... (long-lived IAM user key) / ASIA... (STS), 20 chars
SHAPE_R2_KEY_ID = "r2-key-id"  # 32 lower-case hex digits
SHAPE_AWS_SECRET = "aws-secret"  # noqa: S105 (label) 40 characters of base64's alphabet
SHAPE_R2_SECRET = "r2-secret"  # noqa: S105 (label) 64 lower-case hex digits

# ---------------------------------------------------------------------------------------------
# Classification: pure functions, no I/O.

# A key name that says "this is an S3 credential": secret_access_key, aws_access_key_id,
# RCLONE_CONFIG_R2_SECRET_ACCESS_KEY, secretAccessKey (Ghost's storage adapters, JSON), ...
_KEY_NAME = (
    r"secret[_.-]?access[_.-]?key|access[_.-]?key[_.-]?id|session[_.-]?token"
    r"|security[_.-]?token|(?:aws|s3|r2)[_.-]?(?:secret|access)[_.-]?key"
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
# Words that, on the same line, say a hex or base64 token is an identifier, not a key.
_ID_CONTEXT_RE = re.compile(
    r"sha1|sha256|sha512|md5|digest|checksum|hash|integrity|machine[_-]?id|boot[_-]?id|uuid"
    r"|account|fingerprint|commit|etag|cloudflarestorage",
    re.IGNORECASE,
)
_RCLONE_ENCRYPTED_MARK = "RCLONE_ENCRYPT_V0:"
_IDENTIFIER_FILES = ("machine-id", "*SUMS", "*.sha1", "*.sha256", "*.sha512", "*.md5",
                     "*.sum", "*.lock", "*-lock.json")
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
    if not candidates:
        return []
    id_context = _ID_CONTEXT_RE.search(line) is not None
    hits = []
    for shape, start, end in candidates:
        if id_context and shape != SHAPE_AWS_KEY_ID:
            continue
        kind = KIND_KEY_ID if shape in (SHAPE_AWS_KEY_ID, SHAPE_R2_KEY_ID) else KIND_SECRET
        hits.append(Hit(kind, shape, shape, fingerprint(line[start:end])))
    return hits


def classify_line(line: str, *, shapes: bool = True) -> tuple[Hit, ...]:
    """Given one line of text, return every suspicious value on it.

    Assignments to a credential-like name (``secret_access_key = ...``,
    ``RCLONE_CONFIG_R2_SECRET_ACCESS_KEY=...``, ``"secretAccessKey": "..."``,
    ``--s3-secret-access-key ...``) are reported whatever the value looks like, unless it is a
    placeholder or a reference (:func:`is_placeholder`). Bare values are reported when they have
    a key's shape (:func:`classify_shape`), stand alone (not part of a path, hostname or longer
    token) and no word on the line marks them as an identifier (``sha256``, ``digest``,
    ``account``, ...); ``shapes=False`` turns the bare-shape search off (inside PEM blocks).
    """
    hits: list[Hit] = []
    taken: list[tuple[int, int]] = []
    for regex in (_ASSIGNMENT_RE, _FLAG_RE):
        for match in regex.finditer(line):
            name = match.group("name")
            if not _KEY_NAME_RE.search(name) or _INDIRECT_NAME_RE.search(name):
                continue
            quoted = line[match.end():match.end() + 1] in ("'", '"')
            value, start, end = _value_at(line, match.end())
            if is_placeholder(value) or (not quoted and _CODE_VALUE_RE.search(value)):
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


def holds_identifiers(name: str) -> bool:
    """Return True for file names whose hex content is an identifier by nature.

    ``machine-id`` is 32 hex digits, checksum lists are lines of digests: only assignments
    are looked for in them, not bare shapes.
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


# ---------------------------------------------------------------------------------------------
# The scan plan: pure functions, no I/O.

_HOMES = ("/root", "/home/*")
_HOME_FILES = (".bashrc", ".profile", ".bash_profile", ".bash_login", ".zshrc", ".zshenv",
               ".zprofile", ".bash_history", ".zsh_history", ".ash_history", ".s3cfg", ".boto",
               ".env")
# Container image layers are not host configuration and can hold millions of files.
_NAME_WALK_PRUNE = ("/var/lib/docker", "/var/lib/containerd", "/var/lib/containers",
                    "/var/lib/machines")


@dataclass(frozen=True)
class HostLocations:
    """The host-specific places to look at, from ghost-backup's config (or its defaults)."""

    source: Path = SourceSettings.model_fields["path"].default
    state_dir: Path = StateSettings.model_fields["dir"].default
    runtime_dir: Path = RuntimeSettings.model_fields["dir"].default
    config_file: Path | None = None


@dataclass(frozen=True)
class ScanTarget:
    """One place to look: a host path or glob, walked ``depth`` levels when a directory."""

    pattern: str
    what: str
    depth: int = 1
    names: tuple[str, ...] = ()
    prune: tuple[str, ...] = ()
    rebase: bool = True
    required: bool = False


def build_scan_plan(locations: HostLocations, extra: Sequence[Path] = ()) -> tuple[ScanTarget, ...]:
    """Given the host's locations and extra paths, return every place the audit reads.

    Host paths are globs relative to the audited root (``--root``); ``extra`` paths are taken
    as given and walked whole (that is how to include the source data itself). The source
    tree is never walked by default: only compose files directly in it, one level below it,
    and next to it are read.
    """
    esc = glob.escape
    source, parent = esc(str(locations.source)), esc(str(locations.source.parent))
    prune = (*_NAME_WALK_PRUNE, str(locations.source))
    targets = [
        # rclone configs
        *(ScanTarget(f"{home}/.config/rclone", "rclone config", depth=2) for home in _HOMES),
        ScanTarget("/etc/rclone", "rclone config", depth=2),
        *(ScanTarget(top, "rclone config", depth=NAME_WALK_DEPTH,
                     names=("rclone.conf", "rclone*.conf"), prune=prune)
          for top in ("/etc", "/opt", "/var/lib")),
        # systemd units, drop-ins, manager defaults and credential stores
        ScanTarget("/etc/systemd/system", "systemd unit", depth=3),
        ScanTarget("/etc/systemd/system.control", "systemd unit", depth=2),
        ScanTarget("/run/systemd/system", "systemd unit", depth=3),
        ScanTarget("/run/systemd/system.control", "systemd unit", depth=2),
        ScanTarget("/run/systemd/transient", "systemd unit", depth=2),
        ScanTarget("/usr/local/lib/systemd/system", "systemd unit", depth=2),
        ScanTarget("/usr/lib/systemd/system", "systemd unit", depth=2),
        ScanTarget("/etc/systemd/system.conf", "systemd manager config"),
        ScanTarget("/etc/systemd/system.conf.d", "systemd manager config"),
        *(ScanTarget(f"{top}/credstore", "systemd credential store")
          for top in ("/etc", "/run", "/usr/lib", "/usr/local/lib")),
        # environment and shell profiles
        ScanTarget("/etc/environment", "environment"),
        ScanTarget("/etc/environment.d", "environment"),
        ScanTarget("/etc/profile", "shell profile"),
        ScanTarget("/etc/profile.d", "shell profile"),
        ScanTarget("/etc/bash.bashrc", "shell profile"),
        ScanTarget("/etc/bashrc", "shell profile"),
        *(ScanTarget(f"{home}/{name}", "shell profile") for home in _HOMES for name in _HOME_FILES),
        *(ScanTarget(f"{home}/.aws", "AWS credentials", depth=2) for home in _HOMES),
        ScanTarget("/opt/bin", "scripts"),
        # compose files next to and just inside the source tree, and usual project places
        *(ScanTarget(f"{top}/{name}", "compose env")
          for top in (source, f"{source}/*", parent, f"{parent}/*", "/opt/*", "/srv/*")
          for name in (".env*", "*compose*.y*ml")),
        # ghost-backup itself
        ScanTarget("/etc/ghost-backup", "ghost-backup config", depth=2),
        ScanTarget(esc(str(locations.state_dir)), "ghost-backup state", depth=3),
        ScanTarget(esc(str(locations.runtime_dir)), "ghost-backup runtime", depth=3),
    ]
    if locations.config_file is not None:
        targets.append(ScanTarget(esc(str(locations.config_file)), "ghost-backup config",
                                  rebase=False))
    targets += [ScanTarget(esc(str(path.absolute())), "extra path", depth=EXTRA_PATH_DEPTH,
                           rebase=False, required=True) for path in extra]
    return tuple(targets)


def rebase(root: Path, host_path: str) -> Path:
    """Return where absolute ``host_path`` is when the host's ``/`` is at ``root``."""
    if root == Path("/"):
        return Path(host_path)
    return Path(str(root).rstrip("/") + "/" + host_path.lstrip("/"))


# ---------------------------------------------------------------------------------------------
# Reports

@dataclass(frozen=True)
class Finding:
    """A suspicious value: where it is and what kind, with a fingerprint instead of the value."""

    path: str
    line: int
    kind: str
    name: str
    shape: str
    fingerprint: str
    via: str = ""


@dataclass(frozen=True)
class Skipped:
    """A file or directory not (fully) read, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class AuditReport:
    """The outcome of one audit."""

    root: str
    findings: tuple[Finding, ...]
    unreadable: tuple[Skipped, ...]
    skipped: tuple[Skipped, ...]
    files_scanned: int
    seconds: float
    notes: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        """Return True when nothing that looks like a key was found."""
        return not self.findings


def format_finding(finding: Finding) -> str:
    """Return one finding as a line: ``FILE:LINE: KIND NAME [shape] sha256:FP``."""
    shape = f" ({finding.shape} shape)" if finding.shape and finding.shape != finding.name else ""
    via = f" [via {finding.via}]" if finding.via else ""
    return (f"{finding.path}:{finding.line}: {finding.kind} {finding.name}{shape} "
            f"sha256:{finding.fingerprint}{via}")


def format_report_text(report: AuditReport) -> str:
    """Return the report as lines for a terminal or the journal."""
    lines = [format_finding(f) for f in report.findings]
    lines += [f"unreadable: {u.path}: {u.reason}" for u in report.unreadable]
    lines += [f"note: {note}" for note in report.notes]
    lines += [f"truncated: {s.path}: {s.reason}" for s in report.skipped
              if s.reason.startswith("truncated")]
    binary = sum(1 for s in report.skipped if s.reason == "binary")
    tail = (f"{report.files_scanned} files read in {report.seconds:.2f} s "
            f"({binary} binary skipped, {len(report.unreadable)} unreadable), root {report.root}")
    if report.clean:
        lines.append(f"audit-host: clean: no S3/R2 key found; {tail}")
    else:
        files = len({f.path for f in report.findings})
        lines.append(f"audit-host: {len(report.findings)} finding(s) in {files} file(s): "
                     f"long-lived keys may be on this host; {tail}")
    return "\n".join(lines) + "\n"


def format_report_json(report: AuditReport) -> str:
    """Return the report as one JSON document (for compliance jobs)."""
    data = {
        "clean": report.clean,
        "root": report.root,
        "files_scanned": report.files_scanned,
        "seconds": round(report.seconds, 3),
        "findings": [asdict(f) for f in report.findings],
        "unreadable": [asdict(u) for u in report.unreadable],
        "skipped": [asdict(s) for s in report.skipped],
        "notes": list(report.notes),
    }
    return json.dumps(data, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------
# The scan: the only effect is reading files.

@dataclass
class _Tally:
    root: Path
    findings: list[Finding] = field(default_factory=list)
    unreadable: list[Skipped] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seen: set[tuple[int, int]] = field(default_factory=set)
    references: list[tuple[UnitReference, str]] = field(default_factory=list)
    files: int = 0
    entries: int = 0

    def over_budget(self) -> bool:
        if self.files >= MAX_FILES or self.entries >= MAX_ENTRIES:
            note = f"walk budget reached ({MAX_FILES} files / {MAX_ENTRIES} entries): audit partial"
            if note not in self.notes:
                self.notes.append(note)
            return True
        return False


def _resolve_link(path: Path, root: Path) -> Path:
    """Return where a symlink points, resolving absolute targets inside ``root``."""
    if root == Path("/"):
        return path
    for _ in range(16):
        if not path.is_symlink():
            return path
        target = str(path.readlink())
        path = rebase(root, target) if target.startswith("/") else path.parent / target
    return path


@dataclass(frozen=True)
class _Head:
    data: bytes
    identity: tuple[int, int]
    binary: bool
    truncated: bool


def _read_head(path: Path) -> _Head | None:
    """Return the start of a regular file (None for anything else), at most MAX_FILE_BYTES.

    ``O_NOATIME`` keeps even the access time untouched (allowed to the owner and to root);
    ``O_NONBLOCK`` keeps a FIFO put in our way from blocking the audit. A binary file is
    recognised from its first 8 KiB and not read further.
    """
    if not stat.S_ISREG(path.stat().st_mode):
        return None
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_NOATIME)
    except PermissionError as err:
        if err.errno != errno.EPERM:
            raise
        fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        identity = (st.st_dev, st.st_ino)
        data = handle.read(BINARY_SNIFF_BYTES)
        if b"\0" in data:
            return _Head(b"", identity, binary=True, truncated=False)
        data += handle.read(MAX_FILE_BYTES + 1 - len(data))
    return _Head(data[:MAX_FILE_BYTES], identity, binary=False,
                 truncated=len(data) > MAX_FILE_BYTES)


def _scan_file(path: Path, tally: _Tally, links_root: Path, via: str = "") -> None:
    if tally.over_budget():
        return
    real = _resolve_link(path, links_root)
    try:
        head = _read_head(real)
    except FileNotFoundError:
        return
    except OSError as err:
        tally.unreadable.append(Skipped(str(path), err.strerror or err.__class__.__name__))
        return
    if head is None or head.identity in tally.seen:
        return
    tally.seen.add(head.identity)
    tally.files += 1
    if head.binary:
        tally.skipped.append(Skipped(str(path), "binary"))
        return
    if head.truncated:
        tally.skipped.append(Skipped(str(path), f"truncated: only the first {MAX_FILE_BYTES} "
                                                "bytes were read"))
    text = head.data.decode("utf-8", "replace")
    tally.findings += [Finding(str(path), number, hit.kind, hit.name, hit.shape,
                               hit.fingerprint, via)
                       for number, hit in classify_text(text, shapes=not holds_identifiers(
                           path.name))]
    if not via:
        tally.references += [(ref, f"{ref.directive}= in {path}")
                             for ref in parse_unit_references(text)]


def _walk(top: Path, target: ScanTarget, tally: _Tally) -> Iterator[Path]:
    """Yield the files under directory ``top`` that ``target`` selects (no dir symlinks)."""
    prune = {str(rebase(tally.root, p)) if target.rebase else p for p in target.prune}
    stack = [(top, 0)]
    while stack and not tally.over_budget():
        directory, level = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name, reverse=True)
        except OSError as err:
            tally.unreadable.append(Skipped(str(directory), err.strerror or "unreadable"))
            continue
        tally.entries += len(entries)
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if level + 1 < target.depth and entry.path not in prune:
                    stack.append((Path(entry.path), level + 1))
            elif not target.names or any(fnmatch.fnmatch(entry.name, n) for n in target.names):
                yield Path(entry.path)


def _scan_pattern(pattern: str, target: ScanTarget, tally: _Tally, via: str = "") -> None:
    """Read what ``pattern`` names: files directly, directories walked (a symlink given as
    the target itself is followed, as ``/var/lib/ghost-backup`` is under ``DynamicUser=``)."""
    links_root = tally.root if target.rebase else Path("/")
    has_glob = any(char in pattern for char in "*?[")
    # Path.glob cannot take an absolute pattern.
    paths = sorted(glob.glob(pattern)) if has_glob else [pattern]  # noqa: PTH207
    for name in paths:
        path = _resolve_link(Path(name), links_root)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            if target.required:
                tally.unreadable.append(Skipped(name, "No such file or directory"))
            continue
        except OSError as err:
            tally.unreadable.append(Skipped(name, err.strerror or "unreadable"))
            continue
        if stat.S_ISDIR(mode):
            for found in _walk(path, target, tally):
                _scan_file(found, tally, links_root, via)
        elif not target.names or any(fnmatch.fnmatch(Path(name).name, n) for n in target.names):
            _scan_file(Path(name), tally, links_root, via)


def read_host_locations(config: Path | None, env: Mapping[str, str],
                        root: Path) -> tuple[HostLocations, str]:
    """Return the locations from ghost-backup's config, or the defaults, and a note.

    The audit must work on a host with no config at all, or a broken one: it then uses the
    defaults and says so. ``config`` (``--config``) is read as given; otherwise
    ``$GHOST_BACKUP_CONFIG`` or the default path under ``root``.
    """
    explicit = config or (Path(env["GHOST_BACKUP_CONFIG"]) if env.get("GHOST_BACKUP_CONFIG")
                          else None)
    path = explicit or rebase(root, str(DEFAULT_CONFIG_PATH))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        settings = parse_settings(raw, env)
    except FileNotFoundError:
        return HostLocations(config_file=explicit), f"no config at {path}: default locations used"
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError) as err:
        why = err.message if isinstance(err, ConfigError) else err.__class__.__name__
        return (HostLocations(config_file=explicit),
                f"config {path} unusable ({why.split(':', 1)[0]}): default locations used")
    return HostLocations(source=settings.source.path, state_dir=settings.state.dir,
                         runtime_dir=settings.runtime.dir, config_file=explicit), ""


def run_audit(plan: Sequence[ScanTarget], root: Path = Path("/"),
              clock: Callable[[], float] = time.monotonic,
              notes: Sequence[str] = ()) -> AuditReport:
    """Read every place in ``plan`` (host paths under ``root``) and return the report.

    Files named by ``EnvironmentFile=`` or ``LoadCredential=`` in any file read are read
    afterwards, under ``root`` too. Nothing is written; unreadable paths are reported.
    """
    started = clock()
    tally = _Tally(root=root, notes=list(notes))
    for target in plan:
        pattern = target.pattern
        if target.rebase and root != Path("/"):
            pattern = glob.escape(str(root).rstrip("/")) + pattern
        _scan_pattern(pattern, target, tally)
    for ref, via in list(tally.references):
        pattern = glob.escape(str(rebase(root, "/"))).rstrip("/") + ref.pattern
        _scan_pattern(pattern, ScanTarget(ref.pattern, "unit reference"), tally, via)
    return AuditReport(
        root=str(root),
        findings=tuple(tally.findings),
        unreadable=tuple(tally.unreadable),
        skipped=tuple(tally.skipped),
        files_scanned=tally.files,
        seconds=clock() - started,
        notes=tuple(tally.notes),
    )
