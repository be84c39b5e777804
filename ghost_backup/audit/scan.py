"""The scan: the only effect of the audit is reading files."""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import stat
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ghost_backup.audit.classify import (
    UnitReference,
    classify_text,
    holds_identifiers,
    parse_unit_references,
)
from ghost_backup.audit.plan import HostLocations, ScanTarget, rebase
from ghost_backup.audit.report import AuditReport, Finding, Skipped
from ghost_backup.errors import ConfigError
from ghost_backup.settings import (
    DEFAULT_CONFIG_PATH,
    parse_settings,
)

MAX_FILE_BYTES = 1 << 20  # read at most 1 MiB of any file; larger ones are reported truncated
BINARY_SNIFF_BYTES = 8192  # a NUL byte in the first 8 KiB marks a file as binary (skipped)
MAX_FILES = 20_000  # files read in one audit
MAX_ENTRIES = 200_000  # directory entries listed in one audit (the walk budget)

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
