"""MySQL/MariaDB: every argv and environment of a dump, a probe and a restore (pure).

The password never enters argv (``ps`` and ``/proc/*/cmdline`` show argv to every user):

- in a container, a short ``sh -c`` script reads the container's *own* environment variable
  (or its ``*_FILE`` Docker secret) into ``MYSQL_PWD`` and execs the client; argv carries
  only the variable's name, and the host process never holds the value;
- against a socket or host, the password from a systemd credential goes into the child's
  ``MYSQL_PWD`` only (mysql(1), "MYSQL_PWD"), built from an allowlist.

The dump flags: ``--single-transaction`` (one consistent InnoDB snapshot, no global lock),
routines, triggers, events, ``--hex-blob`` (binary columns survive any charset) and utf8mb4.
``--databases`` always, so the dump carries ``CREATE DATABASE`` and ``USE``; never
``--all-databases`` (the ``mysql`` schema holds password hashes and breaks a restore into a
fresh MySQL 8). A complete dump ends with ``-- Dump completed``; nothing may disable that
line (``--skip-comments``, ``--compact``), as it is how a truncated dump is told apart.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from ghost_backup.settings import DatabaseSettings

DUMP_FLAGS = ("--single-transaction", "--routines", "--triggers", "--events", "--hex-blob",
              "--default-character-set=utf8mb4")
CLIENT_FLAGS = ("--default-character-set=utf8mb4",)
TRAILER = b"-- Dump completed"
SYSTEM_SCHEMAS = frozenset({"information_schema", "performance_schema", "mysql", "sys"})
# Only these inherited variables reach a database client; DOCKER_HOST/CONTAINER_HOST let a
# rootless engine be found. Never rclone's keys.
_ENV_ALLOWLIST = frozenset({"PATH", "LANG", "LC_ALL", "TZ", "HOME", "DOCKER_HOST",
                            "CONTAINER_HOST", "XDG_RUNTIME_DIR"})
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def _engine(db: DatabaseSettings) -> str:
    return db.engine_binary or db.engine


def _password_preamble(variable: str) -> str:
    # Reads the container's own variable (or its *_FILE secret) inside the container.
    v = variable
    return (f'if [ -n "${{{v}_FILE:-}}" ]; then MYSQL_PWD="$(cat "${{{v}_FILE}}")"; '
            f'else MYSQL_PWD="${{{v}:-}}"; fi; export MYSQL_PWD; ')


_FIND_DUMP = ('d=$(command -v mariadb-dump || command -v mysqldump) || '
              '{ echo "no mariadb-dump or mysqldump in the container" >&2; exit 127; }; ')
_FIND_CLIENT = ('c=$(command -v mariadb || command -v mysql) || '
                '{ echo "no mariadb or mysql client in the container" >&2; exit 127; }; ')
# MySQL's mysqldump writes SET @@GLOBAL.GTID_PURGED on a GTID source, which breaks a restore
# into another server; MariaDB's dump rejects the flag that turns it off.
_GTID = 'g=; case "$("$d" --version)" in *MariaDB*) ;; *) g=--set-gtid-purged=OFF;; esac; '


def _in_container(db: DatabaseSettings, script: str, *, container: str | None = None,
                  stdin: bool = False) -> tuple[str, ...]:
    # No -t: a TTY turns "\n" into "\r\n" and mangles the stream. -i only to feed a restore.
    name = container or db.container or ""
    return (_engine(db), "exec", *(("-i",) if stdin else ()), name, "sh", "-c",
            _password_preamble(db.password_variable) + script)


def _connection(db: DatabaseSettings, socket: Path | None = None) -> tuple[str, ...]:
    if socket is not None or db.socket is not None:
        return (f"--socket={socket or db.socket}",)
    return (f"--host={db.host}", f"--port={db.port}", "--protocol=TCP")


def build_dump_argv(db: DatabaseSettings, schemas: tuple[str, ...]) -> tuple[str, ...]:
    """Return the argv that writes a consistent dump of ``schemas`` to stdout."""
    if not schemas:
        raise ValueError("a dump needs at least one schema")
    if db.container is not None:
        names = " ".join(shlex.quote(s) for s in schemas)
        return _in_container(db, _FIND_DUMP + _GTID + (
            f'exec "$d" --user={shlex.quote(db.user)} $g {" ".join(DUMP_FLAGS)} '
            f"--databases {names}"))
    return (db.dump_binary, *_connection(db), f"--user={db.user}", *DUMP_FLAGS,
            "--databases", *schemas)


def _client_argv(db: DatabaseSettings, *sql_args: str) -> tuple[str, ...]:
    if db.container is not None:
        args = " ".join(shlex.quote(a) for a in sql_args)
        return _in_container(db, _FIND_CLIENT + (
            f'exec "$c" --user={shlex.quote(db.user)} {" ".join(CLIENT_FLAGS)} {args}'))
    return (db.client_binary, *_connection(db), f"--user={db.user}", *CLIENT_FLAGS, *sql_args)


def build_list_schemas_argv(db: DatabaseSettings) -> tuple[str, ...]:
    """Return the argv printing every schema name, one a line (for ``databases = []``)."""
    return _client_argv(db, "--batch", "--skip-column-names", "-e", "SHOW DATABASES")


def build_probe_argv(db: DatabaseSettings) -> tuple[str, ...]:
    """Return the argv proving the client can log in (``SELECT 1``; writes nothing).

    Not ``mysqladmin ping``: it exits 0 even when the password is refused.
    """
    return _client_argv(db, "--batch", "--skip-column-names", "-e", "SELECT 1")


_NON_INNODB_SQL = ("SELECT CONCAT(table_schema, '.', table_name, ' ', IFNULL(engine, '?')) "
                   "FROM information_schema.tables WHERE table_schema IN (@SCHEMAS@) AND "
                   "table_type = 'BASE TABLE' AND engine <> 'InnoDB' ORDER BY 1")


def build_non_innodb_argv(db: DatabaseSettings, schemas: tuple[str, ...]) -> tuple[str, ...]:
    """Return the argv listing tables of ``schemas`` that are not InnoDB (``check``).

    ``--single-transaction`` is a consistent snapshot only for InnoDB tables; a MyISAM table
    is dumped as it is at the moment it is read. Schema names are validated by the settings
    (letters, digits, ``_``, ``$``, ``-``), so quoting them in SQL is safe.
    """
    names = ", ".join(f"'{schema}'" for schema in schemas)
    query = _NON_INNODB_SQL.replace("@SCHEMAS@", names)
    return _client_argv(db, "--batch", "--skip-column-names", "-e", query)


def build_inspect_argv(db: DatabaseSettings) -> tuple[str, ...]:
    """Return the argv asking the engine whether the container runs (prints true/false)."""
    return (_engine(db), "inspect", "-f", "{{.State.Running}}", db.container or "")


def build_restore_argv(db: DatabaseSettings, *, container: str | None = None,
                       socket: Path | None = None) -> tuple[str, ...]:
    """Return the argv of a client that executes a dump read from stdin.

    ``container`` or ``socket`` replace the configured target (restore into another server).
    """
    if container is not None or (db.container is not None and socket is None):
        return _in_container(db, _FIND_CLIENT + (
            f'exec "$c" --user={shlex.quote(db.user)} {" ".join(CLIENT_FLAGS)} '
            "--max-allowed-packet=1G"), container=container, stdin=True)
    return (db.client_binary, *_connection(db, socket), f"--user={db.user}", *CLIENT_FLAGS,
            "--max-allowed-packet=1G")


def build_client_env(base: Mapping[str, str], password: SecretStr | None) -> dict[str, str]:
    """Return a database client's environment: allowlisted, plus ``MYSQL_PWD`` if given."""
    env = {key: value for key, value in base.items() if key in _ENV_ALLOWLIST}
    env.setdefault("PATH", _DEFAULT_PATH)
    if password is not None:
        env["MYSQL_PWD"] = password.get_secret_value()
    return env


def parse_schemas(output: str) -> tuple[str, ...]:
    """Given ``SHOW DATABASES`` output, return the user schemas, sorted."""
    names = {line.strip() for line in output.splitlines() if line.strip()}
    return tuple(sorted(names - SYSTEM_SCHEMAS))


def classify_dump_end(returncode: int, tail: bytes) -> str | None:
    """Return None if a dump is complete, else why not.

    Complete means the dump exited 0 *and* its last line starts with ``-- Dump completed``:
    a dump killed half-way, or one whose output was cut, fails one or the other.
    """
    if returncode != 0:
        return f"dump exited {returncode}"
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    if not last.startswith(TRAILER):
        return "dump output does not end with '-- Dump completed' (truncated)"
    return None


def format_client_error(output: bytes, limit: int = 240) -> str:
    """Return the last meaningful line of a client's stderr, capped (for one error line)."""
    lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("Warning")]
    text = lines[-1] if lines else ""
    return text[:limit]
