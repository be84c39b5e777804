"""Pure parts of the operator's toolkit: argv builders, parsers, selections, the state record,
the checklist and the restore-target guard."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ghost_backup import rclone
from ghost_backup.commands.check import (
    CheckItem,
    first_failure,
    format_checklist,
    format_checklist_json,
)
from ghost_backup.commands.guards import check_restore_target
from ghost_backup.commands.restore import check_subpath
from ghost_backup.errors import ExitCode, UsageError
from ghost_backup.report.state import (
    StateUnreadable,
    build_last_run,
    format_last_run,
    parse_last_run,
    render_last_run,
)
from ghost_backup.settings import SourceSettings, parse_settings

SETTINGS = parse_settings(
    {"destination": {"bucket": "ghost-backups", "account_id": "a" * 32, "path": "current",
                     "archive_path": "archive"}},
    {},
)
CONF, WORK = Path("/run/ghost/run-x/rclone.conf"), Path("/run/ghost/run-x")
T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(("output", "expected"), [
    ("rclone v1.75.2\n- os/version: debian", ("v1.75.2", (1, 75, 2))),
    ("rclone v1.76.0-beta.8123.abc\n", ("v1.76.0-beta.8123.abc", (1, 76, 0))),
    ("rclone 1.75\n", None),
    ("", None),
])
def test_parse_version_reads_the_first_line(output: str, expected: object) -> None:
    assert rclone.parse_version(output) == expected


@pytest.mark.parametrize(("code", "output", "expected"), [
    (1, "api error SignatureDoesNotMatch: The request signature", ExitCode.CREDENTIALS_INVALID),
    (1, "StatusCode: 403, api error AccessDenied", ExitCode.CREDENTIALS_INVALID),
    (3, "ERROR : error listing: directory not found", ExitCode.CONFIG),
    (1, "api error NoSuchBucket: The specified bucket does not exist", ExitCode.CONFIG),
    (1, "dial tcp 127.0.0.1:9: connect: connection refused", ExitCode.RCLONE_FAILED),
])
def test_classify_list_failure_maps_rclone_output_to_our_codes(
    code: int, output: str, expected: ExitCode
) -> None:
    assert rclone.classify_list_failure(code, output).exit_code == expected


def test_list_argv_is_read_only_and_bounded() -> None:
    argv = rclone.build_list_argv(SETTINGS, config_path=CONF, work_dir=WORK)
    assert argv[1:5] == ("lsf", "--max-depth", "1", "r2:ghost-backups/current")
    assert "--timeout" in argv
    assert "--retries" in argv


def test_restore_argv_copies_never_syncs_and_filters_the_subpath() -> None:
    argv = rclone.build_restore_argv(
        SETTINGS, config_path=CONF, work_dir=WORK, source_remote="r2:ghost-backups/current",
        target=Path("/srv/restore"), subpath="content/images", dry_run=True,
        max_duration_seconds=1200,
    )
    assert argv[1:4] == ("copy", "r2:ghost-backups/current", "/srv/restore")
    assert "sync" not in argv
    assert "--dry-run" in argv
    joined = " ".join(argv)
    assert "--filter + /content/images --filter + /content/images/** --filter - **" in joined
    assert "--max-duration 1200s --cutoff-mode hard" in joined


@pytest.mark.parametrize(("path", "escaped"), [
    ("content/images", "content/images"),
    ("odd[1]/*.jpg", "odd\\[1\\]/\\*.jpg"),
    ("a{b}?", "a\\{b\\}\\?"),
])
def test_escape_filter_path_makes_glob_characters_literal(path: str, escaped: str) -> None:
    assert rclone.escape_filter_path(path) == escaped


def test_verify_argv_is_one_way_from_the_source_with_its_excludes() -> None:
    argv = rclone.build_verify_argv(SETTINGS, config_path=CONF, work_dir=WORK,
                                    combined_path=WORK / "c.txt", files_from=None)
    assert argv[1:5] == ("check", "/var/mnt/storage", "r2:ghost-backups/current", "--one-way")
    assert "--exclude" in argv
    sampled = rclone.build_verify_argv(SETTINGS, config_path=CONF, work_dir=WORK,
                                       combined_path=WORK / "c.txt", files_from=WORK / "f")
    assert "--exclude" not in sampled  # rclone refuses --files-from next to other filters
    assert "--files-from-raw" in sampled


def test_parse_combined_sorts_paths_by_sign() -> None:
    report = rclone.parse_combined("= a\n= b\n* c\n+ d\n- e\n! f\n\ngarbage\n")
    assert report.matching == 2
    assert report.differ == ("c",)
    assert report.missing == ("d",)
    assert report.extra == ("e",)
    assert report.unreadable == ("f",)
    assert report.problems == 3


def test_select_sample_is_deterministic_and_seeded() -> None:
    paths = tuple(f"dir/{i:04d}.dat" for i in range(500))
    first = rclone.select_sample(paths, 20, "2026-W48")
    assert first == rclone.select_sample(tuple(reversed(paths)), 20, "2026-W48")
    assert len(first) == 20
    assert first == tuple(sorted(first))
    assert first != rclone.select_sample(paths, 20, "2026-W49")
    assert rclone.select_sample(paths[:3], 10) == paths[:3]


NAMES = ("20261124T020000Z-aaaaaa/", "20261125T020000Z-bbbbbb/", "20261125T031500Z-cccccc/")


@pytest.mark.parametrize(("wanted", "expected"), [
    ("2026-11-24", "20261124T020000Z-aaaaaa"),
    ("20261124", "20261124T020000Z-aaaaaa"),
    ("20261125T0315", "20261125T031500Z-cccccc"),
    ("20261125T020000Z-bbbbbb", "20261125T020000Z-bbbbbb"),
])
def test_select_archive_accepts_dates_prefixes_and_run_ids(wanted: str, expected: str) -> None:
    assert rclone.select_archive(NAMES, wanted) == expected


@pytest.mark.parametrize(("wanted", "message"), [
    ("2026-11-25", "matches 2 archive folders"),
    ("2025-01-01", "no archive folder matches"),
    ("", "no archive folder matches"),
])
def test_select_archive_refuses_ambiguous_or_unknown_dates(wanted: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rclone.select_archive(NAMES, wanted)


def _record(code: int, previous: object = None, **kw: object):  # type: ignore[no-untyped-def]
    return build_last_run(
        run_id=f"run-{code}", started_at=T0, finished_at=T0 + timedelta(seconds=90),
        exit_code=code, message="backup finished" if code == 0 else "denied",
        figures={"bytes": 2048, "files": 3, "checks": 9, "deletes": 1, "errors": 0},
        credential_requested_at=kw.get("requested", T0),  # type: ignore[arg-type]
        credential_expires_at=kw.get("expires", T0 + timedelta(hours=1)),  # type: ignore[arg-type]
        rclone_version="v1.75.2", previous=previous,  # type: ignore[arg-type]
    )


def test_state_record_carries_the_last_success_over_a_failure() -> None:
    ok = _record(0)
    assert ok.last_success_at == T0 + timedelta(seconds=90)
    assert ok.credential_ttl_seconds == 3600
    failed = _record(77, previous=ok, requested=None, expires=None)
    assert failed.outcome == "failure"
    assert failed.exit_name == "PROXY_DENIED"
    assert failed.last_success_run_id == "run-0"
    assert failed.credential_ttl_seconds is None
    assert _record(77, previous=None).last_success_at is None


def test_state_record_round_trips_and_refuses_foreign_text() -> None:
    ok = _record(0)
    assert parse_last_run(render_last_run(ok)) == ok
    for text in ("", "[]", "{\"run_id\": 1}", "not json"):
        with pytest.raises(StateUnreadable):
            parse_last_run(text)


def test_status_text_names_outcome_code_and_last_success() -> None:
    failed = _record(77, previous=_record(0))
    text = format_last_run(failed, now=T0 + timedelta(hours=2), path=Path("/x"))
    assert "failure, exit 77 PROXY_DENIED" in text
    assert "run run-0" in text
    assert "no backup run recorded yet" in format_last_run(None, now=T0, path=Path("/x"))


def test_checklist_marks_and_first_failure_code() -> None:
    items = (CheckItem("settings", True, "valid"),
             CheckItem("source", False, "empty", ExitCode.SOURCE_REFUSED),
             CheckItem("bucket", False, "not found", ExitCode.CONFIG),
             CheckItem("later", None, "needs credentials"))
    text = format_checklist(items)
    assert text.splitlines()[1].startswith("[FAIL] source: empty")
    assert text.splitlines()[3].startswith("[skip] later")
    assert first_failure(items) == ExitCode.SOURCE_REFUSED
    assert first_failure(items[:1]) == ExitCode.OK


@pytest.mark.parametrize("bad", ["../etc", "a/../../b", "/", "  "])
def test_restore_subpath_must_stay_inside_the_backup(bad: str) -> None:
    with pytest.raises(UsageError):
        check_subpath(bad)


def test_restore_target_guard(tmp_path: Path) -> None:
    live = tmp_path / "storage"
    (live / "data").mkdir(parents=True)
    source = SourceSettings(path=live)
    assert check_restore_target(tmp_path / "new", source, force=False) == tmp_path / "new"
    for unsafe in (live, live / "data", tmp_path):
        with pytest.raises(UsageError):
            check_restore_target(unsafe, source, force=False)
    assert check_restore_target(live, source, force=True) == live
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="already exists"):  # restore creates its target
        check_restore_target(tmp_path / "empty", source, force=False)
    (live / "data" / "link").symlink_to(tmp_path)
    with pytest.raises(UsageError, match="is a symlink"):
        check_restore_target(live, source, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        check_restore_target(tmp_path / "file", source, force=True)


def test_checklist_json_leads_with_the_outcome_like_status_json() -> None:
    items = (CheckItem("settings", True, "configuration is valid"),
             CheckItem("source", False, "not a mount point", ExitCode.SOURCE_REFUSED),
             CheckItem("bucket", None, "needs credentials"))
    payload = json.loads(format_checklist_json(
        items, checked_at=datetime(2026, 11, 28, 2, tzinfo=UTC)))
    assert list(payload)[:4] == ["outcome", "exit_code", "exit_name", "message"]
    assert payload["outcome"] == "failure"
    assert (payload["exit_code"], payload["exit_name"]) == (66, "SOURCE_REFUSED")
    assert payload["message"] == "source: not a mount point"
    assert payload["checked_at"] == "2026-11-28T02:00:00+00:00"
    assert [i["status"] for i in payload["items"]] == ["ok", "fail", "skip"]
    assert "problems" not in payload
