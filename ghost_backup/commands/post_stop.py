"""``ghost-backup post-stop``: the unit's root hook after every run (``ExecStopPost=+``).

The service runs as a transient user whose state directory only root can enter, and it can
write nowhere else; this hook runs with full privileges once the run has ended, whatever its
outcome (a kill included), and publishes the run's metrics textfile for node_exporter
(see :mod:`ghost_backup.report.metrics`). It never changes the run's outcome: problems are
logged, and the unit's ``-`` prefix ignores its exit status anyway.
"""

from __future__ import annotations

import logging

from ghost_backup.report import metrics
from ghost_backup.settings import Settings

log = logging.getLogger(__name__)


def run_post_stop(settings: Settings) -> None:
    """Publish ``<state.dir>/metrics.prom`` at ``metrics.textfile_path`` after checking it."""
    staged = metrics.staged_textfile(settings.state.dir)
    target = settings.metrics.textfile_path
    if target is None:
        log.info("metrics.textfile_path is off; %s stays where it is", staged)
        return
    try:
        text = metrics.read_staged_textfile(staged)
        metrics.check_textfile(text)
    except FileNotFoundError:
        log.info("no metrics textfile in %s yet (no run has recorded one); nothing published",
                 settings.state.dir)
        return
    except metrics.TextfileRefused as err:
        log.error("metrics textfile %s not published: %s", staged, err)
        return
    try:
        metrics.write_published_textfile(target, text)
    except OSError as err:
        log.error("cannot publish metrics textfile %s: %s", target, err.strerror)
        return
    log.info("metrics textfile published to %s", target)
