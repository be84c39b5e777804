"""The metrics textfile: what prometheus_client's own parser reads back (naming guide: base
units, _timestamp_seconds, no _total on gauges, no per-run label), and the root publisher's
refusals (symlink, hard link, FIFO, oversize, foreign families) and modes under UMask=0077."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ghost_backup.commands.post_stop import run_post_stop
from ghost_backup.errors import ConfigError
from ghost_backup.report import metrics
from ghost_backup.report.state import build_last_run
from ghost_backup.settings import parse_settings

T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
EXPECTED = {
    "ghost_backup_last_run_start_timestamp_seconds", "ghost_backup_last_run_end_timestamp_seconds",
    "ghost_backup_last_success_timestamp_seconds", "ghost_backup_last_run_success",
    "ghost_backup_last_run_exit_code", "ghost_backup_last_run_duration_seconds",
    "ghost_backup_last_run_transferred_bytes", "ghost_backup_last_run_transferred_files",
    "ghost_backup_last_run_checked_files", "ghost_backup_last_run_deleted_files",
    "ghost_backup_last_run_errors", "ghost_backup_last_run_credential_ttl_seconds",
    "ghost_backup_build_info",
}


def _record(code: int, previous: object = None):  # type: ignore[no-untyped-def]
    return build_last_run(
        run_id=f"20261126T020000Z-{code:06d}", started_at=T0,
        finished_at=T0 + timedelta(seconds=90), exit_code=code, message="m",
        figures={"bytes": 2048, "files": 3, "checks": 9, "deletes": 1, "errors": 0},
        credential_requested_at=T0, credential_expires_at=T0 + timedelta(hours=1),
        rclone_version="v1.75.2", previous=previous,  # type: ignore[arg-type]
    )


def _parse(text: str) -> dict[str, tuple[str, list[tuple[dict[str, str], float]]]]:
    return {f.name: (f.type, [(s.labels, s.value) for s in f.samples])
            for f in text_string_to_metric_families(text)}


def test_textfile_parses_with_prometheus_clients_parser_and_follows_the_naming_guide() -> None:
    families = _parse(metrics.render_metrics(_record(0)))
    assert set(families) == EXPECTED
    for name, (kind, samples) in families.items():
        assert kind == "gauge", name
        assert not name.endswith("_total"), name
        assert len(samples) == 1, name
        assert "run_id" not in str(samples), name  # no label that changes every night
    value = {name: samples[0][1] for name, (_, samples) in families.items()}
    assert value["ghost_backup_last_run_end_timestamp_seconds"] == (T0 + timedelta(
        seconds=90)).timestamp()
    assert value["ghost_backup_last_success_timestamp_seconds"] == value[
        "ghost_backup_last_run_end_timestamp_seconds"]
    assert value["ghost_backup_last_run_success"] == 1
    assert value["ghost_backup_last_run_transferred_bytes"] == 2048
    assert value["ghost_backup_last_run_duration_seconds"] == 90
    assert value["ghost_backup_last_run_credential_ttl_seconds"] == 3600
    assert families["ghost_backup_build_info"][1][0][0]["rclone_version"] == "v1.75.2"


def test_a_failure_keeps_the_last_success_and_a_run_that_never_succeeded_says_0() -> None:
    ok = _record(0)
    failed = _parse(metrics.render_metrics(_record(77, previous=ok)))
    assert failed["ghost_backup_last_run_success"][1][0][1] == 0
    assert failed["ghost_backup_last_run_exit_code"][1][0][1] == 77
    assert failed["ghost_backup_last_success_timestamp_seconds"][1][0][1] == \
        ok.last_success_at.timestamp()
    never = _parse(metrics.render_metrics(_record(65)))
    assert never["ghost_backup_last_success_timestamp_seconds"][1][0][1] == 0


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)  # what the unit's UMask=0077 gives every process, root hook included
    yield
    os.umask(old)


def _settings(tmp_path: Path) -> object:
    return parse_settings({
        "destination": {"bucket": "ghost-backups", "account_id": "a" * 32},
        "state": {"dir": str(tmp_path / "state")},
        "metrics": {"textfile_path": str(tmp_path / "collector" / "ghost_backup.prom")},
    }, {})


def test_post_stop_publishes_the_staged_file_0644_in_a_0755_directory_under_umask_077(
    tmp_path: Path, umask_077: None
) -> None:
    text = metrics.render_metrics(_record(0))
    (tmp_path / "state").mkdir(mode=0o700)
    staged = metrics.write_staged_textfile(tmp_path / "state", text)
    assert oct(staged.stat().st_mode & 0o777) == "0o644"
    run_post_stop(_settings(tmp_path))  # type: ignore[arg-type]
    published = tmp_path / "collector" / "ghost_backup.prom"
    assert published.read_text() == text
    assert oct(published.stat().st_mode & 0o777) == "0o644"
    assert oct(published.parent.stat().st_mode & 0o777) == "0o755"
    assert [p.name for p in published.parent.iterdir()] == ["ghost_backup.prom"]


def test_an_empty_textfile_path_turns_publishing_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state").mkdir(mode=0o700)
    metrics.write_staged_textfile(tmp_path / "state", metrics.render_metrics(_record(0)))
    settings = parse_settings({
        "destination": {"bucket": "ghost-backups", "account_id": "a" * 32},
        "state": {"dir": str(tmp_path / "state")}, "metrics": {"textfile_path": ""}}, {})
    assert settings.metrics.textfile_path is None
    with caplog.at_level("INFO"):
        run_post_stop(settings)
    assert "metrics.textfile_path is off" in caplog.text
    assert (tmp_path / "state" / "metrics.prom").exists()
    with pytest.raises(ConfigError, match=r"ending in \.prom"):
        parse_settings({"destination": {"bucket": "ghost-backups", "account_id": "a" * 32},
                        "metrics": {"textfile_path": "/var/lib/x/metrics.txt"}}, {})


def test_post_stop_without_a_staged_file_publishes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO"):
        run_post_stop(_settings(tmp_path))  # type: ignore[arg-type]
    assert not (tmp_path / "collector").exists()
    assert "nothing published" in caplog.text


def _staged_symlink(state: Path, tmp: Path) -> None:
    secret = tmp / "shadow"
    secret.write_text("root:$6$hash:19000:0:99999:7:::\n")
    (state / "metrics.prom").symlink_to(secret)


def _staged_hardlink(state: Path, tmp: Path) -> None:
    other = tmp / "other.prom"
    other.write_text("ghost_backup_x 1\n")
    os.link(other, state / "metrics.prom")


def _staged_fifo(state: Path, tmp: Path) -> None:
    os.mkfifo(state / "metrics.prom")


def _staged_big(state: Path, tmp: Path) -> None:
    (state / "metrics.prom").write_text("# HELP ghost_backup_x x\n" * 5000)


def _staged_foreign(state: Path, tmp: Path) -> None:
    (state / "metrics.prom").write_text("# TYPE node_load1 gauge\nnode_load1 99\n")


def _staged_garbage(state: Path, tmp: Path) -> None:
    (state / "metrics.prom").write_text("root:$6$hash:19000:0:99999:7:::\n")


@pytest.mark.parametrize(("make", "reason"), [
    (_staged_symlink, "cannot open it safely"),
    (_staged_hardlink, "not a regular file with one link"),
    (_staged_fifo, "not a regular file with one link"),
    (_staged_big, "larger than 65536 bytes"),
    (_staged_foreign, "unexpected family 'node_load1'"),
    (_staged_garbage, "not Prometheus text"),
])
def test_post_stop_refuses_a_staged_file_the_service_did_not_write_as_expected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, make: object, reason: str
) -> None:
    """Root copies a file out of a directory the (possibly compromised) service owns: it must
    never copy anything but our own gauges."""
    (tmp_path / "state").mkdir()
    make(tmp_path / "state", tmp_path)  # type: ignore[operator]
    run_post_stop(_settings(tmp_path))  # type: ignore[arg-type]
    assert not (tmp_path / "collector" / "ghost_backup.prom").exists()
    assert reason in caplog.text
    assert "not published" in caplog.text
