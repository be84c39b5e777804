"""Removal undoes the install (issue 15): a booted systemd is installed as
docs/install-flatcar.md's "Install by hand" says, removed as its Removal section says, and
rebooted; then no timer, unit, transfer, drop-in, merged extension or file of ours is left.
The commands are the doc's own, read from the Markdown, so the test fails when the doc and
reality part. How, and why real .raw images: tests/system/removal.py.

The negative control runs the same removal without one line (the one that takes the
transfers an older release put in /etc) on a copy of the same installed disk: the checks
must find the transfers, so they can fail. Skipped, with the reason printed, only where the
machine cannot boot a container or attach a loop device.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.sysext.image import SysextBuild
from tests.system.nspawn import cannot_boot_reason
from tests.system.removal import (
    INSTALL_DOC,
    Boots,
    build_removal_script,
    find_leftovers,
    loop_skip_reason,
    run_install,
    run_removal,
)
from tests.system.test_units_under_systemd import _say

pytestmark = pytest.mark.system

SKIPPED_LINE = "rm -rf /etc/sysupdate.ghost-backup.d"


@dataclass
class Chains:
    install: Boots
    removed: Boots
    skipped: Boots


@pytest.fixture(scope="module")
def chains(request: pytest.FixtureRequest, sysext: SysextBuild,
           tmp_path_factory: pytest.TempPathFactory) -> Chains:
    reason = cannot_boot_reason() or loop_skip_reason()
    if reason is not None:
        _say(request, f"SKIP removal system test: {reason}")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("removal")
    doc = INSTALL_DOC.read_text()
    disk, install = run_install(root, sysext, doc)
    assert install.text("boot1/done"), "boot 1 did not finish:\n" + install.console[-3000:]
    removed = run_removal(root, disk, "removed", build_removal_script(doc))
    skipped = run_removal(root, disk, "skipped", build_removal_script(doc, skip=SKIPPED_LINE))
    _say(request, f"removal system test: install boot {install.seconds:.1f} s, "
                  f"removal + reboot {removed.seconds:.1f} s, control {skipped.seconds:.1f} s")
    for chain in (removed, skipped):
        assert chain.text("boot3/done"), "a boot did not finish:\n" + chain.console[-3000:]
    return Chains(install, removed, skipped)


def test_documented_install_merges_both_images_and_arms_the_timer(chains: Chains) -> None:
    boot1 = chains.install
    assert boot1.text("boot1/install.rc").strip() == "0", boot1.text("boot1/install.log")
    assert "ActiveState=active" in boot1.text("boot1/timer.show"), boot1.text("boot1/timer.show")
    assert "ghost-backup.timer" in boot1.text("boot1/list-timers.txt")
    installed = boot1.out / "boot1" / "installed"
    files = (installed / "transfers.txt").read_text().split()
    assert "/usr/lib/sysupdate.ghost-backup.d/ghost-backup.conf" in files
    assert "/usr/lib/sysupdate.rclone.d/rclone-sysext.conf" in files
    assert "/etc/extensions/ghost-backup.raw" in (installed / "files.txt").read_text().split()


def test_documented_checks_pass_and_a_backup_runs(chains: Chains) -> None:
    check = chains.install.text("boot1/check.log")
    statuses = [line for line in check.splitlines() if line.startswith("check ")]
    assert statuses, check
    assert all(line.endswith(" rc=0") for line in statuses), check
    assert "Result=success" in chains.install.text("boot1/backup.show"), \
        chains.install.text("boot1/backup.journal")[-3000:]


def test_install_survives_a_reboot_and_the_checks_see_all_of_it(chains: Chains) -> None:
    # The control for the checks below: on the installed host they find everything.
    assert "ActiveState=active" in chains.removed.text("boot2/timer.show")
    found = find_leftovers(chains.removed.out / "boot2" / "installed",
                           chains.install.out / "boot1" / "before")
    text = "\n".join(found)
    for trace in ("unit file known to systemd: ghost-backup.timer",
                  "timer listed:", "drop-in:", "extension merged:",
                  "sysupdate transfer: /usr/lib/sysupdate.ghost-backup.d/ghost-backup.conf",
                  "sysupdate transfer: /etc/sysupdate.ghost-backup.d/ghost-backup.conf",
                  "file: /etc/extensions/ghost-backup.raw",
                  "file: /var/lib/systemd/timers/stamp-ghost-backup.timer",
                  "file: /var/lib/private/ghost-backup",
                  "file: /etc/systemd/system/timers.target.wants/ghost-backup.timer",
                  "file: /etc/systemd/system/ghost-backup.timer.d",
                  "image files visible under /usr:"):
        assert trace in text, text


def test_documented_removal_runs_without_error(chains: Chains) -> None:
    assert chains.removed.text("boot2/removal.rc").strip() == "0", \
        chains.removed.text("boot2/removal.log")


def test_right_after_removal_nothing_is_left(chains: Chains) -> None:
    # The doc says no reboot is needed.
    found = find_leftovers(chains.removed.out / "boot2" / "removed",
                           chains.install.out / "boot1" / "before")
    assert found == [], chains.removed.text("boot2/removal.log")


def test_after_removal_and_reboot_nothing_is_left(chains: Chains) -> None:
    found = find_leftovers(chains.removed.out / "boot3" / "final",
                           chains.install.out / "boot1" / "before")
    assert found == [], chains.removed.text("boot2/removal.log")


def test_removal_without_one_step_is_caught(chains: Chains) -> None:
    found = find_leftovers(chains.skipped.out / "boot3" / "final",
                           chains.install.out / "boot1" / "before")
    assert "sysupdate transfer: /etc/sysupdate.ghost-backup.d/ghost-backup.conf" in found, found
