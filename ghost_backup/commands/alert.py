"""``ghost-backup alert --unit NAME``: report a failed unit to the alert channels
(``ghost-backup-alert@.service``, started by the main unit's ``OnFailure=``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from ghost_backup.report.alerts import AlertSink, build_unit_failure_event
from ghost_backup.settings import Settings

log = logging.getLogger("ghost_backup")


def run_alert(unit: str, env: Mapping[str, str],
              load: Callable[[], Settings], sink: Callable[[Settings], AlertSink]) -> None:
    """Log the failure at critical priority, then send it to the configured channels.

    The journal comes first: it is the channel of last resort, even if the config is broken
    (``load`` then raises ConfigError after the line is written).
    """
    event = build_unit_failure_event(unit, env)
    log.critical("%s", event.message)
    sink(load()).finish(event)
