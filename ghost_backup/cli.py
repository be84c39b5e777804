"""Command line: parse arguments, wire collaborators once, return an exit code.

``main`` never calls ``sys.exit``; known errors print one clear line and return their
documented code (docs/exit-codes.md), tracebacks appear only with ``--verbose``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ghost_backup import __version__, actions, state
from ghost_backup.alerts import HttpAlerts, NullAlerts, build_unit_failure_event
from ghost_backup.audit import (
    build_scan_plan,
    format_report_json,
    format_report_text,
    read_host_locations,
    run_audit,
)
from ghost_backup.credentials import new_session
from ghost_backup.errors import ConfigError, ExitCode, GhostBackupError, UsageError
from ghost_backup.logs import NOTICE, Redactor, setup_logging, stderr_is_journal
from ghost_backup.notify import NullNotifier, notifier_from_env, watchdog_interval
from ghost_backup.orchestrator import Deps, run_backup
from ghost_backup.settings import load_settings
from ghost_backup.supervisor import StopRequest

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
    proxy = sub.add_parser("dev-proxy", help="serve a loopback credential proxy (tests, demo)")
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--port", type=int, default=8080)
    proxy.add_argument("--ttl", type=int, default=3600, help="validity of handed-out keys (s)")
    proxy.add_argument("--mode", default="ok", help="behaviour; see --list-modes")
    proxy.add_argument("--keys-file", type=Path, default=None,
                       help="0600 JSON file with access_key_id, secret_access_key "
                            "[, session_token] (default: GHOST_DEV_PROXY_* environment)")
    proxy.add_argument("--list-modes", action="store_true", help="print the modes and exit")
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


def _toolkit_deps(env: Mapping[str, str]) -> Deps:
    """Collaborators for check/restore/verify: no alerts, no systemd notifications."""
    stop = StopRequest()
    stop.install()
    return Deps(
        session=new_session(),
        clock=lambda: datetime.now(UTC),
        monotonic=time.monotonic,
        sleep=time.sleep,
        notifier=NullNotifier(),
        alerts=NullAlerts(),
        redactor=_REDACTOR,
        stop=stop,
        env=env,
    )


def _cmd_check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        settings = load_settings(args.config, env)
    except ConfigError:
        sys.stdout.write(actions.format_checklist((actions.CheckItem(
            "settings", False, "configuration is invalid (problems below)", ExitCode.CONFIG),)))
        raise
    items = actions.run_check(settings, _toolkit_deps(env))
    sys.stdout.write(_REDACTOR.redact(actions.format_checklist(items)))
    code = actions.first_failure(items)
    if code != ExitCode.OK:
        log.error("check failed: %s", next(i.detail for i in items if i.passed is False))
    return int(code)


def _cmd_restore(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = load_settings(args.config, env)
    request = actions.RestoreRequest(target=args.to, subpath=args.path, dry_run=args.dry_run,
                                     from_archive=args.from_archive, force=args.force)
    summary = actions.run_restore(settings, _toolkit_deps(env), request)
    log.log(NOTICE, "%s", summary)
    return int(ExitCode.OK)


def _cmd_verify(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.sample is not None and args.sample < 1:
        raise UsageError("--sample must be at least 1")
    settings = load_settings(args.config, env)
    summary = actions.run_verify(settings, _toolkit_deps(env), sample=args.sample,
                                 seed=args.seed)
    log.log(NOTICE, "%s", summary)
    return int(ExitCode.OK)


def _cmd_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = load_settings(args.config, env)
    record = state.read_last_run(settings.state.dir)
    if args.json:
        payload = {"outcome": "none"} if record is None else record.model_dump(mode="json")
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        sys.stdout.write(state.format_last_run(
            record, now=datetime.now(UTC), path=state.state_file(settings.state.dir)))
    return int(ExitCode.OK)


def _cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = load_settings(args.config, env)
    redactor = _REDACTOR
    stop = StopRequest()
    stop.install()
    session = new_session()
    deps = Deps(
        session=session,
        clock=lambda: datetime.now(UTC),
        monotonic=time.monotonic,
        sleep=time.sleep,
        notifier=notifier_from_env(env),
        alerts=HttpAlerts(settings.alerts, new_session(), redactor),
        redactor=redactor,
        stop=stop,
        env=env,
        watchdog_seconds=watchdog_interval(env),
    )
    report = run_backup(settings, deps)
    return int(report.exit_code)


def _cmd_alert(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    event = build_unit_failure_event(args.unit, env)
    # The journal first: it is the channel of last resort, even if the config is broken.
    log.critical("%s", event.message)
    settings = load_settings(args.config, env)
    HttpAlerts(settings.alerts, new_session(), _REDACTOR).finish(event)
    return 0


def _cmd_dev_proxy(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ghost_backup.devproxy import MODES_HELP, DevProxy, ProxyState  # noqa: PLC0415

    if args.list_modes:
        sys.stdout.write(MODES_HELP)
        return 0
    if args.keys_file is not None:
        try:
            keys = json.loads(args.keys_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise UsageError(f"cannot read keys file {args.keys_file}: "
                             f"{err.__class__.__name__}") from None
    else:
        keys = {
            "access_key_id": env.get("GHOST_DEV_PROXY_ACCESS_KEY_ID"),
            "secret_access_key": env.get("GHOST_DEV_PROXY_SECRET_ACCESS_KEY"),
            "session_token": env.get("GHOST_DEV_PROXY_SESSION_TOKEN"),
        }
    if not keys.get("access_key_id") or not keys.get("secret_access_key"):
        raise UsageError("dev-proxy needs keys: set GHOST_DEV_PROXY_ACCESS_KEY_ID and "
                         "GHOST_DEV_PROXY_SECRET_ACCESS_KEY, or pass --keys-file")
    state = ProxyState(
        access_key_id=keys["access_key_id"],
        secret_access_key=keys["secret_access_key"],
        session_token=keys.get("session_token") or None,
        ttl_seconds=args.ttl,
        mode=args.mode,
    )
    proxy = DevProxy(state, host=args.host, port=args.port)
    log.info("dev credential proxy listening on %s (mode %s)", proxy.base_url, args.mode)
    with contextlib.suppress(KeyboardInterrupt):
        proxy.serve_forever()
    return 0


def _cmd_audit_host(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    locations, note = read_host_locations(args.config, env, args.root)
    report = run_audit(build_scan_plan(locations, args.paths), args.root,
                       notes=[note] if note else [])
    sys.stdout.write(format_report_json(report) if args.json else format_report_text(report))
    return int(ExitCode.OK if report.clean else ExitCode.KEYS_ON_HOST)


_REDACTOR = Redactor()
_COMMANDS = {
    "run": _cmd_run, "alert": _cmd_alert, "dev-proxy": _cmd_dev_proxy, "check": _cmd_check,
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
