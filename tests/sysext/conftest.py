"""Session fixture: the sysext images, built once per test session (see image.py)."""

from __future__ import annotations

import pytest

from tests.sysext.image import SysextBuild, build_skip_reason, run_build

_BUILDS: list[SysextBuild] = []


@pytest.fixture(scope="session")
def sysext(tmp_path_factory: pytest.TempPathFactory) -> SysextBuild:
    """Both images built by packaging/sysext/build.sh into a fresh directory, and unpacked."""
    reason = build_skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("sysext")
    build = run_build(work / "dist", work / "build")
    _BUILDS.append(build)
    return build


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report the build time and image sizes (the figures docs/install-flatcar.md quotes)."""
    for build in _BUILDS:
        sizes = ", ".join(f"{image.name} {image.stat().st_size / 1e6:.1f} MB"
                          for image in (build.app_image, build.rclone_image))
        terminalreporter.write_line(f"sysext: built in {build.seconds:.1f}s: {sizes}")
