"""Every credential source end to end: a real `ghost-backup run`, a real rclone sync to the
loopback S3 endpoint (signature-checked canary keys), and each source's loopback fake or
helper following its published contract. Good paths sync; bad answers fail closed with the
documented exit code. A probe in front of rclone proves the session token reached its
environment (by hash: no secret on disk), and every test searches for every canary."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import AembitEdgeFake, CloudflareFake, InjectingProxy, Loopback
from tests.helpers import BUCKET, RCLONE, Stack, find_canaries, make_tree

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
ACCOUNT = "0123456789abcdef0123456789abcdef"
R2_HOST = f"{ACCOUNT}.r2.cloudflarestorage.com"
CLIENT_ID = "aembit:useast2:tenant:identity:oidc_id_token:7f6c1d0e"
PARENT_KEY_ID = "parent0123456789"


@pytest.fixture
def secrets_dir() -> Iterator[Path]:
    """A private tmpfs directory playing systemd's $CREDENTIALS_DIRECTORY (inputs only)."""
    path = Path(tempfile.mkdtemp(prefix="ghost-creds-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def session_token(request: pytest.FixtureRequest) -> str:
    """A canary session token."""
    return f"gbt-{request.node.name[:6]}-{secrets.token_urlsafe(32)}"


@pytest.fixture
def small_stack(stack: Stack) -> Stack:
    """A stack with a small source tree and rclone behind an environment probe."""
    make_tree(stack.source, 20)
    probe = stack.tmp / "bin" / "rclone"
    probe.parent.mkdir()
    probe.write_text(
        f"#!{sys.executable}\n"
        "import hashlib, json, os, sys\n"
        "from pathlib import Path\n"
        "token = os.environ.get('RCLONE_CONFIG_R2_SESSION_TOKEN', '')\n"
        "Path(__file__).with_name('rclone-env.json').write_text(json.dumps({\n"
        "    'names': sorted(os.environ),\n"
        "    'session_token_sha256': hashlib.sha256(token.encode()).hexdigest() if token\n"
        "        else None}))\n"
        f"os.execv({RCLONE!r}, [{RCLONE!r}, *sys.argv[1:]])\n"
    )
    probe.chmod(0o755)
    stack.overrides["rclone"] = {"binary": str(probe)}
    return stack


def _probe(stack: Stack) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((stack.tmp / "bin" / "rclone-env.json").read_text())
    return data


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write_secret(directory: Path, name: str, content: str, mode: int = 0o400) -> Path:
    path = directory / name
    path.write_text(content)
    path.chmod(mode)
    return path


def _grant_read_acl(path: Path, uid: int) -> None:
    """Do what systemd's write_credential does for a non-root service user: 0400 root file
    plus ``user:<uid>:r--`` (stat then shows 0440: the ACL mask sits in the group bits)."""
    entries = [(0x01, 4, 0xFFFFFFFF), (0x02, 4, uid), (0x04, 0, 0xFFFFFFFF),
               (0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
    value = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    os.setxattr(path, "system.posix_acl_access", value)


def _assert_synced(stack: Stack, result: Any) -> None:
    assert result.returncode == 0, result.stderr
    target = stack.bucket_dir  # the mirror, "current" by default
    assert len([p for p in target.rglob("*") if p.is_file()]) == 20


def _assert_rclone_got_token(stack: Stack, token: str) -> None:
    seen = _probe(stack)
    assert seen["session_token_sha256"] == _sha(token)
    # The child's environment is the allowlist plus the remote's keys: no parent token,
    # no credentials directory, no systemd sockets.
    assert "CREDENTIALS_DIRECTORY" not in seen["names"]
    assert not [n for n in seen["names"] if n.startswith(("AWS_", "GHOST_"))]


def _assert_clean(stack: Stack, extra: tuple[str, ...], *texts: str) -> None:
    hits = find_canaries((*stack.secrets, *extra), texts=texts,
                         dirs=[stack.tmp, stack.runtime_dir.parent])
    assert hits == []


def _audit(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if "credential request:" in line)


# --- http-json -------------------------------------------------------------------------------

def test_http_json_accepts_credential_process_shape_and_hands_session_token_to_rclone(
    small_stack: Stack, session_token: str
) -> None:
    stack = small_stack
    stack.proxy.state.session_token = session_token
    stack.proxy.state.mode = "credential-process"
    result = stack.run("run")
    _assert_synced(stack, result)
    _assert_rclone_got_token(stack, session_token)
    assert "provider=r2-backup" in _audit(result.stderr)
    assert "source=http-json" in _audit(result.stderr)
    assert "session_token=yes" in result.stderr
    _assert_clean(stack, (), result.stderr, result.stdout)


# --- aembit-edge -----------------------------------------------------------------------------

def _aembit(stack: Stack, secrets_dir: Path, session_token: str) -> tuple[AembitEdgeFake,
                                                                          Loopback, str]:
    identity = f"gbi-oidc-{secrets.token_urlsafe(24)}"
    _write_secret(secrets_dir, "aembit-identity-token", identity + "\n")
    fake = AembitEdgeFake(CLIENT_ID, identity, stack.s3.access_key_id,
                          stack.s3.secret_access_key, session_token, R2_HOST, 443)
    server = Loopback(fake.app)
    stack.overrides["credentials"] = {
        "source": "aembit-edge",
        "aembit_edge": {"url": server.base_url, "client_id": CLIENT_ID,
                        "server_host": R2_HOST},
    }
    return fake, server, identity


def test_aembit_edge_authenticates_then_syncs_with_the_policy_credentials(
    small_stack: Stack, secrets_dir: Path, session_token: str
) -> None:
    stack = small_stack
    fake, server, identity = _aembit(stack, secrets_dir, session_token)
    try:
        result = stack.run("run", env={"CREDENTIALS_DIRECTORY": str(secrets_dir)})
    finally:
        server.stop()
    _assert_synced(stack, result)
    _assert_rclone_got_token(stack, session_token)
    assert [e["event"] for e in fake.events] == ["auth", "access.credential"]
    assert fake.events[1]["server"] == {"transportProtocol": "TCP", "host": R2_HOST,
                                        "port": 443}
    audit = _audit(result.stderr)
    assert f"provider=aembit-edge:{R2_HOST}:443" in audit
    run_id = audit.split("run_id=")[1].split()[0]
    assert fake.events[1]["request_id"] == run_id
    _assert_clean(stack, (session_token, identity, fake.bearer), result.stderr, result.stdout)


def test_restore_fetches_its_own_credentials_from_the_configured_source(
    small_stack: Stack, secrets_dir: Path, session_token: str
) -> None:
    stack = small_stack
    fake, server, identity = _aembit(stack, secrets_dir, session_token)
    env = {"CREDENTIALS_DIRECTORY": str(secrets_dir)}
    target = stack.tmp / "restored"
    try:
        backup = stack.run("run", env=env)
        restore = stack.run("restore", "--to", str(target), env=env)
    finally:
        server.stop()
    _assert_synced(stack, backup)
    assert restore.returncode == 0, restore.stderr
    assert len([p for p in target.rglob("*") if p.is_file()]) == 20
    assert "command=restore" in _audit(restore.stderr)
    assert "source=aembit-edge" in _audit(restore.stderr)
    assert [e["event"] for e in fake.events].count("access.credential") == 2
    _assert_clean(stack, (session_token, identity, fake.bearer), backup.stderr,
                  restore.stderr, restore.stdout)


# --- cloudflare-temp -------------------------------------------------------------------------

def _cloudflare(stack: Stack, session_token: str) -> tuple[CloudflareFake, Loopback, str]:
    parent = f"gbp-cf-{secrets.token_urlsafe(30)}"
    fake = CloudflareFake(ACCOUNT, parent, PARENT_KEY_ID, BUCKET, stack.s3.access_key_id,
                          stack.s3.secret_access_key, session_token)
    return fake, Loopback(fake.app), parent


@pytest.mark.parametrize("route", ["reverse-proxy", "http-proxy"])
def test_cloudflare_temp_mints_scoped_keys_with_the_token_injected_by_the_proxy(
    small_stack: Stack, session_token: str, route: str
) -> None:
    stack = small_stack
    fake, api, parent = _cloudflare(stack, session_token)
    injector = InjectingProxy(api.base_url, parent)
    proxy = Loopback(injector.app)
    cf: dict[str, Any] = {"parent_access_key_id": PARENT_KEY_ID, "account_id": ACCOUNT,
                          "ttl_seconds": 1800}
    if route == "reverse-proxy":
        cf["api_base_url"] = proxy.base_url
    else:
        cf.update(api_base_url=api.base_url, proxy_url=proxy.base_url)
    stack.overrides["credentials"] = {"source": "cloudflare-temp", "cloudflare_temp": cf}
    started = time.time()
    try:
        result = stack.run("run")
    finally:
        proxy.stop()
        api.stop()
    _assert_synced(stack, result)
    _assert_rclone_got_token(stack, session_token)
    assert injector.seen[0]["arrived_with_authorization"] is False
    assert injector.seen[0]["absolute_form"] is (route == "http-proxy")
    [request] = fake.requests
    assert request["authorised"] is True
    assert request["body"] == {"bucket": BUCKET, "parentAccessKeyId": PARENT_KEY_ID,
                               "permission": "object-read-write", "ttlSeconds": 1800,
                               "prefixes": ["current/", "history/"]}
    received = next(line for line in result.stderr.splitlines() if "expires_at=" in line)
    expires = received.split("expires_at=")[1].split()[0]
    from datetime import datetime  # noqa: PLC0415
    assert abs(datetime.fromisoformat(expires).timestamp() - (started + 1800)) < 10
    assert f"provider=cloudflare-temp:{BUCKET}" in _audit(result.stderr)
    _assert_clean(stack, (session_token, parent), result.stderr, result.stdout)


def test_cloudflare_temp_reads_the_parent_token_from_the_credentials_directory(
    small_stack: Stack, secrets_dir: Path, session_token: str
) -> None:
    stack = small_stack
    fake, api, parent = _cloudflare(stack, session_token)
    _write_secret(secrets_dir, "cloudflare-api-token", parent + "\n")
    stack.overrides["credentials"] = {"source": "cloudflare-temp", "cloudflare_temp": {
        "api_base_url": api.base_url, "parent_access_key_id": PARENT_KEY_ID,
        "account_id": ACCOUNT, "token_from": "credential", "ttl_seconds": 1800}}
    try:
        result = stack.run("run", env={"CREDENTIALS_DIRECTORY": str(secrets_dir)})
    finally:
        api.stop()
    _assert_synced(stack, result)
    _assert_rclone_got_token(stack, session_token)
    assert fake.requests[0]["body"]["prefixes"] == ["current/", "history/"]
    _assert_clean(stack, (session_token, parent), result.stderr, result.stdout)


# --- command ---------------------------------------------------------------------------------

def _command(stack: Stack, secrets_dir: Path, session_token: str, mode: str,
             timeout: float = 10) -> None:
    keys = {"access_key_id": stack.s3.access_key_id,
            "secret_access_key": stack.s3.secret_access_key,
            "session_token": session_token, "ttl_seconds": 1800}
    keys_file = _write_secret(secrets_dir, "broker-keys.json", json.dumps(keys), 0o600)
    stack.overrides["credentials"] = {"source": "command", "command": {
        "argv": [sys.executable, str(SCRIPTS / "cred_helper.py"), str(keys_file), mode],
        "timeout_seconds": timeout}}


def test_command_helper_output_syncs_and_its_stderr_is_logged_redacted(
    small_stack: Stack, secrets_dir: Path, session_token: str
) -> None:
    stack = small_stack
    _command(stack, secrets_dir, session_token, "ok")
    result = stack.run("run")
    _assert_synced(stack, result)
    _assert_rclone_got_token(stack, session_token)
    run_id = _audit(result.stderr).split("run_id=")[1].split()[0]
    assert f"credential helper cred_helper.py: broker: issuing keys for run {run_id} (key ****)" \
        in result.stderr
    assert "provider=command:cred_helper.py" in _audit(result.stderr)
    _assert_clean(stack, (session_token,), result.stderr, result.stdout)


# --- systemd-credential ----------------------------------------------------------------------

def test_systemd_credential_file_as_systemd_writes_it_syncs(
    small_stack: Stack, secrets_dir: Path, session_token: str
) -> None:
    stack = small_stack
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1800))
    path = _write_secret(secrets_dir, "r2-backup", json.dumps({
        "access_key_id": stack.s3.access_key_id, "secret_access_key": stack.s3.secret_access_key,
        "session_token": session_token, "expires_at": expiry}))
    _grant_read_acl(path, os.geteuid())
    assert oct(path.stat().st_mode & 0o777) == "0o440"
    stack.overrides["credentials"] = {"source": "systemd-credential"}
    result = stack.run("run", env={"CREDENTIALS_DIRECTORY": str(secrets_dir)})
    _assert_synced(stack, result)
    _assert_rclone_got_token(stack, session_token)
    assert "provider=systemd-credential:r2-backup" in _audit(result.stderr)
    _assert_clean(stack, (session_token,), result.stderr, result.stdout)


# --- the hostile matrix ----------------------------------------------------------------------

Setup = tuple[list[Loopback], tuple[str, ...]]  # servers to stop, extra canaries


def _aembit_case(mode: str) -> Any:
    def setup(stack: Stack, secrets_dir: Path, token: str) -> Setup:
        fake, server, identity = _aembit(stack, secrets_dir, token)
        fake.mode = mode
        return [server], (identity, fake.bearer)
    return setup


def _cloudflare_case(mode: str, *, inject: bool = True) -> Any:
    def setup(stack: Stack, secrets_dir: Path, token: str) -> Setup:
        fake, api, parent = _cloudflare(stack, token)
        fake.mode = mode
        servers = [api]
        base = api.base_url
        if inject:
            servers.append(Loopback(InjectingProxy(api.base_url, parent).app))
            base = servers[-1].base_url
        stack.overrides["credentials"] = {"source": "cloudflare-temp", "cloudflare_temp": {
            "api_base_url": base, "parent_access_key_id": PARENT_KEY_ID,
            "account_id": ACCOUNT, "ttl_seconds": 1800}}
        return servers, (parent,)
    return setup


def _command_case(mode: str, timeout: float = 10) -> Any:
    def setup(stack: Stack, secrets_dir: Path, token: str) -> Setup:
        _command(stack, secrets_dir, token, mode, timeout)
        return [], ()
    return setup


def _file_case(content: str | None, mode: int = 0o400, *, symlink: bool = False,
               acl_uid: int | None = None) -> Any:
    def setup(stack: Stack, secrets_dir: Path, token: str) -> Setup:
        stack.overrides["credentials"] = {"source": "systemd-credential"}
        if content is not None:
            expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1800))
            text = content.replace("EXPIRY", expiry).replace("KEY", stack.s3.access_key_id)
            text = text.replace("SECRET", stack.s3.secret_access_key)
            target = _write_secret(secrets_dir, "real-file" if symlink else "r2-backup",
                                   text, mode)
            if symlink:
                (secrets_dir / "r2-backup").symlink_to(target)
            if acl_uid is not None:
                _grant_read_acl(target, acl_uid)
        return [], ()
    return setup


_GOOD_FILE = '{"access_key_id": "KEY", "secret_access_key": "SECRET", "expires_at": "EXPIRY"}'

HOSTILE = {
    "aembit-unknown-type-on-200": (_aembit_case("unknown"), 77, "credentialType Unknown"),
    "aembit-empty-data": (_aembit_case("empty-data"), 65, "empty credential data"),
    "aembit-null-data": (_aembit_case("null-data"), 65, "empty credential data"),
    "aembit-api-key-not-aws": (_aembit_case("api-key"), 65, "awsAccessKeyId is missing"),
    "aembit-non-expiring": (_aembit_case("null-expiry"), 65, "non-expiring"),
    "aembit-expired": (_aembit_case("expired"), 65, "already expired"),
    "aembit-attestation-refused": (_aembit_case("auth-401"), 77, "refused the workload"),
    "aembit-credentials-403": (_aembit_case("creds-403"), 77, "denied the credential request"),
    "aembit-auth-5xx": (_aembit_case("auth-500"), 69, "unavailable after retries"),
    "aembit-auth-garbage": (_aembit_case("auth-garbage"), 65, "not valid JSON"),
    "cloudflare-success-false": (_cloudflare_case("success-false"), 65,
                                 "200 without success (error codes 10001)"),
    "cloudflare-token-not-injected": (_cloudflare_case("ok", inject=False), 77,
                                      "error codes 10000)"),
    "cloudflare-5xx": (_cloudflare_case("status-500"), 69, "unavailable after retries"),
    "cloudflare-no-session-token": (_cloudflare_case("no-session-token"), 65,
                                    "sessionToken is missing"),
    "cloudflare-garbage": (_cloudflare_case("garbage"), 65, "not valid JSON"),
    "command-exit-1": (_command_case("exit1"), 69, "failed (exit 1)"),
    "command-garbage": (_command_case("garbage"), 65, "output is not valid JSON"),
    "command-timeout": (_command_case("timeout", 1), 69, "did not finish within 1s"),
    "command-no-expiration": (_command_case("no-expiration"), 65, "no Expiration"),
    "credential-file-missing": (_file_case(None), 69, "r2-backup is missing"),
    "credential-file-empty": (_file_case(""), 65, "is empty"),
    "credential-file-world-readable": (_file_case(_GOOD_FILE, 0o644), 65, "mode 0644"),
    "credential-file-acl-for-another-user": (_file_case(_GOOD_FILE, acl_uid=65534), 65,
                                             "accessible by uid 65534 (ACL)"),
    "credential-file-symlink": (_file_case(_GOOD_FILE, symlink=True), 65, "is a symlink"),
    "credential-file-garbage": (_file_case("KEY SECRET"), 65, "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_bad_answer_fails_closed_with_its_exit_code_and_no_sync(
    stack: Stack, secrets_dir: Path, session_token: str, case: str
) -> None:
    setup, code, phrase = HOSTILE[case]
    make_tree(stack.source, 3)
    stack.overrides["credentials"] = {"max_attempts": 2, "max_total_seconds": 5}
    servers, extra = setup(stack, secrets_dir, session_token)
    stack.overrides["credentials"].update(max_attempts=2, max_total_seconds=5)
    started = time.monotonic()
    try:
        result = stack.run("run", env={"CREDENTIALS_DIRECTORY": str(secrets_dir)}, timeout=30)
    finally:
        for server in servers:
            server.stop()
    assert result.returncode == code, result.stderr
    assert phrase in result.stderr
    assert time.monotonic() - started < 15
    assert not [p for p in stack.bucket_root.rglob("*") if p.is_file()]
    assert "rclone started" not in result.stderr
    _assert_clean(stack, (session_token, *extra), result.stderr, result.stdout)


def test_systemd_credential_without_credentials_directory_is_unavailable(stack: Stack) -> None:
    make_tree(stack.source, 3)
    stack.overrides["credentials"] = {"source": "systemd-credential"}
    result = stack.run("run")
    assert result.returncode == 69
    assert "$CREDENTIALS_DIRECTORY is not set" in result.stderr
