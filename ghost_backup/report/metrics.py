"""Metrics: the Prometheus textfile for node_exporter's textfile collector.

The exposition text is written by hand rather than with ``prometheus_client``: it is a
handful of gauges read from the state record, the format is a stable, documented plain-text
format (https://prometheus.io/docs/instrumenting/exposition_formats/), and one dependency
less is one thing less to vendor into the Flatcar sysext image. The file is replaced
atomically (node_exporter may read it at any moment) and holds figures only, never a key.
"""

from __future__ import annotations

from pathlib import Path

from ghost_backup import __version__
from ghost_backup.host.files import write_file_atomically
from ghost_backup.report.state import PUBLIC_FILE_MODE, LastRun

PREFIX = "ghost_backup"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def build_samples(record: LastRun) -> tuple[tuple[str, str, float], ...]:
    """Return ``(name, help, value)`` for every gauge derived from ``record``."""
    last_success = record.last_success_at.timestamp() if record.last_success_at else 0.0
    return (
        ("last_success_timestamp_seconds",
         "Unix time the last successful backup run finished (0: none recorded).", last_success),
        ("last_run_timestamp_seconds", "Unix time the last backup run finished.",
         record.finished_at.timestamp()),
        ("last_run_exit_code",
         "Exit code of the last backup run (0 success; see docs/exit-codes.md).",
         float(record.exit_code)),
        ("bytes_total", "Bytes transferred by the last backup run.", float(record.bytes)),
        ("files_transferred", "Files transferred by the last backup run.", float(record.files)),
        ("deletes", "Objects deleted (or archived) at the destination by the last run.",
         float(record.deletes)),
        ("errors", "Errors rclone counted in the last backup run.", float(record.errors)),
        ("duration_seconds", "Wall-clock duration of the last backup run.",
         record.duration_seconds),
        ("credential_ttl_seconds",
         "Validity of the last run's credentials when they were issued (0: none received).",
         record.credential_ttl_seconds or 0.0),
    )


def render_metrics(record: LastRun) -> str:
    """Return the Prometheus text exposition for ``record`` (gauges plus an info series)."""
    lines = []
    for name, help_text, value in build_samples(record):
        full = f"{PREFIX}_{name}"
        lines += [f"# HELP {full} {help_text}", f"# TYPE {full} gauge", f"{full} {_number(value)}"]
    info = f"{PREFIX}_info"
    labels = (f'version="{_escape_label(__version__)}",'
              f'rclone_version="{_escape_label(record.rclone_version or "unknown")}",'
              f'last_run_id="{_escape_label(record.run_id)}"')
    lines += [f"# HELP {info} Versions and id of the last run (value is always 1).",
              f"# TYPE {info} gauge", f"{info}{{{labels}}} 1"]
    if record.databases:
        gauges = (
            ("database_dump_ok", "1 if the last run's dump of this database was stored.",
             [(d.name, 1.0 if d.ok else 0.0) for d in record.databases]),
            ("database_dump_bytes", "Stored (compressed) size of the last run's dump.",
             [(d.name, float(d.stored_bytes)) for d in record.databases]),
            ("database_dump_seconds", "Duration of the last run's dump.",
             [(d.name, float(d.seconds)) for d in record.databases]),
        )
        for name, help_text, values in gauges:
            full = f"{PREFIX}_{name}"
            lines += [f"# HELP {full} {help_text}", f"# TYPE {full} gauge"]
            lines += [f'{full}{{database="{_escape_label(db)}"}} {_number(value)}'
                      for db, value in values]
    return "\n".join(lines) + "\n"


def write_textfile(path: Path, text: str) -> None:
    """Replace the textfile at ``path`` atomically (mode 0644 for node_exporter)."""
    write_file_atomically(path, text, PUBLIC_FILE_MODE)
