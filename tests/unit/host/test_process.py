"""run_child with small real children (python -c): process group, session, batched reading."""

from __future__ import annotations

import os
import sys

from ghost_backup.host.process import StopRequest, run_child
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
