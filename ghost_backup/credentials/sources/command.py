"""Source ``command``: run a helper that prints AWS ``credential_process`` JSON.

The helper (aws-vault, ``aws configure export-credentials --format process``, a Vault wrapper,
an in-house broker) is run from an argv list without a shell, in its own process group, with
an allowlisted environment, no stdin and a timeout after which the whole group is killed.
Its stdout is secret: it is parsed and never logged. Its stderr is logged (a few lines,
truncated) after redacting everything that looks like a token from stdout, so a helper that
echoes its keys to stderr does not leak them. A timeout or a non-zero exit is a failure (69);
stdout that is not credential JSON is an invalid answer (65).
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from ghost_backup.credentials.base import SourceContext
from ghost_backup.credentials.model import Credentials, parse_credential_object, parse_json_object
from ghost_backup.errors import CredentialsInvalid, CredentialsUnavailable
from ghost_backup.host.process import Finished, run_bounded
from ghost_backup.logs import REDACTED, Redactor
from ghost_backup.settings import CommandSettings, CredentialsSettings, Settings

log = logging.getLogger(__name__)

# Inherited variables a credential helper may need; everything else is dropped.
_ENV_ALLOWLIST = frozenset({
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME",
    "CREDENTIALS_DIRECTORY", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
})
_STDERR_LINES = 20
_STDERR_LINE_CHARS = 300
# Anything in stdout that could be a key: redacted from stderr before it is logged.
_TOKENISH_RE = re.compile(r"[A-Za-z0-9+/=_.:-]{8,}")
_KEY_SHAPED_RE = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_INTERPRETER_RE = re.compile(r"^(python[0-9.]*|sh|bash|dash|node|perl|ruby)$")


def helper_name(argv: Sequence[str]) -> str:
    """Return the helper's name for logs: its file name, or its script's under an interpreter."""
    name = Path(argv[0]).name
    if _INTERPRETER_RE.match(name) and len(argv) > 1 and not argv[1].startswith("-"):
        return Path(argv[1]).name
    return name


def build_helper_env(base: Mapping[str, str], run_id: str) -> dict[str, str]:
    """Return the helper's environment: allowlisted variables plus ``GHOST_BACKUP_RUN_ID``."""
    env = {key: value for key, value in base.items() if key in _ENV_ALLOWLIST}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["GHOST_BACKUP_RUN_ID"] = run_id
    return env


def run_helper(argv: Sequence[str], env: Mapping[str, str], *, timeout: float) -> Finished:
    """Run the helper through the one child-process boundary and return what it left.

    Raise CredentialsUnavailable if it cannot be started.
    """
    try:
        return run_bounded(argv, env, timeout_seconds=timeout)
    except OSError as err:
        raise CredentialsUnavailable(
            f"cannot start credential helper {Path(argv[0]).name}: {err.strerror}"
        ) from None


def _is_key_shaped(word: str) -> bool:
    # Keys mix digits with capitals (AWS/R2 ids), are long and mixed-case (base64 secrets,
    # session tokens) or long hex; paths and names are mostly lower-case words.
    digits = any(c.isdigit() for c in word)
    upper = any(c.isupper() for c in word)
    lower = any(c.islower() for c in word)
    hexish = len(word) >= 32 and all(c in string.hexdigits for c in word)
    return (digits and upper) or hexish or (len(word) >= 24 and upper and lower)


def mask_key_shaped(line: str, *, keep: tuple[str, ...] = ()) -> str:
    """Return ``line`` with every key-shaped word (16+ key characters mixing digits with
    capitals, 24+ mixed-case, or 32+ hex) replaced by ``****``, except the words in ``keep``.

    A failing helper's secrets are unknown to us, so value-based redaction cannot catch a
    key it echoed to stderr; masking anything that looks like a key does.
    """
    def mask(match: re.Match[str]) -> str:
        word = match.group(0)
        return REDACTED if word not in keep and _is_key_shaped(word) else word
    return _KEY_SHAPED_RE.sub(mask, line)


def format_stderr(result: Finished, redactor: Redactor, *, run_id: str) -> tuple[str, ...]:
    """Return the helper's last stderr lines, printable and truncated, with known secrets,
    stdout's tokens and anything key-shaped redacted."""
    text = result.stderr.decode("utf-8", "replace")
    local = Redactor()
    local.add(_TOKENISH_RE.findall(result.stdout.decode("utf-8", "replace")))
    lines = [line for line in text.splitlines() if line.strip()][-_STDERR_LINES:]
    cleaned = []
    for line in lines:
        printable = "".join(ch for ch in line if ch.isprintable())
        masked = mask_key_shaped(redactor.redact(local.redact(printable)), keep=(run_id,))
        cleaned.append(masked[:_STDERR_LINE_CHARS])
    return tuple(cleaned)


def parse_helper_result(
    result: Finished, *, name: str, command: CommandSettings, now: datetime,
    settings: CredentialsSettings,
) -> Credentials:
    """Given a finished helper, return validated credentials from its stdout.

    Raise CredentialsUnavailable on timeout or non-zero exit, CredentialsInvalid when stdout is
    not credential JSON (``credential_process`` or the proxy contract's shape) or is too large.
    """
    if result.timed_out:
        raise CredentialsUnavailable(
            f"credential helper {name} did not finish within {command.timeout_seconds:g}s; "
            "it was killed"
        )
    if result.returncode != 0:
        raise CredentialsUnavailable(f"credential helper {name} failed (exit {result.returncode})")
    if len(result.stdout) > settings.max_body_bytes:
        raise CredentialsInvalid(
            f"credential helper {name} printed more than {settings.max_body_bytes} bytes"
        )
    payload = parse_json_object(result.stdout, what=f"credential helper {name} output")
    return parse_credential_object(payload, now=now, settings=settings)


class CommandSource:
    """Credentials printed by a local helper program."""

    name = "command"

    def __init__(self, settings: Settings, command: CommandSettings) -> None:
        self._settings = settings
        self._command = command
        self._helper = helper_name(command.argv)

    @property
    def provider(self) -> str:
        """Return ``command:<helper file name>`` unless a name is configured."""
        return self._settings.credentials.provider_name or f"{self.name}:{self._helper}"

    def fetch(self, ctx: SourceContext) -> Credentials:
        """Run the helper once and return the credentials it printed."""
        result = run_helper(self._command.argv, build_helper_env(ctx.env, ctx.run_id),
                            timeout=self._command.timeout_seconds)
        redactor = Redactor()
        level = logging.WARNING
        try:
            credentials = parse_helper_result(
                result, name=self._helper, command=self._command, now=ctx.clock(),
                settings=self._settings.credentials,
            )
            ctx.remember(credentials.secret_values())
            redactor.add(credentials.secret_values())
            level = logging.INFO
        finally:
            # stderr is the helper's only way to explain itself: always log it, redacted.
            for line in format_stderr(result, redactor, run_id=ctx.run_id):
                log.log(level, "credential helper %s: %s", self._helper, line)
        log.info("credential helper %s exited 0 after %.1fs", self._helper, result.seconds)
        return credentials
