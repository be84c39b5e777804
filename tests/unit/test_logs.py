"""Log lines: journald priority prefixes under systemd, plain at a terminal, secrets redacted."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator

import pytest

from ghost_backup.logs import (
    NOTICE,
    Redactor,
    level_for_priority,
    priority_for_level,
    setup_logging,
    stderr_is_journal,
)


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _emit(journal: bool, redactor: Redactor) -> str:
    stream = io.StringIO()
    setup_logging(redactor, journal=journal, stream=stream)
    log = logging.getLogger("ghost_backup.test")
    log.error("failed: %s", "boom")
    log.log(NOTICE, "progress")
    log.info("rclone: Copied (new): a.txt", extra={"priority": 6})
    log.warning("two\nlines")
    return stream.getvalue()


@pytest.mark.usefixtures("restore_root_logging")
def test_journal_lines_carry_priority_prefix_on_every_line() -> None:
    text = _emit(True, Redactor())
    assert text.splitlines() == [
        "<3>failed: boom", "<5>progress", "<6>rclone: Copied (new): a.txt", "<4>two", "<4>lines",
    ]


@pytest.mark.usefixtures("restore_root_logging")
def test_terminal_lines_are_plain() -> None:
    assert _emit(False, Redactor()).splitlines()[0] == "failed: boom"


@pytest.mark.usefixtures("restore_root_logging")
def test_known_secrets_are_redacted_by_value_wherever_they_appear() -> None:
    redactor = Redactor()
    redactor.add(["boom", "xy"])  # too-short values are ignored (they would mangle text)
    text = _emit(False, redactor)
    assert "boom" not in text
    assert "failed: ****" in text
    redactor.forget()
    assert redactor.redact("boom") == "boom"


def test_overlapping_secrets_redact_fully() -> None:
    redactor = Redactor()
    redactor.add(["abcd", "abcdefgh"])
    assert redactor.redact("x abcdefgh y") == "x **** y"


@pytest.mark.parametrize(("level", "priority"),
                         [(logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
                          (NOTICE, 5), (logging.INFO, 6), (logging.DEBUG, 7)])
def test_level_priority_round_trip(level: int, priority: int) -> None:
    assert priority_for_level(level) == priority
    assert level_for_priority(priority) == level


def test_journal_detected_only_when_journal_stream_matches_stderr(tmp_path: object) -> None:
    with open(os.devnull, "w") as stream:  # noqa: PTH123
        st = os.fstat(stream.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": "1:2"}, stream)
        assert not stderr_is_journal({}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, stream)
