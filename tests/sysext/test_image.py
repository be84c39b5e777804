"""The sysext images' layout, read with `unsquashfs -lls` and from the unpacked trees, and the
bundled binary running with no Python anywhere it could reach."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from ghost_backup.cli import build_parser
from ghost_backup.completion import render_bash_completion
from ghost_backup.config_example import render_example_toml
from ghost_backup.settings import parse_settings
from tests.helpers import Stack, find_canaries, make_tree
from tests.sysext.image import (
    EXTENSION_RELEASE,
    REPO,
    SysextBuild,
    hide_python_argv,
    list_image,
    parse_os_release,
    run_build,
)

# Names and contents that look like a key: nothing of the kind may ship in an image. AWS's
# documentation keys (AKIAIOSFODNN7EXAMPLE, in rclone's help texts) are the one exception.
_SECRET_NAMES = re.compile(r"(^|/)(\.env(\..*)?|rclone\.conf|id_(rsa|ed25519|ecdsa)|"
                           r"credentials(\.json)?|.*\.(key|p12|pfx))$")
_SECRET_CONTENT = re.compile(
    # a PEM key is the marker followed by its base64 body (rclone's binary holds the bare
    # marker string, which its PEM parser matches)
    rb"-----BEGIN (RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]{64}"
    rb"|(AKIA|ASIA)[0-9A-Z]{16}"
    rb"|(secret_access_key|access_key_id|session_token)\s*[=:]\s*[\"']?[A-Za-z0-9/+]{16,}"
)


def _images(build: SysextBuild) -> list[tuple[str, Path, Path]]:
    return [("ghost-backup", build.app_image, build.app_tree),
            ("rclone", build.rclone_image, build.rclone_tree)]


def test_images_are_named_by_version_and_checksummed(sysext: SysextBuild) -> None:
    import ghost_backup  # noqa: PLC0415

    assert sysext.app_image.name == f"ghost-backup-{ghost_backup.__version__}-x86-64.raw"
    assert re.fullmatch(r"rclone-\d+\.\d+\.\d+-x86-64\.raw", sysext.rclone_image.name)
    sums = (sysext.outdir / "SHA256SUMS").read_text().splitlines()
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in sums}
    assert set(listed) == {sysext.app_image.name, sysext.rclone_image.name}
    for image in (sysext.app_image, sysext.rclone_image):
        digest = subprocess.run(["sha256sum", str(image)], capture_output=True, text=True,
                                check=True).stdout.split()[0]
        assert listed[image.name] == digest


def test_a_second_build_elsewhere_gives_byte_identical_images(
        sysext: SysextBuild, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Same sources, virtualenv and SOURCE_DATE_EPOCH (the last commit's time), other
    # directories: PyInstaller's output and both squashfs images must not change.
    again = run_build(tmp_path / "dist", tmp_path / "build", unpack=False)
    with capsys.disabled():
        print(f"\nsysext: second build (reproducibility) in {again.seconds:.1f}s")
    assert (again.outdir / "SHA256SUMS").read_text() == (sysext.outdir / "SHA256SUMS").read_text()


@pytest.mark.parametrize("name", ["ghost-backup", "rclone"])
def test_image_holds_only_usr_every_entry_root_owned(sysext: SysextBuild, name: str) -> None:
    image = sysext.app_image if name == "ghost-backup" else sysext.rclone_image
    entries = list_image(image)
    assert len(entries) > 3
    assert {e.path.split("/")[0] for e in entries} == {"", "usr"}
    assert {e.owner for e in entries} == {"root/root"}
    paths = {e.path for e in entries}
    assert not {"etc", "opt", "usr/lib/os-release", "usr/sbin", "usr/etc"} & paths
    assert not [e.path for e in entries if "w" in e.mode[4:] and not e.mode.startswith("l")]


@pytest.mark.parametrize("name", ["ghost-backup", "rclone"])
def test_extension_release_fields_are_exact(sysext: SysextBuild, name: str) -> None:
    tree = sysext.app_tree if name == "ghost-backup" else sysext.rclone_tree
    release_dir = tree / "usr/lib/extension-release.d"
    assert [p.name for p in release_dir.iterdir()] == [f"extension-release.{name}"]
    fields = parse_os_release((release_dir / f"extension-release.{name}").read_text())
    # No VERSION_ID: with one, systemd-sysext rejects the image on a host whose os-release has
    # a different VERSION_ID; the version lives in the file name.
    assert fields == EXTENSION_RELEASE


def test_image_holds_nothing_secret_looking(sysext: SysextBuild) -> None:
    hits = []
    for _, _, tree in _images(sysext):
        for path in sorted(tree.rglob("*")):
            rel = path.relative_to(tree).as_posix()
            if _SECRET_NAMES.search(rel):
                hits.append(f"name: {rel}")
            if path.is_file() and not path.is_symlink():
                hits += [f"content: {rel}: {m.group(0)[:40]!r}"
                         for m in _SECRET_CONTENT.finditer(path.read_bytes())
                         if b"EXAMPLE" not in m.group(0)]
    assert hits == []


def test_rclone_image_holds_rclone_and_its_release_only(sysext: SysextBuild) -> None:
    files = sorted(p.relative_to(sysext.rclone_tree).as_posix()
                   for p in sysext.rclone_tree.rglob("*") if not p.is_dir())
    assert files == ["usr/bin/rclone", "usr/lib/extension-release.d/extension-release.rclone",
                     "usr/lib/sysupdate.rclone.d/rclone-sysext.conf",
                     "usr/share/licenses/rclone/COPYING"]
    assert (sysext.rclone_tree / "usr/lib/sysupdate.rclone.d/rclone-sysext.conf").read_bytes() == (
        REPO / "packaging/sysext/sysupdate/rclone.conf").read_bytes()
    notice = (sysext.rclone_tree / "usr/share/licenses/rclone/COPYING").read_text()
    assert "Copyright (C) 2012 by Nick Craig-Wood" in notice
    assert "Permission is hereby granted, free of charge" in notice  # the MIT text itself
    version = sysext.rclone_image.name.removeprefix("rclone-").removesuffix("-x86-64.raw")
    out = subprocess.run([str(sysext.rclone_tree / "usr/bin/rclone"), "version"],
                         env={}, capture_output=True, text=True, check=True, timeout=30).stdout
    assert out.splitlines()[0] == f"rclone v{version}"


def test_app_image_carries_bundle_units_upholds_dropin_and_example_config(
        sysext: SysextBuild) -> None:
    tree = sysext.app_tree
    link = tree / "usr/bin/ghost-backup"
    assert link.is_symlink()
    assert str(link.readlink()) == "../lib/ghost-backup/ghost-backup"
    assert (tree / "usr/lib/ghost-backup/ghost-backup").is_file()

    shipped = sorted(p.name for p in (REPO / "packaging/systemd").glob("*.service")) + sorted(
        p.name for p in (REPO / "packaging/systemd").glob("*.timer"))
    unit_dir = tree / "usr/lib/systemd/system"
    in_image = sorted(p.name for p in unit_dir.iterdir() if p.is_file())
    assert sorted(in_image) == sorted(shipped)
    for unit in shipped:
        assert (unit_dir / unit).read_bytes() == (REPO / "packaging/systemd" / unit).read_bytes()

    dropin = (unit_dir / "timers.target.d/10-ghost-backup.conf").read_text()
    assert re.search(r"^\[Unit\]$", dropin, re.M)
    assert re.search(r"^Upholds=ghost-backup\.timer$", dropin, re.M)

    examples = sorted(p.relative_to(REPO / "packaging/systemd").as_posix()
                      for p in (REPO / "packaging/systemd").glob("*.d/*.conf.example"))
    assert sorted(p.relative_to(tree / "usr/share/ghost-backup/examples").as_posix()
                  for p in (tree / "usr/share/ghost-backup/examples").rglob("*.example")
                  ) == examples

    # The image ships the full example `ghost-backup config example` prints (issue 18), not a
    # Flatcar-only starter: rclone.binary keeps its default "rclone", which the bundle finds on
    # the unit's PATH as the rclone image's /usr/bin/rclone (`check` names the binary it uses).
    example = tree / "usr/share/ghost-backup/config.example.toml"
    assert example.read_text() == render_example_toml()
    settings = parse_settings(tomllib.loads(example.read_text()), {})
    assert settings.source.path == Path("/var/mnt/storage")
    assert settings.rclone.binary == "rclone"
    assert shutil.which("rclone", path=str(sysext.rclone_tree / "usr/bin")) == str(
        sysext.rclone_tree / "usr/bin/rclone")

    # Its own sysupdate transfer and the sysupdate.service drop-in, the lock's tmpfiles line.
    sysupdate = REPO / "packaging/sysext/sysupdate"
    assert (tree / "usr/lib/sysupdate.ghost-backup.d/ghost-backup.conf").read_bytes() == (
        sysupdate / "ghost-backup.conf").read_bytes()
    assert (unit_dir / "systemd-sysupdate.service.d/ghost-backup.conf").read_bytes() == (
        sysupdate / "systemd-sysupdate.service.d-ghost-backup.conf").read_bytes()
    assert (tree / "usr/lib/tmpfiles.d/ghost-backup.conf").read_bytes() == (
        REPO / "packaging/tmpfiles.d/ghost-backup.conf").read_bytes()

    # The licences of everything in the bundle, each with its own file.
    licences = tree / "usr/share/licenses/ghost-backup"
    listing = (licences / "THIRD-PARTY.txt").read_text()
    for name in ("requests", "urllib3", "pydantic", "pydantic-core", "prometheus-client",
                 "certifi", "sdnotify", "tenacity", "pyinstaller", "python"):
        assert f"\n{name} " in listing, name
        assert any((licences / name).iterdir()), name
    assert "PYTHON SOFTWARE FOUNDATION LICENSE" in (licences / "python/LICENSE.txt").read_text()

    completion = tree / "usr/share/bash-completion/completions/ghost-backup"
    assert completion.read_text() == render_bash_completion(build_parser())


@pytest.fixture
def as_root() -> None:
    """Skip unless this process may create mount namespaces (hide_python_argv needs to)."""
    if os.geteuid() != 0:
        pytest.skip("hiding the host's Python needs root (a private mount namespace)")


def _no_python_path(sysext: SysextBuild) -> str:
    path = f"{sysext.app_tree / 'usr/bin'}:{sysext.rclone_tree / 'usr/bin'}"
    for interpreter in ("python", "python3", "python3.11"):
        assert shutil.which(interpreter, path=path) is None
    return path


@pytest.mark.usefixtures("as_root")
def test_bundle_prints_version_with_empty_env_and_python_hidden(sysext: SysextBuild) -> None:
    env = {"PATH": _no_python_path(sysext)}
    proc = subprocess.run(hide_python_argv(["ghost-backup", "--version"], env),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"ghost-backup {sysext.version}"


@pytest.mark.usefixtures("as_root")
def test_bundle_runs_a_backup_with_empty_env_and_python_hidden(
        sysext: SysextBuild, stack: Stack) -> None:
    make_tree(stack.source, 40)
    stack.overrides["rclone"] = {"binary": "rclone"}  # from the rclone image, through PATH
    config = stack.write_config()
    env = {"PATH": _no_python_path(sysext)}
    proc = subprocess.run(hide_python_argv(["ghost-backup", "--config", str(config), "run"], env),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "summary: " in proc.stderr
    copied = sorted(p.relative_to(stack.bucket_dir) for p in stack.bucket_dir.rglob("*")
                    if p.is_file())
    assert copied == sorted(p.relative_to(stack.source) for p in stack.source.rglob("*")
                            if p.is_file())
    assert find_canaries(stack.secrets, texts=[proc.stdout, proc.stderr],
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []


@pytest.mark.usefixtures("as_root")
def test_hiding_python_really_breaks_a_host_interpreter() -> None:
    # The control for the two tests above: the same namespace stops an ordinary interpreter.
    interpreter = shutil.which("python3", path="/usr/bin") or "/usr/bin/python3"
    proc = subprocess.run(hide_python_argv([interpreter, "-c", "print('alive')"],
                                           {"PATH": "/usr/bin:/bin"}),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "alive" not in proc.stdout
