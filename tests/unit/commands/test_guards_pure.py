"""The guards that decide from rclone's listings: empty, shrink, deletion limit (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ghost_backup.commands.guards import (
    DeletePlan,
    Figures,
    build_backstop,
    check_rclone_sees_files,
    judge_deletes,
    judge_shrink,
    plan_deletes,
    resolve_delete_limit,
)
from ghost_backup.errors import ConfigError, SourceRefused
from ghost_backup.rclone.inventory import Inventory, build_inventory_argv, parse_inventory
from ghost_backup.settings import parse_settings


def test_parse_inventory_reads_path_tab_size_lines() -> None:
    inv = parse_inventory("a/x.txt\t3\nt\u2409ab.txt\t6\nodd\t-1\n\n")
    assert dict(inv.sizes) == {"a/x.txt": 3, "t\u2409ab.txt": 6, "odd": 0}
    assert (inv.files, inv.bytes) == (3, 9)


def test_inventory_argv_uses_the_syncs_filters_and_no_config_for_the_source() -> None:
    settings = parse_settings({"destination": {"bucket": "ghost-test", "account_id": "a" * 32}}, {})
    argv = build_inventory_argv(settings, location="/var/mnt/storage", config_path=None,
                                remote=False)
    joined = " ".join(argv)
    assert argv[1:4] == ("lsf", "-R", "--files-only")
    assert "--format ps --separator \t" in joined
    assert "--exclude ghost-compose/.env.*" in joined
    assert "--one-file-system" in joined
    assert "--config /dev/null" in joined
    assert "--fast-list" not in joined
    remote = build_inventory_argv(settings, location="r2:ghost-test",
                                  config_path=Path("/run/ghost/run-x/rclone.conf"), remote=True)
    assert "--fast-list" in remote


def test_a_source_empty_to_rclone_is_refused_with_66() -> None:
    with pytest.raises(SourceRefused, match="holds no files rclone would copy"):
        check_rclone_sees_files(Path("/src"), Inventory({}))
    check_rclone_sees_files(Path("/src"), Inventory({"a": 0}))


@pytest.mark.parametrize(
    ("now", "before", "fraction", "shrunk"),
    [
        (Figures(100, 1000), Figures(100, 1000), 0.5, False),
        (Figures(50, 500), Figures(100, 1000), 0.5, False),   # exactly half is fine
        (Figures(49, 1000), Figures(100, 1000), 0.5, True),   # files
        (Figures(100, 499), Figures(100, 1000), 0.5, True),   # bytes
        (Figures(3, 10), Figures(30000, 10**9), 0.5, True),
        (Figures(3, 10), Figures(30000, 10**9), 0.0, False),  # disabled
        (Figures(10, 0), Figures(10, 0), 0.5, False),         # empty files, no bytes
    ],
)
def test_shrink_is_judged_on_files_or_bytes(now: Figures, before: Figures, fraction: float,
                                            shrunk: bool) -> None:
    why = judge_shrink(now, before, fraction=fraction, what="the last successful run")
    assert (why is not None) is shrunk
    if why:
        assert f"{now.files} files" in why
        assert f"{before.files} files" in why


@pytest.mark.parametrize(
    ("setting", "held", "limit"),
    [("10%", 300, 30), ("10%", 301, 31), ("10%", 1_000_000, 100_000), ("10%", 0, 0),
     ("2.5%", 1000, 25), (500, 10, 500), (0, 1000, None), ("100%", 7, 7)],
)
def test_delete_limit_is_a_count_or_a_percentage_of_the_backup(
    setting: int | str, held: int, limit: int | None
) -> None:
    assert resolve_delete_limit(setting, held) == limit


def test_plan_counts_deletions_exactly_and_edits_apart() -> None:
    source = Inventory({"keep": 1, "edit": 5, "new": 3})
    backup = Inventory({"keep": 1, "edit": 4, "gone1": 1, "gone2": 1})
    plan = plan_deletes(source, backup)
    assert plan == DeletePlan(deletes=2, resized=1, held=4)
    assert judge_deletes(plan, 2, "50%") is None
    why = judge_deletes(plan, 1, "25%")
    assert why is not None
    assert "would delete 2 of the 4 objects" in why
    assert build_backstop(plan, 1, history=False) == 3
    assert build_backstop(plan, 1, history=True) == 5  # overwrites count as deletes there
    assert build_backstop(plan, None, history=True) is None


@pytest.mark.parametrize(("value", "ok"), [(1000, True), (0, True), ("10%", True),
                                           ("0.5%", True), ("250", True), ("0%", False),
                                           ("150%", False), ("ten", False), (-1, False)])
def test_max_delete_setting_accepts_counts_and_percentages(value: object, ok: bool) -> None:
    raw = {"destination": {"bucket": "ghost-test", "account_id": "a" * 32},
           "rclone": {"max_delete": value}}
    if ok:
        parse_settings(raw, {})
    else:
        with pytest.raises(ConfigError, match=r"rclone\.max_delete"):
            parse_settings(raw, {})
