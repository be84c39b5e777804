"""Command line: parse arguments, wire collaborators once, return an exit code.

``main`` never calls ``sys.exit``; known errors print one clear line and return their
documented code (docs/exit-codes.md), tracebacks appear only with ``--verbose``. Adding a
command: a parser entry (``_add_command``) and a ``_cmd_*`` wrapper listed in ``_COMMANDS``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ghost_backup import __version__
from ghost_backup.errors import (
    ConfigError,
    ExitCode,
    GhostBackupError,
    UsageError,
    format_exit_code_lines,
)
from ghost_backup.logs import NOTICE, Redactor, setup_logging, stderr_is_journal

# Each command imports what it needs when it runs (the `_cmd_*` wrappers below): `--help`
# needs only the standard library, and `run` reaches its credential request without loading
# the toolkit, the audit or the database modules (docs/performance.md, "Start-up").
if TYPE_CHECKING:
    import requests

    from ghost_backup.commands.context import Deps
    from ghost_backup.host.notify import Notifier
    from ghost_backup.report.alerts import AlertSink
    from ghost_backup.settings import Settings

log = logging.getLogger("ghost_backup")


DESCRIPTION = """\
ghost-backup copies a directory tree (by default /var/mnt/storage, a Ghost stack's data) to a
Cloudflare R2 bucket with rclone, every night from a systemd timer. No long-lived key rests on
the host: each run asks a local credential proxy for just-in-time keys, hands them to rclone
through its environment only, and shreds its private tmpfs directory afterwards. The other
commands check, restore and verify that backup with the same just-in-time credentials."""

CONFIG_HELP = ("config file (default: /etc/ghost-backup/config.toml, or $GHOST_BACKUP_CONFIG "
               "if set)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"usage error: {message} (see ghost-backup --help)")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the descriptions' and epilogs' line breaks (examples, the exit-code table)."""


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # The same options on the top parser and on every subparser, so `ghost-backup run
    # --config X` works like `ghost-backup --config X run`. A subparser's defaults are
    # SUPPRESS: argparse copies a subparser's namespace over the top one, and a default there
    # would erase a value given before the command.
    default: object = None if top else argparse.SUPPRESS
    parser.add_argument("--config", type=Path, default=default, metavar="PATH", help=CONFIG_HELP)
    parser.add_argument("-v", "--verbose", action="store_true",
                        default=False if top else argparse.SUPPRESS,
                        help="debug logging, and tracebacks for internal errors")


def _add_command(sub: argparse._SubParsersAction[_Parser], name: str, *, summary: str,
                 description: str, examples: Sequence[str]) -> _Parser:
    """Add one subcommand with its one-line summary, its description and examples."""
    parser = sub.add_parser(
        name, help=summary, description=description, formatter_class=_Formatter,
        epilog="examples:\n" + "".join(f"  {example}\n" for example in examples))
    _add_global_options(parser, top=False)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every subcommand."""
    parser = _Parser(
        prog="ghost-backup", description=DESCRIPTION, formatter_class=_Formatter,
        epilog=("exit codes (docs/exit-codes.md says what to do about each):\n"
                + format_exit_code_lines()
                + "\n--config and -v may come before or after the command. Run "
                  "`ghost-backup COMMAND --help`\nfor a command's options and examples."))
    parser.add_argument("--version", action="version", version=f"ghost-backup {__version__}")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                title="commands", metavar="COMMAND")
    run_parser = _add_command(
        sub, "run", summary="run one backup now (what the nightly timer starts)",
        description="Fetch just-in-time credentials from the configured source, sync the "
                    "source tree to the bucket\nwith rclone, record the outcome and alert on "
                    "failure. This is what ghost-backup.service runs.",
        examples=["ghost-backup run", "systemctl start ghost-backup.service   # the same, "
                  "under the shipped unit",
                  "ghost-backup run --dry-run   # before the first sync into an existing bucket",
                  "ghost-backup run --allow-shrink   # once, after deleting content on purpose"])
    run_parser.add_argument(
        "--dry-run", action="store_true",
        help="fetch credentials as usual and list what the sync would copy and "
             "delete (counts, first paths); change nothing, record no run, send no alert")
    run_parser.add_argument(
        "--allow-shrink", action="store_true",
        help="for this run only, sync even though the source shrank below "
             "source.min_fraction_of_last or the sync deletes more than rclone.max_delete "
             "(logged at warning with the figures)")
    _add_toolkit_parsers(sub)
    config = _add_command(
        sub, "config", summary="validate the config file, or print the annotated example",
        description="Work with the config file offline: no network, no credentials.",
        examples=["ghost-backup config validate --config /etc/ghost-backup/config.toml",
                  "ghost-backup config example > config.toml"])
    actions = config.add_subparsers(dest="config_action", required=True, parser_class=_Parser,
                                    title="actions", metavar="ACTION")
    validate = _add_command(
        actions, "validate", summary="check the file against the settings model; exit 0 or 78",
        description="Read and validate the config file (and the BACKUP_BUCKET, CF_ACCOUNT_ID and "
                    "PROXY_URL\noverrides) without any network access or credentials. Every "
                    "problem is listed at once.\nExit 0 when valid, 78 otherwise.",
        examples=["ghost-backup config validate --config ./config.toml",
                  "ghost-backup config validate --json | jq .problems"])
    validate.add_argument("--json", action="store_true",
                          help='print {"valid", "config", "problems"} as JSON on stdout')
    _add_command(
        actions, "example", summary="print the full annotated example config",
        description="Print every key with its description and default, generated from the "
                    "settings model.\nThe required keys carry placeholders; the file "
                    "validates as printed.",
        examples=["ghost-backup config example > /etc/ghost-backup/config.toml"])
    audit = _add_command(
        sub, "audit-host", summary="look for long-lived S3/R2 keys on this host (exit 80 if any)",
        description="Scan rclone configs, AWS files, environment files and the paths given for "
                    "values that\nlook like S3/R2 keys. Read-only; needs no credentials.",
        examples=["ghost-backup audit-host", "ghost-backup audit-host --json --path /srv/extra",
                  "ghost-backup audit-host --root /mnt/image   # a mounted image"])
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument("--path", dest="paths", action="extend", nargs="+", type=Path,
                       default=[], metavar="EXTRA", help="also scan these files or directories")
    audit.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                       help="audit the host whose / is at this directory (a mounted image)")
    _add_command(
        sub, "completion", summary="print the bash completion script",
        description="Print a bash completion script generated from this parser. The sysext "
                    "image installs it as\n/usr/share/bash-completion/completions/ghost-backup.",
        examples=["ghost-backup completion bash > ~/.local/share/bash-completion/completions/"
                  "ghost-backup"]
    ).add_argument("shell", choices=["bash"], help="the shell (bash only)")
    alert = _add_command(
        sub, "alert", summary="report a failed unit to the alert channels (OnFailure=)",
        description="Send the failure of a systemd unit to the configured alert channels, with "
                    "the tail of its\njournal. ghost-backup-alert@.service runs it from the "
                    "backup unit's OnFailure=.",
        examples=["ghost-backup alert --unit ghost-backup.service"])
    alert.add_argument("--unit", required=True, help="the failed unit's name")
    _add_command(
        sub, "post-stop", summary="root hook after each run (ExecStopPost=+): publish metrics",
        description="Publish the last run's metrics textfile (staged by the service in its "
                    "state directory)\nat metrics.textfile_path, mode 0644, for node_exporter. "
                    "ghost-backup.service runs it as root\nafter every run.",
        examples=["ghost-backup post-stop"])
    return parser


def _add_toolkit_parsers(sub: argparse._SubParsersAction[_Parser]) -> None:
    _add_command(
        sub, "check", summary="preflight checklist; lists the bucket, writes nothing",
        description="Check the settings, the rclone binary and version, the source guard, the "
                    "runtime directory\nand lock, a credential fetch and that the bucket is "
                    "listable. Writes nothing at the\ndestination. Exits with the code of the "
                    "first failed line.",
        examples=["ghost-backup check", "ghost-backup check --config ./config.toml -v",
                  "ghost-backup check --json | jq -r '.items[] | select(.status != \"ok\")'"]
    ).add_argument("--json", action="store_true",
                   help="print the checklist as JSON (shaped like status --json)")
    _add_command(
        sub, "status", summary="show the last run from the state file",
        description="Show the last run's outcome, times and counts from the state file. Needs "
                    "no credentials\nand no lock.",
        examples=["ghost-backup status", "ghost-backup status --json | jq .outcome"]
    ).add_argument("--json", action="store_true", help="print the state record as JSON")
    restore = _add_command(
        sub, "restore", summary="restore the backup into a directory (docs/restore.md)",
        description="Copy the backup (or one path of it, or the site as it was after a past "
                    "night, or an\narchived night) into a directory with fresh just-in-time "
                    "credentials, then check\nthe copy against the backup. Copies, never "
                    "deletes.",
        examples=["ghost-backup restore --to /root/restore",
                  "ghost-backup restore --to /root/tuesday --as-of 2026-11-24",
                  "ghost-backup restore --to /root/images --path ghost/content/images",
                  "ghost-backup restore --to /root/r --from-archive 2026-11-20 --dry-run"])
    restore.add_argument("--to", type=Path, required=True, metavar="DIR",
                         help="new directory to restore into (created 0700)")
    restore.add_argument("--path", default=None, metavar="SUBPATH",
                         help="restore only this file or folder (relative to the backup root)")
    restore.add_argument("--from-archive", default=None, metavar="DATE",
                         help="restore from the archive folder of that date or run id "
                              "(the versions that run replaced or deleted)")
    restore.add_argument("--as-of", default=None, metavar="WHEN",
                         help="rebuild the tree exactly as it was right after a past run: a "
                              "run id, a date YYYY-MM-DD (UTC; that day's last run) or an ISO "
                              "timestamp with a zone (see ghost-backup history)")
    restore.add_argument("--dry-run", action="store_true", help="list, copy nothing")
    restore.add_argument("--force", action="store_true",
                         help="allow an existing DIR or the live source path "
                              "(files are overwritten, never deleted)")
    restore_db = _add_command(
        sub, "restore-db", summary="stream a database dump back (docs/restore.md)",
        description="Stream one database dump (the newest taken at or before --as-of) from the "
                    "backup into\nthe database's container, another container, a socket or "
                    "(SQLite) a file, with fresh\njust-in-time credentials. Restore into an "
                    "empty server or schema.",
        examples=["ghost-backup restore-db ghost --as-of latest --dry-run",
                  "ghost-backup restore-db ghost --as-of 2026-11-20 --to-container ghost-db-new",
                  "ghost-backup restore-db blog --to-file /var/tmp/ghost.db"])
    restore_db.add_argument("name", help="the [[database]] name")
    restore_db.add_argument("--as-of", default="latest", metavar="WHEN",
                            help="newest dump taken at or before WHEN: 'latest', a date "
                                 "(YYYY-MM-DD, end of that UTC day), a run id or an ISO time")
    target = restore_db.add_mutually_exclusive_group()
    target.add_argument("--to-container", default=None, metavar="C",
                        help="restore into this container instead of the configured one")
    target.add_argument("--to-socket", type=Path, default=None, metavar="S",
                        help="restore into the server on this socket")
    target.add_argument("--to-file", type=Path, default=None, metavar="FILE",
                        help="SQLite: write the database here (default: its configured path)")
    restore_db.add_argument("--dry-run", action="store_true",
                            help="show which dump would go where; connect to nothing")
    restore_db.add_argument("--force", action="store_true",
                            help="SQLite: replace an existing file (stop Ghost first)")
    history = _add_command(
        sub, "history", summary="list the restore points, newest first (docs/restore.md)",
        description="List every night `restore --as-of` can rebuild (one per successful run "
                    "that changed\nsomething, within retention.keep_days), newest first, with "
                    "the objects and bytes\nit changed, plus \"now\" (the mirror). Writes "
                    "nothing.",
        examples=["ghost-backup history", "ghost-backup history --json"])
    history.add_argument("--json", action="store_true", help="print the points as JSON")
    verify = _add_command(
        sub, "verify", summary="compare the source with the backup (rclone check --one-way)",
        description="Compare every source file (or a deterministic sample) with the backup. "
                    "Writes nothing.\nExit 81 when files differ or are missing.",
        examples=["ghost-backup verify",
                  "ghost-backup verify --sample 200 --seed $(date +%G-W%V)   # weekly sample"])
    verify.add_argument("--sample", type=int, default=None, metavar="N",
                        help="check only N files, chosen deterministically")
    verify.add_argument("--seed", default="", help="sample seed, e.g. $(date +%%G-W%%V) to "
                                                   "rotate the sample weekly")


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
    from ghost_backup.commands.context import Deps
    from ghost_backup.host.notify import NullNotifier
    from ghost_backup.host.process import StopRequest
    from ghost_backup.report.alerts import NullAlerts

    stop = StopRequest()
    stop.install()
    return Deps(
        new_session=_new_credential_session,
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


def _new_credential_session() -> requests.Session:
    from ghost_backup.credentials.http import new_session

    return new_session()


def _import_http_stack() -> None:
    """Import what the credential fetch needs: requests, urllib3, tenacity and the models."""
    try:
        import ghost_backup.credentials.http
        import ghost_backup.credentials.json_api  # noqa: F401 (aembit-edge, cloudflare-temp)
    except ImportError:
        return  # the fetch meets the same error and reports it


def _load_settings(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Load the settings and pin ``rclone.binary`` to the executable every command will start
    (beside the interpreter first, then ``$PATH``; see :func:`resolve_executable`)."""
    from ghost_backup.host.process import resolve_executable
    from ghost_backup.settings import load_settings

    settings = load_settings(args.config, env)
    beside = tuple(dict.fromkeys((Path(sys.executable).parent,
                                  Path(sysconfig.get_path("scripts")))))
    binary = resolve_executable(settings.rclone.binary, beside=beside,
                                search_path=env.get("PATH"))
    if binary == settings.rclone.binary:
        return settings
    log.debug("rclone.binary %r resolves to %s", settings.rclone.binary, binary)
    return settings.model_copy(
        update={"rclone": settings.rclone.model_copy(update={"binary": binary})})


def _cmd_check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ghost_backup.commands import check

    def show(items: tuple[check.CheckItem, ...], problems: tuple[str, ...] = ()) -> None:
        text = (check.format_checklist_json(items, checked_at=datetime.now(UTC),
                                            problems=problems)
                if args.json else check.format_checklist(items))
        sys.stdout.write(_REDACTOR.redact(text))

    try:
        settings = _load_settings(args, env)
    except ConfigError as err:
        show((check.CheckItem("settings", False, "configuration is invalid (problems below)",
                              ExitCode.CONFIG),), err.problems or (err.message,))
        raise
    items = check.run_check(settings, build_deps(env))
    show(items)
    code = check.first_failure(items)
    if code != ExitCode.OK:
        log.error("check failed: %s", next(i.detail for i in items if i.passed is False))
    return int(code)


def _cmd_restore(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ghost_backup.commands import restore

    settings = _load_settings(args, env)
    request = restore.RestoreRequest(target=args.to, subpath=args.path, dry_run=args.dry_run,
                                     from_archive=args.from_archive, force=args.force,
                                     as_of=args.as_of)
    summary = restore.run_restore(settings, build_deps(env), request)
    log.log(NOTICE, "%s", summary)
    return int(ExitCode.OK)


def _cmd_restore_db(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ghost_backup.commands import restore_db

    settings = _load_settings(args, env)
    request = restore_db.RestoreDbRequest(
        name=args.name, as_of=args.as_of, to_container=args.to_container,
        to_socket=args.to_socket, to_file=args.to_file, dry_run=args.dry_run,
        force=args.force)
    summary = restore_db.run_restore_db(settings, build_deps(env), request)
    log.log(NOTICE, "%s", summary)
    return int(ExitCode.OK)


def _cmd_history(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ghost_backup.commands.history import run_history

    settings = _load_settings(args, env)
    sys.stdout.write(_REDACTOR.redact(run_history(settings, build_deps(env), as_json=args.json)))
    return int(ExitCode.OK)


def _cmd_verify(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ghost_backup.commands import verify

    if args.sample is not None and args.sample < 1:
        raise UsageError("--sample must be at least 1")
    settings = _load_settings(args, env)
    summary = verify.run_verify(settings, build_deps(env), sample=args.sample,
                                 seed=args.seed)
    log.log(NOTICE, "%s", summary)
    return int(ExitCode.OK)


def _cmd_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ghost_backup.commands.status import run_status

    settings = _load_settings(args, env)
    sys.stdout.write(run_status(settings, as_json=args.json, now=datetime.now(UTC)))
    return int(ExitCode.OK)


def _cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ghost_backup.commands.dry_run import run_dry_run
    from ghost_backup.commands.run import run_backup
    from ghost_backup.host.notify import notifier_from_env, watchdog_interval
    from ghost_backup.host.process import do_while_next_child_runs, exit_by_signal
    from ghost_backup.report.alerts import HttpAlerts

    settings = _load_settings(args, env)
    if args.dry_run:
        sys.stdout.write(_REDACTOR.redact(run_dry_run(settings, build_deps(env))))
        return int(ExitCode.OK)
    deps = build_deps(
        env,
        notifier=notifier_from_env(env),
        alerts=HttpAlerts(settings.alerts, None, _REDACTOR),  # its session: at the first alert
        watchdog_seconds=watchdog_interval(env),
    )
    # The run's first child is rclone's listing of the source (issue 13: judged before any key
    # is requested), 50-100 ms of a Go process the supervisor only waits on. The credential
    # fetch right after it needs the HTTP stack, tens of ms of imports: do them while that
    # child runs instead of after it (docs/performance.md, "Start-up").
    do_while_next_child_runs(_import_http_stack)
    report = run_backup(settings, deps, allow_shrink=args.allow_shrink)
    if report.interrupted:  # a shutdown: die of SIGTERM, a clean stop for systemd
        exit_by_signal(signal.SIGTERM)
    return int(report.exit_code)


def _cmd_alert(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ghost_backup.commands.alert import run_alert
    from ghost_backup.report.alerts import HttpAlerts, new_alert_session

    def sink(settings: Settings) -> AlertSink:
        return HttpAlerts(settings.alerts, new_alert_session(), _REDACTOR)

    run_alert(args.unit, env, lambda: _load_settings(args, env), sink)
    return 0


def _cmd_config(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ghost_backup.commands import config

    if args.config_action == "example":
        sys.stdout.write(config.run_config_example())
        return int(ExitCode.OK)
    result = config.run_config_validate(args.config, env)
    sys.stdout.write(config.format_validation(result, as_json=args.json))
    return int(result.exit_code)


def _cmd_completion(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ghost_backup.completion import render_bash_completion

    sys.stdout.write(render_bash_completion(build_parser()))
    return int(ExitCode.OK)


def _cmd_post_stop(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ghost_backup.commands.post_stop import run_post_stop
    from ghost_backup.settings import load_settings

    run_post_stop(load_settings(args.config, env))
    return int(ExitCode.OK)


def _cmd_audit_host(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ghost_backup.commands.audit_host import run_audit_host

    text, code = run_audit_host(args.config, env, args.root, args.paths, as_json=args.json)
    sys.stdout.write(text)
    return int(code)


_REDACTOR = Redactor()
_COMMANDS = {
    "run": _cmd_run, "alert": _cmd_alert, "check": _cmd_check,
    "restore": _cmd_restore, "restore-db": _cmd_restore_db,
    "history": _cmd_history, "verify": _cmd_verify,
    "status": _cmd_status, "audit-host": _cmd_audit_host, "config": _cmd_config,
    "completion": _cmd_completion, "post-stop": _cmd_post_stop,
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
    # No pydantic plugin is used; without this pydantic scans every installed distribution's
    # entry points (importlib.metadata) at its first model. rclone's environment is
    # allowlisted, so the variable goes no further.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")
    sys.exit(main())
