"""`make demo`: the real backup path end to end on an embedded default.

Starts a loopback S3 endpoint (`rclone serve s3 --auth-key` with random keys), a loopback
credential proxy handing out exactly those keys with a short `expires_at`, a sample Ghost-like
tree, and runs the real `ghost-backup run` against them with its runtime dir on tmpfs.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
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
dir = "{runtime}"

[state]
dir = "{work / 'state'}"
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
        objects = sorted(p.relative_to(bucket) for p in bucket.rglob("*") if p.is_file())
        print(f"== demo: {len(objects)} objects arrived in the bucket, for example:")
        for obj in objects[:5]:
            print(f"     {obj}")
        leaked = [p for p in objects if ".env" in p.name]
        print(f"== demo: compose secrets excluded: {'yes' if not leaked else 'NO'}")
        outputs = (proc.stderr, proc.stdout, again.stderr, again.stdout)
        hits = sum(secret in text or access in text for text in outputs)
        print(f"== demo: canary keys found in output: {hits}")
        print(f"== demo: runtime dir after run: {sorted(p.name for p in runtime.iterdir())}")
        return proc.returncode or again.returncode if not leaked and hits == 0 else 1
    finally:
        proxy.stop()
        server.stop()
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
