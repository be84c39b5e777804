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
    decode_text,
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

# A file is read whole up to this size; a larger one is read this far and the audit is
# incomplete (a key past the first MiB of a shell history was once missed silently).
MAX_FILE_BYTES = 16 << 20
# The walk budget is per place in the plan, so one huge tree (a flood of units in
# /etc/systemd/system) cannot use up the budget before ~/.aws is read. Reaching it makes the
# audit incomplete.
MAX_FILES = 20_000  # files read below one place
MAX_ENTRIES = 200_000  # directory entries listed below one place
_MAX_LINKS = 40  # symlinks followed resolving one path (the kernel's own limit)


@dataclass
class _Tally:
    root: Path
    findings: list[Finding] = field(default_factory=list)
    unreadable: list[Skipped] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    seen: set[tuple[int, int]] = field(default_factory=set)
    references: list[tuple[UnitReference, str]] = field(default_factory=list)
    files: int = 0
    place: str = ""
    place_files: int = 0
    place_entries: int = 0

    def start_place(self, place: str) -> None:
        self.place, self.place_files, self.place_entries = place, 0, 0

    def over_budget(self) -> bool:
        if self.place_files >= MAX_FILES or self.place_entries >= MAX_ENTRIES:
            reason = (f"walk budget reached under {self.place} ({MAX_FILES} files / "
                      f"{MAX_ENTRIES} entries): the rest of it was not read")
            if reason not in self.incomplete:
                self.incomplete.append(reason)
            return True
        return False


def resolve_in_root(path: Path, root: Path) -> Path:
    """Return ``path`` (below ``root``) with every symlink on the way resolved inside ``root``.

    An image's absolute link (``/home -> /var/home``) means ``root/var/home``, never the host's
    ``/var/home``: the kernel would follow it out of the image, and the audit would report the
    host's files as the image's. ``..`` stops at ``root``. A missing component ends the
    resolution (opening the result then fails with ENOENT). With ``root`` = ``/`` the path is
    returned as given. Raise OSError(ELOOP) after too many links.
    """
    if root == Path("/"):
        return path
    try:
        parts = list(path.relative_to(root).parts)
    except ValueError:
        return path
    resolved, links = root, 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            resolved = resolved.parent if resolved != root else root
            continue
        candidate = resolved / part
        try:
            st = os.lstat(candidate)
        except OSError:
            return candidate.joinpath(*parts)
        if not stat.S_ISLNK(st.st_mode):
            resolved = candidate
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))
        target = candidate.readlink()
        if target.is_absolute():
            resolved, parts = root, [*target.parts[1:], *parts]
        else:
            parts = [*target.parts, *parts]
    return resolved


def _glob_in_root(host_pattern: str, root: Path) -> list[Path]:
    """Return the paths below ``root`` that ``host_pattern`` names, every component resolved
    inside ``root`` (glob(3) on ``root + pattern`` would follow an image's links out of it)."""
    found = [root]
    for part in Path(host_pattern).parts[1:]:
        matched: list[Path] = []
        for base in found:
            if not glob.has_magic(part):
                matched.append(resolve_in_root(base / part, root))
                continue
            try:
                names = sorted(entry.name for entry in base.iterdir())
            except OSError:
                continue
            matched += [resolve_in_root(base / name, root) for name in names
                        if fnmatch.fnmatch(name, part)
                        and (part.startswith(".") or not name.startswith("."))]
        found = matched
    return found


@dataclass(frozen=True)
class _Head:
    data: bytes
    identity: tuple[int, int]
    truncated: bool


def _read_head(path: Path, *, nofollow: bool) -> _Head | None:
    """Return a regular file's bytes (None for anything else), at most MAX_FILE_BYTES.

    ``O_NOATIME`` keeps even the access time untouched (allowed to the owner and to root);
    ``O_NONBLOCK`` keeps a FIFO put in our way from blocking the audit; ``nofollow`` (a path
    already resolved inside an image) refuses a link that appeared since.
    """
    if not stat.S_ISREG(path.stat().st_mode):
        return None
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if nofollow:
        flags |= os.O_NOFOLLOW
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
        data = handle.read(MAX_FILE_BYTES + 1)
    return _Head(data[:MAX_FILE_BYTES], identity, truncated=len(data) > MAX_FILE_BYTES)


def _scan_file(path: Path, tally: _Tally, links_root: Path, via: str = "") -> None:
    if tally.over_budget():
        return
    try:
        real = resolve_in_root(path, links_root)
        head = _read_head(real, nofollow=links_root != Path("/"))
    except FileNotFoundError:
        return
    except OSError as err:
        tally.unreadable.append(Skipped(str(path), err.strerror or err.__class__.__name__))
        return
    if head is None or head.identity in tally.seen:
        return
    tally.seen.add(head.identity)
    tally.files += 1
    tally.place_files += 1
    if head.truncated:
        tally.skipped.append(Skipped(str(path), f"truncated: only the first {MAX_FILE_BYTES} "
                                                "bytes were read"))
    text, binary = decode_text(head.data)
    shapes = not binary and not holds_identifiers(path.name)
    tally.findings += [Finding(str(path), number, hit.kind, hit.name, hit.shape,
                               hit.fingerprint, via)
                       for number, hit in classify_text(text, shapes=shapes)]
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
        tally.place_entries += len(entries)
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


def _expand(target: ScanTarget, root: Path) -> list[tuple[str, Path]]:
    """Return ``(shown name, path to read)`` for every path ``target`` names under ``root``."""
    if target.rebase and root != Path("/"):
        return [(str(path), path) for path in _glob_in_root(target.pattern, root)]
    pattern = target.pattern
    if any(char in pattern for char in "*?["):
        # Path.glob cannot take an absolute pattern.
        return [(name, Path(name)) for name in sorted(glob.glob(pattern))]  # noqa: PTH207
    return [(pattern, Path(pattern))]


def _scan_pattern(target: ScanTarget, tally: _Tally, via: str = "") -> None:
    """Read what ``target`` names: files directly, directories walked (a symlink given as
    the target itself is followed, as ``/var/lib/ghost-backup`` is under ``DynamicUser=``;
    inside an image, only to where it points inside the image)."""
    links_root = tally.root if target.rebase else Path("/")
    tally.start_place(target.pattern)
    for name, path in _expand(target, tally.root):
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
            _scan_file(path, tally, links_root, via)


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
        path = path if explicit else resolve_in_root(path, root)
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        settings = parse_settings(raw, env)
    except FileNotFoundError:
        return HostLocations(config_file=explicit), f"no config at {path}: default locations used"
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError) as err:
        why = err.message if isinstance(err, ConfigError) else err.__class__.__name__
        return (HostLocations(config_file=explicit),
                f"config {path} unusable ({why.split(':', 1)[0]}): default locations used")
    return HostLocations(source=settings.source.path, state_dir=settings.state.dir,
                         runtime_dir=settings.runtime.dir, manual_dir=settings.runtime.manual_dir,
                         config_file=explicit), ""


def run_audit(plan: Sequence[ScanTarget], root: Path = Path("/"),
              clock: Callable[[], float] = time.monotonic,
              notes: Sequence[str] = ()) -> AuditReport:
    """Read every place in ``plan`` (host paths under ``root``) and return the report.

    Files named by ``EnvironmentFile=`` or ``LoadCredential=`` in any file read are read
    afterwards, under ``root`` too. Nothing is written; unreadable paths, files read only in
    part and walks cut short by the budget are reported, and make the audit incomplete.
    """
    started = clock()
    tally = _Tally(root=root, notes=list(notes))
    for target in plan:
        _scan_pattern(target, tally)
    for ref, via in list(tally.references):
        _scan_pattern(ScanTarget(ref.pattern, "unit reference"), tally, via)
    return AuditReport(
        root=str(root),
        findings=tuple(tally.findings),
        unreadable=tuple(tally.unreadable),
        skipped=tuple(tally.skipped),
        files_scanned=tally.files,
        seconds=clock() - started,
        notes=tuple(tally.notes),
        incomplete=tuple(tally.incomplete),
    )
