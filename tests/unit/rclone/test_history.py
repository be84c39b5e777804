"""The history's pure core: names, manifests, archive listings, choosing an as-of point,
planning the restore, pruning and what `history` shows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ghost_backup.errors import ConfigError
from ghost_backup.rclone import history as hist
from ghost_backup.settings import parse_settings

R1 = "20261101T020000Z-aaaaaa"
R2 = "20261102T020000Z-bbbbbb"
R3 = "20261103T020000Z-cccccc"
R4 = "20261104T020000Z-dddddd"
NOW = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
DEST = {"bucket": "ghost-backups", "account_id": "a" * 32}


def _listing(*lines: str) -> hist.ArchiveListing:
    return hist.parse_archive_listing("".join(line + "\n" for line in lines))


def test_history_is_on_by_default_in_a_sibling_of_the_mirror() -> None:
    s = parse_settings({"destination": DEST}, {})
    assert (s.destination.path, s.destination.archive_path) == ("current", "history")
    assert s.destination.history_on
    assert s.retention.keep_days == 30


def test_history_can_be_turned_off_explicitly() -> None:
    s = parse_settings({"destination": {**DEST, "archive_path": ""}}, {})
    assert not s.destination.history_on


@pytest.mark.parametrize(("path", "archive", "message"), [
    ("", "history", "leaves no room for the history"),
    ("current", "current/old", "must not overlap"),
    ("history/now", "history", "must not overlap"),
    ("current", "current", "must not overlap"),
])
def test_history_prefix_must_not_overlap_the_mirror(path: str, archive: str,
                                                    message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"destination": {**DEST, "path": path, "archive_path": archive}}, {})
    assert message in info.value.message


def test_bucket_root_mirror_works_with_the_history_off() -> None:
    s = parse_settings({"destination": {**DEST, "path": "", "archive_path": ""}}, {})
    assert not s.destination.history_on


@pytest.mark.parametrize(("run_id", "window", "name"), [
    (R1, 1, R1), (R1, 2, f"{R1}.w2"), (R1, 11, f"{R1}.w11"),
])
def test_each_credential_window_archives_into_its_own_folder(run_id: str, window: int,
                                                             name: str) -> None:
    assert hist.archive_folder(run_id, window) == name
    assert hist.parse_folder(name) == (run_id, window)


def test_manifest_lines_may_hold_tabs_in_the_path() -> None:
    text = "a/b.txt\t3\tabc\nweird\tname.txt\t10\t\n"
    manifest = hist.parse_manifest(text)
    assert manifest == {"a/b.txt": hist.Entry(3, "abc"), "weird\tname.txt": hist.Entry(10, "")}
    assert hist.parse_manifest(hist.render_manifest(manifest)) == manifest


@pytest.mark.parametrize("line", ["justapath", "p\tnotanumber\tmd5", "\t3\tmd5"])
def test_a_damaged_manifest_line_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match="not a manifest line"):
        hist.parse_manifest(line + "\n")


def test_archive_listing_groups_folders_windows_and_manifests_in_time_order() -> None:
    listing = _listing(f"{R2}.manifest\t10", f"{R1}.manifest\t10", f"{R2}.w10/x\t1",
                       f"{R2}.w2/x\t2", f"{R2}/a/b\t3", f"{R1}/c\t4", "README\t5",
                       "notarun/x\t1")
    assert listing.manifests == (R1, R2)
    assert [f.name for f in listing.folders] == [R1, R2, f"{R2}.w2", f"{R2}.w10"]
    assert listing.folders[1].objects == {"a/b": 3}
    assert listing.other == ("README", "notarun/x")


@pytest.mark.parametrize(("when", "expected"), [
    (R2, R2),                          # a run id
    ("2026-11-02", R2),                # a date: the last run that started that UTC day
    ("2026-11-03T01:59:59Z", R2),      # a timestamp: the last run started at or before it
    ("2026-11-03T02:00:00+00:00", R3),
    ("2026-11-03T03:00:00+01:00", R3),
    ("2026-11-04", R3),                # R4 left no manifest (failed): the point before it
])
def test_as_of_picks_the_last_successful_run_at_or_before_when(when: str,
                                                                expected: str) -> None:
    listing = _listing(f"{R1}.manifest\t1", f"{R2}.manifest\t1", f"{R3}.manifest\t1",
                       f"{R4}/x\t1")
    assert hist.select_point(listing, when, now=NOW, keep_days=30) == expected


@pytest.mark.parametrize(("when", "keep", "message"), [
    ("2026-10-01", 30, "older than retention.keep_days (30 days): the oldest restorable "
                       "point is 2026-11-01 02:00:00 UTC"),
    ("2026-11-01", 3, "older than retention.keep_days (3 days)"),
    ("2026-10-31", 30, "no restore point at or before 2026-10-31"),
    (R4, 30, f"run {R4} is not a restore point"),
    ("yesterday", 30, "is not a run id, a date"),
    ("2026-11-02T02:00:00", 30, "has no time zone"),
    ("2026-02-30", 30, "not a valid date"),
])
def test_as_of_refuses_points_it_cannot_rebuild_with_a_clear_message(
    when: str, keep: int, message: str
) -> None:
    listing = _listing(f"{R1}.manifest\t1", f"{R2}.manifest\t1", f"{R4}/x\t1")
    with pytest.raises(ValueError) as info:
        hist.select_point(listing, when, now=NOW, keep_days=keep)
    assert message in str(info.value)


def test_plan_takes_each_path_from_the_earliest_later_folder_else_the_mirror() -> None:
    # R2 replaced a and deleted b; R3 replaced a again and c; d never changed.
    listing = _listing(f"{R1}/a\t1", f"{R2}/a\t1", f"{R2}/b\t1", f"{R3}/a\t1", f"{R3}/c\t1",
                       f"{R3}.w2/d\t1")
    wanted = {p: hist.Entry(1) for p in ("a", "b", "c", "d", "e")}
    groups = hist.plan_as_of(listing, R1, wanted)
    assert [(g.source, g.paths) for g in groups] == [
        (R2, ("a", "b")), (R3, ("c",)), (f"{R3}.w2", ("d",)), (hist.MIRROR, ("e",))]
    assert [(g.source, g.paths) for g in hist.plan_as_of(listing, R3, wanted)] == [
        (hist.MIRROR, ("a", "b", "c", "d", "e"))]


def test_subpath_keeps_the_file_or_folder_and_nothing_that_only_starts_alike() -> None:
    manifest = {p: hist.Entry(1) for p in ("img/a", "img/b/c", "imgx/a", "img")}
    assert set(hist.filter_subpath(manifest, "img/")) == {"img/a", "img/b/c", "img"}
    assert set(hist.filter_subpath(manifest, None)) == set(manifest)


def test_prune_removes_runs_older_than_keep_days_by_run_time_and_keeps_the_newest() -> None:
    listing = _listing(f"{R1}.manifest\t1", f"{R1}/x\t5", f"{R2}/y\t6", f"{R2}.w2/z\t7",
                       f"{R2}.manifest\t1", f"{R3}.manifest\t1", f"{R4}/w\t1")
    plan = hist.select_prune(listing, now=NOW, keep_days=2, max_folders=10)
    assert [f.name for f in plan.folders] == [R1, R2, f"{R2}.w2"]
    assert plan.manifests == (R1, R2)
    assert plan.objects == 3
    everything_old = hist.select_prune(listing, now=NOW, keep_days=1, max_folders=10)
    assert R3 not in everything_old.manifests  # the newest restore point always stays


def test_a_bounded_prune_never_orphans_a_manifest() -> None:
    listing = _listing(f"{R1}.manifest\t1", f"{R1}/x\t5", f"{R2}/y\t6", f"{R2}.manifest\t1",
                       f"{R3}.manifest\t1")
    plan = hist.select_prune(listing, now=NOW, keep_days=1, max_folders=1)
    assert [f.name for f in plan.folders] == [R1]
    assert plan.manifests == (R1,)  # R2's manifest waits: its folder is not gone yet
    assert plan.deferred == 1


def test_history_lists_changing_points_newest_first_with_now_on_top() -> None:
    listing = _listing(f"{R1}.manifest\t1", f"{R2}.manifest\t1", f"{R3}.manifest\t1",
                       f"{R3}/a\t2")
    m1 = {"a": hist.Entry(2, "x"), "b": hist.Entry(3, "y")}
    m3 = {"a": hist.Entry(4, "z"), "c": hist.Entry(5, "w")}
    points = hist.build_history(listing, {R1: m1, R2: dict(m1), R3: m3}, dict(m3))
    assert [p.run_id for p in points] == [None, R3, R1]  # R2 changed nothing
    assert points[1].change == hist.Change(added=1, modified=1, deleted=1, bytes_written=9)
    assert (points[1].archived_objects, points[1].archived_bytes) == (1, 2)
    text = hist.format_history(points, 30)
    assert text.splitlines()[1].startswith("now ")
    assert "2026-11-03 02:00:00" in text
    assert "3 (+1 ~1 -1)" in text
    data = hist.render_history_json(points)
    assert data[0]["point"] == "now"
    assert data[1]["run_id"] == R3
    assert data[1]["changed_objects"] == 3


def test_argv_never_deletes_more_than_was_listed_and_copies_only_listed_files() -> None:
    s = parse_settings({"destination": DEST}, {})
    folder = hist.Folder(R1, R1, 1, {"a": 1, "b": 2})
    argv = hist.build_prune_folder_argv(s, config_path=Path("/r/c"), work_dir=Path("/r"),
                                        folder=folder)
    assert argv[1:3] == ("delete", f"r2:ghost-backups/history/{R1}")
    assert argv[argv.index("--max-delete") + 1] == "2"
    group = hist.CopyGroup(R1, ("a",), no_traverse=True)
    copy = hist.build_group_copy_argv(s, config_path=Path("/r/c"), work_dir=Path("/r"),
                                      group=group, files_from=Path("/r/list"),
                                      target=Path("/t"), max_duration_seconds=60)
    assert copy[1:4] == ("copy", f"r2:ghost-backups/history/{R1}", "/t")
    assert "--no-traverse" in copy
    assert "sync" not in copy
    manifest = hist.build_mirror_manifest_argv(s, config_path=Path("/r/c"), work_dir=Path("/r"))
    assert "r2:ghost-backups/current" in manifest
    assert manifest[manifest.index("--format") + 1] == "psh"


def test_check_warns_when_the_history_is_off() -> None:
    from ghost_backup.commands.check import _history_item, format_checklist  # noqa: PLC0415

    on = _history_item(parse_settings({"destination": DEST}, {}))
    off = _history_item(parse_settings({"destination": {**DEST, "archive_path": ""}}, {}))
    assert format_checklist((on,)).startswith("[ok]   history: on: ")
    assert format_checklist((off,)).startswith("[warn] history: OFF")
    assert off.passed is True  # a warning never fails the check


# --- the mirror record and the archive's top level -------------------------------------------

def test_the_top_level_listing_gives_folders_without_objects_and_the_manifests() -> None:
    listing = _listing(f"{R1}/\t-1", f"{R1}.manifest\t10", f"{R2}.w2/\t-1", "notes.txt\t3")
    # the folders come empty: their objects are listed only when they are pruned
    assert [(f.name, f.objects) for f in listing.folders] == [(R1, {}), (f"{R2}.w2", {})]
    assert listing.manifests == (R1,)
    assert listing.other == ("notes.txt",)


def _key(**dest: object) -> str:
    return hist.build_mirror_key(parse_settings({"destination": {**DEST, **dest}}, {}))


def test_the_record_round_trips_and_refuses_what_is_not_one() -> None:
    text = "a.txt\t3\t900150983cd24fb0d6963f7d28e17f72\nb\tc.txt\t0\t\n"
    record = hist.parse_record((hist.render_record_header(R2, _key()) + text).splitlines(
        keepends=True))
    assert (record.run_id, record.key, record.sizes) == (R2, _key(), {"a.txt": 3, "b\tc.txt": 0})
    assert hist.summarize_manifest(text.splitlines(keepends=True)) == (2, 3)
    for bad in ("", text, f"# ghost-backup mirror record {R2}\n{text}",
                f"# ghost-backup mirror record not-a-run {_key()}\n{text}",
                f"# ghost-backup mirror record {R2} {_key()}\na.txt\tbig\tx\n"):
        with pytest.raises(ValueError):
            hist.parse_record(bad.splitlines(keepends=True))


def test_the_key_changes_with_the_destination_and_the_filters() -> None:
    base = _key()
    assert base == _key()
    assert base != _key(path="other")
    assert base != _key(bucket="another-bucket")
    assert base != _key(endpoint="https://example.invalid")
    excluded = hist.build_mirror_key(parse_settings(
        {"destination": DEST, "source": {"exclude": ["*.tmp"]}}, {}))
    assert base != excluded


@pytest.mark.parametrize(("lines", "key", "why"), [
    ((f"{R1}/\t-1", f"{R1}.manifest\t9", f"{R2}/\t-1", f"{R2}.manifest\t9"), None, None),
    ((f"{R2}.manifest\t9",), "other", "another destination or other filters"),
    ((f"{R1}.manifest\t9",), None, f"the newest restore point is {R1}, not {R2}"),
    ((), None, f"the newest restore point is none, not {R2}"),
    ((f"{R2}.manifest\t9", f"{R3}.manifest\t9"), None, f"newest restore point is {R3}"),
    # a later run failed after overwriting or deleting: its folder, no manifest
    ((f"{R2}.manifest\t9", f"{R3}/\t-1"), None, f"run {R3} changed the mirror after it"),
    ((f"{R2}.manifest\t9", f"{R2}.w2/\t-1", f"{R3}.w2/\t-1"), None, f"run {R3}.w2 changed"),
])
def test_a_record_is_trusted_only_while_no_later_run_touched_the_mirror(
        lines: tuple[str, ...], key: str | None, why: str | None) -> None:
    record = hist.MirrorRecord(R2, _key(), {"a.txt": 3})
    verdict = hist.judge_record(record, _listing(*lines), key or _key())
    if why is None:
        assert verdict is None
    else:
        assert verdict is not None
        assert why in verdict


def test_the_mirror_manifest_listing_uses_the_syncs_filters() -> None:
    s = parse_settings({"destination": DEST, "source": {"exclude": ["*.tmp"]}}, {})
    argv = hist.build_mirror_manifest_argv(s, config_path=Path("/c"), work_dir=Path("/w"))
    assert list(argv[argv.index("--exclude"):][:2]) == ["--exclude", "*.tmp"]
    index = hist.build_archive_index_argv(s, config_path=Path("/c"), work_dir=Path("/w"))
    assert "-R" not in index  # the top level only
    assert "--fast-list" not in index
