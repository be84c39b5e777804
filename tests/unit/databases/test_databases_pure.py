"""Database dumps, the pure parts: argv (never a password), the dump's end, schema lists,
object names, --as-of selection, retention, sync excludes, settings validation."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ghost_backup.databases import mysql, objects
from ghost_backup.databases.gzipstream import Compressor, Decompressor
from ghost_backup.errors import ConfigError
from ghost_backup.rclone import build_database_excludes, build_sync_argv
from ghost_backup.settings import DatabaseSettings, Settings, parse_settings

PW = "db-canary-password-91c2"


def _settings(*dbs: dict[str, Any], **dest: Any) -> Settings:
    return parse_settings({"destination": {"bucket": "ghost-backups", "account_id": "a" * 32,
                                           **dest},
                           "source": {"path": "/var/mnt/storage"},
                           "database": list(dbs)}, {})


def _db(**fields: Any) -> DatabaseSettings:
    return DatabaseSettings.model_validate({"name": "ghost", "kind": "mysql", **fields})


CONTAINER = _db(container="ghost-db-1", user="ghost")
SOCKET = _db(socket="/run/mysqld/mysqld.sock", user="bk", password_credential="ghost-db")


@pytest.mark.parametrize("db", [CONTAINER, SOCKET], ids=["container", "socket"])
def test_every_argv_carries_no_password_and_no_tty(db: DatabaseSettings) -> None:
    argvs = [mysql.build_dump_argv(db, ("ghost",)), mysql.build_probe_argv(db),
             mysql.build_list_schemas_argv(db), mysql.build_restore_argv(db)]
    for argv in argvs:
        assert not any(PW in arg for arg in argv)
        assert "-t" not in argv
        assert not any(arg.startswith(("--password", "-p")) for arg in argv)


def test_container_dump_reads_the_containers_own_variable_and_picks_the_binary() -> None:
    argv = mysql.build_dump_argv(CONTAINER, ("ghost", "other db"))
    assert argv[:5] == ("docker", "exec", "ghost-db-1", "sh", "-c")
    script = argv[5]
    assert 'MYSQL_PWD="$(cat "${MYSQL_PASSWORD_FILE}")"' in script
    assert 'MYSQL_PWD="${MYSQL_PASSWORD:-}"' in script
    assert "command -v mariadb-dump || command -v mysqldump" in script
    assert "--set-gtid-purged=OFF" in script  # only for MySQL's mysqldump, decided inside
    assert "--single-transaction" in script
    assert "--databases ghost 'other db'" in script
    assert "--all-databases" not in script


def test_the_innodb_check_quotes_only_validated_schema_names() -> None:
    argv = mysql.build_non_innodb_argv(SOCKET, ("ghost", "blog$2"))
    assert "table_schema IN ('ghost', 'blog$2')" in argv[-1]
    assert "engine <> 'InnoDB'" in argv[-1]


def test_root_reads_mysql_root_password_and_podman_is_used_when_asked() -> None:
    db = _db(container="db", engine="podman")
    argv = mysql.build_probe_argv(db)
    assert argv[0] == "podman"
    assert "MYSQL_ROOT_PASSWORD" in argv[-1]
    assert mysql.build_inspect_argv(db) == ("podman", "inspect", "-f", "{{.State.Running}}",
                                            "db")


def test_socket_dump_argv_and_password_only_in_the_child_env() -> None:
    argv = mysql.build_dump_argv(SOCKET, ("ghost",))
    assert argv == ("mariadb-dump", "--socket=/run/mysqld/mysqld.sock", "--user=bk",
                    *mysql.DUMP_FLAGS, "--databases", "ghost")
    env = mysql.build_client_env({"PATH": "/bin", "RCLONE_CONFIG_R2_SECRET_ACCESS_KEY": "x",
                                  "AWS_SECRET_ACCESS_KEY": "y"}, SecretStr(PW))
    assert env == {"PATH": "/bin", "MYSQL_PWD": PW}


def test_host_argv_uses_tcp() -> None:
    db = _db(host="db.internal", port=3307)
    assert mysql.build_dump_argv(db, ("g",))[1:4] == ("--host=db.internal", "--port=3307",
                                                      "--protocol=TCP")


def test_restore_argv_targets_another_container_with_stdin_or_a_socket() -> None:
    argv = mysql.build_restore_argv(CONTAINER, container="ghost-db-new")
    assert argv[:4] == ("docker", "exec", "-i", "ghost-db-new")
    sock = mysql.build_restore_argv(CONTAINER, socket=Path("/tmp/s"))
    assert sock[:2] == ("mariadb", "--socket=/tmp/s")


@pytest.mark.parametrize(("rc", "tail", "ok"), [
    (0, b"INSERT ...;\n-- Dump completed on 2026-11-28  1:09:09\n", True),
    (0, b"-- Dump completed on 2026-11-28  1:09:09", True),
    (0, b"INSERT INTO `posts` VALUES ('a", False),
    (0, b"", False),
    (2, b"-- Dump completed on 2026-11-28\n", False),
    (-9, b"INSERT", False),
])
def test_a_dump_is_complete_only_with_exit_0_and_the_trailer(rc: int, tail: bytes,
                                                              ok: bool) -> None:
    assert (mysql.classify_dump_end(rc, tail) is None) is ok


def test_schema_list_drops_system_schemas() -> None:
    out = "information_schema\nghost\nmysql\nperformance_schema\nsys\nanalytics\n"
    assert mysql.parse_schemas(out) == ("analytics", "ghost")


def test_client_error_is_the_last_meaningful_line() -> None:
    err = (b"Warning: something\nmariadb-dump: Got error: 1045: \"Access denied\" when trying "
           b"to connect\n")
    assert mysql.format_client_error(err).startswith("mariadb-dump: Got error: 1045")


def test_gzip_stream_round_trips_and_detects_truncation() -> None:
    comp = Compressor(1)
    data = b"-- MariaDB dump\n" + b"INSERT INTO t VALUES (1);\n" * 5000 + b"-- Dump completed\n"
    stored = b"".join(comp.feed(data[i:i + 777]) for i in range(0, len(data), 777))
    stored += comp.finish()
    assert gzip.decompress(stored) == data
    assert comp.tail.endswith(b"-- Dump completed\n")
    assert comp.stored_bytes == len(stored)
    whole = Decompressor()
    assert whole.feed(stored) == data
    assert whole.complete
    cut = Decompressor()
    cut.feed(stored[: len(stored) - 5])
    assert not cut.complete
    with pytest.raises(ValueError, match="corrupt"):
        Decompressor().feed(b"\x1f\x8b\x08\x00garbage-garbage-garbage")


SETTINGS = _settings({"name": "ghost", "kind": "mysql", "container": "c"})
DB = SETTINGS.databases[0]


def test_dump_keys_sort_by_time_and_partials_are_never_restorable() -> None:
    assert objects.build_dump_key(SETTINGS, DB, "20261128T020000Z-3fa1c2") == \
        "databases/ghost/20261128T020000Z-3fa1c2.sql.gz"
    listing = ("5120;20261128T020000Z-3fa1c2.sql.gz\n4096;20261126T020000Z-aaaaaa.sql.gz\n"
               "100;20261129T020000Z-bbbbbb.sql.gz.partial\n7;notes.txt\n")
    dumps, partials = objects.parse_dump_listing(listing, DB)
    assert [d.run_id for d in dumps] == ["20261126T020000Z-aaaaaa", "20261128T020000Z-3fa1c2"]
    assert dumps[1].size == 5120
    assert partials == ("20261129T020000Z-bbbbbb.sql.gz.partial",)


@pytest.mark.parametrize(("as_of", "expected"), [
    ("latest", "20261128T020000Z-3fa1c2"),
    ("now", "20261128T020000Z-3fa1c2"),
    ("2026-11-27", "20261126T020000Z-aaaaaa"),
    ("2026-11-28", "20261128T020000Z-3fa1c2"),
    ("20261126T020000Z-aaaaaa", "20261126T020000Z-aaaaaa"),
    ("20261128T015959Z", "20261126T020000Z-aaaaaa"),
    ("2026-11-28T03:00:00+01:00", "20261128T020000Z-3fa1c2"),
])
def test_as_of_picks_the_newest_dump_taken_at_or_before(as_of: str, expected: str) -> None:
    dumps, _ = objects.parse_dump_listing(
        "1;20261126T020000Z-aaaaaa.sql.gz\n1;20261128T020000Z-3fa1c2.sql.gz\n", DB)
    assert objects.select_dump(dumps, as_of).run_id == expected


@pytest.mark.parametrize("as_of", ["2026-11-01", "yesterday", "2026-11-28T02:00:00"])
def test_as_of_before_every_dump_or_unreadable_is_refused(as_of: str) -> None:
    dumps, _ = objects.parse_dump_listing("1;20261126T020000Z-aaaaaa.sql.gz\n", DB)
    with pytest.raises(ValueError):
        objects.select_dump(dumps, as_of)


def test_retention_keeps_recent_dumps_and_always_the_newest() -> None:
    dumps, _ = objects.parse_dump_listing(
        "1;20261001T020000Z-aaaaaa.sql.gz\n1;20261020T020000Z-bbbbbb.sql.gz\n"
        "1;20261120T020000Z-cccccc.sql.gz\n", DB)
    now = datetime(2026, 11, 28, tzinfo=UTC)
    assert [d.run_id[:8] for d in objects.select_expired(dumps, now=now, keep_days=30)] == \
        ["20261001", "20261020"]
    assert objects.select_expired(dumps[:1], now=now, keep_days=1) == ()


def test_live_datadirs_sqlite_files_and_the_dump_prefix_stay_out_of_the_sync() -> None:
    settings = _settings(
        {"name": "ghost", "kind": "mysql", "container": "c",
         "datadir": "/var/mnt/storage/mysql"},
        {"name": "blog", "kind": "sqlite", "path": "/var/mnt/storage/ghost/data/ghost.db"},
        {"name": "elsewhere", "kind": "mysql", "container": "d", "datadir": "/srv/mysql"},
        {"name": "kept", "kind": "mysql", "container": "e",
         "datadir": "/var/mnt/storage/kept", "exclude_datadir": False},
        path="", archive_path="",  # the mirror at the bucket root holds the dumps' prefix
    )
    assert build_database_excludes(settings) == (
        "/mysql/**", "/ghost/data/ghost.db", "/ghost/data/ghost.db-wal",
        "/ghost/data/ghost.db-shm", "/ghost/data/ghost.db-journal", "/databases/**")
    argv = build_sync_argv(settings, config_path=Path("/run/ghost/r/rclone.conf"),
                           work_dir=Path("/run/ghost/r"), max_duration_seconds=None)
    assert "/databases/**" in argv
    assert "--delete-excluded" not in argv


def test_dump_prefix_outside_the_mirror_needs_no_exclude_and_no_database_no_change() -> None:
    settings = _settings({"name": "ghost", "kind": "mysql", "container": "c"}, path="current")
    assert build_database_excludes(settings) == ()
    assert build_database_excludes(_settings()) == ()


@pytest.mark.parametrize(("db", "message"), [
    ({"name": "Ghost DB", "kind": "mysql", "container": "c"}, "lower-case"),
    ({"name": "g", "kind": "mysql"}, "exactly one of"),
    ({"name": "g", "kind": "mysql", "container": "c", "socket": "/s"}, "exactly one of"),
    ({"name": "g", "kind": "sqlite"}, "needs `path`"),
    ({"name": "g", "kind": "sqlite", "path": "/x.db", "container": "c"}, "takes `path` only"),
    ({"name": "g", "kind": "mysql", "container": "c", "password_env": "X; rm -rf /"},
     "environment variable name"),
    ({"name": "g", "kind": "mysql", "container": "c", "password_credential": "db"},
     "comes from the container"),
    ({"name": "g", "kind": "mysql", "socket": "/s", "password_env": "PW"}, "is for `container`"),
    ({"name": "g", "kind": "mysql", "container": "c", "databases": ["a`b"]}, "schema names"),
    ({"name": "g", "kind": "mysql", "container": "c", "compression_level": 0}, "greater"),
])
def test_bad_database_settings_are_refused_with_a_reason(db: dict[str, Any],
                                                        message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(db)
    assert message in " ".join(caught.value.problems)


def test_database_names_are_unique_and_the_prefix_does_not_overlap_the_archive() -> None:
    with pytest.raises(ConfigError, match="own `name`"):
        _settings({"name": "g", "kind": "mysql", "container": "c"},
                  {"name": "g", "kind": "mysql", "container": "d"})
    with pytest.raises(ConfigError, match="must not overlap archive_path"):
        _settings(path="current", archive_path="databases")


def test_history_lists_dumps_newest_first_with_how_to_restore() -> None:
    dumps, _ = objects.parse_dump_listing(
        "2048;20261126T020000Z-aaaaaa.sql.gz\n7864320;20261128T020000Z-3fa1c2.sql.gz\n", DB)
    text = objects.format_dump_history({"ghost": dumps, "blog": ()}, 30)
    lines = text.splitlines()
    assert lines[2] == "2026-11-28 02:00:00 ghost            20261128T020000Z-3fa1c2     7.5 MiB"
    assert lines[3].startswith("2026-11-26 02:00:00 ghost ")
    assert lines[4].startswith("(none)")
    assert "restore-db NAME --as-of" in lines[-1]
    data = objects.render_dump_history_json({"ghost": dumps})
    assert data["ghost"][0] == {"run_id": "20261128T020000Z-3fa1c2",
                                "taken_at": "2026-11-28T02:00:00Z",
                                "object": "20261128T020000Z-3fa1c2.sql.gz", "bytes": 7864320}
    assert objects.format_dump_history({}, 30) == ""
