"""`make demo`: the real backup path end to end on an embedded default.

Starts a loopback S3 endpoint (`rclone serve s3 --auth-key` with random keys), a loopback
credential proxy handing out exactly those keys with a short `expires_at`, a sample Ghost-like
tree with a live SQLite database, and runs the real `ghost-backup run` against them with its
runtime dir on tmpfs: the database is dumped through SQLite's backup API and streamed to
`databases/ghost/`, next to the file sync (which leaves the live database file out), then
restored with `ghost-backup restore-db`.
"""

from __future__ import annotations

import filecmp
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file (`python tools/demo.py`): the dev helpers live in tests/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.devproxy import DevProxy, ProxyState
from tests.support.devstack import canary_keys, start_s3_server

BIN = Path(sys.executable).parent


def make_sample_tree(root: Path, files: int = 120) -> None:
    """Create a small Ghost-like tree: content, images, a database dump, compose secrets."""
    rnd = random.Random(2026)
    (root / "ghost-compose").mkdir(parents=True)
    (root / "ghost-compose" / "docker-compose.yml").write_text("services:\n  ghost: {}\n")
    (root / "ghost-compose" / ".env.production").write_text("DB_PASSWORD=not-for-backup\n")
    for i in range(files):
        kind = "images" if i % 3 else "files"
        sub = root / "ghost" / "content" / kind / f"2026-{i % 12 + 1:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"item-{i:04d}.bin").write_bytes(rnd.randbytes(rnd.randint(200, 40_000)))
    (root / "mysql").mkdir()
    (root / "mysql" / "ghost.sql").write_bytes(rnd.randbytes(300_000))
    make_sample_database(root / "ghost" / "content" / "data" / "ghost.db")


def make_sample_database(path: Path, posts: int = 2000) -> None:
    """Create Ghost's SQLite database (small installs use `content/data/ghost.db`), WAL mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE posts(id INTEGER PRIMARY KEY, slug TEXT UNIQUE, html TEXT)")
    with con:
        con.executemany("INSERT INTO posts VALUES (?, ?, ?)", (
            (i, f"post-{i}", f"<p>Post {i}: Ghost ✓ 日本語</p>" * 20) for i in range(posts)))
    con.close()


def _same_tree(left: Path, right: Path) -> bool:
    names = sorted(p.relative_to(left) for p in left.rglob("*") if p.is_file())
    return names == sorted(p.relative_to(right) for p in right.rglob("*") if p.is_file()) and all(
        filecmp.cmp(left / n, right / n, shallow=False) for n in names)


def _bad_night_then_rewind(argv: list[str], env: dict[str, str], source: Path, work: Path,
                           first_log: str) -> tuple[bool, tuple[str, ...]]:
    """Overwrite the database dump and delete an image, back that up, then bring the first
    night back with `restore --as-of`; return whether it is identical, and the outputs."""
    first = re.search(r"backup run (\S+) starting", first_log)
    if first is None:
        return False, ()
    night1 = work / "night1"
    # what the file sync keeps: no compose secrets, no live database (its dump is separate)
    shutil.copytree(source, night1, ignore=shutil.ignore_patterns(".env.*", "ghost.db*"))
    print("== demo: a bad night: mysql/ghost.sql overwritten, an image deleted; backed up too")
    (source / "mysql" / "ghost.sql").write_bytes(b"-- truncated by a bad deploy\n")
    next(source.rglob("item-0001.bin")).unlink()
    time.sleep(1.05 - time.time() % 1)  # run ids sort by their start second
    bad = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    target = work / "rewound"
    rewind = [*argv[:-1], "restore", "--to", str(target), "--as-of", first.group(1)]
    started = time.monotonic()
    done = subprocess.run(rewind, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    same = done.returncode == 0 and _same_tree(night1, target)
    print(f"== demo: ghost-backup restore --as-of {first.group(1)}: exit {done.returncode} in "
          f"{seconds:.2f}s; identical to the first night: {'yes' if same else 'NO'}")
    for line in done.stderr.splitlines():
        if "restored " in line:
            print(line)
    return same and bad.returncode == 0, (bad.stderr, done.stderr, done.stdout)


def main() -> int:
    """Run the demo; return the backup's exit code."""
    work = Path(tempfile.mkdtemp(prefix="ghost-demo-"))
    shm = Path(tempfile.mkdtemp(prefix="ghost-demo-", dir="/dev/shm"))
    access, secret = canary_keys("demo")
    server = start_s3_server(str(BIN / "rclone"), work / "s3", access, secret)
    proxy = DevProxy(ProxyState(access, secret, ttl_seconds=900)).start()
    try:
        server.bucket_dir("ghost-backups-demo")
        source = work / "storage"
        make_sample_tree(source)
        runtime = shm / "ghost"
        config = work / "config.toml"
        config.write_text(f"""\
# Demo config: loopback S3 and the loopback dev proxy instead of R2 and Aembit.
[source]
path = "{source}"
require_mountpoint = false   # the sample tree is a plain directory, not a mounted disk

[destination]
bucket = "ghost-backups-demo"
endpoint = "{server.endpoint}"

[credentials]
url = "{proxy.url()}"

[rclone]
binary = "{BIN / 'rclone'}"
stats_interval_seconds = 1
log_level = "NOTICE"
extra_args = ["--bwlimit", "1M"]   # slow the demo down enough to watch progress lines

[runtime]
dir = "{runtime}"          # the unit's (under systemd)
manual_dir = "{runtime}"   # a run outside systemd, as here
lock_path = "{shm / 'ghost-backup.lock'}"

[state]
dir = "{work / 'state'}"

# Ghost's live SQLite database: dumped consistently (backup API) before each sync and left
# out of the file sync, so the bucket never holds a torn copy of it.
[[database]]
name = "ghost"
kind = "sqlite"
path = "{source / 'ghost' / 'content' / 'data' / 'ghost.db'}"
""")
        print(f"== demo: S3 endpoint {server.endpoint}, credential proxy {proxy.url()}")
        print(f"== demo: source {source} (126 files), runtime dir {runtime} (tmpfs)")
        print("== demo: ghost-backup run\n", flush=True)
        env = {"PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "HOME": str(work)}
        argv = [str(BIN / "ghost-backup"), "--config", str(config), "run"]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        sys.stdout.write(proc.stderr)
        print(f"\n== demo: ghost-backup exited {proc.returncode}")
        print("== demo: second run (the nightly common case: nothing changed)", flush=True)
        again = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        for line in again.stderr.splitlines():
            if "summary:" in line or "credentials received" in line:
                print(line)
        print(f"== demo: second run exited {again.returncode}; the proxy saw "
              f"{len(proxy.state.requests)} credential requests (one per run)")
        bucket = server.data_dir / "ghost-backups-demo"
        stored = sorted(p.relative_to(bucket) for p in bucket.rglob("*") if p.is_file())
        dumps = [p for p in stored if p.parts[0] == "databases"]
        mirror = bucket / "current"
        objects = sorted(p.relative_to(mirror) for p in mirror.rglob("*") if p.is_file())
        print(f"== demo: {len(objects)} objects arrived in the bucket's mirror (current/) from "
              "the file sync, for example:")
        for obj in objects[:5]:
            print(f"     {obj}")
        leaked = [p for p in objects if ".env" in p.name]
        print(f"== demo: compose secrets excluded: {'yes' if not leaked else 'NO'}")
        live = [p for p in objects if p.name.startswith("ghost.db")]
        print(f"== demo: {len(dumps)} database dumps (one per run), live ghost.db left out of "
              f"the file sync: {'yes' if not live else 'NO'}")
        for dump in dumps:
            print(f"     {dump} ({(bucket / dump).stat().st_size} bytes, gzip)")
        restored = work / "restored" / "ghost.db"
        restored.parent.mkdir()
        print("== demo: ghost-backup restore-db ghost --as-of latest --to-file "
              f"{restored}", flush=True)
        back = subprocess.run([*argv[:-1], "restore-db", "ghost", "--as-of", "latest",
                               "--to-file", str(restored)],
                              env=env, capture_output=True, text=True, check=False)
        sys.stdout.write(back.stderr)
        con = sqlite3.connect(restored) if back.returncode == 0 else None
        if con is not None:
            check = con.execute("PRAGMA integrity_check").fetchone()[0]
            count = con.execute("SELECT COUNT(*) FROM posts").fetchone()[0]
            con.close()
            print(f"== demo: restored database: integrity_check {check}, {count} posts")
        rewound, rewind_logs = _bad_night_then_rewind(argv, env, source, work, proc.stderr)
        outputs = (proc.stderr, proc.stdout, again.stderr, again.stdout, back.stderr,
                   *rewind_logs)
        hits = sum(secret in text or access in text for text in outputs)
        print(f"== demo: canary keys found in output: {hits}")
        print(f"== demo: runtime dir after run: {sorted(p.name for p in runtime.iterdir())}")
        failed = proc.returncode or again.returncode or back.returncode or (
            0 if rewound else 1)
        return failed if not leaked and not live and hits == 0 else 1
    finally:
        proxy.stop()
        server.stop()
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
