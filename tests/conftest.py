"""Fixtures: real rclone, a real loopback S3 endpoint, the dev credential proxy, tmpfs, and the
sysext images (built once per session, for tests/sysext/ and the removal test of tests/system/)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import BUCKET, RCLONE, Stack, make_tree
from tests.receiver import AlertReceiver
from tests.support.devproxy import DevProxy, ProxyState
from tests.support.devstack import canary_keys, start_s3_server
from tests.support.mariadb import ThrowawayMariaDB, install_template
from tests.sysext.image import SysextBuild, build_skip_reason, run_build


def pytest_sessionstart(session: pytest.Session) -> None:
    """Make every directory above the checkout searchable by others (o+x, never listing).

    The system tests run the checkout's virtualenv as systemd's DynamicUser and one audit
    test runs it as nobody: neither can reach it through a 0700 parent, which is what a
    clone into ``mktemp -d`` has. Done here, not in CI's script, so plain ``make test``
    works from any clone; each change is printed.
    """
    directory = Path(__file__).resolve().parent.parent
    while directory != directory.parent:
        mode = directory.stat().st_mode
        if not mode & 0o001:
            try:
                directory.chmod(mode & 0o7777 | 0o001)
                print(f"tests: made {directory} searchable by others (o+x) for the "
                      "DynamicUser and nobody tests")
            except OSError as err:
                print(f"tests: cannot make {directory} searchable by others: {err.strerror}")
        directory = directory.parent


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


@pytest.fixture(scope="session")
def mariadb_template() -> Iterator[Path]:
    """A MariaDB datadir made once per session (``mariadb-install-db``); servers copy it.

    Skipped where MariaDB is not installed, except under CI (``.ci/run`` installs it), where
    a missing server fails the test instead of hiding it.
    """
    if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
        if os.environ.get("GHOST_BACKUP_CI"):
            pytest.fail("mariadbd is missing: .ci/run installs mariadb-server")
        pytest.skip("MariaDB is not installed (apt-get install mariadb-server mariadb-client)")
    base = Path(tempfile.mkdtemp(prefix="gbdb-template-", dir="/tmp"))
    try:
        yield install_template(base / "data")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mariadb(mariadb_template: Path) -> Iterator[Callable[[], ThrowawayMariaDB]]:
    """A factory of throwaway MariaDB servers; every one is stopped and removed afterwards."""
    servers: list[ThrowawayMariaDB] = []

    def start() -> ThrowawayMariaDB:
        server = ThrowawayMariaDB(mariadb_template)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


_SYSEXT_BUILDS: list[SysextBuild] = []


@pytest.fixture(scope="session")
def sysext(tmp_path_factory: pytest.TempPathFactory) -> SysextBuild:
    """Both images built by packaging/sysext/build.sh into a fresh directory, and unpacked."""
    reason = build_skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("sysext")
    build = run_build(work / "dist", work / "build")
    _SYSEXT_BUILDS.append(build)
    return build


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report the build time and image sizes (the figures docs/install-flatcar.md quotes)."""
    for build in _SYSEXT_BUILDS:
        sizes = ", ".join(f"{image.name} {image.stat().st_size / 1e6:.1f} MB"
                          for image in (build.app_image, build.rclone_image))
        terminalreporter.write_line(f"sysext: built in {build.seconds:.1f}s: {sizes}")
