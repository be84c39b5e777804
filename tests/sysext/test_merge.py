"""`systemd-sysext merge` of both images over this machine's /usr, in a private mount namespace
with a Flatcar-like os-release: accepted (per `systemd-sysext status`, since merge exits 0 even
when it ignores an image), runnable, and the merged units pass `systemd-analyze verify`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sysext.image import FLATCAR_OS_RELEASE, REPO, SysextBuild

PROBE = Path(__file__).with_name("merge-probe.sh")
SHIPPED_UNITS = sorted(p.name for p in (REPO / "packaging/systemd").glob("*.service")
                       if "@" not in p.name) + sorted(
    p.name for p in (REPO / "packaging/systemd").glob("*.timer"))


@dataclass(frozen=True)
class Merged:
    """What the merge probe wrote."""

    out: Path

    def text(self, name: str) -> str:
        """Return one of the probe's files ('' when it did not write it)."""
        path = self.out / name
        return path.read_text() if path.exists() else ""


def _merge_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "merging needs root (mount namespaces, loop devices)"
    if shutil.which("systemd-sysext") is None:
        return "systemd-sysext is missing (systemd 248+)"
    if not Path("/dev/loop-control").exists():
        return "no loop devices on this machine: systemd-sysext cannot attach a .raw image"
    return None


@pytest.fixture(scope="module")
def merged(sysext: SysextBuild, tmp_path_factory: pytest.TempPathFactory) -> Merged:
    """Merge both images once, run the checks inside the namespace, collect the results."""
    reason = _merge_skip_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("merge")
    os_release = out / "os-release"
    os_release.write_text(FLATCAR_OS_RELEASE)
    units = [f"/usr/lib/systemd/system/{unit}" for unit in SHIPPED_UNITS]
    if (REPO / "packaging/systemd/ghost-backup-alert@.service").exists():
        units.append("ghost-backup-alert@ghost-backup.service.service")  # what OnFailure= starts
    argv = ["unshare", "-m", "--propagation", "private", "--", str(PROBE), str(out),
            str(os_release), f"ghost-backup={sysext.app_image}",
            f"rclone={sysext.rclone_image}", "--", *units]
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8", "SYSTEMD_LOG_COLOR": "0"}
    subprocess.run(argv, env=env, check=True, timeout=120, capture_output=True)
    return Merged(out)


def test_merge_accepts_both_images_per_sysext_status(merged: Merged) -> None:
    assert merged.text("merge.rc").strip() == "0", merged.text("merge.log")
    status = json.loads(merged.text("status.json"))
    usr = next(h for h in status if h["hierarchy"] == "/usr")
    assert sorted(usr["extensions"]) == ["ghost-backup", "rclone"], merged.text("merge.log")


def test_merged_usr_runs_the_bundle_and_rclone(merged: Merged, sysext: SysextBuild) -> None:
    assert merged.text("version.txt").strip() == f"ghost-backup {sysext.version}"
    assert merged.text("rclone-version.txt").startswith("rclone v")
    assert "10-ghost-backup.conf" in merged.text("dropins.txt").split()


def test_merged_images_bring_their_own_sysupdate_transfers_and_dropin(merged: Merged) -> None:
    listing = merged.text("sysupdate.txt")
    assert "ghost-backup.conf" in listing.split("/usr/lib/sysupdate.ghost-backup.d:")[1]
    assert "rclone-sysext.conf" in listing.split("/usr/lib/sysupdate.rclone.d:")[1]
    assert "ghost-backup.conf" in listing.split("systemd-sysupdate.service.d:")[1]


def test_removing_the_links_leaves_no_timer_transfer_or_dropin(merged: Merged) -> None:
    # docs/install-flatcar.md, Removal: the links go, systemd-sysext refreshes; at the next
    # boot the same (no link: nothing merged). Everything we ship lived in the images.
    assert merged.text("left-after-removal.txt") == "", merged.text("merge.log")


def test_merged_units_pass_systemd_analyze_verify(merged: Merged) -> None:
    if not SHIPPED_UNITS:
        pytest.skip("packaging/systemd/ has no units yet (issue 4 ships them)")
    assert merged.text("verify.rc").strip() == "0", merged.text("verify.log")
    assert merged.text("verify.log").strip() == ""


def test_merge_ignores_the_images_on_a_host_that_is_not_flatcar(
        sysext: SysextBuild, tmp_path: Path) -> None:
    # The control for the status check above: ID=debian does not match ID=flatcar, so
    # systemd-sysext must leave /usr alone.
    reason = _merge_skip_reason()
    if reason:
        pytest.skip(reason)
    os_release = tmp_path / "os-release"
    os_release.write_text('ID=debian\nVERSION_ID="12"\n')
    argv = ["unshare", "-m", "--propagation", "private", "--", str(PROBE), str(tmp_path),
            str(os_release), f"ghost-backup={sysext.app_image}"]
    subprocess.run(argv, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, check=True,
                   timeout=120, capture_output=True)
    status = json.loads((tmp_path / "status.json").read_text())
    usr = next(h for h in status if h["hierarchy"] == "/usr")
    assert usr["extensions"] in ("none", [], None)
