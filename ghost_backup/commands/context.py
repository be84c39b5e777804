"""What every command shares: its collaborators (:class:`Deps`), the run id, the one lifecycle
(runtime dir + lock, then a credential window whose config is shredded whatever happens), the
audited credential fetch, the one max-duration rule, and running rclone as a child.

Every command that touches keys (``run``, ``check``, ``restore``, ``verify``) goes through
:func:`command_scope`::

    with command_scope(settings, deps) as scope:      # tmpfs proven, lock taken, stale swept
        credentials = fetch_audited_credentials(...)  # one audit line per request
        window = scope.open_window(credentials)       # per-run 0700 dir, 0600 config
        ...                                           # rclone children
    # finally, signals deferred: STOPPING=1, shred + remove every run dir, release the lock
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ghost_backup import rclone
from ghost_backup.credentials.sources import CredentialSource, SourceContext, build_source
from ghost_backup.errors import (
    RcloneFailed,
    RuntimeUnsafe,
    TemporaryFailure,
    Terminated,
    VerifyMismatch,
)
from ghost_backup.host import files, runtime
from ghost_backup.host.notify import Notifier
from ghost_backup.host.process import ChildResult, Deadline, StopRequest, run_captured, run_child
from ghost_backup.logs import NOTICE, Redactor, level_for_priority
from ghost_backup.rclone.progress import LogEvent, format_progress, is_routine_notice
from ghost_backup.report.alerts import AlertSink
from ghost_backup.settings import Settings

if TYPE_CHECKING:  # the HTTP stack and the credential models load with the first fetch
    import requests

    from ghost_backup.credentials.model import Credentials

log = logging.getLogger(__name__)
rclone_log = logging.getLogger("ghost_backup.rclone")

VERSION_TIMEOUT_SECONDS = 30.0
COMBINED_NAME = "check-combined.txt"
_SHOWN_PATHS = 10


@dataclass(frozen=True)
class Deps:
    """Collaborators of a command, wired once in the CLI (tests pass their own)."""

    new_session: Callable[[], requests.Session]
    clock: Callable[[], datetime]
    monotonic: Callable[[], float]
    sleep: Callable[[float], None]
    notifier: Notifier
    alerts: AlertSink
    redactor: Redactor
    stop: StopRequest
    env: Mapping[str, str]
    watchdog_seconds: float | None = None

    @functools.cached_property
    def session(self) -> requests.Session:
        """Return the credential sources' HTTP session, built at the first use.

        Building it loads requests and urllib3 (tens of ms); the nightly run needs it only
        after its source listing (docs/performance.md, "Start-up").
        """
        return self.new_session()


def new_run_id(now: datetime) -> str:
    """Return a sortable, unique run id such as ``20261126T020000Z-3fa1c2``."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


# --- the lifecycle ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """What a command holds while its credentials are live."""

    run_id: str
    credentials: Credentials
    run_dir: Path
    config_path: Path

    def child_env(self, deps: Deps) -> dict[str, str]:
        """Return rclone's environment for this window: allowlisted, keys included."""
        return rclone.build_child_env(deps.env, self.credentials)

    def renewed(self, credentials: Credentials) -> Window:
        """Return this window with fresh credentials (the config holds no key)."""
        return dataclasses.replace(self, credentials=credentials)


@dataclass(frozen=True)
class Scope:
    """One command's hold on the runtime dir; :meth:`open_window` registers its cleanup."""

    settings: Settings
    run_id: str
    _stack: contextlib.ExitStack
    _runtime_fd: int
    runtime_dir: Path  # the unit's under systemd, else the hand-run one

    def open_window(self, credentials: Credentials) -> Window:
        """Create the per-run tmpfs dir with the rclone config; it is shredded at scope exit.

        Both are created from the runtime dir's file descriptor (opened and checked by
        :func:`command_scope`), and the runtime path must still name that directory before
        rclone gets paths below it. The config holds no key (keys travel in rclone's
        environment only).
        """
        runtime_dir = self.runtime_dir
        try:
            run_dir = runtime.create_run_dir(runtime_dir, self.run_id, self._runtime_fd)
        except OSError as err:  # a full tmpfs (ENOSPC), inodes exhausted (EMFILE...)
            raise RuntimeUnsafe(
                f"cannot create the run directory in {runtime_dir}: {err.strerror}") from None
        self._stack.callback(runtime.remove_run_dir_at, run_dir, self._runtime_fd)
        try:
            run_fd = runtime.open_run_dir(run_dir, self._runtime_fd)
            try:
                config_path = files.write_private_file(
                    run_dir, rclone.CONFIG_NAME, rclone.render_config(self.settings), run_fd)
            finally:
                os.close(run_fd)
        except OSError as err:
            raise RuntimeUnsafe(
                f"cannot write the rclone config in {runtime_dir}: {err.strerror}") from None
        if not runtime.same_directory(runtime_dir, self._runtime_fd):
            raise RuntimeUnsafe(f"runtime dir {runtime_dir} was replaced during the run; "
                                "refusing to hand rclone paths below it")
        return Window(self.run_id, credentials, run_dir, config_path)

    def on_exit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` when the scope ends (before the lock is released)."""
        self._stack.callback(callback)


@contextlib.contextmanager
def command_scope(settings: Settings, deps: Deps, run_id: str) -> Iterator[Scope]:
    """Prove the runtime dir safe (the unit's under systemd, else the hand-run one), take
    the single-run lock (outside both), sweep stale run dirs; yield.

    On the way out, whatever happened and with signals deferred: ``STOPPING=1``, then every
    window's directory is shredded and removed, then the lock is released (each cleanup runs
    even if an earlier one fails). Every command shares ``run``'s lock: a restore never races
    the nightly sync, and the proxy's audit log sees one credential request at a time.
    """
    stack = contextlib.ExitStack()
    runtime_dir = runtime.select_runtime_dir(settings.runtime.dir, settings.runtime.manual_dir,
                                             deps.env)
    try:
        runtime_fd = runtime.open_runtime_dir(runtime_dir)
        stack.callback(os.close, runtime_fd)  # closed last, after every cleanup
        lock_fd = runtime.acquire_lock(settings.runtime.lock_path)
        stack.callback(runtime.release_lock, lock_fd)
        for stale in runtime.remove_stale_run_dirs(runtime_dir):
            log.warning("removed stale run directory %s left by a run that died", stale.name)
        yield Scope(settings, run_id, stack, runtime_fd, runtime_dir)
    finally:
        with deps.stop.deferred():
            deps.notifier.send("STOPPING=1")
            stack.close()


def max_duration_seconds(settings: Settings, deps: Deps, credentials: Credentials) -> int:
    """Return rclone's ``--max-duration``: the keys' remaining life minus the safety margin."""
    remaining = (credentials.expires_at - deps.clock()).total_seconds()
    return max(1, int(remaining - settings.credentials.safety_margin_seconds))


def credential_deadline(settings: Settings, deps: Deps, credentials: Credentials) -> Deadline:
    """Return when the supervisor stops rclone: SIGTERM at ``expires_at`` minus the safety
    margin, SIGKILL at ``expires_at`` minus half of it (on the ``deps.monotonic`` clock)."""
    remaining = remaining_seconds(deps, credentials)
    margin = settings.credentials.safety_margin_seconds
    now = deps.monotonic()
    return Deadline(term_at=now + remaining - margin, kill_at=now + remaining - margin / 2)


def remaining_seconds(deps: Deps, credentials: Credentials) -> float:
    """Return how long ``credentials`` stay valid from now."""
    return (credentials.expires_at - deps.clock()).total_seconds()


# --- credentials ------------------------------------------------------------------------------

def fetch_audited_credentials(
    settings: Settings,
    deps: Deps,
    run_id: str,
    *,
    command: str,
    source: CredentialSource | None = None,
    window: int = 1,
) -> tuple[Credentials, datetime]:
    """Fetch credentials from the configured source, logging the two audit lines.

    Return the credentials and the time they were requested; their secrets are registered
    with the redactor before anything else can log them. Every command (``run``, ``check``,
    ``restore``, ``verify``) gets its credentials here, so the audit trail is the same for
    all of them: run id, provider, command, request time and source, then the expiry.
    ``window`` > 1 (a run continuing with fresh credentials) gives the request its own id,
    ``<run id>.w<window>``, sent as ``X-Request-ID`` and logged.
    """
    source = source or build_source(settings)
    provider = source.provider
    requested_at = deps.clock()
    request_id = run_id if window == 1 else f"{run_id}.w{window}"
    log.log(NOTICE, "credential request: run_id=%s provider=%s command=%s requested_at=%s "
            "source=%s request_id=%s", run_id, provider, command,
            requested_at.isoformat(timespec="seconds"), source.name, request_id)
    context = SourceContext(session=deps.session, clock=deps.clock, sleep=deps.sleep,
                            env=deps.env, run_id=request_id, remember=deps.redactor.add)
    credentials = source.fetch(context)
    deps.redactor.add(credentials.secret_values())
    valid_for = int((credentials.expires_at - deps.clock()).total_seconds())
    log.log(NOTICE, "credentials received: run_id=%s provider=%s requested_at=%s "
            "expires_at=%s valid_for=%ds session_token=%s source=%s",
            run_id, provider, requested_at.isoformat(timespec="seconds"),
            credentials.expires_at.isoformat(timespec="seconds"), valid_for,
            "yes" if credentials.session_token else "no", source.name)
    return credentials, requested_at


# --- rclone -----------------------------------------------------------------------------------

_LOG_TARGET = {priority: (level_for_priority(priority), {"priority": priority})
               for priority in range(8)}


def log_rclone_event(event: LogEvent) -> None:
    """Write one rclone line to our log at its own priority (stats lines as progress)."""
    if event.stats is not None:
        rclone_log.log(NOTICE, "progress: %s", format_progress(event.stats),
                       extra={"priority": 5})
        return
    # The hot path: one call per copied file. Arguments stay lazy; the priority's extra dict
    # is built once per priority, not once per line (docs/performance.md).
    level, extra = _LOG_TARGET.get(event.priority) or (
        level_for_priority(event.priority), {"priority": event.priority})
    if not event.object and is_routine_notice(event):
        level, extra = logging.DEBUG, {"priority": 7}
    if event.object:
        rclone_log.log(level, "rclone: %s: %s", event.message, event.object, extra=extra)
    else:
        rclone_log.log(level, "rclone: %s", event.message, extra=extra)


def fetch_rclone_version(settings: Settings, env: Mapping[str, str], *,
                         cached: bool = False) -> str | None:
    """Return rclone's version (``v1.75.2``), or None if its answer is not understood.

    With ``cached`` (the nightly ``run``), the answer recorded in the state directory for this
    very binary (device, inode, size, mtime, ctime of its real path) is reused: ``rclone
    version`` costs 50-80 ms of a run's fixed cost. A binary that changed, or any cache
    problem, means a live call, whose answer is then recorded. Raise RcloneFailed if rclone
    cannot be started: better to know before fetching keys.
    """
    key = _binary_identity(settings.rclone.binary, env) if cached else None
    cache = settings.state.dir / rclone.VERSION_CACHE_NAME
    if key is not None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            hit = rclone.parse_version_cache(cache.read_text(encoding="utf-8"), key)
            if hit is not None:
                log.debug("rclone %s (cached for this binary)", hit)
                return hit
    result = run_captured(rclone.build_version_argv(settings), rclone.build_plain_env(env),
                          timeout_seconds=VERSION_TIMEOUT_SECONDS)
    parsed = rclone.parse_version(result.stdout) if result.returncode == 0 else None
    if parsed is None:
        log.warning("%s version did not report a version (exit %d)",
                    settings.rclone.binary, result.returncode)
        return None
    text, numbers = parsed
    if numbers < rclone.MIN_VERSION:
        log.warning("rclone %s is older than the oldest tested version v%s",
                    text, ".".join(map(str, rclone.MIN_VERSION)))
    if key is not None:
        try:
            files.write_file_atomically(cache, rclone.render_version_cache(
                key, text, datetime.now(UTC).isoformat(timespec="seconds")), 0o644)
        except OSError as err:
            log.debug("cannot record the rclone version in %s: %s", cache, err.strerror)
    return text


def _binary_identity(binary: str, env: Mapping[str, str]) -> tuple[int, ...] | None:
    """Return (dev, inode, size, mtime ns, ctime ns) of the file ``binary`` starts, or None."""
    found = binary if "/" in binary else shutil.which(binary, path=env.get("PATH"))
    if found is None:
        return None
    try:
        st = Path(found).resolve().stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def open_hash_cache(settings: Settings, window: Window) -> Path:
    """Return the sync's cache dir: the persistent hash cache, or tmpfs if it is unusable.

    A state directory that cannot be written must not fail the backup (it only costs the
    hash cache): the sync then hashes every source file this night, as it would after a
    lost cache.
    """
    wanted = rclone.hash_cache_dir(settings)
    try:
        return files.ensure_private_dir(wanted)
    except OSError as err:
        log.warning("hash cache %s unusable (%s): this run reads every source file to hash it",
                    wanted, err.strerror or err)
        return window.run_dir / "cache"


def run_rclone(settings: Settings, deps: Deps, argv: tuple[str, ...], window: Window, *,
               on_event: Callable[[LogEvent], None] = log_rclone_event) -> ChildResult:
    """Run a streaming rclone command (restore's copy, a check, a dry run) with ``window``'s
    keys and return its result; each output line goes to ``on_event`` (the journal by
    default).

    The supervisor stops rclone before the keys expire (:func:`credential_deadline`, the same
    rule as ``run``'s sync; ``result.deadline_hit`` says so), whatever rclone's own
    ``--max-duration`` did. Raise Terminated if a signal stopped it, RcloneFailed if it
    stalled.
    """
    env = window.child_env(deps)
    deadline = credential_deadline(settings, deps, window.credentials)
    def on_started(pid: int) -> None:
        log.info("rclone %s started (pid %d)", argv[1], pid)

    # While rclone lives, SIGTERM is forwarded to it (and waited for), never raised here.
    with deps.stop.deferred():
        result = run_child(
            argv, env, on_event=on_event, on_started=on_started,
            on_tick=lambda: None, stop=deps.stop, tick_seconds=1.0,
            stall_timeout_seconds=settings.rclone.stall_timeout_seconds,
            term_timeout_seconds=settings.rclone.term_timeout_seconds, clock=deps.monotonic,
            deadline=deadline,
        )
    if result.terminated:
        raise Terminated(f"rclone {argv[1]} stopped by a signal; nothing more was written")
    if result.stalled:
        raise RcloneFailed(f"rclone {argv[1]} stalled: no progress for "
                           f"{settings.rclone.stall_timeout_seconds}s; it was stopped")
    return result


def read_check_report(settings: Settings, deps: Deps, window: Window, argv: tuple[str, ...],
                       what: str) -> rclone.CheckReport:
    """Run an ``rclone check --combined`` argv and return what it found.

    Raise RcloneFailed if rclone failed without recording any difference (it could not list
    or read, so nothing was proven).
    """
    result = run_rclone(settings, deps, argv, window)
    if result.deadline_hit:
        raise TemporaryFailure(f"{what} did not finish before its credentials expired (rclone "
                               "was stopped); ask for longer-lived credentials or check a "
                               "smaller --path")
    combined = window.run_dir / COMBINED_NAME
    text = combined.read_text(encoding="utf-8", errors="replace") if combined.exists() else ""
    report = rclone.parse_combined(text)
    if result.returncode != 0 and report.problems == 0:
        raise RcloneFailed(f"{what} could not complete (rclone check exit {result.returncode}); "
                           "see the rclone lines above")
    return report


def raise_on_problems(report: rclone.CheckReport, what: str) -> None:
    if report.problems == 0:
        return
    for label, paths in (("differs", report.differ), ("missing", report.missing),
                         ("unreadable", report.unreadable)):
        for path in paths[:_SHOWN_PATHS]:
            log.error("%s: %s %s", what, label, path)
        if len(paths) > _SHOWN_PATHS:
            log.error("%s: ... and %d more %s", what, len(paths) - _SHOWN_PATHS, label)
    raise VerifyMismatch(
        f"{what} found {report.problems} problem(s): {len(report.differ)} differ, "
        f"{len(report.missing)} missing, {len(report.unreadable)} unreadable; "
        f"{report.matching} identical"
    )
