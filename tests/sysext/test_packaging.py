"""The operator-facing packaging around the images: the systemd-sysupdate transfers and the
Butane example agree with the image names, with each other and with the settings model.
(Debian 12 ships no systemd-sysupdate or butane, so these are checks on the files.)"""

from __future__ import annotations

import configparser
import re
import tomllib

import pytest

from ghost_backup.settings import parse_settings
from tests.sysext.image import REPO

SYSEXT = REPO / "packaging" / "sysext"
BUTANE = (SYSEXT / "ghost-backup.bu").read_text()


def _transfer(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((SYSEXT / "sysupdate" / f"{name}.conf").read_text())
    return parser


def _without_comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _butane_block(key: str, value: str, field: str) -> str:
    """Return the literal block ``field: |`` of the Butane entry whose ``key`` is ``value``."""
    lines = BUTANE.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if re.fullmatch(rf"\s*- {key}: {re.escape(value)}", line))
    at = next(i for i in range(start + 1, len(lines))
              if re.fullmatch(rf"\s*(inline|{field}): \|", lines[i]))
    indent = len(lines[at + 1]) - len(lines[at + 1].lstrip())
    block = []
    for line in lines[at + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        block.append(line[indent:])
    return "\n".join(block).strip() + "\n"


@pytest.mark.parametrize("name", ["ghost-backup", "rclone"])
def test_transfer_matches_the_image_names_and_the_extension_symlink(name: str) -> None:
    transfer = _transfer(name)
    for section in ("Source", "Target"):
        pattern = transfer[section]["MatchPattern"]
        assert pattern == f"{name}-@v-%a.raw"
        assert pattern.replace("@v", "1.2.3").replace("%a", "x86-64") == f"{name}-1.2.3-x86-64.raw"
    assert transfer["Source"]["Type"] == "url-file"
    assert transfer["Source"]["Path"].startswith("https://")
    assert transfer["Target"]["Path"] == f"/opt/extensions/{name}"
    assert transfer["Target"]["CurrentSymlink"] == f"/etc/extensions/{name}.raw"
    assert int(transfer["Target"]["InstancesMax"]) >= 2  # the previous version stays for rollback


@pytest.mark.parametrize("name", ["ghost-backup", "rclone"])
def test_butane_embeds_the_transfer_as_shipped(name: str) -> None:
    embedded = _butane_block("path", f"/etc/sysupdate.{name}.d/{name}.conf", "inline")
    shipped = (SYSEXT / "sysupdate" / f"{name}.conf").read_text()
    assert _without_comments(embedded) == _without_comments(shipped)


def test_butane_embeds_the_sysupdate_dropin_as_shipped() -> None:
    embedded = _butane_block("name", "ghost-backup.conf", "contents")
    shipped = (SYSEXT / "sysupdate" / "systemd-sysupdate.service.d-ghost-backup.conf").read_text()
    assert _without_comments(embedded) == _without_comments(shipped)


def test_butane_links_each_extension_name_to_an_image_it_installs() -> None:
    installed = set(re.findall(r"- path: (/opt/extensions/\S+\.raw)", BUTANE))
    links = dict(re.findall(r"- path: (/etc/extensions/\S+)\n\s+target: (\S+)", BUTANE))
    assert set(links) == {"/etc/extensions/ghost-backup.raw", "/etc/extensions/rclone.raw"}
    assert set(links.values()) == installed
    for link, target in links.items():
        name = link.removeprefix("/etc/extensions/").removesuffix(".raw")
        assert re.fullmatch(rf"/opt/extensions/{name}/{name}-[\d.]+-x86-64\.raw", target)


def test_butane_config_is_valid_and_the_units_need_no_enable() -> None:
    config = _butane_block("path", "/etc/ghost-backup/config.toml", "inline")
    settings = parse_settings(tomllib.loads(config), {})
    assert settings.rclone.binary == "/usr/bin/rclone"
    assert "name: ghost-backup.timer" not in BUTANE  # armed by the image's Upholds= drop-in
