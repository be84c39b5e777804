"""Command line: parse arguments, wire collaborators once, return an exit code.

``main`` never calls ``sys.exit``; known errors print one clear line and return their
documented code (docs/exit-codes.md), tracebacks appear only with ``--verbose``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ghost_backup import __version__
from ghost_backup.commands import check, restore, verify
from ghost_backup.commands.alert import run_alert
from ghost_backup.commands.audit_host import run_audit_host
from ghost_backup.commands.context import Deps
from ghost_backup.commands.run import run_backup
from ghost_backup.commands.status import run_status
from ghost_backup.credentials.http import new_session
from ghost_backup.errors import ConfigError, ExitCode, GhostBackupError, UsageError
from ghost_backup.host.notify import Notifier, NullNotifier, notifier_from_env, watchdog_interval
from ghost_backup.host.process import StopRequest
from ghost_backup.logs import NOTICE, Redactor, setup_logging, stderr_is_journal
from ghost_backup.report.alerts import AlertSink, HttpAlerts, NullAlerts
from ghost_backup.settings import Settings, load_settings

log = logging.getLogger("ghost_backup")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"usage error: {message} (see ghost-backup --help)")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every subcommand."""
    parser = _Parser(prog="ghost-backup", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ghost-backup {__version__}")
    parser.add_argument("--config", type=Path, default=None,
                        help="config file (default $GHOST_BACKUP_CONFIG or "
                             "/etc/ghost-backup/config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("run", help="run one backup now (what the timer starts)")
    alert = sub.add_parser("alert", help="report a failed unit to the alert channels "
                                         "(ghost-backup-alert@.service, OnFailure=)")
    alert.add_argument("--unit", required=True, help="the failed unit's name")
    _add_toolkit_parsers(sub)
    audit = sub.add_parser("audit-host", help="look for long-lived S3/R2 keys on this host "
                                              "(read-only; exit 80 if any)")
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument("--path", dest="paths", action="extend", nargs="+", type=Path,
                       default=[], metavar="EXTRA", help="also scan these files or directories")
    audit.add_argument("--root", type=Path, default=Path("/"),
                       help="audit the host whose / is at this directory (a mounted image)")
    return parser


def _add_toolkit_parsers(sub: argparse._SubParsersAction[_Parser]) -> None:
    sub.add_parser("check", help="preflight: settings, rclone, runtime dir, source, proxy keys, "
                                 "bucket listable (writes nothing)")
    restore = sub.add_parser("restore", help="restore the backup into a directory "
                                             "(see docs/restore.md)")
    restore.add_argument("--to", type=Path, required=True, metavar="DIR",
                         help="empty or new directory to restore into")
    restore.add_argument("--path", default=None, metavar="SUBPATH",
                         help="restore only this file or folder (relative to the backup root)")
    restore.add_argument("--from-archive", default=None, metavar="DATE",
                         help="restore from the archive folder of that date or run id "
                              "(the versions that run replaced or deleted)")
    restore.add_argument("--dry-run", action="store_true", help="list, copy nothing")
    restore.add_argument("--force", action="store_true",
                         help="allow a non-empty DIR or the live source path "
                              "(files are overwritten, never deleted)")
    verify = sub.add_parser("verify", help="compare the source with the backup "
                                           "(rclone check --one-way)")
    verify.add_argument("--sample", type=int, default=None, metavar="N",
                        help="check only N files, chosen deterministically")
    verify.add_argument("--seed", default="", help="sample seed, e.g. $(date +%%G-W%%V) to "
                                                   "rotate the sample weekly")
    status = sub.add_parser("status", help="show the last run from the state file")
    status.add_argument("--json", action="store_true", help="print the state record as JSON")


def build_deps(
    env: Mapping[str, str],
    *,
    notifier: Notifier | None = None,
    alerts: AlertSink | None = None,
    watchdog_seconds: float | None = None,
) -> Deps:
    """Wire the collaborators of a command: the one place that builds :class:`Deps`.

    ``check``, ``restore`` and ``verify`` take the defaults (no alerts, no systemd
    notifications); ``run`` passes the notifier, the alert channels and the watchdog.
    """
    stop = StopRequest()
    stop.install()
    return Deps(
        session=new_session(),
        clock=lambda: datetime.now(UTC),
        monotonic=time.monotonic,
        sleep=time.sleep,
        notifier=notifier or NullNotifier(),
        alerts=alerts or NullAlerts(),
        redactor=_REDACTOR,
        stop=stop,
        env=env,
        watchdog_seconds=watchdog_seconds,
    )


def _cmd_check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        settings = load_settings(args.config, env)
    except ConfigError:
        sys.stdout.write(check.format_checklist((check.CheckItem(
            "settings", False, "configuration is invalid (problems below)", ExitCode.CONFIG),)))
        raise
    items = check.run_check(settings, build_deps(env))
    sys.stdout.write(_REDACTOR.redact(check.format_checklist(items)))
    code = check.first_failure(items)
    if code != ExitCode.OK:
        log.error("check failed: %s", next(i.detail for i in items if i.passed is False))
    return int(code)


def _cmd_restore(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = load_settings(args.config, env)
    request = restore.RestoreRequest(target=args.to, subpath=args.path, dry_run=args.dry_run,
                                     from_archive=args.from_archive, force=args.force)
    summary = restore.run_restore(settings, build_deps(env), request)
    log.log(NOTICE, "%s", summary)
    return int(ExitCode.OK)


def _cmd_verify(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.sample is not None and args.sample < 1:
        raise UsageError("--sample must be at least 1")
    settings = load_settings(args.config, env)
    summary = verify.run_verify(settings, build_deps(env), sample=args.sample,
                                 seed=args.seed)
    log.log(NOTICE, "%s", summary)
    return int(ExitCode.OK)


def _cmd_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = load_settings(args.config, env)
    sys.stdout.write(run_status(settings, as_json=args.json, now=datetime.now(UTC)))
    return int(ExitCode.OK)


def _cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = load_settings(args.config, env)
    deps = build_deps(
        env,
        notifier=notifier_from_env(env),
        alerts=HttpAlerts(settings.alerts, new_session(), _REDACTOR),
        watchdog_seconds=watchdog_interval(env),
    )
    return int(run_backup(settings, deps).exit_code)


def _cmd_alert(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    def sink(settings: Settings) -> AlertSink:
        return HttpAlerts(settings.alerts, new_session(), _REDACTOR)

    run_alert(args.unit, env, lambda: load_settings(args.config, env), sink)
    return 0


def _cmd_audit_host(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    text, code = run_audit_host(args.config, env, args.root, args.paths, as_json=args.json)
    sys.stdout.write(text)
    return int(code)


_REDACTOR = Redactor()
_COMMANDS = {
    "run": _cmd_run, "alert": _cmd_alert, "check": _cmd_check,
    "restore": _cmd_restore, "verify": _cmd_verify, "status": _cmd_status,
    "audit-host": _cmd_audit_host,
}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the command line and return the process exit code."""
    environ: Mapping[str, str] = os.environ if env is None else env
    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    setup_logging(_REDACTOR, journal=stderr_is_journal(environ), verbose=verbose)
    try:
        args = build_parser().parse_args(argv)
        return _COMMANDS[args.command](args, environ)
    except ConfigError as err:
        log.error("%s", err.message.split(": ", 1)[0] if err.problems else err.message)
        for problem in err.problems:
            log.error("  %s", problem)
        return int(err.exit_code)
    except GhostBackupError as err:
        log.error("%s", err.message)
        return int(err.exit_code)
    except KeyboardInterrupt:
        log.error("interrupted")
        return int(ExitCode.TERMINATED)
    except Exception:  # the top: anything unknown is a bug, reported without secrets
        log.critical("internal error (bug): run with --verbose for the traceback",
                     exc_info=True)
        return int(ExitCode.INTERNAL)


def entry_point() -> None:
    """Console-script entry: exit with :func:`main`'s code."""
    sys.exit(main())
