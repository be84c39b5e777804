"""`run --dry-run`: rclone's "Skipped ... as --dry-run is set" lines counted and reported."""

from __future__ import annotations

import json

import pytest

from ghost_backup.rclone.progress import (
    DryRunPlan,
    add_dry_run_event,
    format_dry_run,
    parse_line,
)


def _skipped(kind: str, path: str, size: int = 100) -> str:
    # The shape rclone v1.7x prints (operations.SkipDestructive with --use-json-log).
    return json.dumps({"time": "2026-11-28T01:35:45Z", "level": "notice",
                       "msg": f"Skipped {kind} as --dry-run is set (size {size})",
                       "skipped": kind, "size": size, "object": path,
                       "objectType": "*local.Object", "source": "operations/operations.go:2672"})


def _plan(*lines: str, keep: int = 2) -> DryRunPlan:
    plan = DryRunPlan()
    for line in lines:
        plan = add_dry_run_event(plan, parse_line(line), keep=keep)
    return plan


def test_parse_line_keeps_what_was_skipped_and_its_size() -> None:
    event = parse_line(_skipped("delete", "a/b", 7))
    assert (event.skipped, event.object, event.size) == ("delete", "a/b", 7)
    assert parse_line('{"level":"info","msg":"x","size":9}').size == 0


@pytest.mark.parametrize(("kind", "copies", "deletes", "replaced"), [
    ("copy", 1, 0, 0),
    ("delete", 0, 1, 0),
    ("move into backup dir", 0, 1, 0),  # a deletion archived by --backup-dir
    ("move", 0, 0, 1),  # the old version of an overwritten file, archived
    ("update modification time", 0, 0, 0),
    ("set directory modification time", 0, 0, 0),
])
def test_each_skipped_kind_counts_where_it_belongs(kind: str, copies: int, deletes: int,
                                                   replaced: int) -> None:
    plan = _plan(_skipped(kind, "x"))
    assert (plan.copies, plan.deletes, plan.replaced) == (copies, deletes, replaced)


def test_plan_counts_everything_but_keeps_only_the_first_paths() -> None:
    plan = _plan(*(_skipped("copy", f"f{i}", 10) for i in range(5)), _skipped("delete", "d0"))
    assert (plan.copies, plan.copy_bytes, plan.first_copies) == (5, 50, ("f0", "f1"))
    assert (plan.deletes, plan.first_deletes) == (1, ("d0",))


def test_lines_that_are_not_skips_leave_the_plan_alone() -> None:
    assert _plan('{"level":"info","msg":"Copied (new)","object":"a"}', "not json") == DryRunPlan()


def test_report_names_counts_paths_archive_and_the_max_delete_guard() -> None:
    plan = _plan(*(_skipped("copy", f"f{i}") for i in range(3)),
                 *(_skipped("move into backup dir", f"d{i}") for i in range(3)))
    text = format_dry_run(plan, source="/src", destination="r2:b/current",
                          archive="r2:b/archive/<run id>", max_delete=2)
    assert text.splitlines() == [
        "dry run: /src -> r2:b/current (nothing was changed)",
        "would copy 3 file(s), 300 B:", "  f0", "  f1", "  ... and 1 more",
        "would delete 3 file(s), 300 B (moved to r2:b/archive/<run id>, not destroyed):",
        "  d0", "  d1", "  ... and 1 more",
        "a real run would refuse more than 2 deletion(s) (rclone.max_delete) and exit 79 "
        "before deleting anything",
    ]


def test_report_of_nothing_to_do() -> None:
    text = format_dry_run(DryRunPlan(), source="/src", destination="r2:b", archive=None,
                          max_delete=1000)
    assert text == ("dry run: /src -> r2:b (nothing was changed)\n"
                    "would copy 0 file(s), 0 B\nwould delete 0 file(s), 0 B\n")
