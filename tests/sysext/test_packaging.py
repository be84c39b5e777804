"""The operator-facing packaging around the images: the systemd-sysupdate transfers and the
Butane example agree with the image names, with each other and with the settings model.
(Debian 12 ships no systemd-sysupdate or butane, so these are checks on the files.)"""

from __future__ import annotations

import configparser
import re
import tomllib
from fnmatch import fnmatch
from pathlib import PurePosixPath

import pytest

from ghost_backup.settings import parse_settings
from tests.sysext.image import REPO
from tests.system.removal import markdown_code_blocks

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


def test_butane_leaves_the_transfers_and_the_sysupdate_dropin_to_the_images() -> None:
    # In /etc they would outlive a removed image and keep updating it (issue 15).
    assert "/etc/sysupdate.ghost-backup.d" not in BUTANE
    assert "/etc/sysupdate.rclone.d" not in BUTANE
    assert "dropins:" not in BUTANE
    assert re.search(r"- name: systemd-sysupdate\.timer\n\s+enabled: true", BUTANE)
    assert "- path: /etc/sysupdate.d/noop.conf" in BUTANE


def test_sysupdate_dropin_never_fails_the_service_on_one_transfer() -> None:
    dropin = (SYSEXT / "sysupdate" / "systemd-sysupdate.service.d-ghost-backup.conf").read_text()
    updates = [line for line in dropin.splitlines() if "systemd-sysupdate -C" in line]
    assert len(updates) == 2
    assert all(line.startswith("ExecStartPre=-/") for line in updates)


def test_butane_provisions_every_file_its_config_and_units_name() -> None:
    provisioned = set(re.findall(r"- path: (\S+)", BUTANE))
    config = parse_settings(tomllib.loads(
        _butane_block("path", "/etc/ghost-backup/config.toml", "inline")), {})
    cloudflare = config.credentials.cloudflare_temp
    assert cloudflare is not None
    assert str(cloudflare.ca_bundle) in provisioned
    for env_file in re.findall(r"EnvironmentFile=(\S+)", BUTANE):
        assert env_file in provisioned
    for env_file in re.findall(r"--env-file (\S+)", BUTANE):
        assert env_file in provisioned


def test_butane_config_is_the_credentials_worked_example() -> None:
    # docs/credentials.md: the Agent Proxy injects the parent token into Cloudflare's call;
    # it serves no /credentials/... endpoint, so the default http-json source cannot be it.
    doc = (REPO / "docs" / "credentials.md").read_text()
    example = doc.split("## Worked example: Aembit + Cloudflare", 1)[1]
    worked = tomllib.loads(re.search(r"```toml\n(.*?)```", example, re.S).group(1))  # type: ignore[union-attr]
    butane = tomllib.loads(_butane_block("path", "/etc/ghost-backup/config.toml", "inline"))
    assert butane["credentials"]["source"] == worked["credentials"]["source"] == "cloudflare-temp"
    assert butane["credentials"]["provider_name"] == worked["credentials"]["provider_name"]
    for key in ("token_from", "proxy_url", "ca_bundle", "ttl_seconds"):
        assert butane["credentials"]["cloudflare_temp"][key] == \
            worked["credentials"]["cloudflare_temp"][key], key


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
    assert settings.credentials.source == "cloudflare-temp"
    assert "name: ghost-backup.timer" not in BUTANE  # armed by the image's Upholds= drop-in


def uncovered_by_removal(paths: list[str], units: list[str], doc: str) -> list[str]:
    """Return the paths and enabled units the Removal section of ``doc`` neither removes (an
    ``rm`` of the path, a directory above it or a glob matching either) nor names as the
    reader's to keep (in its prose)."""
    section = doc.split("\n## Removal\n", 1)[1].split("\n## ", 1)[0]
    [block] = markdown_code_blocks(doc, "Removal")
    removed = [word for line in block.replace("\\\n", " ").splitlines()
               if line.lstrip().startswith("rm ") for word in line.split()
               if word.startswith("/")]
    prose = [word.rstrip(";,.") for span in re.findall(r"`([^`]+)`", section)
             for word in span.split()]

    def covered(path: str) -> bool:
        candidates = [str(parent) for parent in PurePosixPath(path).parents][:-1]
        return any(fnmatch(candidate, pattern.rstrip("/"))
                   for candidate in [path, *candidates] for pattern in removed) or any(
            path == word.rstrip("/") or path.startswith(word.rstrip("/") + "/")
            for word in prose)

    return [p for p in paths if not covered(p)] + [u for u in units if u not in prose]


def test_removal_takes_or_names_everything_the_butane_example_provisions() -> None:
    # The Butane install cannot run here (no butane, no Ignition); its files can be checked:
    # what tests/system/test_removal.py does for the install by hand.
    doc = (REPO / "docs" / "install-flatcar.md").read_text()
    paths = re.findall(r"- path: (\S+)", BUTANE)
    units = re.findall(r"- name: (\S+)\n\s+enabled: true", BUTANE)
    assert len(paths) >= 8
    assert units
    assert uncovered_by_removal(paths, units, doc) == []
    # The control: a file and a unit it does not mention are reported.
    assert uncovered_by_removal(["/etc/other/file", "/etc/ghost-backup/x"], ["other.timer"],
                                doc) == ["/etc/other/file", "other.timer"]
