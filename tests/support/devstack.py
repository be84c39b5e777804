"""A loopback S3 endpoint for tests, the demo and benchmarks (not for production).

``rclone serve s3 --auth-key ACCESS,SECRET`` checks request signatures, so wrong or missing
keys really fail (403). Keys reach it through ``RCLONE_AUTH_KEY`` in its environment, never
through argv (rclone maps every flag to an ``RCLONE_<FLAG>`` variable).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def canary_keys(tag: str = "canary") -> tuple[str, str]:
    """Return a fresh (access key id, secret) pair that is easy to search for afterwards."""
    access = f"GBK{tag.upper()[:6]}{secrets.token_hex(8).upper()}"
    secret = f"gbs-{tag}-{secrets.token_urlsafe(24)}"
    return access, secret


@dataclass
class S3Server:
    """A running ``rclone serve s3``."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    access_key_id: str
    secret_access_key: str

    @property
    def endpoint(self) -> str:
        """Return the endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def bucket_dir(self, bucket: str) -> Path:
        """Return (creating) the directory that holds ``bucket``'s objects."""
        path = self.data_dir / bucket
        path.mkdir(parents=True, exist_ok=True)
        return path

    def stop(self) -> None:
        """Stop the server."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_s3_server(
    rclone: str, data_dir: Path, access_key_id: str, secret_access_key: str,
    log_path: Path | None = None,
) -> S3Server:
    """Start ``rclone serve s3`` on a free loopback port serving ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(data_dir.parent),
        # rclone reads list flags from the environment as CSV: quote the pair.
        "RCLONE_AUTH_KEY": f'"{access_key_id},{secret_access_key}"',
    }
    log = log_path.open("ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [rclone, "serve", "s3", "--addr", f"127.0.0.1:{port}", "--config", "/dev/null",
             str(data_dir)],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]
    server = S3Server(proc, port, data_dir, access_key_id, secret_access_key)
    try:
        wait_for_port(port)
    except TimeoutError:
        server.stop()
        raise
    return server


@dataclass
class MotoServer:
    """A running ``moto_server``: an S3 endpoint with flat keys, like R2.

    Used where ``rclone serve s3`` cannot follow S3: it sits on rclone's VFS (a folder tree),
    so it cannot hold object ``d`` next to ``d/x``, and a night that turns a directory into a
    file fails there with a 500 (R2 keys are flat; measured with rclone 1.75.2). moto does not
    check request signatures: tests that prove wrong keys fail use ``rclone serve s3``.
    """

    process: subprocess.Popen[bytes]
    port: int

    @property
    def endpoint(self) -> str:
        """Return the endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def create_bucket(self, bucket: str) -> None:
        """Create ``bucket`` (our remote sets no_check_bucket, so rclone never creates one)."""
        request = urllib.request.Request(f"{self.endpoint}/{bucket}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def stop(self) -> None:
        """Stop the server."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_moto_server(moto_server: str, log_path: Path | None = None) -> MotoServer:
    """Start ``moto_server`` on a free loopback port."""
    port = free_port()
    log = log_path.open("ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [moto_server, "-H", "127.0.0.1", "-p", str(port)],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"},
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]
    server = MotoServer(proc, port)
    try:
        wait_for_port(port, timeout=30)
    except TimeoutError:
        server.stop()
        raise
    return server
