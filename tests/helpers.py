"""Shared test helpers: a backup "stack" (loopback S3 + dev proxy + tmpfs runtime dir),
config writing, running the real CLI as a child, and the canary search."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.receiver import AlertReceiver
from tests.support.devproxy import DevProxy
from tests.support.devstack import S3Server

BIN = Path(sys.executable).parent
RCLONE = str(BIN / "rclone")
GHOST_BACKUP = str(BIN / "ghost-backup")
BUCKET = "ghost-test"


def make_tree(root: Path, files: int = 300, *, seed: int = 7, max_size: int = 4096) -> list[Path]:
    """Create ``files`` small files in a few nested folders under ``root``; return them."""
    rnd = random.Random(seed)
    made = []
    for i in range(files):
        sub = root / f"dir{i % 7}" / f"sub{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"file-{i:05d}.dat"
        path.write_bytes(rnd.randbytes(rnd.randint(1, max_size)))
        made.append(path)
    return made


def toml_value(value: Any) -> str:
    """Return ``value`` as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_toml(data: Mapping[str, Mapping[str, Any]]) -> str:
    """Return a TOML document of sections; a dict value becomes a sub-table."""
    out = []
    for section, values in data.items():
        out.append(f"[{section}]")
        out += [f"{key} = {toml_value(val)}" for key, val in values.items()
                if val is not None and not isinstance(val, Mapping)]
        out.append("")
        for key, val in values.items():
            if isinstance(val, Mapping):
                out.append(render_toml({f"{section}.{key}": val}))
    return "\n".join(out)


@dataclass
class Stack:
    """Everything one end-to-end backup needs, on loopback."""

    tmp: Path
    s3: S3Server
    proxy: DevProxy
    runtime_dir: Path
    source: Path
    alerts: AlertReceiver
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    databases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lock_path(self) -> Path:
        """Return the lock every command takes (next to the runtime dir, on tmpfs)."""
        return self.runtime_dir.parent / "ghost-backup.lock"

    @property
    def bucket_root(self) -> Path:
        """Return the folder holding the bucket's objects (mirror and history)."""
        return self.s3.bucket_dir(BUCKET)

    @property
    def bucket_dir(self) -> Path:
        """Return the folder holding the mirror (`destination.path`, "current" by default)."""
        path = self.config_data()["destination"].get("path", "current")
        return self.bucket_root / path if path else self.bucket_root

    @property
    def history_dir(self) -> Path:
        """Return the folder holding the history (`destination.archive_path`)."""
        return self.bucket_root / self.config_data()["destination"].get("archive_path",
                                                                       "history")

    @property
    def secrets(self) -> tuple[str, ...]:
        """Return every canary secret in play."""
        state = self.proxy.state
        values = (state.access_key_id, state.secret_access_key, state.session_token)
        return tuple(v for v in values if v)

    def config_data(self) -> dict[str, dict[str, Any]]:
        """Return the config as nested dicts (defaults for tests, then overrides)."""
        data: dict[str, dict[str, Any]] = {
            "source": {"path": str(self.source), "require_mountpoint": False},
            "destination": {"bucket": BUCKET, "endpoint": self.s3.endpoint},
            "credentials": {"url": self.proxy.url(), "max_total_seconds": 10,
                            "timeout_seconds": 3, "connect_timeout_seconds": 2},
            "rclone": {"binary": RCLONE, "stats_interval_seconds": 1},
            "runtime": {"dir": str(self.runtime_dir), "manual_dir": str(self.runtime_dir),
                        "lock_path": str(self.lock_path)},
            "state": {"dir": str(self.tmp / "state")},
            "alerts": {"healthcheck_url": self.alerts.healthcheck_url,
                       "webhook_url": self.alerts.webhook_url,
                       "timeout_seconds": 2, "attempts": 2},
        }
        for section, values in self.overrides.items():
            data.setdefault(section, {}).update(values)
        return data

    def write_config(self) -> Path:
        """Write the config file and return its path."""
        path = self.tmp / "config.toml"
        tables = "".join("\n[[database]]\n" + "".join(
            f"{key} = {toml_value(val)}\n" for key, val in db.items() if val is not None)
            for db in self.databases)
        path.write_text(render_toml(self.config_data()) + tables)
        return path

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Return a minimal environment for the CLI child."""
        env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(self.tmp), "LANG": "C.UTF-8"}
        env.update(extra or {})
        return env

    def run(self, *args: str, env: Mapping[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``ghost-backup --config <cfg> <args>`` and return the finished process.

        Its stderr is a file announced in ``JOURNAL_STREAM``, so lines carry the ``<N>``
        priority prefixes they would carry in the journal (see :func:`error_lines`).
        """
        config = self.write_config()
        journal = self.tmp / f"journal-{len(list(self.tmp.glob('journal-*')))}.log"
        with journal.open("w+") as err:
            st = os.fstat(err.fileno())
            extra = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", **(env or {})}
            done = subprocess.run(
                [GHOST_BACKUP, "--config", str(config), *args], env=self.env(extra),
                stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout, check=False,
            )
            err.seek(0)
            done.stderr = err.read()
        return done

    def popen(self, *args: str, env: Mapping[str, str] | None = None
              ) -> subprocess.Popen[str]:
        """Start ``ghost-backup --config <cfg> <args>`` and return the running process."""
        config = self.write_config()
        return subprocess.Popen(
            [GHOST_BACKUP, "--config", str(config), *args],
            env=self.env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )


_PRIORITY_RE = re.compile(r"^<([0-7])>")


def error_lines(journal_text: str) -> list[str]:
    """Return the lines logged at priority err (3) or more severe."""
    lines = []
    for line in journal_text.splitlines():
        match = _PRIORITY_RE.match(line)
        if match and int(match.group(1)) <= 3:
            lines.append(line)
    return lines


def find_canaries(secrets: Iterable[str], *, texts: Iterable[str] = (),
                  dirs: Iterable[Path] = ()) -> list[str]:
    """Return where any secret appears: in ``texts`` or any file under ``dirs``."""
    secrets = [s for s in secrets if s]
    hits = []
    for i, text in enumerate(texts):
        hits += [f"text[{i}]" for s in secrets if s in text]
    encoded = [s.encode() for s in secrets]
    for top in dirs:
        if not top.exists():
            continue
        for path in [top, *top.rglob("*")]:
            if path.is_file() and not path.is_symlink():
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                hits += [str(path) for s in encoded if s in data]
    return hits


def is_tmpfs(path: Path) -> bool:
    """Return True if ``path`` is on tmpfs/ramfs."""
    from ghost_backup.host.libc import RAMFS_MAGIC, TMPFS_MAGIC, read_fs_magic  # noqa: PLC0415

    return read_fs_magic(path) in (TMPFS_MAGIC, RAMFS_MAGIC)


def proc_env_of(pid: int) -> dict[str, str]:
    """Return a live process's environment (root reads any)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def child_pids(pid: int) -> list[int]:
    """Return the direct children of ``pid``."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        out += [int(c) for c in children]
    return out


