"""Metrics: the Prometheus textfile for node_exporter's textfile collector.

Built with ``prometheus_client``'s registry and rendered by its ``generate_latest``, so the
exposition format, escaping and types are the library's, and parsed back with its parser
before it is published. Names follow the Prometheus naming guide
(https://prometheus.io/docs/practices/naming/): base units as suffixes (``_seconds``,
``_bytes``), ``_timestamp_seconds`` for points in time, no ``_total`` (every value is a gauge
describing the last run: nothing here accumulates), no label that changes per run (a run id
label would make a new series every night), and ``ghost_backup_build_info`` for versions.

Two steps, because of the shipped unit (``DynamicUser=``): the service writes
``<state.dir>/metrics.prom`` (:func:`write_staged_textfile`), but its state directory lives
under ``/var/lib/private``, which no other user can enter, and it cannot write anywhere else
(``ProtectSystem=strict``). The unit's ``ExecStopPost=-+/usr/bin/ghost-backup post-stop``
runs as root after every run and publishes a checked copy at ``metrics.textfile_path``
(:func:`write_published_textfile`), mode 0644, where node_exporter (another user) reads it.

Not ``write_to_textfile``: it writes the temporary file with a plain ``open()`` and renames
it, with no chmod and no fsync (prometheus_client 0.26 ``exposition.py``), so under the unit's
``UMask=0077`` the file is 0600 and node_exporter cannot read it. The text is the same;
:func:`~ghost_backup.host.files.write_file_atomically` adds the exact mode and the fsyncs.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path

from ghost_backup import __version__
from ghost_backup.host.files import write_file_atomically
from ghost_backup.report.state import PUBLIC_FILE_MODE, LastRun

PREFIX = "ghost_backup_"
STAGED_NAME = "metrics.prom"
MAX_TEXTFILE_BYTES = 64 * 1024  # ours is under 3 kB; anything bigger was not written by us


class TextfileRefused(Exception):
    """The staged textfile is not one ghost-backup wrote (too big, not a regular file,
    not Prometheus text, or a family without our prefix)."""


def build_gauges(record: LastRun) -> tuple[tuple[str, str, float], ...]:
    """Return ``(name, help, value)`` for every gauge derived from ``record`` (no prefix)."""

    def ts(value: datetime | None) -> float:
        return 0.0 if value is None else value.timestamp()

    return (
        ("last_run_start_timestamp_seconds", "Unix time the last run started.",
         ts(record.started_at)),
        ("last_run_end_timestamp_seconds", "Unix time the last run ended, whatever its outcome.",
         ts(record.finished_at)),
        ("last_success_timestamp_seconds",
         "Unix time the last successful run ended (0: none recorded).",
         ts(record.last_success_at)),
        ("last_run_success", "1 if the last run succeeded, else 0.",
         1.0 if record.exit_code == 0 else 0.0),
        ("last_run_exit_code", "Exit code of the last run (0 success; docs/exit-codes.md).",
         float(record.exit_code)),
        ("last_run_duration_seconds", "Wall-clock duration of the last run.",
         record.duration_seconds),
        ("last_run_transferred_bytes", "Bytes transferred by the last run.",
         float(record.bytes)),
        ("last_run_transferred_files", "Files transferred by the last run.",
         float(record.files)),
        ("last_run_checked_files", "Files checked by the last run.", float(record.checks)),
        ("last_run_deleted_files",
         "Objects deleted (or moved to the archive) at the destination by the last run.",
         float(record.deletes)),
        ("last_run_errors", "Errors rclone counted in the last run.", float(record.errors)),
        ("last_run_credential_ttl_seconds",
         "Validity of the last run's credentials when issued (0: none received).",
         record.credential_ttl_seconds or 0.0),
    )


def render_metrics(record: LastRun) -> str:
    """Return the Prometheus text exposition for ``record``: gauges, per-database gauges
    (one series per configured database: a fixed, small label set) and a build-info series."""
    # prometheus_client costs ~100 ms to import (it pulls in http.server and wsgiref): load
    # it once a run has ended, not at every start of the CLI.
    from prometheus_client import CollectorRegistry, Gauge, generate_latest  # noqa: PLC0415

    registry = CollectorRegistry(auto_describe=True)
    for name, help_text, value in build_gauges(record):
        Gauge(PREFIX + name, help_text, registry=registry).set(value)
    if record.databases:
        per_database: tuple[tuple[str, str, list[float]], ...] = (
            ("last_run_database_dump_success",
             "1 if the last run's dump of this database was stored, else 0.",
             [1.0 if d.ok else 0.0 for d in record.databases]),
            ("last_run_database_dump_stored_bytes",
             "Stored (compressed) size of the last run's dump of this database.",
             [float(d.stored_bytes) for d in record.databases]),
            ("last_run_database_dump_duration_seconds",
             "Duration of the last run's dump of this database.",
             [float(d.seconds) for d in record.databases]),
        )
        for name, help_text, values in per_database:
            gauge = Gauge(PREFIX + name, help_text, ["database"], registry=registry)
            for dump, value in zip(record.databases, values, strict=True):
                gauge.labels(database=dump.name).set(value)
    Gauge(PREFIX + "build_info", "ghost-backup and rclone versions (value always 1).",
          ["version", "rclone_version"], registry=registry).labels(
        version=__version__, rclone_version=record.rclone_version or "unknown").set(1)
    return generate_latest(registry).decode()


def check_textfile(text: str) -> tuple[str, ...]:
    """Given textfile text, return its family names. Raise TextfileRefused unless it parses
    as Prometheus text and every family is ours (``ghost_backup_*`` gauges)."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, IndexError, KeyError, TypeError) as err:
        raise TextfileRefused(f"not Prometheus text ({type(err).__name__})") from None
    if not families:
        raise TextfileRefused("no metric in it")
    for family in families:
        if not family.name.startswith(PREFIX) or family.type != "gauge":
            raise TextfileRefused(f"unexpected family {family.name[:60]!r} ({family.type})")
    return tuple(family.name for family in families)


def staged_textfile(state_dir: Path) -> Path:
    """Return where the service leaves its textfile: ``<state_dir>/metrics.prom``."""
    return state_dir / STAGED_NAME


def write_staged_textfile(state_dir: Path, text: str) -> Path:
    """Replace ``<state_dir>/metrics.prom`` atomically (0644) and return its path."""
    path = staged_textfile(state_dir)
    write_file_atomically(path, text, PUBLIC_FILE_MODE)
    return path


def read_staged_textfile(path: Path) -> str:
    """Return the staged textfile's text, read safely as root from a directory the service
    owns: never through a symlink (``O_NOFOLLOW``), never a FIFO or device (``O_NONBLOCK`` and
    a regular-file check), never a hard link to someone else's file (one link only), at most
    64 KiB. Raise FileNotFoundError if there is none, TextfileRefused if it is not ours.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise TextfileRefused(f"cannot open it safely ({err.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise TextfileRefused("not a regular file with one link")
        if st.st_size > MAX_TEXTFILE_BYTES:
            raise TextfileRefused(f"larger than {MAX_TEXTFILE_BYTES} bytes")
        data = os.read(fd, MAX_TEXTFILE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TextfileRefused("not UTF-8") from None


def write_published_textfile(target: Path, text: str) -> None:
    """Replace ``target`` with the checked ``text`` (0644, atomically); its directory is
    created 0755 if missing. Raise OSError on failure."""
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(target.parent, 0o755)  # noqa: S103  (node_exporter must enter it; UMask=0077 would leave 0700)
    write_file_atomically(target, text, PUBLIC_FILE_MODE)
