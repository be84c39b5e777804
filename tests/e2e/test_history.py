"""History end to end: every night restorable exactly (`restore --as-of`), `history`, and
retention (a successful run prunes what is older than keep_days, a failed one nothing),
with the real CLI, real rclone and the dev credential proxy's canary keys.

The six nights run against ``moto_server``, not ``rclone serve s3``: serve s3 sits on rclone's
VFS and cannot hold object ``d`` next to ``d/x``, so the night that turns a directory into a
file fails there with a 500 on every attempt (rclone uploads ``d`` before deleting ``d/x``,
its default ``--delete-after``). R2 keys are flat like moto's. moto does not check
signatures; the wrong-keys tests stay on serve s3, and so do the retention tests here.
"""

from __future__ import annotations

import filecmp
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import BUCKET, RCLONE, Stack, find_canaries, make_tree
from tests.receiver import AlertReceiver
from tests.support.devproxy import DevProxy, ProxyState
from tests.support.devstack import canary_keys, start_moto_server

MOTO_SERVER = str(Path(sys.executable).parent / "moto_server")
OLD_RUN = "20200101T020000Z-0a0a0a"


@pytest.fixture
def moto_stack(tmp_path: Path, shm_dir: Path) -> Iterator[Stack]:
    """Like the ``stack`` fixture, with moto (flat keys) as the S3 endpoint."""
    access, secret = canary_keys("hist")
    s3 = start_moto_server(MOTO_SERVER, log_path=tmp_path / "moto.log")
    proxy = DevProxy(ProxyState(access, secret, ttl_seconds=1800)).start()
    alerts = AlertReceiver()
    source = tmp_path / "storage"
    source.mkdir()
    try:
        s3.create_bucket(BUCKET)
        yield Stack(tmp=tmp_path, s3=s3, proxy=proxy,  # type: ignore[arg-type]
                    runtime_dir=shm_dir / "ghost", source=source, alerts=alerts)
    finally:
        alerts.stop()
        proxy.stop()
        s3.stop()


def _write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _night(src: Path, night: int, rnd: random.Random) -> None:
    """Change the source as night ``night`` does: edits, same-size edits, deletes, renames,
    re-added files, a directory turned into a file (and back)."""
    images = "content/images/2026"
    if night == 1:
        for i in range(24):
            _write(src, f"{images}/img{i:02d}.jpg", rnd.randbytes(rnd.randint(100, 3000)))
        _write(src, "content/data/ghost.db", b"db-v1" * 100)
        _write(src, "content/settings/routes.yaml", b"routes: A\n")
        _write(src, "content/themes/casper/partials/a.hbs", b"partial a")
        _write(src, "content/themes/casper/partials/b.hbs", b"partial b")
        _write(src, "notes/gone.txt", b"deleted night 2, re-added night 4")
        _write(src, "ghost-compose/.env.production", b"DB_PASSWORD=excluded")
        _write(src, "ghost-compose/docker-compose.yml", b"services: {}\n")
    elif night == 2:
        _write(src, "content/data/ghost.db", b"db-v2-longer" * 100)  # edit, size changes
        _write(src, "content/settings/routes.yaml", b"routes: B\n")  # same-size edit
        (src / "notes/gone.txt").unlink()  # delete
        _write(src, f"{images}/new.jpg", rnd.randbytes(777))  # add
    elif night == 3:
        (src / f"{images}/img00.jpg").rename(src / f"{images}/img00-renamed.jpg")
        (src / "content/themes/casper/partials").rename(src / "content/themes/casper/parts")
        _write(src, "content/settings/routes.yaml", b"routes: C\n")  # same-size again
        (src / f"{images}/new.jpg").unlink()  # delete a file born night 2
    elif night == 4:
        _write(src, "notes/gone.txt", b"re-added with other bytes")  # re-added
        shutil.rmtree(src / "content/themes/casper/parts")
        _write(src, "content/themes/casper/parts", b"now a file, was a directory")
        _write(src, "content/data/ghost.db", b"db-v4" * 100)
    elif night == 5:
        for i in range(1, 13):  # half the images go in one night
            (src / f"{images}/img{i:02d}.jpg").unlink()
        _write(src, f"{images}/new.jpg", rnd.randbytes(777))  # re-added, other bytes
        _write(src, "content/settings/routes.yaml", b"routes: E\n")
    elif night == 6:
        (src / "content/themes/casper/parts").unlink()  # the file becomes a directory again
        _write(src, "content/themes/casper/parts/a.hbs", b"partial a v6")
        _write(src, "content/data/ghost.db", b"db-v6" * 100)
        (src / f"{images}/img20.jpg").rename(src / f"{images}/img20.JPG")


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def _same_tree(left: Path, right: Path) -> bool:
    names = _files(left)
    return names == _files(right) and all(
        filecmp.cmp(left / p, right / p, shallow=False) for p in names)


def _run_id(stderr: str) -> str:
    match = re.search(r"backup run (\S+) starting", stderr)
    assert match is not None, stderr
    return match.group(1)


def _next_second() -> None:
    # Run ids sort by their start second; two runs in one second never happen for real
    # (the lock, a run's length), but back-to-back test runs could.
    time.sleep(1.05 - time.time() % 1)


def test_restore_as_of_each_of_six_nights_is_byte_identical_to_that_nights_source(
    moto_stack: Stack,
) -> None:
    stack = moto_stack
    rnd = random.Random(13)
    run_ids: list[str] = []
    texts: list[str] = []
    for night in range(1, 7):
        _night(stack.source, night, rnd)
        _next_second()
        # Some nights delete 20 of ~47 files on purpose: past the deletion guard's "10%".
        done = stack.run("run", "--allow-shrink")
        assert done.returncode == 0, done.stderr
        assert "history: recorded" in done.stderr
        run_ids.append(_run_id(done.stderr))
        shutil.copytree(stack.source, stack.tmp / "snapshots" / str(night),
                        ignore=shutil.ignore_patterns(".env.*"))
        texts.append(done.stderr)

    listed = stack.run("history", "--json")
    assert listed.returncode == 0, listed.stderr
    points = json.loads(listed.stdout)["points"]
    assert [p["point"] for p in points] == ["now", *reversed(run_ids)]
    assert points[0]["changed_objects"] == 0  # the mirror is the last night
    assert (points[1]["added"], points[1]["modified"], points[1]["deleted"]) == (2, 1, 2)
    table = stack.run("history")
    assert table.stdout.splitlines()[1].startswith("now")
    texts += [listed.stdout, listed.stderr, table.stdout, table.stderr]

    seconds = []
    (stack.tmp / "restored").mkdir()  # restore creates the target itself, not its parents
    for night, run_id in enumerate(run_ids, 1):
        target = stack.tmp / "restored" / str(night)
        started = time.monotonic()
        result = stack.run("restore", "--to", str(target), "--as-of", run_id)
        seconds.append(time.monotonic() - started)
        assert result.returncode == 0, result.stderr
        snapshot = stack.tmp / "snapshots" / str(night)
        assert _same_tree(target, snapshot), f"night {night} differs"
        assert f"verified {len(_files(snapshot))} files identical to the manifest" in result.stderr
        texts.append(result.stderr)
    print(f"as-of restores of {len(run_ids)} nights: "
          + ", ".join(f"{s:.2f}s" for s in seconds))

    # A date means that UTC day's last run; --path restores a part of a night, in place.
    day = f"{run_ids[-1][:4]}-{run_ids[-1][4:6]}-{run_ids[-1][6:8]}"
    part = stack.tmp / "part"
    partial = stack.run("restore", "--to", str(part), "--as-of", run_ids[2],
                        "--path", "content/themes")
    assert partial.returncode == 0, partial.stderr
    assert _files(part) == [Path("content/themes/casper/parts/a.hbs"),
                            Path("content/themes/casper/parts/b.hbs")]
    assert (part / "content/themes/casper/parts/a.hbs").read_bytes() == b"partial a"
    dry = stack.run("restore", "--to", str(stack.tmp / "dry"), "--as-of", day, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would restore {len(_files(stack.tmp / 'snapshots' / '6'))} files" in dry.stderr
    assert f"(run {run_ids[-1]})" in dry.stderr
    assert not (stack.tmp / "dry").exists() or not _files(stack.tmp / "dry")
    texts += [partial.stderr, dry.stderr]
    assert find_canaries(stack.secrets, texts=texts,
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []


def _put(stack: Stack, key: str, data: bytes) -> None:
    """Write one object through S3 (serve s3's directory cache would miss a file on disk)."""
    local = stack.tmp / "put.tmp"
    local.write_bytes(data)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(stack.tmp),
           "RCLONE_CONFIG_S_TYPE": "s3", "RCLONE_CONFIG_S_PROVIDER": "Other",
           "RCLONE_CONFIG_S_ENDPOINT": stack.s3.endpoint,
           "RCLONE_CONFIG_S_ACCESS_KEY_ID": stack.s3.access_key_id,
           "RCLONE_CONFIG_S_SECRET_ACCESS_KEY": stack.s3.secret_access_key,
           "RCLONE_CONFIG_S_NO_CHECK_BUCKET": "true"}
    subprocess.run([RCLONE, "copyto", str(local), f"s:{BUCKET}/{key}", "--config", "/dev/null"],
                   env=env, check=True, capture_output=True, timeout=60)
    local.unlink()


def test_a_successful_run_prunes_history_older_than_keep_days_and_a_failed_one_nothing(
    stack: Stack,
) -> None:
    files = make_tree(stack.source, 8)
    first = stack.run("run")
    assert first.returncode == 0, first.stderr
    # A run from long ago: its folder, its manifest, and an operator's own note beside them.
    _put(stack, f"history/{OLD_RUN}/dir0/sub0/file-00000.dat", b"old version")
    _put(stack, f"history/{OLD_RUN}.manifest", b"dir0/sub0/file-00000.dat\t11\t\n")
    _put(stack, "history/README.txt", b"operators' note\n")
    old_folder = stack.history_dir / OLD_RUN

    refused = stack.run("restore", "--to", str(stack.tmp / "old"), "--as-of", OLD_RUN)
    assert refused.returncode == 64, refused.stderr
    assert "older than retention.keep_days (30 days): the oldest restorable point is" in (
        refused.stderr)
    too_early = stack.run("restore", "--to", str(stack.tmp / "old"), "--as-of", "2021-06-01")
    assert too_early.returncode == 64
    assert "older than retention.keep_days (30 days)" in too_early.stderr

    for path in files[:3]:
        path.unlink()
    stack.overrides["rclone"] = {"max_delete": 1}
    _next_second()
    failed = stack.run("run")
    assert failed.returncode == 79, failed.stderr
    assert "pruning" not in failed.stderr
    assert old_folder.is_dir()
    assert (stack.history_dir / f"{OLD_RUN}.manifest").is_file()
    assert not (stack.history_dir / f"{_run_id(failed.stderr)}.manifest").exists()

    stack.overrides.pop("rclone")
    _next_second()
    # 3 deletions of 8 objects are over the default rclone.max_delete ("10%") as well.
    done = stack.run("run", "--allow-shrink")
    assert done.returncode == 0, done.stderr
    assert f"history: pruning folder {OLD_RUN}: 1 objects, 11 B" in done.stderr
    assert "pruning 1 folders and 1 manifests" in done.stderr
    assert not old_folder.exists()
    assert not (stack.history_dir / f"{OLD_RUN}.manifest").exists()
    assert (stack.history_dir / "README.txt").is_file()  # not ours: never pruned
    assert _files(stack.bucket_dir) == _files(stack.source)  # the mirror untouched
    assert find_canaries(stack.secrets, texts=[first.stderr, refused.stderr, failed.stderr,
                                               done.stderr],
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []


def test_restore_as_of_verifies_every_file_against_the_nights_manifest(stack: Stack) -> None:
    files = make_tree(stack.source, 6)
    first = stack.run("run")
    assert first.returncode == 0, first.stderr
    night1 = _run_id(first.stderr)
    victim = files[2]
    victim.write_bytes(b"night two's version")
    _next_second()
    second = stack.run("run")
    assert second.returncode == 0, second.stderr
    # The archived night-one version is damaged in the bucket, same size (only MD5 can tell).
    [archived] = (stack.history_dir / _run_id(second.stderr)).rglob(victim.name)
    data = bytearray(archived.read_bytes())
    data[0] ^= 0xFF
    archived.write_bytes(bytes(data))

    done = stack.run("restore", "--to", str(stack.tmp / "night1"), "--as-of", night1)

    assert done.returncode == 81, done.stderr
    assert f"restore check: differs {victim.relative_to(stack.source)}" in done.stderr
    assert "1 differ, 0 missing, 0 unreadable; 5 identical" in done.stderr
    assert find_canaries(stack.secrets, texts=[first.stderr, second.stderr, done.stderr],
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []
