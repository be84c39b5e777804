"""The one child-process boundary: run rclone (and every other child), stream its output,
forward signals, detect stalls.

This is the only module that starts processes: rclone's sync and short calls, the
``command`` credential helper, and the database dump pipes (:func:`run_pipe`). Every child
gets SIGKILL when the supervisor dies (``PR_SET_PDEATHSIG``) and its own process group.
The child gets an argv list (no shell), a closed stdin, its own process group (not its own
session), and one pipe for stdout and stderr, so its JSON lines reach our parser even when
our own stderr is the journal (rclone would otherwise switch to native journald output and
bypass us).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import BinaryIO

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


# Every signal whose default action would end the supervisor outright (no state file, no
# alert, the run dir left for the next run to sweep): SIGHUP (an SSH session closing under a
# manual restore), SIGQUIT (Ctrl-\\), SIGUSR1/SIGUSR2 (sent by mistake to "reload"). Each is
# an orderly stop, like SIGTERM, exit 143. SIGPIPE stays ignored (Python's own default).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                signal.SIGUSR1, signal.SIGUSR2)


class StopRequest:
    """Turns SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 into an orderly stop.

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
        """Install the handler for every signal in ``STOP_SIGNALS``."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.handler)

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
        """Return True once a stop signal has arrived."""
        return self.signum is not None


@dataclass(frozen=True)
class Deadline:
    """When a child must be gone, on the ``clock`` given to :func:`run_child`.

    ``term_at``: SIGTERM to its process group; ``kill_at``: SIGKILL if it still lives. Used
    for the credentials' expiry: rclone's ``--max-duration`` is only rclone's own promise,
    this is the supervisor's.
    """

    term_at: float
    kill_at: float


@dataclass(frozen=True)
class ChildResult:
    """How the child ended (``deadline_hit``: we stopped it at its :class:`Deadline`)."""

    returncode: int
    terminated: bool
    stalled: bool
    last_stats: Stats | None
    max_delete_hit: bool
    duration_seconds: float
    deadline_hit: bool = False


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


def _wait(now: float, tick_seconds: float, deadline: Deadline | None) -> float:
    """Return how long to wait for output: a tick, or less when a deadline step comes first."""
    if deadline is None:
        return tick_seconds
    upcoming = [t - now for t in (deadline.term_at, deadline.kill_at) if t > now]
    return max(0.05, min([tick_seconds, *upcoming]))


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def _spawn(argv: Sequence[str], env: Mapping[str, str], *,
           stdin: int, stdout: int, stderr: int) -> subprocess.Popen[bytes]:
    """Start one child: the only ``Popen`` of the package.

    An argv list and no shell; the environment exactly as the caller allowlisted it; every
    other descriptor closed. Its own process group (killpg reaches rclone and anything it
    starts; a Ctrl-C at a terminal reaches only us, and we forward it), but not its own
    session: with CONFIG_SCHED_AUTOGROUP a new session is a new scheduler group
    (sched(7)), and on a busy host that made rclone ~25% slower (docs/performance.md). It
    gets SIGKILL when the supervisor dies (the ``preexec_fn`` runs only prctl/getppid in the
    child; the supervisor is single-threaded).
    """
    return subprocess.Popen(  # argv list, no shell; env from an allowlist
        list(argv), env=dict(env), stdin=stdin, stdout=stdout, stderr=stderr,
        process_group=0, close_fds=True,
        preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509
    )


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
    deadline: Deadline | None = None,
) -> ChildResult:
    """Run ``argv`` with ``env``, feeding each output line to ``on_event`` as it arrives.

    ``on_started`` gets the child's pid; ``on_tick`` runs at least every ``tick_seconds``
    (watchdog pings, status). On a stop request the child's process group gets SIGTERM,
    then SIGKILL after ``term_timeout_seconds``; the same happens when its progress figures
    stop changing for ``stall_timeout_seconds``. With a ``deadline``, the group gets SIGTERM
    at ``deadline.term_at`` and SIGKILL at ``deadline.kill_at`` whatever else is going on.
    Raise RcloneFailed if it cannot start.
    """
    read_fd, write_fd = os.pipe()
    try:
        proc = _spawn(argv, env, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd)
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
    terminated = stalled = max_delete_hit = deadline_hit = False
    hard_kill_at = float("inf") if deadline is None else deadline.kill_at
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
            if (deadline is not None and not deadline_hit and now >= deadline.term_at
                    and proc.poll() is None):
                deadline_hit = True
                log.warning("credential window ends: stopping rclone (pid %d) before its keys "
                            "expire", proc.pid)
                _signal_group(proc, signal.SIGTERM)
                if kill_at is None:
                    kill_at = now + term_timeout_seconds
            if kill_at is not None and now >= kill_at and proc.poll() is None:
                log.warning("rclone did not exit within %ds of SIGTERM; killing it",
                            term_timeout_seconds)
                _signal_group(proc, signal.SIGKILL)
                kill_at = hard_kill_at = float("inf")
            elif now >= hard_kill_at and proc.poll() is None:
                log.warning("rclone (pid %d) still running as its keys are about to expire; "
                            "killing it", proc.pid)
                _signal_group(proc, signal.SIGKILL)
                kill_at = hard_kill_at = float("inf")
            on_tick()
            if open_pipe:
                for _key, _mask in selector.select(timeout=_wait(now, tick_seconds, deadline)):
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
        deadline_hit=deadline_hit,
    )


@dataclass(frozen=True)
class Finished:
    """What a short child left behind: its code (negative: killed by that signal), output."""

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    seconds: float


# Work handed to the next short child (see do_while_next_child_runs).
_while_next_child: list[Callable[[], None]] = []


def do_while_next_child_runs(work: Callable[[], None]) -> None:
    """Have the next :func:`run_bounded` call ``work`` while its child runs.

    The supervisor only waits on a short child (rclone's listing of the source, a Go process
    that runs on a core of its own), so work it needs right after costs no wall time there.
    That child writes to memory files (memfd_create(2)) instead of pipes: it never waits for
    us to read (``rclone lsf`` makes one write(2) per line, thousands of them), and ``work``
    runs in our one thread, uninterrupted, while it does. ``work`` must not raise.
    """
    _while_next_child.append(work)


def run_bounded(
    argv: Sequence[str], env: Mapping[str, str], *, timeout_seconds: float
) -> Finished:
    """Run a short child to completion and return its output; SIGKILL its group on timeout.

    Same boundary as :func:`run_child`: argv list, no shell, closed stdin, an allowlisted
    environment from the caller, its own process group, and SIGKILL when the supervisor
    dies. An exception (a signal) while it runs kills the group before it propagates.
    Raise OSError if it cannot be started (the caller names what failed).
    """
    if _while_next_child:
        works = list(_while_next_child)
        _while_next_child.clear()
        return _run_bounded_meanwhile(argv, env, timeout_seconds, works)
    started = time.monotonic()
    proc = _spawn(argv, env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE)
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


def _run_bounded_meanwhile(argv: Sequence[str], env: Mapping[str, str],
                           timeout_seconds: float, works: list[Callable[[], None]]) -> Finished:
    """:func:`run_bounded` with the child's output in memory files while ``works`` run."""
    started = time.monotonic()
    out_fd, err_fd = os.memfd_create("stdout"), os.memfd_create("stderr")
    try:
        proc = _spawn(argv, env, stdin=subprocess.DEVNULL, stdout=out_fd, stderr=err_fd)
        timed_out = False
        try:
            for work in works:
                work()
            proc.wait(timeout=max(0.0, started + timeout_seconds - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            timed_out = True
        except BaseException:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            raise
        stdout, stderr = _read_from_start(out_fd), _read_from_start(err_fd)
    finally:
        os.close(out_fd)
        os.close(err_fd)
    return Finished(proc.returncode, stdout, stderr, timed_out, time.monotonic() - started)


def _read_from_start(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


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


# --- a supervised pipe: producer -> (transform in the supervisor) -> consumer ----------------

_PIPE_HIGH_WATER = 1 << 20
_ERR_TAIL = 4096


@dataclass(frozen=True)
class PipeResult:
    """How a supervised pipe ended.

    ``aborted`` is None when the consumer's input was closed cleanly (it saw a complete
    stream); otherwise it says why the consumer was killed with its input still open, so it
    never saw an end of stream. ``consumer_rc`` is None for a file consumer.
    """

    aborted: str | None
    producer_rc: int | None
    consumer_rc: int | None
    raw_bytes: int
    sent_bytes: int
    producer_err: bytes
    consumer_out: bytes
    seconds: float


def run_pipe(
    producer: Sequence[str] | BinaryIO,
    producer_env: Mapping[str, str],
    consumer: Sequence[str] | BinaryIO,
    consumer_env: Mapping[str, str],
    *,
    transform: Callable[[bytes], bytes],
    flush: Callable[[], bytes],
    accept: Callable[[int], str | None],
    stop: StopRequest,
    on_tick: Callable[[], None],
    timeout_seconds: float,
    stall_timeout_seconds: float,
    tick_seconds: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> PipeResult:
    """Stream ``producer`` through ``transform`` into ``consumer``; commit only if accepted.

    Why the supervisor sits in the middle instead of a kernel pipe: with ``dump | gzip |
    rclone rcat`` a dump that dies half-way gives rcat a clean end of stream, and rcat uploads
    a truncated object as if it were complete. Here the consumer's input is closed only when
    the producer has ended and ``accept(producer_returncode)`` returns None (then ``flush()``
    is sent first). Otherwise, and on a stop request, a deadline (``timeout_seconds``), no
    producer output for ``stall_timeout_seconds`` or a transform error, the consumer's group
    is SIGKILLed with its input still open, so it never sees an end of stream.

    ``producer`` is an argv (its stdout is the stream; its stderr is read in the same loop, or
    a full stderr pipe would block it) or an open binary file. ``consumer`` is an argv (its
    stdin is the stream; stdout and stderr are read together) or an open binary file.
    Every child gets its own process group and dies with the supervisor. Raise OSError if a
    child cannot be started.
    """
    started = clock()
    deadline = started + timeout_seconds
    prod_proc: subprocess.Popen[bytes] | None = None
    cons_proc: subprocess.Popen[bytes] | None = None
    prod_file = None if isinstance(producer, Sequence) else producer
    cons_file = None if isinstance(consumer, Sequence) else consumer
    cons_name = Path(consumer[0]).name if isinstance(consumer, Sequence) else "consumer"
    try:
        if isinstance(consumer, Sequence):
            cons_proc = _spawn(consumer, consumer_env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if isinstance(producer, Sequence):
            prod_proc = _spawn(producer, producer_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError:
        if cons_proc is not None:
            _signal_group(cons_proc, signal.SIGKILL)
            cons_proc.wait()
        raise

    in_fd = prod_proc.stdout.fileno() if prod_proc and prod_proc.stdout else None
    err_fd = prod_proc.stderr.fileno() if prod_proc and prod_proc.stderr else None
    cin_fd = cons_proc.stdin.fileno() if cons_proc and cons_proc.stdin else None
    cout_fd = cons_proc.stdout.fileno() if cons_proc and cons_proc.stdout else None
    if cin_fd is not None:
        os.set_blocking(cin_fd, False)
    pending = bytearray()
    raw = sent = 0
    prod_err = bytearray()
    cons_out = bytearray()
    last_output = started
    producer_done = False
    aborted: str | None = None

    def send(data: bytes) -> None:
        nonlocal sent
        if cons_file is not None:
            cons_file.write(data)
            sent += len(data)
        else:
            pending.extend(data)

    def drain(fd: int, sink: bytearray) -> bool:
        chunk = os.read(fd, _READ_SIZE)
        sink.extend(chunk)
        del sink[:-_ERR_TAIL]
        return bool(chunk)

    def take(chunk: bytes) -> str | None:
        nonlocal raw, last_output
        raw += len(chunk)
        last_output = clock()
        try:
            send(transform(chunk))
        except ValueError as err:  # the transform refuses the stream (e.g. corrupt gzip)
            return str(err)
        return None

    try:
        while aborted is None:
            now = clock()
            if stop.requested:
                aborted = f"stopped by {signal.Signals(stop.signum or signal.SIGTERM).name}"
            elif now >= deadline:
                aborted = f"did not finish within {timeout_seconds:.0f}s"
            elif not producer_done and now - last_output > stall_timeout_seconds:
                aborted = f"no output for {stall_timeout_seconds:.0f}s"
            if aborted is not None:
                break
            on_tick()
            if producer_done and not pending:
                break
            room = len(pending) < _PIPE_HIGH_WATER
            if prod_file is not None and not producer_done and room:
                chunk = prod_file.read(_READ_SIZE)
                if chunk:
                    aborted = take(chunk)
                else:
                    producer_done = True
            readers = [fd for fd in (in_fd if room else None, err_fd, cout_fd) if fd is not None]
            writers = [cin_fd] if pending and cin_fd is not None else []
            wait = 0 if prod_file is not None and not producer_done else tick_seconds
            ready_r, ready_w, _ = select.select(readers, writers, [], wait)
            if cin_fd in ready_w:
                try:
                    written = os.write(cin_fd, pending)
                except BrokenPipeError:
                    aborted = f"{cons_name} stopped reading"
                    break
                del pending[:written]
                sent += written
            for fd in ready_r:
                if fd == in_fd:
                    chunk = os.read(fd, _READ_SIZE)
                    if chunk:
                        aborted = aborted or take(chunk)
                    else:
                        in_fd = None
                elif fd == err_fd and not drain(fd, prod_err):
                    err_fd = None
                elif fd == cout_fd and not drain(fd, cons_out):
                    cout_fd = None
            if prod_proc is not None and in_fd is None and err_fd is None:
                producer_done = True
        producer_rc: int | None = None
        if prod_proc is not None:
            if aborted is not None:
                _signal_group(prod_proc, signal.SIGKILL)
            producer_rc = prod_proc.wait()
        if aborted is None:
            aborted = accept(0 if producer_rc is None else producer_rc)
        if aborted is None:
            send(flush())
            if cin_fd is not None:
                os.set_blocking(cin_fd, True)
                try:
                    while pending:
                        del pending[:os.write(cin_fd, pending)]
                except BrokenPipeError:
                    aborted = f"{cons_name} stopped reading"
            if cons_proc is not None and cons_proc.stdin is not None and aborted is None:
                cons_proc.stdin.close()  # the one clean end of stream
                cin_fd = None
        consumer_rc: int | None = None
        if cons_proc is not None:
            if aborted is not None:
                # Its input is still open: it never saw an end of stream, so nothing commits.
                _signal_group(cons_proc, signal.SIGKILL)
            while cout_fd is not None:
                left = deadline - clock()
                if stop.requested or left <= 0:
                    _signal_group(cons_proc, signal.SIGKILL)
                    aborted = aborted or ("stopped by a signal" if stop.requested else
                                          f"did not finish within {timeout_seconds:.0f}s")
                on_tick()
                ready, _, _ = select.select([cout_fd], [], [], min(tick_seconds, max(left, 0)))
                if ready and not drain(cout_fd, cons_out):
                    cout_fd = None
            consumer_rc = cons_proc.wait()
    finally:
        for proc in (prod_proc, cons_proc):
            if proc is not None and proc.poll() is None:  # an exception escaped: kill it
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            if proc is not None:
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        with contextlib.suppress(OSError):
                            stream.close()
    return PipeResult(
        aborted=aborted, producer_rc=producer_rc, consumer_rc=consumer_rc, raw_bytes=raw,
        sent_bytes=sent, producer_err=bytes(prod_err), consumer_out=bytes(cons_out),
        seconds=clock() - started,
    )


def exit_by_signal(signum: int) -> None:
    """End this process by ``signum`` with its default action (never returns).

    For a run interrupted by a shutdown: systemd.service(5) counts a death by SIGTERM as a
    clean exit (``SuccessExitStatus=``), so the unit does not fail, ``OnFailure=`` does not
    page and ``Restart=`` does not act; an exit status of 143 would do all three.
    """
    logging.shutdown()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    signal.pause()  # the signal is pending; it ends the process before this returns
