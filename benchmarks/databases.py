"""Dump and restore times of a Ghost-size database through the real CLI (docs/performance.md).

    python -m benchmarks.databases [--posts 20000] [--sqlite-posts 12000]

MySQL: a throwaway MariaDB server (tests/support/mariadb.py) loaded with ``--posts`` Ghost-like
posts (20,000 is about 60 MB of SQL, 45 MB of InnoDB), a writer committing the whole time,
``ghost-backup run`` dumping it over the socket (mariadb-dump -> gzip in the supervisor ->
``rclone rcat`` -> ``moveto``) into a loopback ``rclone serve s3``, then
``ghost-backup restore-db --to-socket`` into a second server; the restored database is checked
against the writer's invariants. SQLite: a database file of about the same size, dumped with
the backup API while a writer commits, restored with ``--to-file`` and ``integrity_check``ed.
Figures, not tests: nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.helpers import render_toml, toml_value
from tests.support.devproxy import DevProxy, ProxyState
from tests.support.devstack import canary_keys, start_s3_server
from tests.support.mariadb import (
    INVARIANTS,
    ThrowawayMariaDB,
    Writer,
    install_template,
    load_ghostlike,
)

BIN = Path(sys.executable).parent


def _config(work: Path, endpoint: str, proxy_url: str, db: dict[str, Any]) -> Path:
    source = work / "storage"
    source.mkdir(exist_ok=True)
    (source / "index.html").write_text("ghost\n")
    data = {"source": {"path": str(source), "require_mountpoint": False},
            "destination": {"bucket": "bench", "endpoint": endpoint},
            "credentials": {"url": proxy_url},
            "rclone": {"binary": str(BIN / "rclone"), "log_level": "NOTICE"},
            "runtime": {"dir": str(Path(tempfile.mkdtemp(dir="/dev/shm")) / "ghost")},
            "state": {"dir": str(work / "state")}}
    path = work / "config.toml"
    path.write_text(render_toml(data) + "\n[[database]]\n" + "".join(
        f"{k} = {toml_value(v)}\n" for k, v in db.items()))
    return path


def _cli(config: Path, *args: str, env: dict[str, str]) -> float:
    started = time.monotonic()
    done = subprocess.run([str(BIN / "ghost-backup"), "--config", str(config), *args],
                          env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def bench_mysql(work: Path, endpoint: str, proxy_url: str, posts: int) -> dict[str, Any]:
    """Return the MySQL figures."""
    template = install_template(work / "template")
    src, dst = ThrowawayMariaDB(template).start(), ThrowawayMariaDB(template).start()
    try:
        started = time.monotonic()
        load_ghostlike(src, posts)
        load_s = time.monotonic() - started
        src.create_user("bk", "bench-pw-1")
        dst.create_user("bk", "bench-pw-1", restore=True)
        creds = work / "creds"
        creds.mkdir(mode=0o700)
        (creds / "db").write_text("bench-pw-1\n")
        (creds / "db").chmod(0o600)
        size = sum(p.stat().st_size for p in (src.datadir / "ghost").glob("*.ibd")) / 1e6
        config = _config(work, endpoint, proxy_url, {
            "name": "ghost", "kind": "mysql", "socket": str(src.socket), "user": "bk",
            "password_credential": "db", "databases": ["ghost"],
            "dump_binary": shutil.which("mariadb-dump"), "client_binary": shutil.which("mariadb")})
        env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(work),
               "CREDENTIALS_DIRECTORY": str(creds)}
        writer = Writer(src, posts)
        writer.start()
        before = writer.commits
        run_s = _cli(config, "run", env=env)
        during = writer.commits - before
        writer.stop()
        record = json.loads((work / "state" / "last-run.json").read_text())["databases"][0]
        restore_s = _cli(config, "restore-db", "ghost", "--to-socket", str(dst.socket), env=env)
        invariants = dst.sql(INVARIANTS)
        return {"innodb_files_mb": round(size, 1), "posts": posts, "load_s": round(load_s, 1),
                "sql_mb": round(record["raw_bytes"] / 1e6, 1),
                "gz_mb": round(record["stored_bytes"] / 1e6, 1),
                "dump_s": record["seconds"], "run_s": round(run_s, 1),
                "writer_commits_during_run": during, "restore_s": round(restore_s, 1),
                "invariants_hold": invariants == [["1", "1", "1"]]}
    finally:
        src.stop()
        dst.stop()


def bench_sqlite(work: Path, endpoint: str, proxy_url: str, posts: int) -> dict[str, Any]:
    """Return the SQLite figures."""
    base = work / "sqlite"
    base.mkdir()
    db = base / "ghost.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE posts(id INTEGER PRIMARY KEY, html TEXT, revision INT)")
    rng = random.Random(1)
    words = ("ghost", "publishing", "newsletter", "member", "subscribe", "editor", "card",
             "image", "gallery", "bookmark", "callout", "toggle", "header", "footer",
             "product", "signup", "paid", "free", "✓", "日本語")
    with con:
        con.executemany("INSERT INTO posts VALUES (?, ?, 0)", (
            (i, "<p>" + " ".join(rng.choice(words) for _ in range(600)) + "</p>")
            for i in range(posts)))
    con.close()
    halt = threading.Event()

    def write() -> None:
        w = sqlite3.connect(db, timeout=30)
        k = 0
        while not halt.is_set():
            with w:
                w.execute("UPDATE posts SET revision = revision + 1 WHERE id = ?", (k % posts,))
            k += 1
        w.close()

    config = _config(base, endpoint, proxy_url, {"name": "ghost", "kind": "sqlite",
                                                 "path": str(db)})
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(base)}
    thread = threading.Thread(target=write)
    thread.start()
    try:
        run_s = _cli(config, "run", env=env)
    finally:
        halt.set()
        thread.join()
    record = json.loads((base / "state" / "last-run.json").read_text())["databases"][0]
    target = base / "restored.db"
    restore_s = _cli(config, "restore-db", "ghost", "--to-file", str(target), env=env)
    check = sqlite3.connect(target).execute("PRAGMA integrity_check").fetchone()[0]
    return {"file_mb": round(db.stat().st_size / 1e6, 1),
            "gz_mb": round(record["stored_bytes"] / 1e6, 1), "dump_s": record["seconds"],
            "run_s": round(run_s, 1), "restore_s": round(restore_s, 1),
            "integrity_check": check}


def main() -> int:
    """Run both benchmarks and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--sqlite-posts", type=int, default=12000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gb-dbbench-", dir="/tmp"))
    access, secret = canary_keys("bench")
    s3 = start_s3_server(str(BIN / "rclone"), work / "s3", access, secret)
    proxy = DevProxy(ProxyState(access, secret, ttl_seconds=3600)).start()
    try:
        s3.bucket_dir("bench")
        figures = {"loadavg": os.getloadavg()[0],
                   "sqlite": bench_sqlite(work, s3.endpoint, proxy.url(), args.sqlite_posts),
                   "mysql": bench_mysql(work, s3.endpoint, proxy.url(), args.posts)}
    finally:
        proxy.stop()
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
