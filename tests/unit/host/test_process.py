"""run_child with small real children (python -c): process group, session, batched reading."""

from __future__ import annotations

import os
import sys
import time

from ghost_backup.host.process import (
    StopRequest,
    do_while_next_child_runs,
    run_bounded,
    run_child,
)
from ghost_backup.rclone.progress import LogEvent


def _run(code: str) -> tuple[list[LogEvent], list[int]]:
    events: list[LogEvent] = []
    pids: list[int] = []
    result = run_child([sys.executable, "-c", code], {"PATH": "/usr/bin:/bin"},
                       on_event=events.append, on_started=pids.append, on_tick=lambda: None,
                       stop=StopRequest(), tick_seconds=0.5, stall_timeout_seconds=60,
                       term_timeout_seconds=5)
    assert result.returncode == 0
    return events, pids


def test_child_leads_its_own_process_group_but_stays_in_our_session() -> None:
    # A session of its own would be a scheduler autogroup of its own (sched(7)).
    events, pids = _run("import os; print(os.getpgid(0), os.getsid(0))")
    pgid, sid = (int(part) for part in events[0].message.split())
    assert pgid == pids[0]
    assert sid == os.getsid(0)


def test_every_line_arrives_in_order_across_batched_reads() -> None:
    code = ("import json, sys, time\n"
            "for i in range(3000):\n"
            "    print(json.dumps({'level': 'info', 'msg': 'Copied (new)', 'object': f'f{i}'}))\n"
            "    if i % 500 == 0: sys.stdout.flush(); time.sleep(0.01)\n")
    events, _ = _run(code)
    assert [e.object for e in events] == [f"f{i}" for i in range(3000)]


def test_deadline_terms_then_kills_a_child_that_ignores_sigterm_before_kill_at() -> None:
    import time  # noqa: PLC0415

    from ghost_backup.host.process import Deadline  # noqa: PLC0415

    code = ("import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")
    start = time.monotonic()
    result = run_child([sys.executable, "-c", code], {"PATH": "/usr/bin:/bin"},
                       on_event=lambda _e: None, on_started=lambda _p: None,
                       on_tick=lambda: None, stop=StopRequest(), tick_seconds=1.0,
                       stall_timeout_seconds=60, term_timeout_seconds=30,
                       deadline=Deadline(term_at=start + 0.5, kill_at=start + 1.5))
    took = time.monotonic() - start
    assert result.deadline_hit
    assert result.returncode == -9  # SIGKILL: it ignored SIGTERM
    assert 1.5 <= took < 2.2  # killed at kill_at, not after term_timeout_seconds


def test_deadline_sigterm_stops_a_well_behaved_child_at_term_at() -> None:
    import time  # noqa: PLC0415

    from ghost_backup.host.process import Deadline  # noqa: PLC0415

    start = time.monotonic()
    result = run_child([sys.executable, "-c", "import time; time.sleep(60)"],
                       {"PATH": "/usr/bin:/bin"},
                       on_event=lambda _e: None, on_started=lambda _p: None,
                       on_tick=lambda: None, stop=StopRequest(), tick_seconds=1.0,
                       stall_timeout_seconds=60, term_timeout_seconds=30,
                       deadline=Deadline(term_at=start + 0.3, kill_at=start + 5))
    assert result.deadline_hit
    assert result.returncode == -15
    assert time.monotonic() - start < 1.5



def test_work_handed_to_the_next_child_runs_while_it_runs_and_only_once() -> None:
    seen: list[float] = []
    do_while_next_child_runs(lambda: seen.append(time.monotonic()))
    # More output than a pipe holds (64 KiB), one write(2) per line as rclone lsf makes.
    code = ("import os, time\n"
            "for i in range(5000): os.write(1, b'%05d;a-path-of-some-length\\n' % i)\n"
            "os.write(2, b'done\\n'); time.sleep(0.3)")
    started = time.monotonic()
    done = run_bounded([sys.executable, "-c", code], {"PATH": "/usr/bin:/bin"},
                       timeout_seconds=10)
    assert done.returncode == 0
    assert not done.timed_out
    assert done.stdout.splitlines()[-1] == b"04999;a-path-of-some-length"
    assert len(done.stdout.splitlines()) == 5000
    assert done.stderr == b"done\n"
    assert len(seen) == 1
    assert seen[0] - started < done.seconds - 0.2  # while the child ran
    run_bounded([sys.executable, "-c", "pass"], {"PATH": "/usr/bin:/bin"}, timeout_seconds=10)
    assert len(seen) == 1  # handed to one child only


def test_a_child_running_past_its_timeout_during_handed_work_is_killed() -> None:
    do_while_next_child_runs(lambda: None)
    done = run_bounded([sys.executable, "-c", "import time; time.sleep(30)"],
                       {"PATH": "/usr/bin:/bin"}, timeout_seconds=0.5)
    assert done.timed_out
    assert done.returncode == -9
