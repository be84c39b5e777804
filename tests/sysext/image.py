"""Building and reading the Flatcar system extensions for the sysext tests.

The images are built once per test session by ``packaging/sysext/build.sh`` (the script behind
``make sysext``) into a temporary directory, then unpacked once with ``unsquashfs``; every test
reads those.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "packaging" / "sysext" / "build.sh"
VENV = Path(sys.prefix)

# What every extension-release file must say, exactly (docs/install-flatcar.md).
EXTENSION_RELEASE = {
    "ID": "flatcar",
    "SYSEXT_LEVEL": "1.0",
    "ARCHITECTURE": "x86-64",
    "EXTENSION_RELOAD_MANAGER": "1",
}

# A Flatcar-like os-release for the host side of a merge (stable channel, late 2026).
FLATCAR_OS_RELEASE = (
    "NAME=\"Flatcar Container Linux by Kinvolk\"\n"
    "ID=flatcar\n"
    "ID_LIKE=coreos\n"
    "VERSION_ID=4230.2.0\n"
    "SYSEXT_LEVEL=1.0\n"
)


@dataclass(frozen=True)
class LsEntry:
    """One line of ``unsquashfs -lls``."""

    mode: str
    owner: str
    path: str  # relative to the image root, "" for the root itself
    target: str | None  # symlink target


@dataclass(frozen=True)
class SysextBuild:
    """The result of one ``build.sh`` run: both images, their checksums, unpacked trees."""

    outdir: Path
    app_image: Path
    rclone_image: Path
    app_tree: Path
    rclone_tree: Path
    seconds: float
    log: str

    @property
    def version(self) -> str:
        """Return ghost-backup's version as the image's file name carries it."""
        return self.app_image.name.removeprefix("ghost-backup-").removesuffix("-x86-64.raw")


def build_skip_reason() -> str | None:
    """Return why this machine cannot build or read the images, or None if it can."""
    if platform.machine() != "x86_64":
        return f"the images are x86-64 and built natively; this machine is {platform.machine()}"
    for tool, package in (("mksquashfs", "squashfs-tools"), ("unsquashfs", "squashfs-tools"),
                          ("objdump", "binutils"), ("objcopy", "binutils"), ("strip", "binutils")):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install {package}; .ci/run does)"
    if not (VENV / "bin" / "pyinstaller").exists():
        return "pyinstaller is not in the virtualenv (make venv installs the dev extras)"
    return None


def run_build(outdir: Path, build_dir: Path, *, unpack: bool = True) -> SysextBuild:
    """Run the build script into ``outdir`` and (unless told not to) unpack both images into
    ``build_dir``."""
    env = {
        "PATH": f"{VENV / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "VENV": str(VENV),
        "BUILD_DIR": str(build_dir),
    }
    started = time.monotonic()
    proc = subprocess.run(
        [str(BUILD_SCRIPT), str(outdir)], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=600, check=False,
    )
    seconds = time.monotonic() - started
    assert proc.returncode == 0, f"build.sh failed:\n{proc.stdout}\n{proc.stderr}"
    (app_image,) = outdir.glob("ghost-backup-*-x86-64.raw")
    (rclone_image,) = outdir.glob("rclone-*-x86-64.raw")
    trees = []
    for image in (app_image, rclone_image) if unpack else ():
        tree = build_dir / f"unpacked-{image.name.split('-')[0]}"
        subprocess.run(["unsquashfs", "-q", "-n", "-d", str(tree), str(image)],
                       check=True, capture_output=True, timeout=300)
        trees.append(tree)
    trees += [build_dir / "not-unpacked"] * (2 - len(trees))
    return SysextBuild(outdir=outdir, app_image=app_image, rclone_image=rclone_image,
                       app_tree=trees[0], rclone_tree=trees[1], seconds=seconds,
                       log=proc.stdout + proc.stderr)


def list_image(image: Path) -> list[LsEntry]:
    """Return every entry of a squashfs image as ``unsquashfs -lls`` lists it."""
    out = subprocess.run(["unsquashfs", "-lls", str(image)], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    return parse_lls(out)


_LLS_RE = re.compile(
    r"^(?P<mode>[-dlcbps][-rwxsStT]{9}) (?P<owner>\S+) +\S+ \S+ \S+ "
    r"squashfs-root(?P<path>/\S*|)(?: -> (?P<target>.+))?$"
)


def parse_lls(text: str) -> list[LsEntry]:
    """Given ``unsquashfs -lls`` output, return its entries (banner lines skipped)."""
    entries = []
    for line in text.splitlines():
        match = _LLS_RE.match(line)
        if match:
            entries.append(LsEntry(mode=match["mode"], owner=match["owner"],
                                   path=match["path"].lstrip("/"), target=match["target"]))
    return entries


def parse_os_release(text: str) -> dict[str, str]:
    """Given an os-release/extension-release text, return its fields (quotes removed)."""
    fields = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        fields[key] = value.strip().strip("\"'")
    return fields


def hide_python_argv(argv: list[str], env: dict[str, str]) -> list[str]:
    """Return an argv that runs ``argv`` with exactly ``env`` (``env -i``) in a private mount
    namespace where every Python installation of this machine is covered by an empty tmpfs:
    a bundle that still leaned on a host interpreter or its stdlib fails there."""
    hidden = sorted({
        str(Path(sys.base_prefix)), str(Path(sys.prefix)),
        *(str(p) for p in Path("/usr/lib").glob("python3*")),
        *(str(p) for p in Path("/usr/local/lib").glob("python3*")),
    })
    script = 'for d in $HIDE; do mount -t tmpfs -o ro,size=4k none "$d" || exit 97; done; ' \
             'exec env -i "$@"'
    assignments = [f"{key}={value}" for key, value in env.items()]
    return ["unshare", "-m", "--propagation", "private", "--",
            "env", f"HIDE={' '.join(hidden)}", "sh", "-c", script, "sh",
            *assignments, *argv]
