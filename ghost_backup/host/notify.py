"""Talking to systemd: sd_notify(3) messages through ``sdnotify``, behind a small Protocol,
and the unit's answer to "is the whole system stopping?".

Without ``NOTIFY_SOCKET`` (a terminal, a test) the notifier is silent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import sdnotify

# Written into the unit's runtime dir by its root ExecStop= hook before the SIGTERM, when
# `systemctl is-system-running` says "stopping" (a reboot or poweroff, not a `systemctl stop`).
SYSTEM_STOPPING_NAME = "system-stopping"


class Notifier(Protocol):
    """Something that takes sd_notify messages such as ``READY=1``."""

    def send(self, message: str) -> None:
        """Send one notification message."""


class NullNotifier:
    """A notifier that drops everything (not running under systemd)."""

    def send(self, message: str) -> None:
        """Drop ``message``."""


class SystemdNotifier:
    """Send to ``$NOTIFY_SOCKET`` (sdnotify handles abstract sockets; errors are ignored,
    as sd_notify(3) does: systemd going away must not break the backup)."""

    def __init__(self) -> None:
        self._notifier = sdnotify.SystemdNotifier()

    def send(self, message: str) -> None:
        """Send ``message`` to systemd."""
        self._notifier.notify(message)


def notifier_from_env(env: Mapping[str, str]) -> Notifier:
    """Return a systemd notifier when ``NOTIFY_SOCKET`` is set, else a silent one."""
    return SystemdNotifier() if env.get("NOTIFY_SOCKET") else NullNotifier()


def watchdog_interval(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """Return how often to send ``WATCHDOG=1`` (half of ``WATCHDOG_USEC``), or None.

    Per sd_watchdog_enabled(3) the variables only apply when ``WATCHDOG_PID`` is unset or ours.
    """
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 2_000_000


def format_status(text: str) -> str:
    """Return a ``STATUS=`` message with newlines flattened (one message, one line)."""
    return "STATUS=" + " ".join(text.split())[:200]


class StatusThrottle:
    """Send ``STATUS=`` at most once per ``interval`` seconds (the latest text wins)."""

    def __init__(
        self, notifier: Notifier, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._notifier = notifier
        self._interval = interval
        self._clock = clock
        self._last = -float("inf")

    def update(self, text: str, *, force: bool = False) -> None:
        """Send ``text`` as the status if enough time has passed (or ``force``)."""
        now = self._clock()
        if force or now - self._last >= self._interval:
            self._last = now
            self._notifier.send(format_status(text))



def read_system_stopping(runtime_dir: Path) -> bool:
    """Return True if the unit's ExecStop= hook found the system shutting down."""
    return (runtime_dir / SYSTEM_STOPPING_NAME).exists()
