"""The one child-process boundary: run rclone (and every other child), stream its output,
forward signals, detect stalls.

This is the only module that starts processes: rclone's sync and short calls, and the
``command`` credential helper. Every child gets SIGKILL when the supervisor dies
(``PR_SET_PDEATHSIG``) and its own process group. The child gets an argv list (no shell), a
closed stdin, its own process group (not its own session), and one pipe for stdout and
stderr, so its JSON lines reach our parser even when our own stderr is the journal (rclone
would otherwise switch to native journald output and bypass us).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ghost_backup.errors import RcloneFailed, Terminated
from ghost_backup.host.libc import PR_SET_PDEATHSIG, libc
from ghost_backup.rclone.progress import LogEvent, Stats, is_max_delete_refusal, parse_line

log = logging.getLogger(__name__)

_READ_SIZE = 1 << 16
_BATCH_SECONDS = 0.02


def resolve_executable(name: str, *, beside: Sequence[Path], search_path: str | None) -> str:
    """Return the executable ``name`` will start: itself when it holds a ``/``; else the first
    executable file called ``name`` in ``beside`` (the interpreter's own bin directory, where
    ``pip install ghost-backup[rclone]`` puts rclone), then on ``search_path`` (``$PATH``).
    Return ``name`` unchanged when nothing is found: starting it then fails with a clear
    "cannot start" line.

    Why the interpreter's directory first: a virtualenv's console script runs its own Python
    without the venv on ``PATH`` (systemd starts units with ``PATH=/usr/bin:/bin``-like
    paths), so the rclone that came with the package would otherwise be missed.
    """
    if "/" in name:
        return name
    for directory in beside:
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name, path=search_path) if search_path else None
    return found or name


class StopRequest:
    """Turns SIGTERM/SIGINT into an orderly stop.

    Outside a child's life a signal raises :class:`Terminated` at once (nothing to wait
    for); while a child runs, or while cleanup runs, the signal is only recorded, and the
    supervisor forwards it.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._defer = 0

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        """Signal handler: record the signal; raise Terminated unless deferred."""
        first = self.signum is None
        self.signum = signum
        if self._defer == 0 and first:
            raise Terminated(f"received {signal.Signals(signum).name}; stopping")

    def install(self) -> None:
        """Install the handler for SIGTERM and SIGINT."""
        signal.signal(signal.SIGTERM, self.handler)
        signal.signal(signal.SIGINT, self.handler)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Within this block, signals are recorded but never raise."""
        self._defer += 1
        try:
            yield
        finally:
            self._defer -= 1

    @property
    def requested(self) -> bool:
        """Return True once SIGTERM/SIGINT has arrived."""
        return self.signum is not None


@dataclass(frozen=True)
class ChildResult:
    """How the child ended."""

    returncode: int
    terminated: bool
    stalled: bool
    last_stats: Stats | None
    max_delete_hit: bool
    duration_seconds: float


def _die_with_parent(parent: int) -> Callable[[], None]:
    """Return a pre-exec hook that gives the child SIGKILL when the supervisor dies.

    Under systemd the cgroup is killed anyway; outside it, a SIGKILLed supervisor would
    otherwise leave rclone running with live keys in its environment (prctl(2),
    PR_SET_PDEATHSIG; the parent check closes the race with a parent that died first).
    """
    def hook() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return hook


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def run_child(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    on_event: Callable[[LogEvent], None],
    on_started: Callable[[int], None],
    on_tick: Callable[[], None],
    stop: StopRequest,
    tick_seconds: float,
    stall_timeout_seconds: float,
    term_timeout_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> ChildResult:
    """Run ``argv`` with ``env``, feeding each output line to ``on_event`` as it arrives.

    ``on_started`` gets the child's pid; ``on_tick`` runs at least every ``tick_seconds``
    (watchdog pings, status). On a stop request the child's process group gets SIGTERM,
    then SIGKILL after ``term_timeout_seconds``; the same happens when its progress figures
    stop changing for ``stall_timeout_seconds``. Raise RcloneFailed if it cannot start.
    """
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(  # argv list, no shell; env from an allowlist
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            # Its own process group (killpg reaches rclone and anything it starts; a Ctrl-C
            # at a terminal reaches only us, and we forward it), but not its own session:
            # with CONFIG_SCHED_AUTOGROUP a new session is a new scheduler group (sched(7)),
            # and on a busy host that made rclone ~25% slower (docs/performance.md).
            process_group=0,
            close_fds=True,
            # Runs only prctl/getppid in the child; the CLI is single-threaded.
            preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509
        )
    except OSError as err:
        os.close(read_fd)
        raise RcloneFailed(f"cannot start rclone ({argv[0]}): {err.strerror}") from None
    finally:
        os.close(write_fd)

    started = clock()
    on_started(proc.pid)
    last_stats: Stats | None = None
    last_activity_at = started
    last_activity: tuple[int, ...] = ()
    kill_at: float | None = None
    terminated = stalled = max_delete_hit = False
    pending = b""
    selector = selectors.DefaultSelector()
    selector.register(read_fd, selectors.EVENT_READ)
    open_pipe = True

    def handle(raw: bytes) -> None:
        nonlocal last_stats, last_activity_at, last_activity, max_delete_hit
        event = parse_line(raw.decode("utf-8", "replace"))
        if event.stats is not None:
            last_stats = event.stats
            if event.stats.activity != last_activity:
                last_activity = event.stats.activity
                last_activity_at = clock()
        elif event.object is not None:
            last_activity_at = clock()
        if is_max_delete_refusal(event):
            max_delete_hit = True
        on_event(event)

    try:
        while True:
            now = clock()
            if stop.requested and not terminated and kill_at is None:
                terminated = True
                log.warning("stopping rclone (pid %d) after %s", proc.pid,
                            signal.Signals(stop.signum or signal.SIGTERM).name)
                _signal_group(proc, signal.SIGTERM)
                kill_at = now + term_timeout_seconds
            elif (not stalled and kill_at is None
                  and now - last_activity_at > stall_timeout_seconds):
                stalled = True
                # A warning: the run's own error line reports the stall once.
                log.warning("rclone made no progress for %ds; stopping it",
                            stall_timeout_seconds)
                _signal_group(proc, signal.SIGTERM)
                kill_at = now + term_timeout_seconds
            if kill_at is not None and now >= kill_at and proc.poll() is None:
                log.warning("rclone did not exit within %ds of SIGTERM; killing it",
                            term_timeout_seconds)
                _signal_group(proc, signal.SIGKILL)
                kill_at = float("inf")
            on_tick()
            if open_pipe:
                for _key, _mask in selector.select(timeout=tick_seconds):
                    chunk = os.read(read_fd, _READ_SIZE)
                    if not chunk:
                        open_pipe = False
                        selector.unregister(read_fd)
                        break
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for raw in lines:
                        if raw:
                            handle(raw)
                    if len(chunk) < _READ_SIZE and proc.poll() is None:
                        # rclone writes one line per file: let the next lines gather in the
                        # pipe for a moment, so we wake once per batch rather than once per
                        # line (a 64 KiB pipe holds ~300 lines; rclone writes far fewer per
                        # _BATCH_SECONDS, so it never blocks on us). docs/performance.md.
                        time.sleep(_BATCH_SECONDS)
            elif proc.poll() is not None:
                break
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=min(tick_seconds, 0.2))
        if pending.strip():
            handle(pending)
    finally:
        if proc.poll() is None:  # an exception escaped the loop: never leave rclone behind
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        selector.close()
        os.close(read_fd)
    return ChildResult(
        returncode=proc.returncode,
        terminated=terminated,
        stalled=stalled,
        last_stats=last_stats,
        max_delete_hit=max_delete_hit,
        duration_seconds=clock() - started,
    )


@dataclass(frozen=True)
class Finished:
    """What a short child left behind: its code (negative: killed by that signal), output."""

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    seconds: float


def run_bounded(
    argv: Sequence[str], env: Mapping[str, str], *, timeout_seconds: float
) -> Finished:
    """Run a short child to completion and return its output; SIGKILL its group on timeout.

    Same boundary as :func:`run_child`: argv list, no shell, closed stdin, an allowlisted
    environment from the caller, its own process group, and SIGKILL when the supervisor
    dies. An exception (a signal) while it runs kills the group before it propagates.
    Raise OSError if it cannot be started (the caller names what failed).
    """
    started = time.monotonic()
    proc = subprocess.Popen(  # argv list, no shell; env from an allowlist
        list(argv),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        process_group=0,
        close_fds=True,
        preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509
    )
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        # The child may have children holding our pipes: kill the whole group.
        _signal_group(proc, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        timed_out = True
    except BaseException:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        raise
    return Finished(proc.returncode, stdout, stderr, timed_out, time.monotonic() - started)


@dataclass(frozen=True)
class Captured:
    """The result of a short rclone call whose output we read whole."""

    returncode: int
    stdout: str
    stderr: str


def run_captured(
    argv: Sequence[str], env: Mapping[str, str], *, timeout_seconds: float
) -> Captured:
    """Run a short rclone call (``rclone version``, ``rclone lsf``) and return its output.

    Raise RcloneFailed if it cannot start or does not finish in time (it is killed then).
    """
    try:
        done = run_bounded(argv, env, timeout_seconds=timeout_seconds)
    except OSError as err:
        raise RcloneFailed(f"cannot start rclone ({argv[0]}): {err.strerror}") from None
    if done.timed_out:
        raise RcloneFailed(
            f"{Path(argv[0]).name} {argv[1]} did not finish within {timeout_seconds:.0f}s"
        )
    return Captured(
        returncode=done.returncode,
        stdout=done.stdout.decode("utf-8", "replace"),
        stderr=done.stderr.decode("utf-8", "replace"),
    )
