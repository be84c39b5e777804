"""``ghost-backup alert --unit NAME``: report a failed unit to the alert channels
(``ghost-backup-alert@.service``, started by the main unit's ``OnFailure=``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from ghost_backup.errors import GhostBackupError
from ghost_backup.logs import NOTICE
from ghost_backup.report import state
from ghost_backup.report.alerts import AlertSink, build_unit_failure_event
from ghost_backup.settings import Settings

log = logging.getLogger("ghost_backup")


def run_alert(unit: str, env: Mapping[str, str],
              load: Callable[[], Settings], sink: Callable[[Settings], AlertSink]) -> None:
    """Log the failure at critical priority, then send it to the configured channels, unless
    the run already reported itself.

    The journal comes first: it is the channel of last resort, even if the config is broken
    (``load`` then raises ConfigError after the line is written). A run that recorded its end
    in the state file under the failed invocation's id (``MONITOR_INVOCATION_ID``) has sent
    its own ping and webhook (a failure, or a ``systemctl stop``): one event, one report. The
    rest (watchdog, timeouts, OOM kill, a crash) only this unit can report.
    """
    event = build_unit_failure_event(unit, env)
    log.critical("%s", event.message)
    settings = load()
    invocation = env.get("MONITOR_INVOCATION_ID")
    if invocation and _recorded_by_run(settings, invocation):
        log.log(NOTICE, "not alerting again: the run of invocation %s reported its own end "
                        "to the alert channels", invocation)
        return
    sink(settings).finish(event)


def _recorded_by_run(settings: Settings, invocation: str) -> bool:
    try:
        record = state.read_last_run(settings.state.dir)
    except GhostBackupError:
        return False
    return record is not None and record.invocation_id == invocation
