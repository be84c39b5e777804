"""run_pipe with small real children (python -c): the consumer sees an end of stream only
when the producer finished and was accepted; otherwise it dies with its input open."""

from __future__ import annotations

import io
import signal
import sys
from pathlib import Path

from ghost_backup.host.process import PipeResult, StopRequest, run_pipe

ENV = {"PATH": "/usr/bin:/bin"}


def _consumer(out: Path) -> list[str]:
    """A consumer that writes what it read to ``out`` only after a clean end of input."""
    code = ("import sys, pathlib\n"
            "data = sys.stdin.buffer.read()\n"
            f"pathlib.Path({str(out)!r}).write_bytes(data)\n")
    return [sys.executable, "-c", code]


def _pipe(producer: str | io.BytesIO, out: Path, *, stop: StopRequest | None = None,
          accept_reason: str | None = None, stall: float = 30,
          timeout: float = 60) -> PipeResult:
    argv = [sys.executable, "-c", producer] if isinstance(producer, str) else producer
    return run_pipe(argv, ENV, _consumer(out), ENV, transform=bytes.upper,
                    flush=lambda: b"<END>", accept=lambda rc: accept_reason if rc == 0
                    else f"exited {rc}", stop=stop or StopRequest(), on_tick=lambda: None,
                    timeout_seconds=timeout, stall_timeout_seconds=stall, tick_seconds=0.1)


def test_accepted_stream_is_transformed_flushed_and_closed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _pipe("import sys\nfor i in range(20000): sys.stdout.write(f'row {i}\\n')\n"
                   "sys.stderr.write('x' * 300000)", out)  # a full stderr pipe must not block
    assert result.aborted is None
    assert result.consumer_rc == 0
    data = out.read_bytes()
    assert data.startswith(b"ROW 0\n")
    assert data.endswith(b"ROW 19999\n<END>")
    assert result.raw_bytes == len(data) - len(b"<END>")
    assert len(result.producer_err) == 4096


def test_a_producer_dying_half_way_never_gives_the_consumer_an_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _pipe("import os, sys\nsys.stdout.write('x' * 500000); sys.stdout.flush()\n"
                   "os.kill(os.getpid(), 9)", out)
    assert result.aborted == "exited -9"
    assert result.consumer_rc == -signal.SIGKILL
    assert not out.exists()


def test_an_unaccepted_ending_kills_the_consumer_too(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _pipe("print('INSERT INTO t VALUES (1')", out, accept_reason="truncated")
    assert result.aborted == "truncated"
    assert not out.exists()


def test_stop_request_and_stall_abort(tmp_path: Path) -> None:
    stop = StopRequest()
    stop.signum = signal.SIGTERM
    result = _pipe("import time; time.sleep(30)", tmp_path / "a", stop=stop)
    assert result.aborted == "stopped by SIGTERM"
    assert not (tmp_path / "a").exists()
    stalled = _pipe("import time; print('x', flush=True); time.sleep(30)", tmp_path / "b",
                    stall=0.5)
    assert stalled.aborted == "no output for 0s"
    assert not (tmp_path / "b").exists()
    late = _pipe("import time\nwhile True: print('x', flush=True); time.sleep(0.05)",
                 tmp_path / "c", timeout=0.5)
    assert late.aborted == "did not finish within 0s"


def test_file_producer_and_file_consumer(tmp_path: Path) -> None:
    sink = io.BytesIO()
    result = run_pipe(io.BytesIO(b"abc" * 100000), {}, sink, {}, transform=bytes.upper,
                      flush=lambda: b"!", accept=lambda rc: None, stop=StopRequest(),
                      on_tick=lambda: None, timeout_seconds=10, stall_timeout_seconds=10)
    assert result.aborted is None
    assert result.consumer_rc is None
    assert sink.getvalue() == b"ABC" * 100000 + b"!"
