"""The scan plan: pure functions, no I/O (which places on a host hold keys in practice)."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ghost_backup.settings import (
    RuntimeSettings,
    SourceSettings,
    StateSettings,
)

EXTRA_PATH_DEPTH = 8  # how deep an explicit --path directory is walked
NAME_WALK_DEPTH = 5  # how deep /etc, /opt and /var/lib are searched for rclone.conf

_HOMES = ("/root", "/home/*")
_HOME_FILES = (".bashrc", ".profile", ".bash_profile", ".bash_login", ".zshrc", ".zshenv",
               ".zprofile", ".bash_history", ".zsh_history", ".ash_history", ".s3cfg", ".boto",
               ".env")
# Container image layers are not host configuration and can hold millions of files.
_NAME_WALK_PRUNE = ("/var/lib/docker", "/var/lib/containerd", "/var/lib/containers",
                    "/var/lib/machines")


@dataclass(frozen=True)
class HostLocations:
    """The host-specific places to look at, from ghost-backup's config (or its defaults)."""

    source: Path = SourceSettings.model_fields["path"].default
    state_dir: Path = StateSettings.model_fields["dir"].default
    runtime_dir: Path = RuntimeSettings.model_fields["dir"].default
    # where hand-run commands keep their per-run config while the unit owns runtime_dir
    manual_dir: Path = RuntimeSettings.model_fields["manual_dir"].default
    config_file: Path | None = None


@dataclass(frozen=True)
class ScanTarget:
    """One place to look: a host path or glob, walked ``depth`` levels when a directory."""

    pattern: str
    what: str
    depth: int = 1
    names: tuple[str, ...] = ()
    prune: tuple[str, ...] = ()
    rebase: bool = True
    required: bool = False


def build_scan_plan(locations: HostLocations, extra: Sequence[Path] = ()) -> tuple[ScanTarget, ...]:
    """Given the host's locations and extra paths, return every place the audit reads.

    Host paths are globs relative to the audited root (``--root``); ``extra`` paths are taken
    as given and walked whole (that is how to include the source data itself). The source
    tree is never walked by default: only compose files directly in it, one level below it,
    and next to it are read.
    """
    esc = glob.escape
    source, parent = esc(str(locations.source)), esc(str(locations.source.parent))
    prune = (*_NAME_WALK_PRUNE, str(locations.source))
    targets = [
        # rclone configs
        *(ScanTarget(f"{home}/.config/rclone", "rclone config", depth=2) for home in _HOMES),
        ScanTarget("/etc/rclone", "rclone config", depth=2),
        *(ScanTarget(top, "rclone config", depth=NAME_WALK_DEPTH,
                     names=("rclone.conf", "rclone*.conf"), prune=prune)
          for top in ("/etc", "/opt", "/var/lib")),
        # systemd units, drop-ins, manager defaults and credential stores
        ScanTarget("/etc/systemd/system", "systemd unit", depth=3),
        ScanTarget("/etc/systemd/system.control", "systemd unit", depth=2),
        ScanTarget("/run/systemd/system", "systemd unit", depth=3),
        ScanTarget("/run/systemd/system.control", "systemd unit", depth=2),
        ScanTarget("/run/systemd/transient", "systemd unit", depth=2),
        ScanTarget("/usr/local/lib/systemd/system", "systemd unit", depth=2),
        ScanTarget("/usr/lib/systemd/system", "systemd unit", depth=2),
        ScanTarget("/etc/systemd/system.conf", "systemd manager config"),
        ScanTarget("/etc/systemd/system.conf.d", "systemd manager config"),
        *(ScanTarget(f"{top}/credstore", "systemd credential store")
          for top in ("/etc", "/run", "/usr/lib", "/usr/local/lib")),
        # environment and shell profiles
        ScanTarget("/etc/environment", "environment"),
        ScanTarget("/etc/environment.d", "environment"),
        ScanTarget("/etc/profile", "shell profile"),
        ScanTarget("/etc/profile.d", "shell profile"),
        ScanTarget("/etc/bash.bashrc", "shell profile"),
        ScanTarget("/etc/bashrc", "shell profile"),
        *(ScanTarget(f"{home}/{name}", "shell profile") for home in _HOMES for name in _HOME_FILES),
        *(ScanTarget(f"{home}/.aws", "AWS credentials", depth=2) for home in _HOMES),
        ScanTarget("/opt/bin", "scripts"),
        # compose files next to and just inside the source tree, and usual project places
        *(ScanTarget(f"{top}/{name}", "compose env")
          for top in (source, f"{source}/*", parent, f"{parent}/*", "/opt/*", "/srv/*")
          for name in (".env*", "*compose*.y*ml")),
        # ghost-backup itself
        ScanTarget("/etc/ghost-backup", "ghost-backup config", depth=2),
        ScanTarget(esc(str(locations.state_dir)), "ghost-backup state", depth=3),
        ScanTarget(esc(str(locations.runtime_dir)), "ghost-backup runtime", depth=3),
        *([ScanTarget(esc(str(locations.manual_dir)), "ghost-backup runtime (hand-run)",
                      depth=3)] if locations.manual_dir != locations.runtime_dir else []),
    ]
    if locations.config_file is not None:
        targets.append(ScanTarget(esc(str(locations.config_file)), "ghost-backup config",
                                  rebase=False))
    targets += [ScanTarget(esc(str(path.absolute())), "extra path", depth=EXTRA_PATH_DEPTH,
                           rebase=False, required=True) for path in extra]
    return tuple(targets)


def rebase(root: Path, host_path: str) -> Path:
    """Return where absolute ``host_path`` is when the host's ``/`` is at ``root``."""
    if root == Path("/"):
        return Path(host_path)
    return Path(str(root).rstrip("/") + "/" + host_path.lstrip("/"))


