"""Logging: journald priority prefixes under systemd, plain lines at a terminal, and
value-based redaction of every secret the process has learned.

journald reads a ``<N>`` prefix on each stdout/stderr line as the syslog priority
(sd-daemon(3)); we add it only when ``JOURNAL_STREAM`` says stderr *is* the journal.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TextIO

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

# syslog priorities (0 emerg .. 7 debug), from a logging level.
_PRIORITY_BY_LEVEL = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
                      (NOTICE, 5), (logging.INFO, 6))
REDACTED = "****"


def priority_for_level(levelno: int) -> int:
    """Return the syslog priority for a logging level."""
    for threshold, priority in _PRIORITY_BY_LEVEL:
        if levelno >= threshold:
            return priority
    return 7


_LEVEL_BY_PRIORITY = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.CRITICAL,
                      3: logging.ERROR, 4: logging.WARNING, 5: NOTICE, 6: logging.INFO}


def level_for_priority(priority: int) -> int:
    """Return the logging level for a syslog priority (0..7)."""
    return _LEVEL_BY_PRIORITY.get(priority, logging.CRITICAL if priority < 0 else logging.DEBUG)


class Redactor:
    """Replace known secret values wherever they appear in text."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()

    def add(self, values: Iterable[str]) -> None:
        """Remember ``values`` (longest first, so overlapping secrets redact fully)."""
        merged = set(self._secrets) | {v for v in values if len(v) >= 4}
        self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def forget(self) -> None:
        """Drop every remembered value (the run is over)."""
        self._secrets = ()

    def redact(self, text: str) -> str:
        """Return ``text`` with every known secret replaced by ``****``."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class _Formatter(logging.Formatter):
    def __init__(self, redactor: Redactor, *, journal: bool) -> None:
        super().__init__()
        self._redactor = redactor
        self._journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and logging.getLogger().isEnabledFor(logging.DEBUG):
            text = f"{text}\n{self.formatException(record.exc_info)}"
        text = self._redactor.redact(text)
        priority = getattr(record, "priority", None)
        if priority is None:
            priority = priority_for_level(record.levelno)
        if not self._journal:
            return text
        if "\n" not in text and "\r" not in text:  # the common case: one rclone line
            return f"<{priority}>{text}"
        # One journal entry per line, each with its priority.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def stderr_is_journal(env: Mapping[str, str], stream: TextIO = sys.stderr) -> bool:
    """Return True when ``stream`` is connected to journald (``JOURNAL_STREAM`` matches it)."""
    value = env.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(
    redactor: Redactor, *, journal: bool, verbose: bool = False, stream: TextIO | None = None
) -> None:
    """Send all logging to stderr through the redacting formatter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(redactor, journal=journal))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # Every rclone line becomes a record (50,000 on a big night). Our formatter prints none of
    # the caller, thread or process fields, so don't collect them per record: the logging
    # HOWTO's "Optimization" section names exactly these switches. docs/performance.md.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # same HOWTO section: no findCaller() per record
    # urllib3 logs request URLs at DEBUG; keep it quiet even in verbose mode.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


class TailHandler(logging.Handler):
    """Keep the last ``size`` log lines (redacted, no prefixes) for failure alerts."""

    def __init__(self, redactor: Redactor, size: int = 20) -> None:
        super().__init__(level=logging.INFO)
        self._redactor = redactor
        # Records, formatted only when read: a run logs one line per file, an alert reads 20.
        self._records: deque[logging.LogRecord] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        """Remember one record."""
        self._records.append(record)

    @property
    def lines(self) -> list[str]:
        """Return the remembered messages, oldest first, redacted, at most 500 characters."""
        return [self._redactor.redact(record.getMessage())[:500] for record in self._records]
