"""Fixtures: real rclone, a real loopback S3 endpoint, the dev credential proxy, tmpfs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import BUCKET, RCLONE, Stack, make_tree
from tests.receiver import AlertReceiver
from tests.support.devproxy import DevProxy, ProxyState
from tests.support.devstack import canary_keys, start_s3_server


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A fresh directory on tmpfs (/dev/shm), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="ghost-test-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def stack(tmp_path: Path, shm_dir: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A loopback S3 endpoint and dev proxy sharing fresh canary keys, plus a source tree.

    A test may choose the keys with ``@pytest.mark.parametrize("stack", [(access, secret)],
    indirect=True)``.
    """
    chosen: tuple[str, str] | None = getattr(request, "param", None)
    access, secret = chosen or canary_keys(request.node.name[:6].replace("_", "x"))
    s3 = start_s3_server(RCLONE, tmp_path / "s3", access, secret, log_path=tmp_path / "s3.log")
    proxy = DevProxy(ProxyState(access, secret, ttl_seconds=1800)).start()
    alerts = AlertReceiver()
    source = tmp_path / "storage"
    source.mkdir()
    try:
        s3.bucket_dir(BUCKET)
        yield Stack(tmp=tmp_path, s3=s3, proxy=proxy, runtime_dir=shm_dir / "ghost",
                    source=source, alerts=alerts)
    finally:
        alerts.stop()
        proxy.stop()
        s3.stop()


@pytest.fixture
def filled_stack(stack: Stack) -> Stack:
    """A stack whose source holds a few hundred files."""
    make_tree(stack.source, 300)
    return stack
