"""rclone's listings and check reports: parsing and selection (pure)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CheckReport:
    """What ``rclone check --combined`` found, by path."""

    matching: int = 0
    differ: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()

    @property
    def problems(self) -> int:
        """Return how many files are not identical on both sides (extras don't count)."""
        return len(self.differ) + len(self.missing) + len(self.unreadable)


def parse_combined(text: str) -> CheckReport:
    """Given the ``--combined`` file, return the counts and paths (see rclone check docs).

    ``=`` identical, ``+`` only on the left (missing on the right), ``-`` only on the right,
    ``*`` on both but different, ``!`` could not be read or hashed.
    """
    buckets: dict[str, list[str]] = {"=": [], "*": [], "-": [], "+": [], "!": []}
    for line in text.splitlines():
        sign, _, path = line.partition(" ")
        if sign in buckets and path:
            buckets[sign].append(path)
    return CheckReport(
        matching=len(buckets["="]),
        differ=tuple(buckets["*"]),
        missing=tuple(buckets["+"]),
        extra=tuple(buckets["-"]),
        unreadable=tuple(buckets["!"]),
    )


def select_sample(paths: tuple[str, ...], size: int, seed: str = "") -> tuple[str, ...]:
    """Return ``size`` of ``paths`` chosen deterministically (same input, same sample), sorted.

    Each path is ranked by SHA-256 of ``seed`` and the path; change the seed (for example the
    ISO week) to rotate which files a drill checks.
    """
    ranked = sorted(paths, key=lambda p: hashlib.sha256(f"{seed}\0{p}".encode()).digest())
    return tuple(sorted(ranked[:size]))


def select_archive(names: tuple[str, ...], wanted: str) -> str:
    """Given archive folder names (run ids) and ``--from-archive``, return the one folder.

    ``wanted`` may be a date (``2026-11-26`` or ``20261126``), a timestamp prefix or a full run
    id. Raise ValueError (with the choices) when nothing or more than one folder matches.
    """
    key = wanted.strip().strip("/")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", key):
        key = key.replace("-", "")
    folders = sorted({name.strip().rstrip("/") for name in names if name.strip()})
    if key in folders:
        return key
    matches = [name for name in folders if key and name.startswith(key)]
    if len(matches) == 1:
        return matches[0]
    recent = ", ".join(folders[-5:]) or "none"
    if not matches:
        raise ValueError(f"no archive folder matches {wanted!r} (most recent: {recent})")
    raise ValueError(f"{wanted!r} matches {len(matches)} archive folders "
                     f"({', '.join(matches[:5])}); pass the full run id")
