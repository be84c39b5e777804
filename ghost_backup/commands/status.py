"""``ghost-backup status``: show the last run from the state file (no credentials, no lock)."""

from __future__ import annotations

import json
from datetime import datetime

from ghost_backup.report import state
from ghost_backup.settings import Settings


def run_status(settings: Settings, *, as_json: bool, now: datetime) -> str:
    """Return the last run as text, or as JSON (``{"outcome": "none"}`` before any run).

    Raise StateUnreadable if the state file is not a record ghost-backup wrote.
    """
    record = state.read_last_run(settings.state.dir)
    if as_json:
        payload = {"outcome": "none"} if record is None else record.model_dump(mode="json")
        return json.dumps(payload, indent=2) + "\n"
    return state.format_last_run(record, now=now, path=state.state_file(settings.state.dir))
