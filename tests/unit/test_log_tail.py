"""The failure alert's log tail: the last lines only, redacted when read."""

from __future__ import annotations

import logging

from ghost_backup.logs import Redactor, TailHandler


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("ghost_backup.test", logging.INFO, __file__, 1, message, args, None)


def test_tail_keeps_only_the_last_lines_oldest_first() -> None:
    tail = TailHandler(Redactor(), size=3)
    for i in range(10):
        tail.handle(_record("line %d", i))
    assert tail.lines == ["line 7", "line 8", "line 9"]


def test_tail_redacts_secrets_learned_after_the_line_was_logged() -> None:
    redactor = Redactor()
    tail = TailHandler(redactor)
    tail.handle(_record("rclone: Attempt 1/3 failed: key %s", "AKIASECRET1234"))
    redactor.add(["AKIASECRET1234"])
    assert tail.lines == ["rclone: Attempt 1/3 failed: key ****"]


def test_tail_cuts_long_lines_to_500_characters() -> None:
    tail = TailHandler(Redactor())
    tail.handle(_record("x" * 2000))
    assert tail.lines == ["x" * 500]
