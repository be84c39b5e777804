"""The system test of issue 4 run a second time, with the sysext images as the *only* source of
ghost-backup and rclone: a booted systemd (``systemd-nspawn --volatile=yes``, see
tests/system/nspawn.py) merges them at boot as directory extensions, with a Flatcar os-release
bound over /etc/os-release and the host's Python hidden. Every assertion of
tests/system/test_units_under_systemd.py runs again against this boot, plus what only the
image does: the timer is armed at boot, without any ``systemctl enable``.

The images cannot be attached as .raw files here (no loop devices inside a container), so
each one is unpacked and bound read-only under /var/lib/extensions/NAME/, one of the
directories systemd-sysext reads (Flatcar installs .raw files under /etc/extensions/).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.sysext.image import FLATCAR_OS_RELEASE, SysextBuild
from tests.system import test_units_under_systemd as shared
from tests.system.nspawn import Evidence, Install, cannot_boot_reason, run_scenario

pytestmark = pytest.mark.system

# Every assertion the venv boot makes applies to this boot too.
globals().update({name: test for name, test in vars(shared).items()
                  if name.startswith("test_") and callable(test)})

# The host's Python, made inaccessible to both ghost-backup units (a drop-in): the container's
# /usr is this machine's, which has one, and a bundle that still reached for it must fail.
# (A tmpfs over them would not do: the overlay systemd-sysext puts on /usr does not show
# mounts below /usr.)
HIDDEN_PYTHON = ("/usr/lib/python3", "/usr/lib/python3.11", "/usr/bin/python3.11",
                 "/usr/local/lib/python3.11")
HIDE_PYTHON = "[Service]\nInaccessiblePaths=" + " ".join(
    f"-{path}" for path in HIDDEN_PYTHON) + "\n"

# systemd 252 (Debian 12) does not act on EXTENSION_RELOAD_MANAGER=1: after the boot-time
# merge its manager still has the unit set from before, so the probe reloads it once, as
# systemd 255+ (Flatcar) does by itself. Then it records what the merge did, before anything
# else could start the timer.
SETUP = r"""
systemctl daemon-reload
for _ in $(seq 1 100); do
  [ "$(systemctl show -p ActiveState --value ghost-backup.timer)" = active ] && break
  sleep 0.1
done
systemctl show -p ActiveState -p UnitFileState -p FragmentPath ghost-backup.timer \
  > "$out/timer-at-boot.show"
systemctl show -p ActiveState -p Result systemd-sysext.service > "$out/sysext-unit.show"
systemd-sysext status --json=short > "$out/sysext-status.json" 2>&1
readlink -f /usr/bin/ghost-backup > "$out/ghost-backup.path"
ls -A /etc/systemd/system/timers.target.wants > "$out/timers-wants.txt" 2>/dev/null
# The control: the same setting stops an ordinary interpreter.
systemd-run --wait --quiet -p "InaccessiblePaths=__HIDDEN__" /usr/bin/python3 -c 'print(1)' \
  > "$out/python-control.txt" 2>&1
echo $? >> "$out/python-control.txt"
"""


def sysext_install(build: SysextBuild, work: Path) -> Install:
    """Return the install that brings ghost-backup and rclone through the images alone."""
    os_release = work / "flatcar-os-release"
    os_release.write_text(FLATCAR_OS_RELEASE)
    # Flatcar enables systemd-sysext.service; Debian does not. The container's /etc is this
    # machine's: keep what it enables for sysinit.target and add the merge.
    wants = work / "sysinit.target.wants"
    wants.mkdir()
    host_wants = Path("/etc/systemd/system/sysinit.target.wants")
    for entry in sorted(host_wants.iterdir()) if host_wants.is_dir() else []:
        (wants / entry.name).symlink_to(entry.readlink())
    (wants / "systemd-sysext.service").symlink_to("/usr/lib/systemd/system/systemd-sysext.service")
    return Install(
        name="sysext",
        ro_binds=((build.app_tree, Path("/var/lib/extensions/ghost-backup")),
                  (build.rclone_tree, Path("/var/lib/extensions/rclone")),
                  (os_release, Path("/etc/os-release")),
                  (wants, Path("/etc/systemd/system/sysinit.target.wants"))),
        rclone="/usr/bin/rclone",
        units_dir=None,  # the image brings them
        dropin=HIDE_PYTHON,
        setup=SETUP.replace("__HIDDEN__", " ".join(f"-{path}" for path in HIDDEN_PYTHON)),
    )


@pytest.fixture(scope="module")
def booted(request: pytest.FixtureRequest, sysext: SysextBuild,
           tmp_path_factory: pytest.TempPathFactory) -> Evidence:
    """Boot once with the images merged and run the whole scenario of the system test."""
    reason = cannot_boot_reason()
    if reason is not None:
        shared._say(request, f"SKIP sysext system test: {reason}")
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("sysext-boot")
    evidence = run_scenario(work, sysext_install(sysext, work))
    shared._say(request, f"system test boot (sysext): {evidence.boot_seconds:.1f} s")
    assert evidence.text("probe.done"), "the probe did not finish:\n" + evidence.console[-3000:]
    return evidence


def test_boot_merged_both_images_through_systemd_sysext_service(booted: Evidence) -> None:
    assert "ActiveState=active" in booted.text("sysext-unit.show"), booted.console[-2000:]
    status = json.loads(booted.text("sysext-status.json"))
    usr = next(h for h in status if h["hierarchy"] == "/usr")
    assert sorted(usr["extensions"]) == ["ghost-backup", "rclone"]
    assert booted.text("ghost-backup.path").strip() == "/usr/lib/ghost-backup/ghost-backup"


def test_timer_is_active_after_boot_without_any_enable(booted: Evidence) -> None:
    show = dict(line.split("=", 1) for line in booted.text("timer-at-boot.show").splitlines())
    assert show["ActiveState"] == "active", show
    # The image's unit (Debian's /lib is /usr/lib), not one in /etc.
    assert show["FragmentPath"] in ("/usr/lib/systemd/system/ghost-backup.timer",
                                    "/lib/systemd/system/ghost-backup.timer")
    # Not enabled: nothing in /etc points at it; the image's Upholds= drop-in started it.
    assert show["UnitFileState"] != "enabled"
    assert "ghost-backup.timer" not in booted.text("timers-wants.txt").split()


def test_hiding_the_host_python_stops_an_ordinary_interpreter(booted: Evidence) -> None:
    # The control for the runs above, which succeeded with the same paths inaccessible.
    *_, status = booted.text("python-control.txt").split()
    assert status != "0", booted.text("python-control.txt")
