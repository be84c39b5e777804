"""The ordering rules of every command, checked in process with a fake ``Deps``.

A fake HTTP session plays the credential proxy (it records each request), a recording notifier
and alert sink watch the lifecycle, and rclone is a tiny Python script (a real child process,
as pip's tests do it, never a mocked Popen). Each test runs in milliseconds; the slow,
end-to-end proof of the same rules against real rclone is tests/e2e/.
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from ghost_backup.commands import check, restore, verify
from ghost_backup.commands.context import Deps
from ghost_backup.commands.run import run_backup
from ghost_backup.errors import ExitCode, SourceRefused, TemporaryFailure, Terminated
from ghost_backup.host.process import StopRequest
from ghost_backup.logs import Redactor
from ghost_backup.report import state
from ghost_backup.report.alerts import AlertEvent
from ghost_backup.settings import Settings, parse_settings

NOW = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
CANARY_ID = "CANARYSEQID0000000001"
CANARY_SECRET = "canary-sequencing-secret-0123456789abcdef"


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = io.BytesIO(body)

    def read1(self, size: int) -> bytes:
        return self._body.read1(size)


class _Response:
    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.headers = {"Content-Type": "application/json"}
        self.raw = _Raw(body)

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None


@dataclass
class FakeProxy:
    """A requests.Session stand-in answering the proxy contract; records every GET."""

    status: int = 200
    ttl_seconds: int = 3600
    events: list[str] = field(default_factory=list)
    sigterm: bool = False  # SIGTERM arrives while the proxy is asked
    request_ids: list[str] = field(default_factory=list)

    def get(self, url: str, **kwargs: object) -> _Response:
        self.events.append("fetch")
        if self.sigterm:
            raise Terminated("received SIGTERM; stopping")
        headers = kwargs.get("headers")
        if isinstance(headers, dict):
            self.request_ids.append(str(headers.get("X-Request-ID")))
        body = json.dumps({
            "access_key_id": CANARY_ID, "secret_access_key": CANARY_SECRET,
            "expires_at": (NOW + timedelta(seconds=self.ttl_seconds)).isoformat(),
        }).encode()
        return _Response(self.status, body)


@dataclass
class Recorder:
    """Notifier and alert sink in one: records what it hears, and the run dirs alive then."""

    runtime: Path
    events: list[str]

    def _run_dirs(self) -> int:
        return len(list(self.runtime.glob("run-*")))

    def send(self, message: str) -> None:
        self.events.append(f"{message} dirs={self._run_dirs()}")

    def start(self, run_id: str) -> None:
        self.events.append("alert-start")

    def finish(self, event: AlertEvent) -> None:
        self.events.append(f"alert-finish {event.outcome} {event.exit_code}")

    def notice(self, run_id: str, text: str) -> None:
        self.events.append(f"alert-notice {text}")


FAKE_RCLONE = """#!{python}
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "calls.log"), "a") as log:
    log.write(sys.argv[1] + " " + ("keys" if "RCLONE_CONFIG_R2_SECRET_ACCESS_KEY" in os.environ
                                   else "nokeys") + "\\n")
if sys.argv[1] == "version":
    print("rclone v1.75.2")
    sys.exit(0)
if sys.argv[1] == "lsf":
    guards = "psh" not in sys.argv and not any(a.endswith("/history") for a in sys.argv)
    if "--separator" in sys.argv and guards:  # the guards' listings (source, mirror)
        print("a.txt\t3")
    elif "psh" in sys.argv:  # the mirror as a manifest (path, size, md5)
        print("a.txt\t3\t900150983cd24fb0d6963f7d28e17f72")
    elif "ps" not in sys.argv:  # the history listing is empty
        print("a.txt")
    sys.exit(0)
if sys.argv[1] in ("copyto", "delete", "deletefile", "cat"):
    sys.exit(0)
if "--dest-after" in sys.argv:  # what the mirror holds after the sync (the manifest)
    with open(sys.argv[sys.argv.index("--dest-after") + 1], "w") as report:
        report.write("a.txt\t3\t900150983cd24fb0d6963f7d28e17f72\\n")
print(json.dumps({{"level": "info", "msg": "done", "stats": {{"bytes": 3, "transfers": {transfers},
                  "checks": 0, "deletes": 0, "errors": 0}}}}), flush=True)
sys.exit({code})
"""


def _rclone(tools: Path, code: int = 0, transfers: int = 1) -> Path:
    path = tools / "rclone"
    path.write_text(FAKE_RCLONE.format(python=sys.executable, code=code, transfers=transfers))
    path.chmod(stat.S_IRWXU)
    return path


def _settings(world: dict[str, Path], rclone: Path, max_windows: int = 48) -> Settings:
    return parse_settings({
        "source": {"path": str(world["source"]), "require_mountpoint": False},
        "destination": {"bucket": "ghost-test", "endpoint": "http://127.0.0.1:9"},
        "credentials": {"url": "http://127.0.0.1:9/credentials/r2-backup",
                        "backoff_initial_seconds": 0.01, "max_windows": max_windows},
        "rclone": {"binary": str(rclone)},
        "runtime": {"dir": str(world["runtime"]), "manual_dir": str(world["runtime"]),
                    "lock_path": f"{world['runtime']}.lock"},
        "state": {"dir": str(world["state"])},
    }, {})


def _deps(proxy: FakeProxy, recorder: Recorder) -> Deps:
    return Deps(
        new_session=lambda: proxy,  # type: ignore[arg-type,return-value]
        clock=lambda: NOW,
        monotonic=lambda: 0.0,
        sleep=lambda _s: None,
        notifier=recorder,
        alerts=recorder,
        redactor=Redactor(),
        stop=StopRequest(),
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "INVOCATION_ID": "inv-0001"},
    )


def _calls(tools: Path) -> list[str]:
    log = tools / "calls.log"
    return log.read_text().split("\n")[:-1] if log.exists() else []


def _no_leftovers(world: dict[str, Path]) -> None:
    assert not list(world["runtime"].glob("run-*"))
    for path in world["state"].rglob("*"):
        if path.is_file():
            assert CANARY_SECRET not in path.read_text()
            assert CANARY_ID not in path.read_text()


def test_run_fetches_once_then_syncs_with_keys_and_stops_before_cleanup(world) -> None:  # type: ignore[no-untyped-def]
    events: list[str] = []
    proxy, recorder = FakeProxy(events=events), Recorder(world["runtime"], events)
    report = run_backup(_settings(world, _rclone(world["tools"])), _deps(proxy, recorder))
    assert report.exit_code == ExitCode.OK
    # The source is listed before any key exists; with the keys, before the sync: the
    # history's top level and (no record of a last run) the mirror; after the sync, with the
    # same keys: upload its --dest-after report as the manifest (the top level listed before
    # the sync serves the prune: nothing old here)
    assert _calls(world["tools"]) == ["version nokeys", "lsf nokeys", "lsf keys", "lsf keys",
                                      "sync keys", "copy keys"]
    steps = [e.split(" dirs=")[0].split(" ")[0] for e in events
             if not e.startswith("STATUS=")]
    assert steps == ["alert-start", "fetch", "READY=1", "STOPPING=1", "alert-finish"]
    # STOPPING=1 goes out while the run dir still exists: cleanup comes after it.
    assert next(e for e in events if e.startswith("STOPPING=1")) == "STOPPING=1 dirs=1"
    _no_leftovers(world)


def test_run_checks_the_source_before_any_credential_request(world) -> None:  # type: ignore[no-untyped-def]
    (world["source"] / "a.txt").unlink()
    events: list[str] = []
    proxy = FakeProxy(events=events)
    report = run_backup(_settings(world, _rclone(world["tools"])),
                        _deps(proxy, Recorder(world["runtime"], events)))
    assert report.exit_code == ExitCode.SOURCE_REFUSED
    assert "fetch" not in events
    assert _calls(world["tools"]) == []
    assert events[-1] == "alert-finish failure 66"
    _no_leftovers(world)


def test_run_checks_rclone_starts_before_any_credential_request(world) -> None:  # type: ignore[no-untyped-def]
    events: list[str] = []
    proxy = FakeProxy(events=events)
    settings = _settings(world, world["tools"] / "missing-rclone")
    report = run_backup(settings, _deps(proxy, Recorder(world["runtime"], events)))
    assert report.exit_code == ExitCode.RCLONE_FAILED
    assert "fetch" not in events


@pytest.mark.parametrize(("status", "code"), [(403, ExitCode.PROXY_DENIED),
                                              (503, ExitCode.PROXY_UNAVAILABLE)])
def test_failed_fetch_never_starts_rclone_sync_and_alerts(world, status, code) -> None:  # type: ignore[no-untyped-def]
    events: list[str] = []
    proxy = FakeProxy(status=status, events=events)
    report = run_backup(_settings(world, _rclone(world["tools"])),
                        _deps(proxy, Recorder(world["runtime"], events)))
    assert report.exit_code == code
    assert _calls(world["tools"]) == ["version nokeys", "lsf nokeys"]
    assert not any(e.startswith("READY=1") for e in events)
    assert events[-1] == f"alert-finish failure {int(code)}"
    _no_leftovers(world)


def test_expired_keys_are_refused_before_anything_is_written(world) -> None:  # type: ignore[no-untyped-def]
    events: list[str] = []
    proxy = FakeProxy(ttl_seconds=-10, events=events)
    report = run_backup(_settings(world, _rclone(world["tools"])),
                        _deps(proxy, Recorder(world["runtime"], events)))
    assert report.exit_code == ExitCode.CREDENTIALS_INVALID
    assert _calls(world["tools"]) == ["version nokeys", "lsf nokeys"]
    _no_leftovers(world)


def test_rclone_failure_still_shreds_the_config_and_reports(world) -> None:  # type: ignore[no-untyped-def]
    events: list[str] = []
    report = run_backup(_settings(world, _rclone(world["tools"], code=5)),
                        _deps(FakeProxy(events=events), Recorder(world["runtime"], events)))
    assert report.exit_code == ExitCode.RCLONE_FAILED
    assert events[-1] == "alert-finish failure 1"
    _no_leftovers(world)


def test_a_held_lock_stops_the_run_before_any_fetch(world) -> None:  # type: ignore[no-untyped-def]
    from ghost_backup.host import runtime  # noqa: PLC0415

    runtime.ensure_runtime_dir(world["runtime"])
    fd = runtime.acquire_lock(Path(f"{world['runtime']}.lock"))
    try:
        events: list[str] = []
        proxy = FakeProxy(events=events)
        report = run_backup(_settings(world, _rclone(world["tools"])),
                            _deps(proxy, Recorder(world["runtime"], events)))
    finally:
        runtime.release_lock(fd)
    assert report.exit_code == ExitCode.TEMPORARY
    assert "fetch" not in events


def test_check_lists_the_bucket_with_keys_and_leaves_nothing(world) -> None:  # type: ignore[no-untyped-def]
    events: list[str] = []
    items = check.run_check(_settings(world, _rclone(world["tools"])),
                            _deps(FakeProxy(events=events), Recorder(world["runtime"], events)))
    assert check.first_failure(items) == ExitCode.OK
    assert _calls(world["tools"]) == ["version nokeys", "lsf keys"]
    assert events.count("fetch") == 1
    _no_leftovers(world)


def test_verify_refuses_an_empty_source_before_fetching(world) -> None:  # type: ignore[no-untyped-def]
    (world["source"] / "a.txt").unlink()
    events: list[str] = []
    with pytest.raises(SourceRefused):
        verify.run_verify(_settings(world, _rclone(world["tools"])),
                          _deps(FakeProxy(events=events), Recorder(world["runtime"], events)),
                          sample=None)
    assert "fetch" not in events


def test_restore_refuses_a_non_empty_target_before_fetching(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "target"
    target.mkdir()
    (target / "x").write_text("x")
    events: list[str] = []
    with pytest.raises(Exception, match="already exists"):
        restore.run_restore(_settings(world, _rclone(world["tools"])),
                            _deps(FakeProxy(events=events), Recorder(world["runtime"], events)),
                            restore.RestoreRequest(target=target))
    assert "fetch" not in events


def test_restore_cut_off_by_each_window_fetches_fresh_keys_up_to_the_cap(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # exit 10 (--max-duration reached) after some progress, every time: each window gets
    # fresh keys (one audited request each), up to the cap, then a clear 75.
    events: list[str] = []
    with pytest.raises(TemporaryFailure):
        restore.run_restore(_settings(world, _rclone(world["tools"], code=10)),
                            _deps(FakeProxy(events=events), Recorder(world["runtime"], events)),
                            restore.RestoreRequest(target=tmp_path / "new-target"))
    assert events.count("fetch") == restore.MAX_RESTORE_WINDOWS
    _no_leftovers(world)


def test_run_cut_off_by_each_window_continues_with_fresh_keys_up_to_max_windows(world) -> None:  # type: ignore[no-untyped-def]
    events: list[str] = []
    proxy = FakeProxy(events=events)
    report = run_backup(_settings(world, _rclone(world["tools"], code=10), max_windows=3),
                        _deps(proxy, Recorder(world["runtime"], events)))
    assert report.exit_code == ExitCode.TEMPORARY
    assert "unfinished after 3 credential windows" in report.message
    assert "3 files (9 B) copied" in report.message
    assert events.count("fetch") == 3
    run_id = report.run_id
    assert proxy.request_ids == [run_id, f"{run_id}.w2", f"{run_id}.w3"]
    assert _calls(world["tools"]) == [
        "version nokeys", "lsf nokeys", "lsf keys", "lsf keys", "sync keys", "sync keys",
        "sync keys"]
    assert report.stats is not None
    assert report.stats.transfers == 3
    _no_leftovers(world)


def test_run_window_that_copies_nothing_stops_the_run_with_75(world) -> None:  # type: ignore[no-untyped-def]
    events: list[str] = []
    report = run_backup(_settings(world, _rclone(world["tools"], code=10, transfers=0)),
                        _deps(FakeProxy(events=events), Recorder(world["runtime"], events)))
    assert report.exit_code == ExitCode.TEMPORARY
    assert "window 1 ended before rclone copied a single file" in report.message
    assert events.count("fetch") == 1
    _no_leftovers(world)


def test_session_type_is_what_requests_would_give() -> None:
    # The fake stands in for requests.Session: the production wiring must still use the real.
    from ghost_backup.cli import build_deps  # noqa: PLC0415

    deps = build_deps({})
    assert isinstance(deps.session, requests.Session)
    assert deps.session.trust_env is False


def test_sigterm_during_a_shutdown_is_a_notice_keeps_the_marker_and_records_interrupted(
    world,  # type: ignore[no-untyped-def]
) -> None:
    events: list[str] = []
    settings = _settings(world, _rclone(world["tools"]))
    # What the unit's root ExecStop= hook leaves when `systemctl is-system-running` says so.
    world["runtime"].mkdir(mode=0o700)
    (world["runtime"] / "system-stopping").touch()
    report = run_backup(settings, _deps(FakeProxy(events=events, sigterm=True),
                                        Recorder(world["runtime"], events)))
    assert report.exit_code == ExitCode.TERMINATED
    assert report.interrupted
    assert report.outcome == "interrupted"
    assert events[-1] == (f"alert-notice backup run {report.run_id} interrupted by system "
                          "shutdown; resumes at next boot")
    assert not any(e.startswith("alert-finish") for e in events)  # no failure page
    marker = world["state"] / state.RUN_MARKER_NAME
    assert marker.read_text().strip() == report.run_id  # ghost-backup-resume.service reruns it
    record = state.read_last_run(world["state"])
    assert record is not None
    assert (record.outcome, record.exit_code, record.invocation_id) == ("interrupted", 143,
                                                                         "inv-0001")
    _no_leftovers(world)


def test_sigterm_without_a_shutdown_is_a_stop_reported_once_and_not_resumed(
    world,  # type: ignore[no-untyped-def]
) -> None:
    events: list[str] = []
    settings = _settings(world, _rclone(world["tools"]))
    report = run_backup(settings, _deps(FakeProxy(events=events, sigterm=True),
                                        Recorder(world["runtime"], events)))
    assert (report.exit_code, report.interrupted) == (ExitCode.TERMINATED, False)
    assert [e for e in events if e.startswith("alert-")] == ["alert-start",
                                                             "alert-finish failure 143"]
    assert not (world["state"] / state.RUN_MARKER_NAME).exists()
    record = state.read_last_run(world["state"])
    assert record is not None
    assert (record.outcome, record.invocation_id) == ("failure", "inv-0001")


def test_a_finished_run_removes_its_marker_and_a_locked_out_run_leaves_the_holders(
    world,  # type: ignore[no-untyped-def]
) -> None:
    from ghost_backup.host import runtime  # noqa: PLC0415

    events: list[str] = []
    settings = _settings(world, _rclone(world["tools"]))
    assert run_backup(settings, _deps(FakeProxy(events=events),
                                      Recorder(world["runtime"], events))).exit_code == 0
    assert not (world["state"] / state.RUN_MARKER_NAME).exists()
    state.write_run_marker(world["state"], "holders-run")
    fd = runtime.acquire_lock(Path(f"{world['runtime']}.lock"))
    try:
        report = run_backup(settings, _deps(FakeProxy(events=events),
                                            Recorder(world["runtime"], events)))
    finally:
        runtime.release_lock(fd)
    assert report.exit_code == ExitCode.TEMPORARY
    assert (world["state"] / state.RUN_MARKER_NAME).read_text().strip() == "holders-run"
