"""Database dumps end to end: a real MariaDB server and real clients, writers committing
during the dump, the dump restored into a second server and compared with ``CHECKSUM TABLE``
taken inside a snapshot that holds the dump's own state; the container path through the
stand-in ``docker``; SQLite with a writer during the copy. Canary R2 keys and a canary
database password are searched for in every output and file afterwards.

How the snapshot matches the dump's (mariadb-dump takes no global lock, so nothing can join
"its" snapshot): the writer commits only while holding ``writer.gate``. The test holds the
gate, starts the run, waits until the dump user's transaction exists
(``information_schema.INNODB_TRX``), opens its own ``START TRANSACTION WITH CONSISTENT
SNAPSHOT``, then releases the gate: both read views hold the same committed state, and the
writer goes on committing during the whole dump. A negative control (a dump without
``--single-transaction``) proves the comparison detects a torn dump.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import BUCKET, GHOST_BACKUP, RCLONE, Stack, error_lines, find_canaries, make_tree
from tests.support.mariadb import (
    INVARIANTS,
    Session,
    ThrowawayMariaDB,
    Writer,
    checksums,
    load_ghostlike,
)

FAKE_DOCKER = Path(__file__).resolve().parents[1] / "support" / "fake_docker.py"
N_POSTS = 1500
Factory = Callable[[], ThrowawayMariaDB]


@pytest.fixture
def secret_dir() -> Iterator[Path]:
    """A private directory outside the searched trees: credentials and container envs."""
    path = Path(tempfile.mkdtemp(prefix="gbdb-secret-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def db_password() -> str:
    """A canary database password, searched for afterwards."""
    return "dbpw-CANARY-" + os.urandom(6).hex()


def _credentials(secret_dir: Path, password: str) -> dict[str, str]:
    """Return the env of a unit with ``LoadCredential=ghost-db:...`` (a private 0600 file)."""
    creds = secret_dir / "creds"
    creds.mkdir(mode=0o700)
    fd = os.open(creds / "ghost-db", os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, password.encode() + b"\n")
    os.close(fd)
    return {"CREDENTIALS_DIRECTORY": str(creds)}


def _fake_docker(secret_dir: Path, containers: dict[str, dict[str, Any]]) -> tuple[Path, Path]:
    """Return (engine executable, argv record) of a stand-in docker with these containers."""
    state = secret_dir / "containers"
    state.mkdir()
    for name, spec in containers.items():
        (state / f"{name}.json").write_text(json.dumps(spec))
    record = secret_dir / "docker-argv.jsonl"
    record.touch()
    engine = secret_dir / "docker"
    engine.write_text(f"#!/bin/sh\nexport FAKE_DOCKER_RECORD='{record}' "
                      f"FAKE_DOCKER_DIR='{state}'\n"
                      f"exec '{sys.executable}' '{FAKE_DOCKER}' \"$@\"\n")
    engine.chmod(0o755)
    return engine, record


def _popen_run(stack: Stack, env: dict[str, str]) -> tuple[subprocess.Popen[str], Path]:
    """Start ``ghost-backup run``; its stderr goes to a file (journal-style priorities)."""
    config = stack.write_config()
    journal = stack.tmp / f"journal-run-{time.monotonic_ns()}.log"
    with journal.open("w") as err:
        st = os.fstat(err.fileno())
        proc = subprocess.Popen(
            [GHOST_BACKUP, "--config", str(config), "run"],
            env=stack.env({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", **env}),
            stdout=subprocess.DEVNULL, stderr=err, text=True)
    return proc, journal


def _blocked_dumps(watcher: Session, user: str) -> int:
    rows = watcher.q("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE "
                     f"USER = '{user}' AND STATE = 'Waiting for table metadata lock'")
    return int(rows[0][0])


def _run_with_snapshot(stack: Stack, src: ThrowawayMariaDB, writer: Writer,
                       env: dict[str, str]) -> tuple[int, str, dict[str, str], int]:
    """Run a backup while the writer commits; return (exit, stderr, checksums, commits).

    The checksums are taken in a snapshot holding the same state as the dump's: the gate
    stops commits from before the run starts until both snapshots exist. The dump is held
    on ``a0_gate`` (write-locked, dumped first) until the writer has committed 20 more
    transactions, so every table it reads changed after its snapshot began.
    """
    watcher, locker, snap = Session(src), Session(src), Session(src)
    locker.q("LOCK TABLES ghost.a0_gate WRITE")
    writer.gate.acquire()
    released = False
    try:
        proc, journal = _popen_run(stack, env)
        deadline = time.monotonic() + 90
        while not _blocked_dumps(watcher, "bk"):
            assert proc.poll() is None, journal.read_text()
            assert time.monotonic() < deadline, "the dump never reached its first table"
            time.sleep(0.005)
        snap.q("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        snap.q("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        at_snapshot = writer.commits
        writer.gate.release()
        released = True
        while writer.commits < at_snapshot + 20:
            time.sleep(0.005)
        locker.q("UNLOCK TABLES")
        sums = checksums(snap.q, "ghost")
        snap.q("COMMIT")
        code = proc.wait(timeout=180)
    finally:
        if not released:
            writer.gate.release()
        for session in (watcher, locker, snap):
            session.close()
    return code, journal.read_text(), sums, writer.commits - at_snapshot


def _dump_objects(stack: Stack) -> list[str]:
    """Return every object under databases/ as S3 lists it (through rclone, with the keys)."""
    env = {"PATH": "/usr/bin:/bin", "RCLONE_CONFIG_S_TYPE": "s3",
           "RCLONE_CONFIG_S_PROVIDER": "Other", "RCLONE_CONFIG_S_ENDPOINT": stack.s3.endpoint,
           "RCLONE_CONFIG_S_ACCESS_KEY_ID": stack.s3.access_key_id,
           "RCLONE_CONFIG_S_SECRET_ACCESS_KEY": stack.s3.secret_access_key}
    done = subprocess.run([RCLONE, "lsf", "-R", "--files-only", "--config", "/dev/null",
                           f"s:{BUCKET}/databases"], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode in (0, 3), done.stderr  # 3: no databases/ at all
    return sorted(f"databases/{line}" for line in done.stdout.splitlines() if line)


def _assert_restored_ghost(dst: ThrowawayMariaDB, sums: dict[str, str]) -> None:
    assert dst.checksums("ghost") == sums
    assert dst.sql(INVARIANTS) == [["1", "1", "1"]]
    objects = dst.sql(
        "SELECT (SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema='ghost'),"
        " (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema='ghost'),"
        " (SELECT COUNT(*) FROM information_schema.events WHERE event_schema='ghost'),"
        " (SELECT HEX(data) FROM ghost.uploads WHERE id=1),"
        " (SELECT value FROM ghost.settings WHERE id='s2')")
    assert objects == [["1", "1", "1", "00FF0A0D275C22001A", "Ghost ✓ 日本語 😀"]]


def _assert_clean(stack: Stack, password: str, *texts: str) -> None:
    assert find_canaries((*stack.secrets, password), texts=texts,
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []


def _source_db(mariadb: Factory, password: str) -> ThrowawayMariaDB:
    src = mariadb()
    load_ghostlike(src, N_POSTS)
    src.create_user("bk", password)
    return src


def test_socket_dump_is_consistent_while_writers_commit_and_restores_identically(
    stack: Stack, mariadb: Factory, secret_dir: Path, db_password: str,
) -> None:
    make_tree(stack.source, 20)
    src = _source_db(mariadb, db_password)
    dst = mariadb()
    dst.create_user("bk", db_password, restore=True)
    env = _credentials(secret_dir, db_password)
    stack.databases = [{"name": "ghost", "kind": "mysql", "socket": str(src.socket),
                        "user": "bk", "password_credential": "ghost-db",
                        "databases": ["ghost"], "dump_binary": shutil.which("mariadb-dump"),
                        "client_binary": shutil.which("mariadb")}]
    writer = Writer(src, N_POSTS)
    writer.start()
    try:
        time.sleep(0.3)
        code, stderr, sums, during = _run_with_snapshot(stack, src, writer, env)
        assert code == 0, stderr
        assert during > 0, "the writer must commit during the dump"
        (key,) = _dump_objects(stack)
        assert key.startswith("databases/ghost/")
        assert key.endswith(".sql.gz")
        assert "database ghost: dump stored as" in stderr
        # the file sync ran after the dump, as usual
        assert (stack.bucket_dir / "dir0").exists()

        dry = stack.run("restore-db", "ghost", "--as-of", "latest", "--to-socket",
                        str(dst.socket), "--dry-run", env=env)
        assert dry.returncode == 0, dry.stderr
        assert "dry run: would restore databases/ghost/" in dry.stderr
        restored = stack.run("restore-db", "ghost", "--as-of", "latest", "--to-socket",
                             str(dst.socket), env=env)
        assert restored.returncode == 0, restored.stderr
        _assert_restored_ghost(dst, sums)

        # Negative control: the same comparison catches a dump without one transaction
        # (held on a0_gate the same way, it then reads rows committed after the snapshot).
        watcher, locker, snap = Session(src), Session(src), Session(src)
        locker.q("LOCK TABLES ghost.a0_gate WRITE")
        writer.gate.acquire()
        try:
            torn = subprocess.Popen(
                ["mariadb-dump", "--no-defaults", f"--socket={src.socket}", "-uroot",
                 "--skip-lock-tables", "--routines", "--triggers", "--events", "--hex-blob",
                 "--databases", "ghost"], stdout=subprocess.PIPE)
            while not _blocked_dumps(watcher, "root"):
                time.sleep(0.005)
            snap.q("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            at_snapshot = writer.commits
        finally:
            writer.gate.release()
        while writer.commits < at_snapshot + 20:
            time.sleep(0.005)
        locker.q("UNLOCK TABLES")
        torn_sums = checksums(snap.q, "ghost")
        snap.q("COMMIT")
        for session in (watcher, locker, snap):
            session.close()
        dump, _ = torn.communicate(timeout=120)
        dst.sql("DROP DATABASE ghost")
        subprocess.run(dst.client_argv("--max-allowed-packet=64M"), input=dump, check=True)
        assert dst.checksums("ghost") != torn_sums, "the check must detect a torn dump"
    finally:
        writer.stop()
    record = json.loads((stack.tmp / "state" / "last-run.json").read_text())
    (dumped,) = record["databases"]
    assert dumped["ok"] is True
    assert dumped["object"] == key
    _assert_clean(stack, db_password, stderr, dry.stderr, restored.stderr)


def test_container_dump_reads_the_password_inside_the_container_never_in_argv(
    stack: Stack, mariadb: Factory, secret_dir: Path, db_password: str,
) -> None:
    make_tree(stack.source, 10)
    src = _source_db(mariadb, db_password)
    dst = mariadb()
    dst.create_user("bk", db_password, restore=True)
    env_inside = {"MYSQL_USER": "bk", "MYSQL_PASSWORD": db_password,
                  "MYSQL_ROOT_PASSWORD": "not-used-" + db_password[-6:]}
    engine, record = _fake_docker(secret_dir, {
        "ghost-db-1": {"env": env_inside, "socket": str(src.socket)},
        "ghost-db-restore": {"env": env_inside, "socket": str(dst.socket)},
    })
    stack.databases = [{"name": "ghost", "kind": "mysql", "container": "ghost-db-1",
                        "engine_binary": str(engine), "user": "bk"}]
    src.sql("CREATE TABLE ghost.legacy (id int) ENGINE=MyISAM")
    check = stack.run("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert ("[ok]   database ghost: container ghost-db-1: user bk logs in; would dump ghost; "
            "warning: 1 table(s) not InnoDB (ghost.legacy MyISAM)" in check.stdout)
    assert _dump_objects(stack) == []

    writer = Writer(src, N_POSTS)
    writer.start()
    try:
        time.sleep(0.3)
        code, stderr, sums, during = _run_with_snapshot(stack, src, writer, {})
    finally:
        writer.stop()
    assert code == 0, stderr
    assert during > 0
    restored = stack.run("restore-db", "ghost", "--as-of", "now", "--to-container",
                         "ghost-db-restore")
    assert restored.returncode == 0, restored.stderr
    _assert_restored_ghost(dst, sums)

    calls = [json.loads(line) for line in record.read_text().splitlines()]
    verbs = [call[1] for call in calls]
    assert "inspect" in verbs
    assert verbs.count("exec") >= 4  # check: probe + schemas; run: schemas + dump; restore
    assert not any("-t" in call for call in calls)
    assert [c for c in calls if "-i" in c] == [c for c in calls if "ghost-db-restore" in c]
    assert db_password not in record.read_text()
    assert all("MYSQL_PASSWORD" in call[-1] for call in calls if call[1] == "exec")
    _assert_clean(stack, db_password, stderr, check.stdout, check.stderr, restored.stderr)


def test_failed_dumps_leave_no_object_alert_and_the_sync_still_runs(
    stack: Stack, mariadb: Factory, secret_dir: Path, db_password: str,
) -> None:
    make_tree(stack.source, 10)
    src = _source_db(mariadb, db_password)
    engine, _record = _fake_docker(secret_dir, {
        "ghost-db-1": {"env": {"MYSQL_PASSWORD": "wrong-" + db_password},
                       "socket": str(src.socket)}})
    # A dump cut short that still exits 0: only the missing trailer gives it away.
    truncating = secret_dir / "mariadb-dump"
    truncating.write_text(f"#!/bin/sh\n'{shutil.which('mariadb-dump')}' \"$@\" | head -c 300000\n")
    truncating.chmod(0o755)
    # A dump killed after 12 MB of incompressible output: rcat is deep in a multipart upload.
    dying = secret_dir / "dying-dump"
    dying.write_text("#!/bin/sh\nhead -c 12000000 /dev/urandom\nkill -9 $$\n")
    dying.chmod(0o755)
    env = _credentials(secret_dir, db_password)
    stack.databases = [
        {"name": "viacontainer", "kind": "mysql", "container": "ghost-db-1",
         "engine_binary": str(engine), "user": "bk", "databases": ["ghost"]},
        {"name": "truncated", "kind": "mysql", "socket": str(src.socket), "user": "bk",
         "password_credential": "ghost-db", "databases": ["ghost"],
         "dump_binary": str(truncating)},
        {"name": "killed", "kind": "mysql", "socket": str(src.socket), "user": "bk",
         "password_credential": "ghost-db", "databases": ["ghost"],
         "dump_binary": str(dying)},
    ]
    check = stack.run("check", env=env)
    assert check.returncode == 82, check.stdout
    assert "[FAIL] database viacontainer: cannot log in" in check.stdout
    assert "Access denied for user 'bk'" in check.stdout

    result = stack.run("run", env=env)
    assert result.returncode == 82, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1, errors
    assert "database dump failed: viacontainer (dump exited 2: " in errors[0]
    assert "Access denied" in errors[0]
    assert "truncated (dump output does not end with '-- Dump completed'" in errors[0]
    assert "killed (dump exited -9)" in errors[0]
    assert "the file sync finished; the files' restore point was recorded" in errors[0]
    # Not even a .partial. The killed dump's multipart upload was never completed: S3 lists
    # nothing (serve s3 keeps the parts in a hidden temp file; R2's lifecycle rule aborts
    # incomplete uploads after 7 days by default).
    assert _dump_objects(stack) == []
    assert not [p for p in stack.s3.data_dir.rglob("*.gz*") if p.is_file()]
    assert (stack.bucket_dir / "dir0").exists()
    (alert,) = stack.alerts.webhooks()
    assert alert["exit_code"] == 82
    assert alert["summary"]["databases_failed"] == 3
    record_ = json.loads((stack.tmp / "state" / "last-run.json").read_text())
    assert [d["ok"] for d in record_["databases"]] == [False, False, False]
    _assert_clean(stack, db_password, result.stderr, check.stdout, check.stderr,
                  json.dumps(stack.alerts.webhooks()))


def test_sigterm_during_a_dump_stops_it_leaves_nothing_and_exits_143(
    stack: Stack, mariadb: Factory, secret_dir: Path, db_password: str,
) -> None:
    make_tree(stack.source, 5)
    src = _source_db(mariadb, db_password)
    env = _credentials(secret_dir, db_password)
    stack.databases = [{"name": "ghost", "kind": "mysql", "socket": str(src.socket),
                        "user": "bk", "password_credential": "ghost-db",
                        "databases": ["ghost"], "dump_binary": shutil.which("mariadb-dump")}]
    watcher, locker = Session(src), Session(src)
    locker.q("LOCK TABLES ghost.a0_gate WRITE")  # the dump waits on its first table
    try:
        proc, journal = _popen_run(stack, env)
        deadline = time.monotonic() + 60
        while not _blocked_dumps(watcher, "bk"):
            assert proc.poll() is None, journal.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        locker.q("UNLOCK TABLES")
        watcher.close()
        locker.close()
    stderr = journal.read_text()
    assert code == 143, stderr
    assert "dump stopped by a signal; nothing was stored" in stderr
    assert _dump_objects(stack) == []
    assert "rclone started" not in stderr  # the sync did not start after a stop request
    dumps_left = [p for p in Path("/proc").glob("[0-9]*")
                  if b"mariadb-dump" in _cmdline(p) and str(src.socket).encode() in _cmdline(p)]
    assert dumps_left == []
    assert [p.name for p in stack.runtime_dir.iterdir()] == []
    _assert_clean(stack, db_password, stderr)


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


# --- SQLite ------------------------------------------------------------------------------

def _commit(con: sqlite3.Connection, k: int, n: int) -> None:
    """Writer commit k: deterministic, so the reference can be rebuilt by replaying 1..k."""
    with con:
        con.execute("INSERT INTO members(id, email) VALUES (?, ?)", (k, f"m{k}@example.com"))
        con.execute("UPDATE settings SET value = value + 1 WHERE key = 'members_total'")
        con.execute("UPDATE posts SET html = html || ?, revision = revision + 1 WHERE id = ?",
                    (f"<p>{k}</p>", k % n))
        con.execute("UPDATE settings SET value = ? WHERE key = 'last_commit'", (k,))


def _sqlite_writer(path: str, n: int, halt: Any) -> None:
    con = sqlite3.connect(path, timeout=30)
    k = 1
    while not halt.is_set():
        _commit(con, k, n)
        k += 1
    con.close()


def _table_hashes(path: Path) -> dict[str, str]:
    con = sqlite3.connect(path)
    out = {}
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY 1"):
        digest = hashlib.sha256()
        for row in con.execute(f'SELECT * FROM "{table}" ORDER BY rowid'):
            digest.update(repr(row).encode())
        out[table] = digest.hexdigest()
    con.close()
    return out


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_sqlite_copy_is_consistent_while_a_writer_commits(stack: Stack, journal: str) -> None:
    make_tree(stack.source, 10)
    data = stack.source / "ghost" / "content" / "data"
    data.mkdir(parents=True)
    db = data / "ghost.db"
    n = 3000
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA journal_mode={journal}")
    con.executescript("""CREATE TABLE posts(id INTEGER PRIMARY KEY, slug TEXT UNIQUE,
        html TEXT, revision INT DEFAULT 0);
        CREATE TABLE members(id INTEGER PRIMARY KEY, email TEXT UNIQUE);
        CREATE TABLE settings(key TEXT PRIMARY KEY, value);
        INSERT INTO settings VALUES ('members_total', 0), ('last_commit', 0);""")
    with con:
        con.executemany("INSERT INTO posts VALUES (?, ?, ?, 0)",
                        ((i, f"post-{i}", f"<p>post {i} ✓ 日本語</p>" * 40) for i in range(n)))
    con.close()
    initial = stack.tmp / "initial.db"
    con = sqlite3.connect(db)
    con.execute(f"VACUUM INTO '{initial}'")
    con.close()
    stack.databases = [{"name": "ghost", "kind": "sqlite", "path": str(db)}]
    halt = multiprocessing.get_context("fork").Event()
    writer = multiprocessing.get_context("fork").Process(
        target=_sqlite_writer, args=(str(db), n, halt))
    writer.start()
    try:
        time.sleep(0.5)
        result = stack.run("run")
    finally:
        halt.set()
        writer.join(30)
    assert result.returncode == 0, result.stderr
    (key,) = _dump_objects(stack)
    assert key.endswith(".sqlite.gz")
    mirrored = {p.name for p in stack.bucket_dir.rglob("*") if p.is_file()}
    assert not mirrored & {"ghost.db", "ghost.db-wal", "ghost.db-shm", "ghost.db-journal"}

    target = stack.tmp / "restored" / "ghost.db"
    target.parent.mkdir()
    restored = stack.run("restore-db", "ghost", "--as-of", "latest", "--to-file", str(target))
    assert restored.returncode == 0, restored.stderr
    con = sqlite3.connect(target)
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    k = int(con.execute("SELECT value FROM settings WHERE key='last_commit'").fetchone()[0])
    members = con.execute("SELECT COUNT(*) FROM members").fetchone()[0]
    con.close()
    assert k > 0, "the writer must have committed before the copy"
    assert members == k
    reference = sqlite3.connect(initial)
    for i in range(1, k + 1):
        _commit(reference, i, n)
    reference.close()
    assert _table_hashes(target) == _table_hashes(initial)
    again = stack.run("restore-db", "ghost", "--to-file", str(target))
    assert again.returncode == 64
    assert "exists: stop Ghost and pass --force" in again.stderr
    assert find_canaries(stack.secrets, texts=[result.stderr, restored.stderr],
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []


def test_dumps_follow_the_history_retention_and_history_lists_them(stack: Stack) -> None:
    make_tree(stack.source, 5)
    db = stack.source / "ghost" / "content" / "data" / "ghost.db"
    db.parent.mkdir(parents=True)
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE posts(id INTEGER PRIMARY KEY, html TEXT)")
        con.executemany("INSERT INTO posts VALUES (?, ?)", ((i, "<p>x</p>") for i in range(50)))
    con.close()
    stack.databases = [{"name": "ghost", "kind": "sqlite", "path": str(db)}]
    stack.overrides["retention"] = {"keep_days": 30}
    # Earlier nights: one dump older than keep_days, one within, and a .partial left by a
    # supervisor that died (never restorable, deleted by the next successful dump).
    prefix = stack.bucket_root / "databases" / "ghost"
    prefix.mkdir(parents=True)
    old, recent = "20200101T020000Z-aaaaaa.sqlite.gz", "20991231T020000Z-bbbbbb.sqlite.gz"
    for name in (old, recent, "20200102T020000Z-cccccc.sqlite.gz.partial"):
        (prefix / name).write_bytes(b"\x1f\x8b not used")
    result = stack.run("run")
    assert result.returncode == 0, result.stderr
    names = [key.rsplit("/", 1)[1] for key in _dump_objects(stack)]
    assert old not in names
    assert recent in names
    assert not [n for n in names if n.endswith(".partial")]
    (tonight,) = [n for n in names if n not in (recent,)]
    assert "databases: pruned 1 dump(s) older than 30 days" in result.stderr

    listed = stack.run("history")
    assert listed.returncode == 0, listed.stderr
    assert "DATABASE DUMP (UTC)" in listed.stdout
    assert tonight.removesuffix(".sqlite.gz") in listed.stdout
    as_json = json.loads(stack.run("history", "--json").stdout)
    assert [d["object"] for d in as_json["databases"]["ghost"]] == [recent, tonight]
    assert find_canaries(stack.secrets, texts=[result.stderr, listed.stdout, listed.stderr],
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []
